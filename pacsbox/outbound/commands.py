"""``pacsbox forward`` and ``pacsbox queue``: the queue from a shell.

A forward from the CLI is a queue row like one from the web page; the
running daemon sends it. ``--wait`` follows the row until it ends, and runs
the job in this process when no daemon is running, so the command works on a
box that is being set up. What a terminal sees and what a script reads
(``--json``) come from the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from collections.abc import Callable
from typing import TextIO

from pacsbox import status
from pacsbox.config import Config
from pacsbox.db import commitments, queue
from pacsbox.db.models import utcnow
from pacsbox.errors import NotFound, PacsboxError, UsageError
from pacsbox.outbound import forward
from pacsbox.outbound.runner import Runner
from pacsbox.progress import Bar

ENDED = ("done", "failed", "cancelled")


class JobFailed(PacsboxError):
    """A job the command waited for ended failed or cancelled (exit 1)."""


def forward_command(
    cfg: Config,
    selection: forward.Selection,
    to: str,
    wait: bool,
    owner: str,
    out: TextIO,
    commit: bool = False,
    progress: Callable[[str], Callable[[int, int], None]] = Bar,
) -> int:
    """Queue a forward; with ``wait`` follow it, and with ``commit`` its commitment too
    (JobFailed, exit 1, when some instance was not committed)."""
    job_id = forward.submit(selection, to, owner=owner, commit=commit)
    also = ", then its storage commitment" if commit else ""
    print(f"job {job_id}: forward of {selection.label()} to {to} queued{also}", file=out)
    poke_daemon(cfg)
    if not wait:
        return 0
    wait_for(cfg, job_id, out, progress=progress)
    if commit:
        commit_job = commitments.job_after(job_id)
        if commit_job is None:
            raise JobFailed(f"job {job_id}: no commitment job was queued")
        wait_for(cfg, commit_job, out, progress=progress)
    return 0


def poke_daemon(cfg: Config) -> None:
    """Wake the running daemon's runner (SIGUSR1); without one, or without the right to
    signal it, the runner's poll finds the job within seconds."""
    pid = status.current(cfg).get("pid")
    if isinstance(pid, int) and pid > 0:
        try:
            os.kill(pid, signal.SIGUSR1)
        except OSError:
            pass


def wait_for(
    cfg: Config,
    job_id: int,
    out: TextIO,
    poll: float = 0.01,
    progress: Callable[[str], Callable[[int, int], None]] = Bar,
) -> int:
    """Follow a job to its end with a progress bar (``progress(label)`` makes it);
    0 when done, JobFailed otherwise."""
    bar = progress(f"job {job_id}")
    runner: Runner | None = None
    said = ""
    looked = 0.0
    daemon = True
    while True:
        job = queue.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} is gone from the queue")
        if job.total:
            bar(job.done, job.total)
        if job.state in ENDED:
            break
        if job.state in ("retrying", "waiting") and job.last_error != said:
            said = job.last_error
            print(f"job {job_id}: {job.state} at {job.next_attempt}: {said}", file=out)
        if time.monotonic() - looked > 1.0:  # the snapshot is read once a second
            looked = time.monotonic()
            daemon = status.current(cfg)["state"] != "not-running"
        if not daemon:
            # Imported here: with a daemon running, the command needs no DICOM libraries.
            from pacsbox.outbound.kinds import HANDLERS

            runner = runner or Runner(cfg, HANDLERS)
            claimed = queue.claim(runner.name, utcnow(), int(cfg.DeliveryConcurrency), only=job_id)
            if claimed is not None:
                runner.run_one(claimed)
                continue
        time.sleep(poll)
    message = f"job {job_id}: {job.state}: {job.last_error or 'delivered'}"
    if job.state != "done":
        raise JobFailed(message)
    print(message, file=out)
    return 0


def queue_command(cfg: Config, action: str, job_id: int | None, as_json: bool, out: TextIO) -> int:
    """List the queue, or retry or cancel one job."""
    if action in ("retry", "cancel") and job_id is None:
        raise UsageError(f"queue {action} needs the job's ID (pacsbox queue lists them)")
    if action == "retry":
        assert job_id is not None
        if not queue.retry(job_id, utcnow()):
            raise NotFound(f"job {job_id} is not failed or cancelled (or does not exist)")
        print(f"job {job_id} queued again", file=out)
        return 0
    if action == "cancel":
        assert job_id is not None
        if not queue.cancel(job_id):
            raise NotFound(f"job {job_id} has ended already (or does not exist)")
        print(f"job {job_id} cancelled", file=out)
        return 0
    rows = queue.jobs()
    if as_json:
        print(json.dumps([j.as_dict() for j in rows], indent=1), file=out)
        return 0
    print(f"{'ID':>6} {'KIND':8} {'DESTINATION':16} {'STATE':9} {'DONE':>11} TRIES  LAST", file=out)
    for j in rows:
        done = f"{j.done}/{j.total}" if j.total else ""
        print(
            f"{j.id:>6} {j.kind:8} {j.destination:16} {j.state:9} {done:>11} {j.attempts:>5}  "
            f"{_when(j)}{j.last_error}",
            file=out,
        )
    return 0


def _when(job: queue.JobView) -> str:
    if job.state in ("retrying", "waiting") and job.next_attempt:
        at = dt.datetime.fromisoformat(job.next_attempt).astimezone()
        return f"next {at:%H:%M:%S}: "
    return ""
