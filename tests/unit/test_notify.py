"""The test plays systemd: it owns the NOTIFY_SOCKET and reads what pacsbox says.

A real AF_UNIX datagram socket in tmp_path (or the abstract namespace) stands in
for the service manager, with WATCHDOG_USEC set as systemd sets it. Both
senders are exercised: systemd-python's sd_notify and the plain-socket
fallback. No fixed sleeps: the Supervisor's status_line callback counts its
rounds, so "no ping during N rounds" is checked without guessing at timing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from pacsbox import notify as notify_mod
from pacsbox.notify import Heartbeats, Supervisor, notify, watchdog_interval
from tests.helpers import poll as shared_poll

DEADLINE_S = 10.0


class Manager:
    """The service manager's end of NOTIFY_SOCKET."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, timeout: float = DEADLINE_S) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def drain(self) -> list[str]:
        """Everything queued right now, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return out
        finally:
            self.sock.setblocking(True)

    def wait_for(self, wanted: str, count: int = 1) -> list[str]:
        """Read until ``wanted`` arrived ``count`` times; returns all messages read."""
        seen: list[str] = []
        deadline = time.monotonic() + DEADLINE_S
        while seen.count(wanted) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"{wanted!r} x{count} not received; got {seen}"
            seen.append(self.recv(left))
        return seen


def poll(predicate: Callable[[], object], what: str) -> None:
    shared_poll(predicate, timeout=DEADLINE_S, interval=0.01, what=what)


@pytest.fixture(params=["socket", "systemd-python"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each test through the fallback sender and through libsystemd's sd_notify."""
    if request.param == "socket":
        monkeypatch.setattr(notify_mod, "_sd_daemon", None)
    elif notify_mod._sd_daemon is None:
        pytest.skip("systemd-python is not installed (make installs it); socket sender tested")
    return request.param


@pytest.fixture
def manager(tmp_path, monkeypatch: pytest.MonkeyPatch, backend: str) -> Iterator[Manager]:
    path = tmp_path / "notify.sock"
    if len(str(path)) > 100:  # sun_path limit; use the abstract namespace instead
        pytest.skip(f"tmp_path too long for an AF_UNIX path: {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield Manager(sock)
    sock.close()


class Counter:
    """A status_line callback that counts the Supervisor's rounds."""

    def __init__(self, text: str = "PACSBOX port 11112") -> None:
        self.text = text
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.text

    def wait_rounds(self, n: int) -> None:
        start = self.calls
        poll(lambda: self.calls >= start + n, f"{n} supervisor rounds")


# -- notify() ---------------------------------------------------------------


def test_notify_delivers_each_message(manager: Manager) -> None:
    notify("READY=1")
    notify(f"STATUS=AE PACSBOX, port 11112\nMAINPID={os.getpid()}")
    notify("STOPPING=1")
    assert manager.recv() == "READY=1"
    assert manager.recv() == f"STATUS=AE PACSBOX, port 11112\nMAINPID={os.getpid()}"
    assert manager.recv() == "STOPPING=1"


def test_notify_to_abstract_socket(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"pacsbox-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notify("READY=1")
        sock.settimeout(DEADLINE_S)
        assert sock.recv(4096) == b"READY=1"


def test_silent_without_notify_socket(manager: Manager, monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.environ["NOTIFY_SOCKET"]
    monkeypatch.delenv("NOTIFY_SOCKET")
    notify("READY=1")
    sup = Supervisor(Heartbeats(), lambda: True, Counter())
    sup.tick()
    # Datagrams queue in order, so had anything been sent it would come first.
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notify("STATUS=marker")
    assert manager.recv() == "STATUS=marker"
    assert manager.drain() == []


def test_unreachable_socket_is_logged_not_raised(
    backend: str, tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    with caplog.at_level(logging.WARNING, logger="pacsbox.notify"):
        notify("READY=1")
    assert "sd_notify" in caplog.text


# -- watchdog_interval() ----------------------------------------------------


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("200000", "self", 0.2),
        ("30000000", "other", None),  # inherited by a child: not ours to ping
        ("0", None, None),
        ("soon", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch, usec, pid, expected) -> None:
    for key, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            value = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
            monkeypatch.setenv(key, value)
    assert watchdog_interval() == expected


# -- Heartbeats ---------------------------------------------------------------


def test_heartbeats_stale_by_max_age() -> None:
    now = [100.0]
    hb = Heartbeats(clock=lambda: now[0])
    hb.register("scp", 10)
    hb.register("watermark", 60)
    hb.beat("unregistered")  # kept, never judged
    now[0] = 105
    assert hb.stale() == []
    now[0] = 111
    assert hb.stale() == ["scp"]
    hb.beat("scp")
    assert hb.stale() == []
    now[0] = 200
    assert hb.stale() == ["scp", "watermark"]
    hb.unregister("scp")
    assert hb.stale() == ["watermark"]
    assert hb.age("watermark") == pytest.approx(100)
    with pytest.raises(ValueError):
        hb.register("bad", 0)


# -- Supervisor -------------------------------------------------------------


@pytest.fixture
def supervised(
    manager: Manager, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Supervisor]]:
    """Start Supervisors under WATCHDOG_USEC=0.2 s (so pings every 0.1 s); stop them after."""
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    started: list[Supervisor] = []

    def start(heartbeats: Heartbeats, db_ping=lambda: True, status=None) -> Supervisor:
        sup = Supervisor(heartbeats, db_ping, status or Counter())
        sup.start()
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.stop()
        assert not sup.is_alive()


def test_supervisor_pings_at_half_the_interval(manager: Manager, supervised) -> None:
    sup = supervised(Heartbeats())
    assert sup.watchdog_enabled and sup.period_s == pytest.approx(0.1)
    times = []
    for _ in range(4):
        got = manager.wait_for("WATCHDOG=1")
        assert all(m == "WATCHDOG=1" or m.startswith("STATUS=") for m in got), got
        times.append(time.monotonic())
    gaps = [b - a for a, b in zip(times[1:], times[2:], strict=False)]
    assert all(g >= 0.08 for g in gaps), f"pings closer than the period: {gaps}"


def test_frozen_worker_stops_pings_until_it_beats_again(
    manager: Manager, supervised, caplog: pytest.LogCaptureFixture
) -> None:
    hb = Heartbeats()
    hb.register("scp", max_age_s=0.3)
    frozen = threading.Event()
    done = threading.Event()

    def worker() -> None:
        while not done.is_set():
            if not frozen.is_set():
                hb.beat("scp")
            done.wait(0.02)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    status = Counter()
    try:
        with caplog.at_level(logging.INFO, logger="pacsbox.notify"):
            supervised(hb, status=status)
            manager.wait_for("WATCHDOG=1", count=2)

            frozen.set()  # the SCP hangs
            poll(lambda: "watchdog ping withheld" in caplog.text, "the withheld warning")
            manager.drain()  # pings sent before the freeze was noticed
            status.wait_rounds(4)
            assert "WATCHDOG=1" not in manager.drain()
            warnings = [r for r in caplog.records if "withheld" in r.getMessage()]
            assert len(warnings) == 1, "one line per episode, not per round"
            assert "scp" in warnings[0].getMessage()

            frozen.clear()  # it recovers
            manager.wait_for("WATCHDOG=1", count=2)
            assert "watchdog pings resumed" in caplog.text
    finally:
        done.set()
        thread.join()


@pytest.mark.parametrize("failure", ["false", "raises"])
def test_database_that_does_not_answer_stops_pings(
    manager: Manager, supervised, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    healthy = threading.Event()
    healthy.set()

    def db_ping() -> bool:
        if healthy.is_set():
            return True
        if failure == "raises":
            raise OSError("database is locked")
        return False

    status = Counter()
    with caplog.at_level(logging.WARNING, logger="pacsbox.notify"):
        supervised(Heartbeats(), db_ping=db_ping, status=status)
        manager.wait_for("WATCHDOG=1")
        healthy.clear()
        poll(lambda: "database does not answer" in caplog.text, "the database warning")
        manager.drain()
        status.wait_rounds(3)
        assert "WATCHDOG=1" not in manager.drain()
        healthy.set()
        manager.wait_for("WATCHDOG=1")


def test_status_sent_when_it_changes_and_only_then(manager: Manager, supervised) -> None:
    status = Counter("PACSBOX :11112 | 0 studies | disk 12%")
    supervised(Heartbeats(), status=status)
    got = manager.wait_for("STATUS=PACSBOX :11112 | 0 studies | disk 12%")
    status.wait_rounds(3)
    got += manager.drain()
    assert sum(m.startswith("STATUS=") for m in got) == 1, got

    status.text = "PACSBOX :11112 | 1 studies | disk 12%\nlast error: none"
    # One line: systemd shows STATUS= in `systemctl status`, newlines would cut it.
    manager.wait_for("STATUS=PACSBOX :11112 | 1 studies | disk 12% last error: none")


def test_no_watchdog_pings_without_watchdog_usec(manager: Manager) -> None:
    status = Counter("PACSBOX idle")
    sup = Supervisor(Heartbeats(), lambda: True, status)
    assert not sup.watchdog_enabled
    sup.tick()
    sup.tick()
    assert manager.drain() == ["STATUS=PACSBOX idle"]


def test_stop_ends_the_thread(manager: Manager, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", str(3600 * 1_000_000))  # a long wait to interrupt
    sup = Supervisor(Heartbeats(), lambda: True, Counter())
    sup.start()
    manager.wait_for("WATCHDOG=1")
    sup.stop()
    assert not sup.is_alive()


def test_a_worker_hung_twice_its_allowance_triggers_the_watchdog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    now = [1000.0]
    beats = Heartbeats(clock=lambda: now[0])
    beats.register("scp", 5.0)
    sent: list[str] = []
    sup = Supervisor(beats, lambda: True, lambda: "ok", send=sent.append)
    assert sup.tick() is True and "WATCHDOG=1" in sent
    now[0] += 6  # stale: pings withheld, no trigger yet (a slow moment)
    sent.clear()
    assert sup.tick() is False and sent == []
    now[0] += 5  # 11 s > 2 x 5 s: hung
    sup.tick()
    sup.tick()
    assert sent.count("WATCHDOG=trigger") == 1 and "WATCHDOG=1" not in sent
    beats.beat("scp")  # recovered: pings resume, a new episode may trigger again
    sent.clear()
    assert sup.tick() is True and sent == ["WATCHDOG=1"]
