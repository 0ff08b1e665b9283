"""Forward (SCU-3): patients, studies, series or single images to an AE, as a queue job.

A forward is accepted only for a destination the AE table can reach and a
selection that holds something, so a typing mistake is an error now rather
than a job that fails tonight. The job names its selection, not a list of
files: an image stored into a forwarded study before the job runs goes too,
and what the destination already acknowledged is skipped on a resume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pacsbox.db import aes, journal, lookup, queue
from pacsbox.errors import NotFound, UsageError
from pacsbox.outbound.acks import AckLog
from pacsbox.outbound.runner import Control, Outcome, done, refused, unreachable, wake


@dataclass
class Selection:
    """What to send: the union of these (PatientIDs and UIDs)."""

    patients: list[str] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    # Instance rows (after, upto] only, when set: a route sends one round of a study.
    after: int = 0
    upto: int = 0

    @classmethod
    def of(cls, payload: dict) -> Selection:
        """The selection a job's payload names (a route's payload says more)."""
        keys = (*queue.SELECTION_KEYS, "after", "upto")
        return cls(**{k: payload[k] for k in keys if k in payload})

    def items(self) -> list:
        return lookup.stored_selection(
            self.patients, self.studies, self.series, self.instances, self.after, self.upto
        )

    def count(self) -> int:
        """How many instances it holds now (a route's round is counted by its caller)."""
        return lookup.count_selection(self.patients, self.studies, self.series, self.instances)

    def label(self) -> str:
        """ "2 studies, 1 series": what a job list shows (no patient names or IDs)."""
        return ", ".join(
            f"{len(v)} {one if len(v) == 1 else many}"
            for attr, one, many in _NAMES
            if (v := getattr(self, attr))
        )


_NAMES = (
    ("patients", "patient", "patients"),
    ("studies", "study", "studies"),
    ("series", "series", "series"),
    ("instances", "image", "images"),
)


def submit(
    selection: Selection,
    destination: str,
    *,
    owner: str = "",
    address: str = "",
    commit: bool = False,
) -> int:
    """Queue a forward and journal who asked; returns the job id. With ``commit``,
    the delivered instances are then asked to be committed (a commit job). Raises
    NotFound (unknown AE, nothing stored) and UsageError (an AE without an address,
    an empty selection)."""
    if not any(getattr(selection, k) for k in queue.SELECTION_KEYS):
        raise UsageError("name what to forward: a patient, a study, a series or an image")
    aes.ae_address(destination)
    total = selection.count()
    if not total:
        raise NotFound(f"nothing stored matches {selection.label()}")
    label = f"{selection.label()} to {destination}" + (", with commitment" if commit else "")
    payload = {**asdict(selection), **({"commit": True} if commit else {})}
    job_id = queue.submit("forward", destination, payload, owner=owner, label=label, total=total)
    journal.record("forward", owner, address, target=destination,
                   detail=f"job {job_id}: {label}: {_uids(selection)}")  # fmt: skip
    wake()
    return job_id


def _uids(selection: Selection) -> str:
    """The selection's keys for the journal (an audit wants to know exactly what left)."""
    keys = queue.SELECTION_KEYS
    return "; ".join(f"{k}={','.join(v)}" for k in keys if (v := getattr(selection, k)))[:2000]


def handle(ctl: Control) -> Outcome:
    """Run one attempt of a forward job."""
    # Imported here: queueing a forward (the CLI) needs no DICOM libraries.
    from pacsbox.outbound import commitment
    from pacsbox.outbound.deliver import deliver, peer_of

    job = ctl.job
    items = Selection.of(job.payload).items()
    if not items:
        return refused("nothing stored matches the selection any more")
    log = AckLog(ctl.cfg.data_dir, job.id)
    sent = queue.already_sent(job.id) | log.read()
    todo = [(row, item) for row, item in items if row not in sent]
    base = len(items) - len(todo)
    ctl.progress(base, len(items))
    try:
        peer = peer_of(job.destination)
    except (NotFound, UsageError) as exc:
        return refused(str(exc))
    try:
        d = deliver(
            ctl.cfg.ApplicationEntityTitle,
            peer,
            todo,
            timeout=float(ctl.cfg.DimseTimeout),
            cancelled=ctl.cancelled,
            acknowledged=lambda rows: queue.sent(job.id, rows),
            noted=log.note,
            batch=500,  # the ack log covers a kill -9 between batches; each batch is a commit
            progress=lambda n, _total: ctl.progress(base + n, len(items)),
        )
    finally:
        log.close()
    summary = d.summary() if not base else f"{d.summary()} ({base} already before)"
    if d.unreachable:
        return unreachable(summary)
    if d.refused:
        return refused(summary)
    if job.payload.get("commit"):
        delivered = sent | set(d.acknowledged)
        refs = [(i.sop_class_uid, i.sop_instance_uid) for row, i in items if row in delivered]
        commit_job = commitment.after_forward(job.id, job.destination, refs, job.owner)
        summary += f"; commitment job {commit_job}"
    log.remove()
    return done(summary)
