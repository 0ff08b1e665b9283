"""The test plays systemd: its own NOTIFY_SOCKET, WATCHDOG_USEC, and a real `pacsbox serve`."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

import pytest

from pacsbox.db import close_database, open_database
from pacsbox.db.models import Instance
from tests.helpers import DCMTK_ENV, Server, poll
from tests.synth import make_instance, write_files

pytestmark = pytest.mark.slow


class ServiceManager:
    """Collects sd_notify datagrams with their arrival times."""

    def __init__(self, path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.path = str(path)
        self.messages: list[tuple[float, str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            for line in data.decode().splitlines():
                self.messages.append((now, line))

    def times(self, prefix: str) -> list[float]:
        return [t for t, m in self.messages if m.startswith(prefix)]

    def last(self, prefix: str) -> str | None:
        found = [m for _, m in self.messages if m.startswith(prefix)]
        return found[-1] if found else None

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def manager(tmp_path):
    m = ServiceManager(tmp_path / "notify.sock")
    yield m
    m.close()


def test_ready_watchdog_status_and_a_frozen_heartbeat(ini, manager):
    server = Server(ini, env={"NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": "2000000"})
    try:
        server.start()
        ready = poll(lambda: manager.times("READY=1"), what="READY=1")[0]
        # READY came after the port was bound: it answers now.
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
        status = poll(lambda: manager.last("STATUS="), what="STATUS=")
        assert server.ae_title in status and str(server.port) in status
        # Pings at half the interval (1 s).
        poll(
            lambda: len([t for t in manager.times("WATCHDOG=1") if t > ready]) >= 4,
            timeout=10,
            what="regular WATCHDOG=1",
        )
        # Freeze the main loop's heartbeat: pings must stop within its max age (6 s).
        server.proc.send_signal(signal.SIGUSR2)
        frozen_at = time.monotonic()
        # An absence is asserted over a window: wait for the withholding to be
        # logged and for the window (the heartbeat's 6 s max age, plus margin) to pass.
        poll(
            lambda: (
                time.monotonic() > frozen_at + 9 and "watchdog ping withheld" in server.output()
            ),
            timeout=15,
            what="the watchdog window after the freeze",
        )
        late = [t for t in manager.times("WATCHDOG=1") if t > frozen_at + 7]
        assert late == [], "watchdog pings went on while a worker was frozen"
        assert "watchdog ping withheld" in server.output()
    finally:
        server.stop()


def test_sigterm_mid_ingest_stops_cleanly_and_loses_nothing(ini, manager, tmp_path):
    files = write_files(
        tmp_path / "send",
        [
            make_instance(patient_id="TERM", rows=32, columns=32, instance_number=i + 1)
            for i in range(400)
        ],
    )
    server = Server(ini, env={"NOTIFY_SOCKET": manager.path})
    server.start()
    sender = subprocess.Popen(
        [
            "storescu",
            "+rn",
            "-nh",
            "-aet",
            "STORESCU",
            "-aec",
            server.ae_title,
            "127.0.0.1",
            str(server.port),
            *map(str, files),
        ],
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    poll(lambda: len(list((tmp_path / "send").glob("*.done"))) >= 50, what="ingest under way")
    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    rc = server.proc.wait(15)
    took = time.monotonic() - t0
    server.stop()
    sender.wait(60)
    assert rc == 0 and took < 10, (rc, took)
    assert manager.times("STOPPING=1")
    done = {p.name[: -len(".done")] for p in (tmp_path / "send").glob("*.done")}
    open_database(server.cfg.database_url, run_migrations=False)
    try:
        stored = Instance.select().count()
    finally:
        close_database()
    assert stored >= len(done) > 0
