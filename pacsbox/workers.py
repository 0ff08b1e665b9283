"""DICOM worker processes: both cores serving one port.

Python runs one thread at a time per process, so one process tops out at
one core. The daemon starts ``WorkerProcesses - 1`` extra processes that
each run the same listener on the daemon's own listening socket, inherited
at spawn; ``scp.balance`` deals connections out (the daemon, which also
commits every process's records, takes fewer). A worker writes its
files itself and has the daemon's one index writer record them
(``record_link``), so images from every process share one group commit. It
beats a heartbeat file the main process checks before it pings the
watchdog, and dies with the main process (PR_SET_PDEATHSIG), so a crash of
the daemon is a crash of all.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from pacsbox import scu
from pacsbox.archive import Archive
from pacsbox.assembly import assemble
from pacsbox.config import Config
from pacsbox.record_link import RecordClient, RecordServer
from pacsbox.scp.balance import Balance

log = logging.getLogger("pacsbox.workers")

BEAT_EVERY = 1.0
STALE_AFTER = 15.0


def worker_count(cfg: Config) -> int:
    n = cfg.WorkerProcesses or (os.cpu_count() or 1)
    return max(1, min(n, 16))


def beat_path(cfg: Config, index: int) -> Path:
    return cfg.data_dir / "run" / f"worker-{index}.json"


def balance(cfg: Config, index: int, count: int) -> Balance | None:
    """Process ``index``'s share of the port, or None when one process serves alone."""
    if count < 2:
        return None
    path = cfg.data_dir / "run" / "dicom-connections"
    path.parent.mkdir(parents=True, exist_ok=True)
    return Balance(path, index, count)


class Pool:
    """The extra worker processes, restarted when one dies."""

    def __init__(self, cfg: Config, listen_fd: int, count: int, archive: Archive) -> None:
        self.cfg = cfg
        self.listen_fd = listen_fd
        self.count = count
        self.archive = archive
        self.procs: dict[int, subprocess.Popen] = {}
        self.links: dict[int, RecordServer] = {}
        self.restarts = 0

    def _spawn(self, index: int) -> None:
        if index in self.links:
            self.links.pop(index).close()
        ours, theirs = socket.socketpair()
        self.links[index] = RecordServer(
            ours, self.archive.record_many, scu.decompressed, str(index)
        )
        # -P: no working directory at the head of sys.path, so a worker runs
        # the daemon's own pacsbox, never a copy that happens to sit there.
        args = [
            sys.executable,
            "-P",
            "-m",
            "pacsbox.cli",
            "scp-worker",
            "--index",
            str(index),
            "--listen-fd",
            str(self.listen_fd),
            "--processes",
            str(self.count),
            "--record-fd",
            str(theirs.fileno()),
        ]
        if self.cfg.source is not None:
            args += ["--config", str(self.cfg.source)]
        path = beat_path(self.cfg, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        with theirs:
            self.procs[index] = subprocess.Popen(
                args, pass_fds=[self.listen_fd, theirs.fileno()], env=_same_package_env()
            )

    def start(self, timeout: float = 30.0) -> None:
        for i in range(1, self.count):
            self._spawn(i)
        deadline = time.monotonic() + timeout
        while not all(self._fresh(i) for i in self.procs):
            if time.monotonic() > deadline:
                raise RuntimeError("DICOM worker processes did not start")
            for i, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"DICOM worker {i} exited with {p.returncode} at start")
            time.sleep(0.05)
        if self.procs:
            log.info("%d DICOM worker processes share the DICOM port", len(self.procs))

    def _fresh(self, index: int) -> bool:
        try:
            return time.time() - beat_path(self.cfg, index).stat().st_mtime < STALE_AFTER
        except OSError:
            return False

    def check(self) -> bool:
        """Restart dead workers; True when every worker is alive and beating."""
        healthy = True
        for i, p in list(self.procs.items()):
            if p.poll() is not None:
                log.error("DICOM worker %d exited with %s; restarting it", i, p.returncode)
                self.restarts += 1
                self._spawn(i)
                healthy = False
            elif not self._fresh(i):
                healthy = False
        return healthy

    def associations(self) -> int:
        total = 0
        for i in self.procs:
            try:
                total += json.loads(beat_path(self.cfg, i).read_text()).get("associations", 0)
            except (OSError, ValueError):
                pass
        return total

    def stop_accepting(self) -> None:
        """SIGTERM every worker: each stops accepting and finishes what it has."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_accepting()
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for link in self.links.values():
            link.close()
        self.links.clear()


def _same_package_env() -> dict[str, str]:
    """The environment for a worker, with this process's pacsbox first on its path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the daemon that started it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() == 1:
        os._exit(1)


def run_worker(cfg: Config, index: int, listen_fd: int, processes: int, record_fd: int) -> int:
    """One worker: the same listener and services as the main process, nothing else."""
    _die_with_parent()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parts = assemble(cfg, link=RecordClient(socket.socket(fileno=record_fd)))
    archive, listener = parts.archive, parts.listener
    share = balance(cfg, index, processes)
    listener.start(listen_fd=listen_fd, balance=share)
    path = beat_path(cfg, index)
    last = 0.0

    def beat() -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= BEAT_EVERY:
            last = now
            tmp = path.with_suffix(".tmp")
            tmp.write_text(
                json.dumps({"pid": os.getpid(), "associations": listener.active_associations})
            )
            os.replace(tmp, path)

    listener.on_poll = beat
    beat()
    while not stop.wait(1.0):
        archive.checkpoint_if_due()  # its own dirty folders (DirtyFolder.owner)
    listener.stop(8.0)
    archive.checkpoint()
    archive.close()
    path.unlink(missing_ok=True)
    return 0
