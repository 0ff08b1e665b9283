"""Edits (DATA-3) as queue jobs: the web page's, and the daemon's follow-ups.

``edit.run`` is safe to run again (the row takes the values with the last
file, files already rewritten are skipped), so a job cut by kill -9 and
given back by ``queue.recover`` simply runs again and finishes. A user's
edit that fails is not retried by itself: the reason shows on the queue
page, where Retry runs the same edit again. A follow-up (images stored into
an edited study after its edit) is the box's own work; a failure there (a
full disk) is retried with the queue's backoff until it goes through.
"""

from __future__ import annotations

from dataclasses import asdict

from pacsbox import edit
from pacsbox.db import queue
from pacsbox.db.models import Study
from pacsbox.outbound.runner import LOCAL, Control, Outcome, done, unreachable, wake

EDITS = LOCAL + "edit"  # one edit at a time: edit.run serialises them anyway
_OPEN = ("queued", "running", "waiting", "retrying")


def submit(plan: edit.Edit, owner: str) -> int:
    """Queue a planned edit; returns the job id."""
    job_id = queue.submit("edit", EDITS, {"edit": asdict(plan), "link": plan.link},
                          owner=owner, label=plan.label, retries=0)  # fmt: skip
    wake()
    return job_id


def queue_follow_ups() -> int:
    """Queue a follow-up for each study marked by ``edit.pending`` that has none queued
    yet; the mark is in the index, so this finds them again after a restart. Returns
    how many were queued."""
    queued = {
        j.payload.get("follow_up") for j in queue.jobs(_OPEN, kind="edit") if j.owner == "pacsbox"
    }
    n = 0
    for study_id in edit.pending():
        if study_id in queued:
            continue
        uid = Study.get_by_id(study_id).study_instance_uid
        queue.submit("edit", EDITS, {"follow_up": study_id, "link": f"/studies/{uid}"},
                     owner="pacsbox", label=f"study {uid}: later images")  # fmt: skip
        n += 1
    if n:
        wake()
    return n


def handle(ctl: Control) -> Outcome:
    """Run one edit or follow-up job."""
    archive = ctl.the_archive()
    payload = ctl.job.payload
    if "follow_up" in payload:
        try:
            return done(edit.follow_up(archive, int(payload["follow_up"]), ctl.progress))
        except Exception as exc:  # noqa: BLE001 - retried with backoff, never dropped
            return unreachable(f"later images not rewritten yet: {exc}")
    plan = edit.Edit(**payload["edit"])
    return done(edit.run(archive, plan, ctl.progress))
