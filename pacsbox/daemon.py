"""The pacsbox daemon: one process per instance, supervised by systemd.

Start-up order is what makes READY=1 honest: open and migrate the index,
run the start-up check, bind the DICOM port, and only then tell the service
manager we are ready. SIGTERM sends STOPPING=1, stops accepting, lets
associations in flight finish (bounded), and exits cleanly.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from pacsbox import notify, recovery, status, workers
from pacsbox.archive import Archive
from pacsbox.assembly import assemble
from pacsbox.config import Config
from pacsbox.db import lookup, ping, queue, worklist
from pacsbox.db.models import utcnow
from pacsbox.outbound import edits, sync, worklist_poll
from pacsbox.outbound.control import ControlServer
from pacsbox.outbound.kinds import HANDLERS
from pacsbox.outbound.routing import Router
from pacsbox.outbound.runner import Runner, wake
from pacsbox.scp.server import Listener
from pacsbox.watermark.monitor import Watermark

if TYPE_CHECKING:
    from pacsbox.web.server import WebHandle

log = logging.getLogger("pacsbox.daemon")

STATUS_INTERVAL = 2.0
SHUTDOWN_GRACE = 8.0
TOTALS_EVERY = 60.0
RECENT_EVERY = 10.0
SYNC_EVERY = 60.0  # schedules are hourly: a look a minute queues a run within a minute
WORKLIST_EXPIRY_EVERY = 3600.0  # WorklistKeepDays counts days: an hourly look is plenty


class Daemon:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.stop_event = threading.Event()
        self.archive: Archive | None = None
        self.listener: Listener | None = None
        self.heartbeats = notify.Heartbeats()
        self.last_error: dict | None = None
        self._lock = threading.Lock()
        self.state = "starting"
        self.watermark: Watermark | None = None
        self.web: WebHandle | None = None
        self.pool: workers.Pool | None = None
        self.web_port: int | None = None
        self.frozen = False  # debug trigger (SIGUSR2): stop beating, let the watchdog act
        self.workers: list = []
        self._addresses: list[str] = []
        self._addresses_at = 0.0
        self._totals_cache: dict[str, int] | None = None
        self._totals_at = 0.0
        self._totals_signal = -1
        self._recent_cache: tuple[dict | None, int] | None = None
        self._recent_at = 0.0
        self._sync_at: float | None = None
        self._worklist_at: float | None = None
        self._worklist_expired_at: float | None = None

    # -- life cycle ---------------------------------------------------------------

    def start(self) -> None:
        """Everything READY=1 promises; raises on a failure to start."""
        parts = assemble(self.cfg, heartbeats=self.heartbeats)
        self.archive, self.watermark, self.listener = parts.archive, parts.watermark, parts.listener
        # A purge interrupted by a crash is finished first, or the start-up
        # check would report its half-deleted study as rows without files.
        self.watermark.resume()
        report = recovery.startup_check(self.cfg)
        if report.missing_files:
            self._error(f"{len(report.missing_files)} index rows without a file (see log)")
        count = workers.worker_count(self.cfg)
        self.listener.start(balance=workers.balance(self.cfg, 0, count))
        server = self.listener.server
        assert server is not None and server.socket is not None  # bound by start()
        self.pool = workers.Pool(self.cfg, server.socket.fileno(), count, self.archive)
        self.pool.start()
        from pacsbox.web.server import start_web

        self.web = start_web(self.cfg, self.archive, port=self.web_port)
        self.heartbeats.register("scp", 10.0)
        self.listener.on_poll = lambda: self.heartbeats.beat("scp")
        self.heartbeats.register("workers", 30.0)
        self._start_workers()
        self.state = "ok"
        self.write_status()
        notify.notify("READY=1")
        notify.notify("STATUS=" + self.status_line())
        log.info(
            "pacsbox %s ready on port %d (pid %d)",
            self.cfg.ApplicationEntityTitle,
            self.listener.port,
            os.getpid(),
        )

    def _start_workers(self) -> None:
        """Background workers; each beats its heartbeat so the watchdog can tell it hung."""
        watermark, archive = self.watermark, self.archive
        assert watermark is not None and archive is not None  # start() made them
        watermark.start()
        self.workers.append(watermark)
        self.heartbeats.register("outbound", 30.0)
        runner = Runner(
            self.cfg, HANDLERS, heartbeat=lambda: self.heartbeats.beat("outbound"), archive=archive
        )
        runner.start()
        self.workers.append(runner)
        self.heartbeats.register("router", 30.0)
        router = Router(
            self.cfg, watermark.purge_now, heartbeat=lambda: self.heartbeats.beat("router")
        )
        router.start()
        self.workers.append(router)
        from pacsbox.web.dicomweb.metacache import Warmer

        self.heartbeats.register("metadata", 120.0)
        warmer = Warmer(self.cfg.data_dir, heartbeat=lambda: self.heartbeats.beat("metadata"))
        warmer.start()
        self.workers.append(warmer)
        control = ControlServer(self.cfg)
        if control.start():
            self.workers.append(control)
        if self.cfg.WatchFolder:
            from functools import partial

            from pacsbox.media.watchfolder import WatchFolder

            self.heartbeats.register("watchfolder", 120.0)
            wf = WatchFolder(
                self.cfg.WatchFolder,
                partial(archive.store, source="watch"),
                heartbeat=lambda: self.heartbeats.beat("watchfolder"),
            )
            wf.start()
            self.workers.append(wf)
        self._start_hl7()

    def _start_hl7(self) -> None:
        """The HL7 v2 MLLP listener (INT-1). A port it cannot bind is the box's last
        error, not a failed start: the DICOM side serves on without the HL7 feed."""
        if not self.cfg.HL7PortNumber:
            return  # no orders come in, so no status goes back either
        from pacsbox.hl7.listener import Hl7Listener

        listener = Hl7Listener(self.cfg)
        try:
            listener.start()
        except OSError as exc:
            listener.stop()
            self._error(f"HL7 port {self.cfg.HL7PortNumber} not served: {exc}")
            return
        self.workers.append(listener)
        if self.cfg.HL7StatusDestination:
            from pacsbox.hl7.status import StatusSender

            sender = StatusSender(self.cfg)
            sender.start()
            self.workers.append(sender)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGUSR2, self._on_freeze)
        signal.signal(signal.SIGUSR1, lambda *_: wake())  # `pacsbox forward` queued a job
        self.start()
        archive, listener, pool = self.archive, self.listener, self.pool
        assert archive is not None and listener is not None and pool is not None  # start() did
        # Six seconds without a beat of the main loop (it beats every 2 s) is a hang.
        self.heartbeats.register("main", 6.0)
        supervisor = notify.Supervisor(self.heartbeats, ping, self.status_line)
        supervisor.start()
        while not self.stop_event.wait(STATUS_INTERVAL):
            if not self.frozen:
                self.heartbeats.beat("main")
            if pool.check():
                self.heartbeats.beat("workers")
            self.write_status()
            archive.checkpoint_if_due()
            self._follow_up_edits()
            self._queue_syncs()
            self._queue_worklist_polls()
            self._expire_worklist()
        notify.notify("STOPPING=1")
        log.info("stopping: letting associations in flight finish")
        self.state = "stopping"
        self.write_status()
        pool.stop_accepting()
        listener.stop(SHUTDOWN_GRACE)
        pool.stop(SHUTDOWN_GRACE)
        for worker in self.workers:
            worker.stop()
        supervisor.stop()
        archive.checkpoint()
        if self.web:
            self.web.stop()
        self.state = "stopped"
        self.write_status()
        archive.close()
        log.info("pacsbox %s stopped", self.cfg.ApplicationEntityTitle)
        return 0

    def _follow_up_edits(self) -> None:
        """Images that reached an edited study after its edit take it: a queue job per
        study (the runner retries a failed one with backoff); the mark is in the index,
        so a restart finds them again."""
        try:
            edits.queue_follow_ups()
        except Exception as exc:  # noqa: BLE001 - a busy index: the next turn looks again
            log.warning("edit follow-up not queued: %s", exc)

    def _queue_syncs(self) -> None:
        """The synchronisation schedules' due runs become queue jobs (SCU-8), the
        first look at start-up so a run missed while the box was off comes now."""
        if self._sync_at is not None and time.monotonic() - self._sync_at < SYNC_EVERY:
            return
        self._sync_at = time.monotonic()
        try:
            sync.queue_due(utcnow())
        except Exception as exc:  # noqa: BLE001 - a busy index: the next look queues it
            log.warning("sync: due runs not queued: %s", exc)

    def _queue_worklist_polls(self) -> None:
        """Every WorklistPollInterval minutes (0: never) a poll of each worklist SCP
        of the AE table (SCU-6), the first at start-up."""
        every = self.cfg.WorklistPollInterval * 60.0
        now = time.monotonic()
        if not every or (self._worklist_at is not None and now - self._worklist_at < every):
            return
        self._worklist_at = now
        try:
            worklist_poll.queue_all()
        except Exception as exc:  # noqa: BLE001 - a busy index: the next turn queues them
            log.warning("worklist polls not queued: %s", exc)

    def _expire_worklist(self) -> None:
        """Worklist items older than WorklistKeepDays go (the first look at start-up)."""
        at = self._worklist_expired_at
        if at is not None and time.monotonic() - at < WORKLIST_EXPIRY_EVERY:
            return
        self._worklist_expired_at = time.monotonic()
        try:
            gone = worklist.expire(self.cfg.WorklistKeepDays)
        except Exception as exc:  # noqa: BLE001 - a busy index: the next look expires them
            log.warning("worklist: old items not expired: %s", exc)
            return
        if gone:
            log.info("worklist: %d items scheduled over %d days ago expired", gone,
                     self.cfg.WorklistKeepDays)  # fmt: skip

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_event.set()

    def _on_freeze(self, signum: int, frame: FrameType | None) -> None:
        """Debug trigger for the watchdog test: the main loop stops beating its heartbeat."""
        log.warning("SIGUSR2: main heartbeat frozen (watchdog test); the service will be restarted")
        self.frozen = True

    # -- state for the status snapshot ------------------------------------------------

    def _error(self, message: str) -> None:
        log.error(message)
        self.last_error = {
            "time": dt.datetime.now().isoformat(timespec="seconds"),
            "message": message,
        }

    def _totals(self) -> dict[str, int]:
        """Counts for the status line: a scan (80 ms at 10M rows), so only when something
        was stored (at most every 10 s) and otherwise once a minute (deletions, purges)."""
        newest = lookup.newest_instance_id()
        age = time.monotonic() - self._totals_at
        changed = newest != self._totals_signal and age > RECENT_EVERY
        if self._totals_cache is None or changed or age > TOTALS_EVERY:
            self._totals_cache = lookup.totals()
            self._totals_at = time.monotonic()
            self._totals_signal = newest
        return self._totals_cache

    def _recent(self) -> tuple[dict | None, int]:
        """Last study and studies today, from the index (covers every worker), every 10 s."""
        if self._recent_cache is None or time.monotonic() - self._recent_at > RECENT_EVERY:
            last = lookup.last_study()
            midnight = dt.datetime.combine(dt.date.today(), dt.time()).astimezone(dt.UTC)
            today = lookup.studies_received_since(midnight.replace(tzinfo=None))
            if last:
                utc = dt.datetime.fromisoformat(last.pop("received_utc")).replace(tzinfo=dt.UTC)
                local = utc.astimezone().replace(tzinfo=None)
                last["received"] = local.isoformat(timespec="seconds")
            self._recent_cache = (last, today)
            self._recent_at = time.monotonic()
        return self._recent_cache

    def snapshot(self) -> dict:
        totals = self._totals()
        disks = []
        for root in {self.cfg.archive_dir, self.cfg.data_dir}:
            try:
                st = os.statvfs(root)
            except OSError:
                continue
            total = st.f_blocks * st.f_frsize
            free = st.f_bavail * st.f_frsize
            pct = round(100.0 * (total - free) / total, 1) if total else 0.0
            disks.append(
                {"path": str(root), "percent": pct, "free_bytes": free, "total_bytes": total}
            )
        wm = self.watermark.state() if self.watermark else {}
        last, today = self._recent()
        if time.monotonic() - self._addresses_at > 30:
            self._addresses = status.local_addresses()
            self._addresses_at = time.monotonic()
        with self._lock:
            return status.make_snapshot(
                ae_title=self.cfg.ApplicationEntityTitle,
                port=self.listener.port if self.listener else self.cfg.ServerPortNumber,
                web_url=self.web_url,
                addresses=self._addresses,
                state=self.state,
                studies_total=totals["studies"],
                instances_total=totals["instances"],
                studies_today=today,
                last_study=last,
                associations_active=(self.listener.active_associations if self.listener else 0)
                + (self.pool.associations() if self.pool else 0),
                disk=disks,
                storage_full=wm.get("storage_full", False),
                last_purge=wm.get("last_purge"),
                jobs=([wm["purge_job"]] if wm.get("purge_job") else []) + _running_jobs(),
                last_error=self.last_error,
            )

    @property
    def web_url(self) -> str | None:
        return self.web.url if self.web else None

    def write_status(self) -> None:
        try:
            status.write_snapshot(self.cfg.status_path, self.snapshot())
        except Exception as exc:  # noqa: BLE001 - status must never stop the daemon
            log.warning("cannot write status snapshot: %s", exc)

    def status_line(self) -> str:
        snap = self.snapshot()
        disk = max((d["percent"] for d in snap["disk"]), default=0.0)
        err = snap["last_error"]["message"] if snap["last_error"] else "no errors"
        return (
            f"{snap['ae_title']} port {snap['port']}: {snap['studies_total']} studies, "
            f"disk {disk:.0f}%, {err}"
        )


def _running_jobs() -> list[dict]:
    """The queue's running jobs in the snapshot's shape (the front panel shows "burn 40%")."""
    try:
        rows = queue.jobs("running", limit=20)
    except Exception as exc:  # noqa: BLE001 - a busy index: the snapshot goes on without them
        log.warning("status: running jobs not read: %s", exc)
        return []
    return [
        {"kind": j.kind, "label": j.label, "done": j.done, "total": j.total, "state": j.state}
        for j in reversed(rows)
    ]


def serve(cfg: Config, *, web_port: int | None = None) -> int:
    Path(cfg.DataDirectory).mkdir(parents=True, exist_ok=True)
    daemon = Daemon(cfg)
    daemon.web_port = web_port
    return daemon.run()
