"""Retrieve (SCU-2): a queue job that asks a remote AE to C-MOVE a study or series to us.

What arrives comes in through the daemon's own C-STORE SCP, the one write
path; this job only asks and watches. The remote's pending responses are the
job's progress, and its final status decides the outcome: a remote that
cannot be reached, or is out of resources (A7xx), is tried again later; one
that does not know us as a move destination (A801) or answers with another
failure fails the job at once (``retries`` 0), since only a change on the
remote's side helps and ``pacsbox queue retry`` is there for after it.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from pacsbox import status
from pacsbox.config import Config
from pacsbox.db import journal, queue
from pacsbox.errors import NotFound, PeerError, UsageError
from pacsbox.outbound.deliver import peer_of
from pacsbox.outbound.runner import Control, Outcome, done, refused, unreachable, wake
from pacsbox.scu import remote

NOT_RUNNING = ("not-running", "stopping", "stopped")


def receiver_missing(cfg: Config) -> str:
    """Why nothing here could receive a C-MOVE now ("" when the daemon listens)."""
    if status.current(cfg)["state"] in NOT_RUNNING:
        return (
            "pacsbox is not running, so nothing can receive the images; "
            "the retrieve runs once `pacsbox serve` starts"
        )
    return ""


def label(series: str, title: str) -> str:
    """What a job list shows (no patient names or IDs)."""
    return f"{'1 series' if series else '1 study'} from {title}"


def submit(title: str, study: str, series: str = "", *, owner: str = "", address: str = "") -> int:
    """Queue a retrieve of a study (or one of its series) from ``title`` and journal
    who asked; returns the job id. Raises NotFound (unknown AE) and UsageError (no
    address, no study)."""
    if not study:
        raise UsageError("name the study to retrieve (its Study Instance UID)")
    peer_of(title)
    what = label(series, title)
    # The payload's keys are not a forward's selection (queue.SELECTION_KEYS): the
    # purge guard must not take a retrieve for a job that sends what is stored.
    payload = {"study_uid": study, "series_uid": series}
    job_id = queue.submit("retrieve", title, payload, owner=owner, label=what, retries=0)
    detail = f"job {job_id}: {what}: study={study}" + (f"; series={series}" if series else "")
    journal.record("retrieve", owner, address, target=title, detail=detail)
    wake()
    return job_id


def _identifier(study: str, series: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES" if series else "STUDY"
    ds.StudyInstanceUID = study
    if series:
        ds.SeriesInstanceUID = series
    return ds


def handle(ctl: Control) -> Outcome:
    """Run one attempt of a retrieve job."""
    job, cfg = ctl.job, ctl.cfg
    why = receiver_missing(cfg)
    if why:
        return unreachable(why)
    try:
        peer = peer_of(job.destination)
    except (NotFound, UsageError) as exc:
        return refused(str(exc))
    study, series = job.payload.get("study_uid", ""), job.payload.get("series_uid", "")
    ours = cfg.ApplicationEntityTitle
    try:
        res = remote.move(
            ours, peer, _identifier(study, series), ours, timeout=float(cfg.DimseTimeout),
            progress=lambda r: ctl.progress(r.processed, r.processed + r.remaining),
            cancelled=ctl.cancelled,
        )  # fmt: skip
    except PeerError as exc:
        return unreachable(str(exc))
    ctl.progress(res.processed, res.processed + res.remaining)
    return outcome(res, peer.title, ours, status.current(cfg).get("port"))


def outcome(res: remote.MoveResult, title: str, ours: str, port: object) -> Outcome:
    """What a C-MOVE's end means for the job (PS3.4 C.4.2.1.5 statuses)."""
    code = res.status
    if code is None:
        return unreachable(f"{title} went away after {res.summary()}")
    if code == remote.MOVE_DESTINATION_UNKNOWN:
        return refused(
            f"{title} does not know {ours} as a move destination (A801): add {ours} "
            f"(this box's address, port {port}) to {title}'s AE table, then retry the job"
        )
    if code == 0 and res.processed == 0:
        return refused(f"{title} sent nothing: it holds no images of this study or series")
    if code == 0:
        return done(res.summary())
    if code == 0xB000:
        return done(f"{res.summary()}: a partial retrieve")
    if code & 0xFF00 == 0xA700:
        return unreachable(f"{title} is out of resources: {res.summary()}; tried again later")
    comment = f": {res.comment}" if res.comment else ""
    return refused(f"{title} answered the C-MOVE with {res.summary()}{comment}")
