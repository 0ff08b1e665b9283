"""Long work run in the background (exports, burns, imports started from the web page).

A leaf: the web page starts jobs, the daemon's status snapshot lists them
(so the front panel shows "burn 40%"), and a job page shows progress. Each
job runs in its own thread; ``progress(done, total)`` is the same callback
signature the CLI's progress bar takes, so a feature module never knows
whether a terminal or a web page is watching.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

log = logging.getLogger("pacsbox.jobs")

KEEP_FINISHED = 50


@dataclass
class Job:
    id: int
    kind: str  # "export" | "burn" | "import" | "edit"
    label: str
    owner: str = ""
    link: str = ""  # the page of what the job works on, shown beside it
    done: int = 0
    total: int = 0
    state: str = "running"  # running | done | failed
    message: str = ""
    started: str = field(default_factory=lambda: dt.datetime.now().isoformat(timespec="seconds"))
    finished: str | None = None

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def as_dict(self) -> dict:
        d = asdict(self)
        d["percent"] = round(100 * self.done / self.total) if self.total else None
        return d


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}

    def start(
        self, kind: str, label: str, work: Callable[[Job], str], owner: str = "", link: str = ""
    ) -> Job:
        """Run ``work(job)`` in a thread; its return value is the job's final message."""
        with self._lock:
            job = Job(next(self._ids), kind, label, owner, link)
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.state != "running"]
            for old in finished[:-KEEP_FINISHED]:
                self._jobs.pop(old.id, None)

        def run() -> None:
            try:
                job.message = work(job) or "done"
                job.state = "done"
                log.info("%s job %d (%s) done: %s", kind, job.id, label, job.message)
            except Exception as exc:  # noqa: BLE001 - a job reports its failure, never raises
                job.state = "failed"
                job.message = " ".join(str(exc).split())[:300]
                log.error("%s job %d (%s) failed: %s", kind, job.id, label, job.message)
            job.finished = dt.datetime.now().isoformat(timespec="seconds")

        threading.Thread(target=run, name=f"pacsbox-job-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: -j.id)

    def for_status(self) -> list[dict]:
        """Running jobs in the status snapshot's shape."""
        return [
            {"kind": j.kind, "label": j.label, "done": j.done, "total": j.total, "state": j.state}
            for j in self.all()
            if j.state == "running"
        ]


registry = Registry()
