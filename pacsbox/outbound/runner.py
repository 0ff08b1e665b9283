"""The daemon's hands on the durable queue: claim a due job, run it, record what happened.

The queue (``db.queue``) is the memory: a job is a row before anything is
sent and after the box restarts, so nothing accepted is forgotten. The
runner only decides what a result means for the row, with the two rules of
issue 17: a destination that cannot be reached is retried with backoff until
``DeliveryGiveUpHours``; one that answers with a failure status counts
against the job's retries. ``ThreadPoolSize`` jobs run at once, at most
``DeliveryConcurrency`` of them to one destination, so a dead destination
holds back only its own jobs. The box's own work (exports, burns, edits) runs
here too: its destinations start with ``LOCAL`` and take one job at a time, so
two burns to one drive never overlap while a burn and a forward run side by side.
A job waiting for an answer that comes by itself (a commitment report) ends its
run as "waiting" and frees both.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pacsbox.config import Config
from pacsbox.db import queue
from pacsbox.db.models import utcnow
from pacsbox.errors import PacsboxError
from pacsbox.outbound import acks

if TYPE_CHECKING:
    from pacsbox.archive import Archive

log = logging.getLogger("pacsbox.outbound")

LOCAL = "local:"  # a destination inside the box (a drive, the edits): one job at a time
POLL_SECONDS = 5.0  # a new job wakes the runner (wake()); the poll catches retries due
TIDY_SECONDS = 3600.0  # how often finished jobs older than QueueKeepDays are removed
_WAKE = threading.Event()


def wake() -> None:
    """A job was queued in this process (the web page) or signalled from another (the
    CLI sends SIGUSR1): claim now rather than at the next poll."""
    _WAKE.set()


@dataclass(frozen=True)
class Outcome:
    """What one run of a job achieved: done, unreachable (retry later), refused, or
    waiting (for an answer that comes by itself, such as a commitment report: the job
    frees its thread and slot and looks again ``after`` seconds later)."""

    kind: str  # "done" | "unreachable" | "refused" | "waiting"
    message: str
    after: float = 0.0


def done(message: str) -> Outcome:
    return Outcome("done", message)


def unreachable(message: str) -> Outcome:
    return Outcome("unreachable", message)


def refused(message: str) -> Outcome:
    return Outcome("refused", message)


def later(message: str, seconds: float) -> Outcome:
    return Outcome("waiting", message, seconds)


@dataclass
class Control:
    """What a handler may ask of the runner while it works.

    Progress and cancellation are asked per instance but reach the index at
    most every ``EVERY`` seconds: a write transaction per image would cost
    more than sending it.
    """

    job: queue.JobView
    cfg: Config
    archive: Archive | None = None  # the daemon's, for the jobs that read or rewrite files
    EVERY = 0.5
    _written: float = 0.0
    _looked: float = 0.0
    _cancelled: bool = False

    def cancelled(self) -> bool:
        now = time.monotonic()
        if now - self._looked >= self.EVERY:
            self._looked = now
            self._cancelled = queue.is_cancelled(self.job.id)
        return self._cancelled

    def progress(self, done: int, total: int, bytes_done: int = 0) -> None:
        now = time.monotonic()
        if done >= total or now - self._written >= self.EVERY:
            self._written = now
            queue.progress(self.job.id, done, total, bytes_done)

    def the_archive(self) -> Archive:
        """The archive a local job works on; a runner without one (the CLI's) cannot run it."""
        if self.archive is None:
            raise PacsboxError(f"{self.job.kind} jobs run in the daemon (pacsbox serve)")
        return self.archive


def busy_limit(cfg: Config) -> Callable[[str], int]:
    """Running jobs allowed per destination: one for the box's own (``LOCAL``)."""
    each = int(cfg.DeliveryConcurrency)
    return lambda destination: 1 if destination.startswith(LOCAL) else each


Handler = Callable[[Control], Outcome]


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()[:8]
    except OSError:
        return "noboot"


def _alive(runner: str) -> bool:
    """Whether the runner that holds a job still runs: same boot, its pid alive, a
    pacsbox process, not this one (a CLI may be running its own job meanwhile)."""
    pid, boot = (runner.split("-") + ["", ""])[:2]
    if not pid.isdigit() or boot != _boot_id() or int(pid) == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"pacsbox" in fh.read()
    except OSError:
        return False


class Runner:
    """Claims due jobs and runs each in a thread of its own (``ThreadPoolSize`` at most)."""

    def __init__(
        self,
        cfg: Config,
        handlers: dict[str, Handler],
        *,
        heartbeat: Callable[[], None] | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        archive: Archive | None = None,
    ) -> None:
        self.cfg = cfg
        self.handlers = handlers
        self.archive = archive
        self.limit = busy_limit(cfg)
        self.heartbeat = heartbeat
        self.clock = clock
        self.name = f"{os.getpid()}-{_boot_id()}-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._running: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        back = queue.recover(_alive)
        if back:
            log.info("queue: %d jobs left running by the last run are queued again", back)
        self.tidy()
        self._thread = threading.Thread(target=self._loop, name="outbound", daemon=True)
        self._thread.start()

    def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; jobs in flight get ``grace`` seconds, then stay running in the
        queue, which gives them back at the next start."""
        self._stop.set()
        _WAKE.set()
        if self._thread is not None:
            self._thread.join(grace)
        deadline = time.monotonic() + grace
        for t in list(self._running.values()):
            t.join(max(0.0, deadline - time.monotonic()))

    def tidy(self) -> int:
        """Remove done and cancelled jobs older than ``QueueKeepDays`` (a queue of years
        stays small; failed ones stay until acted on) and the ack logs of ended jobs."""
        older = self.clock() - dt.timedelta(days=float(self.cfg.QueueKeepDays))
        gone = queue.purge_finished(older)
        if gone:
            log.info("queue: %d finished jobs older than %s days removed", gone,
                     self.cfg.QueueKeepDays)  # fmt: skip
        acks.tidy(self.cfg.data_dir, queue.unfinished_ids())
        return gone

    def _loop(self) -> None:
        tidied = time.monotonic()
        while not self._stop.is_set():
            if self.heartbeat is not None:
                self.heartbeat()
            if time.monotonic() - tidied > TIDY_SECONDS:
                tidied = time.monotonic()
                try:
                    self.tidy()
                except Exception as exc:  # noqa: BLE001 - a busy index: the next hour
                    log.warning("queue: cannot remove finished jobs: %s", exc)
            with self._lock:
                self._running = {k: t for k, t in self._running.items() if t.is_alive()}
                room = len(self._running) < int(self.cfg.ThreadPoolSize)
            job = None
            if room:
                try:
                    job = queue.claim(self.name, self.clock(), self.limit)
                except Exception as exc:  # noqa: BLE001 - a busy or lost index: try again later
                    log.warning("queue: cannot claim a job: %s", exc)
            if job is None:
                _WAKE.wait(POLL_SECONDS)
                _WAKE.clear()
                continue
            t = threading.Thread(
                target=self._run_logged, args=(job,), name=f"job-{job.id}", daemon=True
            )
            with self._lock:
                self._running[job.id] = t
            t.start()

    def _run_logged(self, job: queue.JobView) -> None:
        """A job's thread: an index that fails while the outcome is recorded leaves the
        job running in the queue, which the next start gives back; it is said once."""
        try:
            self.run_one(job)
        except Exception as exc:  # noqa: BLE001 - the thread's end, not the runner's
            log.error("job %d (%s): its outcome could not be recorded: %s", job.id, job.kind, exc)

    def run_one(self, job: queue.JobView) -> str:
        """Run a claimed job and record its outcome; returns the job's new state."""
        handler = self.handlers.get(job.kind)
        log.info("job %d (%s to %s) started, attempt %d", job.id, job.kind, job.destination,
                 job.attempts)  # fmt: skip
        if handler is None:
            outcome = refused(f"no handler for {job.kind} jobs in this version")
        else:
            try:
                outcome = handler(Control(job, self.cfg, self.archive))
            except PacsboxError as exc:
                outcome = refused(str(exc))
            except Exception as exc:  # noqa: BLE001 - a job's bug must not kill the runner
                log.exception("job %d (%s) failed with an internal error", job.id, job.kind)
                outcome = refused(f"internal error: {exc}")
        return self.record(job, outcome)

    def record(self, job: queue.JobView, outcome: Outcome) -> str:
        now = self.clock()
        if queue.is_cancelled(job.id):
            state = "cancelled"
        elif outcome.kind == "done":
            queue.succeed(job.id, outcome.message)
            state = "done"
        elif outcome.kind == "waiting":
            state = queue.wait(job.id, outcome.message, now + dt.timedelta(seconds=outcome.after))
        elif outcome.kind == "unreachable":
            state = queue.unreachable(
                job.id, outcome.message, now, float(self.cfg.DeliveryGiveUpHours)
            )
        else:
            state = queue.refused(job.id, outcome.message, now)
        log.info("job %d (%s to %s): %s: %s", job.id, job.kind, job.destination, state,
                 outcome.message)  # fmt: skip
        _WAKE.set()  # its slot is free for the next job
        return state
