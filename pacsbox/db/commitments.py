"""Storage commitment as the index remembers it (SCU-5, NET-7, issue 17 items 4 and 5).

One row per instance and destination: pending from the moment a commit job
is queued, then committed by an AE at a time, or failed with the reason the
destination gave. The rows outlive the job and a purge of the local copy, so
the study page can say who holds a study and the purge guard can ask whether
anyone does. (``db/commit.py`` is the index's group commit, another thing.)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacsbox.db import queue
from pacsbox.db.models import Commitment, Instance, QueueJob, Series, Study, utcnow
from pacsbox.db.transaction import write_transaction

log = logging.getLogger("pacsbox.commitment")

_CHUNK = 400  # UIDs per IN (...): under every SQLite's bound-parameter limit

# PS3.4 Table J.3-2 (0008,1197) Failure Reason, as a line names them.
REASONS = {
    0x0110: "processing failure",
    0x0112: "no such object instance",
    0x0119: "class-instance conflict",
    0x0122: "referenced SOP class not supported",
    0x0131: "duplicate transaction UID",
    0x0213: "resource limitation",
}


def reason_text(code: int | None) -> str:
    """ "0112 no such object instance": a failure reason for a person."""
    if code is None:
        return ""
    return f"{code:04X} {REASONS.get(code, 'failure')}"


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.replace(tzinfo=dt.UTC).isoformat()


# --- asking ---------------------------------------------------------------------------


def job_payload(forward_job: int) -> dict[str, Any]:
    """The payload of the commit job that follows forward job ``forward_job``."""
    return {"forward": forward_job}


def job_after(forward_job: int) -> int | None:
    """The commit job a forward asked for, or None (a forward run twice asks once)."""
    payload = json.dumps(job_payload(forward_job), sort_keys=True)
    row = (
        QueueJob.select(QueueJob.id)
        .where((QueueJob.kind == "commit") & (QueueJob.payload == payload))
        .first()
    )
    return None if row is None else int(row.id)


def submit_after(
    forward_job: int, destination: str, refs: Sequence[tuple[str, str]], owner: str
) -> int:
    """Queue the commit job of a delivered forward and mark its instances pending, in
    one transaction; returns the job's id (the one already queued, on a second call).

    ``refs`` are (SOP Class UID, SOP Instance UID) of what the destination
    acknowledged. The job fails at once on a failed list (retries 0): asking
    again is a person's decision (``pacsbox queue retry``), which asks only
    for the instances not committed yet.
    """
    with write_transaction():
        known = job_after(forward_job)
        if known is not None:
            return known
        job_id = queue.submit(
            "commit", destination, job_payload(forward_job), owner=owner, total=len(refs),
            retries=0, label=f"commitment of {len(refs)} images by {destination}",
        )  # fmt: skip
        _pending(job_id, destination, refs)
    return job_id


def _pending(job_id: int, destination: str, refs: Sequence[tuple[str, str]]) -> None:
    classes = dict((uid, cls) for cls, uid in refs)
    uids = list(classes)
    studies: dict[str, str] = {}
    for part in _chunks(uids):
        rows = (
            Instance.select(Instance.sop_instance_uid, Study.study_instance_uid)
            .join(Series)
            .join(Study)
            .where(Instance.sop_instance_uid.in_(list(part)))
            .tuples()
        )
        studies.update(dict(rows))
        Commitment.delete().where(
            (Commitment.destination == destination) & Commitment.sop_instance_uid.in_(list(part))
        ).execute()
    now = utcnow()
    rows_in = [
        {
            "destination": destination,
            "sop_instance_uid": uid,
            "sop_class_uid": classes[uid],
            "study_instance_uid": studies.get(uid, ""),
            "job_id": job_id,
            "state": "pending",
            "requested": now,
        }  # fmt: skip
        for uid in uids
    ]
    for start in range(0, len(rows_in), _CHUNK // 10):
        Commitment.insert_many(rows_in[start : start + _CHUNK // 10]).execute()


def still_open(job_id: int) -> list[tuple[str, str]]:
    """(SOP Class UID, SOP Instance UID) a commit job has still to have committed."""
    query = (
        Commitment.select(Commitment.sop_class_uid, Commitment.sop_instance_uid)
        .where((Commitment.job_id == job_id) & (Commitment.state != "committed"))
        .order_by(Commitment.id)
        .tuples()
    )
    return [(cls, uid) for cls, uid in query]


def asked(job_id: int, transaction_uid: str, sop_uids: Sequence[str]) -> None:
    """An N-ACTION with ``transaction_uid`` is on its way for these instances: the
    report that answers it must name that transaction."""
    with write_transaction():
        for part in _chunks(list(sop_uids)):
            Commitment.update(
                transaction_uid=transaction_uid, state="pending", reason=None, answered=None,
                answered_by="", requested=utcnow(),
            ).where(
                (Commitment.job_id == job_id) & Commitment.sop_instance_uid.in_(list(part))
            ).execute()  # fmt: skip


# --- answers ------------------------------------------------------------------------


def answer(transaction_uid: str, by: str, committed: Iterable[str], failed: dict[str, int]) -> int:
    """Record an N-EVENT-REPORT: its instances committed by ``by`` or failed with
    their reason. Returns how many rows of the transaction it matched (0: not ours)."""
    now = utcnow()
    n = 0
    mine = Commitment.transaction_uid == transaction_uid
    with write_transaction():
        for part in _chunks(list(committed)):
            n += int(
                Commitment.update(state="committed", reason=None, answered_by=by[:16],
                                  answered=now)
                .where(mine & Commitment.sop_instance_uid.in_(list(part)))
                .execute()
            )  # fmt: skip
        for code in sorted(set(failed.values())):
            uids = [uid for uid, c in failed.items() if c == code]
            for part in _chunks(uids):
                n += int(
                    Commitment.update(state="failed", reason=code, answered_by=by[:16],
                                      answered=now)
                    .where(mine & Commitment.sop_instance_uid.in_(list(part)))
                    .execute()
                )  # fmt: skip
    return n


def record_report(
    by: str, transaction_uid: str, committed: Sequence[str], failed: dict[str, int]
) -> bool:
    """``answer`` with its log line, wherever the report came in; False (and a warning)
    when it names no transaction of ours."""
    if not answer(transaction_uid, by, committed, failed):
        log.warning("commitment report from %s for unknown transaction %s (%d committed, "
                    "%d failed) ignored", by, transaction_uid, len(committed), len(failed))  # fmt: skip
        return False
    log.info("commitment report from %s: transaction %s: %d committed, %d failed", by,
             transaction_uid, len(committed), len(failed))  # fmt: skip
    jobs = Commitment.select(Commitment.job_id).where(Commitment.transaction_uid == transaction_uid)
    queue.look_now({int(row.job_id) for row in jobs.distinct()})  # its job waits for this
    return True


def outstanding(job_id: int) -> tuple[str, dt.datetime] | None:
    """(Transaction UID, when it was asked) of a job's request still unanswered, or None."""
    row = (
        Commitment.select(Commitment.transaction_uid, Commitment.requested)
        .where(
            (Commitment.job_id == job_id)
            & (Commitment.state == "pending")
            & (Commitment.transaction_uid != "")
        )
        .order_by(Commitment.requested.desc())
        .first()
    )
    return None if row is None else (row.transaction_uid, row.requested)


def expire(job_id: int) -> None:
    """A request's report did not come in time: its instances are to be asked again
    (a late report for the old transaction no longer counts)."""
    with write_transaction():
        Commitment.update(transaction_uid="").where(
            (Commitment.job_id == job_id) & (Commitment.state == "pending")
        ).execute()


def waiting(transaction_uid: str) -> int:
    """Instances of a transaction the report has not answered yet."""
    return (
        Commitment.select()
        .where((Commitment.transaction_uid == transaction_uid) & (Commitment.state == "pending"))
        .count()
    )


@dataclass
class Tally:
    """A commit job's instances by outcome, and who committed them."""

    committed: int
    failed: dict[int, int]  # Failure Reason -> how many
    pending: int
    by: list[str]

    def line(self, destination: str) -> str:
        """ "2 committed by ORTHANC, 1 failed (0112 no such object instance)"."""
        who = ", ".join(self.by) or destination
        text = f"{self.committed} committed by {who}"
        if self.failed:
            many = len(self.failed) > 1  # "2 0110 ..., 1 0112 ..." only when they differ
            reasons = ", ".join(
                f"{n} {reason_text(c)}" if many else reason_text(c)
                for c, n in sorted(self.failed.items())
            )
            text += f", {sum(self.failed.values())} failed ({reasons})"
        if self.pending:
            text += f", {self.pending} not answered"
        return text


def tally(job_id: int) -> Tally:
    """How a commit job's instances stand now."""
    rows = (
        Commitment.select(Commitment.state, Commitment.reason, Commitment.answered_by)
        .where(Commitment.job_id == job_id)
        .tuples()
    )
    out = Tally(0, {}, 0, [])
    for state, reason, by in rows:
        if state == "committed":
            out.committed += 1
            if by and by not in out.by:
                out.by.append(by)
        elif state == "failed":
            code = int(reason or 0)
            out.failed[code] = out.failed.get(code, 0) + 1
        else:
            out.pending += 1
    return out


# --- reading: the study page and the purge guard ----------------------------------------


def of_study(study_uid: str) -> list[dict[str, Any]]:
    """Every commitment asked for the study's instances, by destination then instance."""
    query = (
        Commitment.select()
        .where(Commitment.study_instance_uid == study_uid)
        .order_by(Commitment.destination, Commitment.id)
    )
    return [
        {
            "destination": c.destination,
            "sop_instance_uid": c.sop_instance_uid,
            "state": c.state,
            "by": c.answered_by,
            "at": _iso(c.answered),
            "requested": _iso(c.requested),
            "reason": reason_text(c.reason),
        }
        for c in query
    ]


def pending_studies() -> dict[str, str]:
    """Study Instance UID -> a destination whose commitment of it is pending.

    Pending means asked and not answered while the job that asks has not
    ended (done or cancelled); a failed job waits for a retry, as in
    ``queue.pending_studies``.
    """
    query = (
        Commitment.select(Commitment.study_instance_uid, Commitment.destination)
        .join(QueueJob, on=(QueueJob.id == Commitment.job_id))
        .where((Commitment.state == "pending") & QueueJob.state.not_in(list(queue.FINISHED)))
        .order_by(Commitment.id)
        .tuples()
    )
    out: dict[str, str] = {}
    for study_uid, destination in query:
        out.setdefault(study_uid, destination)
    return out


def committed_by(study_uid: str) -> list[str]:
    """Destinations that have committed every instance the box holds of the study."""
    held = {
        uid
        for (uid,) in Instance.select(Instance.sop_instance_uid)
        .join(Series)
        .join(Study)
        .where(Study.study_instance_uid == study_uid)
        .tuples()
    }
    if not held:
        return []
    counts: dict[str, int] = {}
    for part in _chunks(sorted(held)):
        rows = (
            Commitment.select(Commitment.destination, Commitment.sop_instance_uid)
            .where((Commitment.state == "committed") & Commitment.sop_instance_uid.in_(list(part)))
            .tuples()
        )
        for destination, _uid in rows:
            counts[destination] = counts.get(destination, 0) + 1
    return sorted(d for d, n in counts.items() if n == len(held))


# --- what the box holds, for its answer as SCP --------------------------------------


@dataclass(frozen=True)
class Held:
    """What the index says of an instance a peer asks us to commit."""

    sop_class_uid: str
    path: str
    digest: str


def held(sop_uids: Sequence[str]) -> dict[str, Held]:
    """SOP Instance UID -> its class, file and digest, for those the index holds."""
    out: dict[str, Held] = {}
    for part in _chunks(list(sop_uids)):
        rows = (
            Instance.select(
                Instance.sop_instance_uid, Instance.sop_class_uid, Instance.digest,
                Instance.file_name, Study.storage_root, Study.folder,
            )
            .join(Series)
            .join(Study)
            .where(Instance.sop_instance_uid.in_(list(part)))
            .tuples()
        )  # fmt: skip
        for uid, cls, digest, name, root, folder in rows:
            out[uid] = Held(cls, str(Path(root) / folder / name), digest)
    return out
