"""Synchronisation (SCU-8): pull a remote AE's studies that are not stored here yet.

A sync run is a queue job of kind "sync": it asks the remote for its
studies (all, or those of the last N days by Study Date), compares them with
the index, and queues one retrieve job per study that is not all here, so
each study has its own progress, retries and reason on the queue page. A
study that already has a retrieve under way is not asked for twice. The
daemon queues the runs of the hourly schedules (``db.sync``); ``pacsbox
sync run`` queues one now.
"""

from __future__ import annotations

import datetime as dt
import logging

from pacsbox.config import Config
from pacsbox.db import journal, queue
from pacsbox.db import sync as schedules
from pacsbox.errors import NotFound, PeerError, UsageError
from pacsbox.outbound import query, retrieve
from pacsbox.outbound.deliver import peer_of
from pacsbox.outbound.runner import Control, Outcome, done, refused, unreachable, wake

log = logging.getLogger("pacsbox.outbound")

PENDING = ("queued", "running", "waiting", "retrying")
SCHEDULE_OWNER = "sync schedule"


def label(title: str, days: int) -> str:
    return f"sync from {title}" + (f", studies of the last {days} days" if days else "")


def submit(title: str, days: int = 0, *, owner: str = "", address: str = "") -> int:
    """Queue a sync run of ``title`` and journal who asked; returns the job id.
    Raises NotFound (unknown AE) and UsageError (no address)."""
    peer_of(title)
    what = label(title, days)
    job_id = queue.submit("sync", title, {"days": days}, owner=owner, label=what, retries=0)
    journal.record("sync", owner, address, target=title, detail=f"job {job_id}: {what}")
    wake()
    return job_id


def queue_due(now: dt.datetime) -> list[int]:
    """Queue the runs the schedules have due at ``now`` (naive UTC); a remote whose
    last run has not ended is not queued again. Returns the new jobs' ids."""
    busy = {j.destination for j in queue.jobs(PENDING, kind="sync", limit=10000)}
    ids = []
    for s in schedules.take_due(now):
        if s.ae_title in busy:
            log.info("sync of %s: the last run has not ended; this hour's is skipped", s.ae_title)
            continue
        try:
            ids.append(submit(s.ae_title, s.days, owner=SCHEDULE_OWNER))
        except (NotFound, UsageError) as exc:
            log.warning("sync of %s not queued: %s", s.ae_title, exc)
    return ids


def _retrieving(title: str) -> set[str]:
    """Studies of ``title`` with a retrieve job not ended yet."""
    jobs = queue.jobs(PENDING, kind="retrieve", limit=10000)
    return {str(j.payload.get("study_uid")) for j in jobs if j.destination == title}


def studies_of(cfg: Config, title: str, days: int) -> list[dict]:
    """The remote's studies (of the last ``days`` days by Study Date, 0 for all),
    marked local; raises as ``query.query``."""
    keys: dict[str, str] = {}
    if days:
        since = dt.date.today() - dt.timedelta(days=days)
        keys["StudyDate"] = f"{since:%Y%m%d}-"
    return query.query(cfg, title, "study", keys)


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def handle(ctl: Control) -> Outcome:
    """Run one sync: list the remote's studies, queue retrieves of the missing ones."""
    job = ctl.job
    days = int(job.payload.get("days") or 0)
    try:
        rows = studies_of(ctl.cfg, job.destination, days)
    except PeerError as exc:
        return unreachable(str(exc))
    except (NotFound, UsageError) as exc:
        return refused(str(exc))
    missing = [str(r["StudyInstanceUID"]) for r in rows if r["local"] != "all"]
    under_way = _retrieving(job.destination)
    owner = job.owner or SCHEDULE_OWNER
    queued = [retrieve.submit(job.destination, uid, owner=owner)
              for uid in missing if uid and uid not in under_way]  # fmt: skip
    ctl.progress(len(rows), len(rows))
    text = f"{_n(len(rows), 'study', 'studies')} on {job.destination}, "
    text += f"{len(missing)} not all here: {_n(len(queued), 'retrieve', 'retrieves')} queued"
    if len(queued) < len(missing):
        text += f" ({len(missing) - len(queued)} already under way)"
    return done(text)
