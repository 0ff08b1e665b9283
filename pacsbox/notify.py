"""Tell systemd how the daemon is doing: sd_notify, the watchdog, heartbeats.

Supervision is only worth having if it is honest (ARCHITECTURE.md rule 8): a
thread that pings the watchdog on a timer proves nothing but that the timer
runs. So every worker (SCP, job workers, watermark monitor, importer) beats a
named heartbeat, and the :class:`Supervisor` sends ``WATCHDOG=1`` only while
every registered heartbeat is fresh and the database answers. A hung part then
stops the pings, and systemd aborts and restarts the instance.

systemd-python's ``sd_notify`` is used when it is importable; otherwise the
plain datagram protocol of sd_notify(3) on ``$NOTIFY_SOCKET`` (a path, or an
abstract socket written with a leading ``@``), so a laptop without
libsystemd still works. Without ``NOTIFY_SOCKET`` (not started by systemd,
or ``Type=simple``) every call is a silent no-op.

This module and ``pacsbox/log.py`` are the only ones that import ``systemd``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

try:  # the repository's own systemd/ folder is a namespace package: ImportError
    from systemd import daemon as _sd_daemon
except ImportError:  # pragma: no cover - depends on the machine
    _sd_daemon = None

__all__ = ["Heartbeats", "Supervisor", "notify", "watchdog_interval"]

log = logging.getLogger("pacsbox.notify")

#: How often the Supervisor refreshes STATUS= when there is no watchdog.
STATUS_PERIOD_S = 5.0


def notify(state: str) -> None:
    """Send one sd_notify message such as ``READY=1`` or ``STATUS=...``.

    Several assignments may be joined with newlines. A failure to deliver is
    logged, never raised: losing a status line must not take the archive down
    (a lost WATCHDOG=1 is what the watchdog is for).
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if _sd_daemon is None:
        _send_datagram(address, state)
        return
    try:
        sent = _sd_daemon.notify(state)
    except OSError as exc:  # systemd-python raises the errno of sd_notify()
        sent, reason = False, f": {exc}"
    else:
        reason = ""
    if not sent:
        log.warning("sd_notify to %s failed for %s%s", address, state.split("=", 1)[0], reason)


def _send_datagram(address: str, state: str) -> None:
    """sd_notify(3) without libsystemd: one datagram to an AF_UNIX socket."""
    if address.startswith("@"):
        target = "\0" + address[1:]  # abstract namespace
    elif address.startswith("/"):
        target = address
    else:
        log.warning("NOTIFY_SOCKET %r is neither a path nor an abstract socket", address)
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        log.warning("sd_notify to %s failed for %s: %s", address, state.split("=", 1)[0], exc)


def watchdog_interval() -> float | None:
    """The watchdog timeout systemd expects, in seconds, or None if not enabled.

    Mirrors sd_watchdog_enabled(3): ``WATCHDOG_USEC`` must be a positive
    integer and, when ``WATCHDOG_PID`` is set, it must be this process (a child
    that inherited the environment is not the one being watched).
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return value / 1_000_000


class Heartbeats:
    """Thread-safe registry of named worker heartbeats.

    A worker calls :meth:`register` once with how long it may stay silent,
    then :meth:`beat` from its loop (at least every ``max_age_s``; a worker
    that waits for work should wake up to beat). :meth:`stale` names those
    whose last beat is too old. Registering starts the clock, so a worker gets
    its full allowance before its first beat.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._max_age: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def register(self, name: str, max_age_s: float) -> None:
        """Watch ``name``: stale once ``max_age_s`` seconds pass without a beat."""
        if max_age_s <= 0:
            raise ValueError(f"max_age_s for {name!r} must be positive")
        with self._lock:
            self._max_age[name] = float(max_age_s)
            self._last[name] = self._clock()

    def unregister(self, name: str) -> None:
        """Stop watching ``name`` (a worker that ended on purpose is not hung)."""
        with self._lock:
            self._max_age.pop(name, None)
            self._last.pop(name, None)

    def beat(self, name: str) -> None:
        """Record that ``name`` is alive now. Beats of unregistered names are kept but never judged."""
        now = self._clock()
        with self._lock:
            self._last[name] = now

    def stale(self) -> list[str]:
        """Names of registered workers whose last beat is older than their max age, sorted."""
        now = self._clock()
        with self._lock:
            return sorted(
                name
                for name, max_age in self._max_age.items()
                if now - self._last.get(name, now) > max_age
            )

    def hung(self, factor: float = 2.0) -> list[str]:
        """Workers silent for ``factor`` times their max age: past doubt, not a slow moment."""
        now = self._clock()
        with self._lock:
            return sorted(
                name
                for name, max_age in self._max_age.items()
                if now - self._last.get(name, now) > factor * max_age
            )

    def age(self, name: str) -> float | None:
        """Seconds since ``name`` last beat, or None if it never did."""
        with self._lock:
            last = self._last.get(name)
        return None if last is None else self._clock() - last


class Supervisor(threading.Thread):
    """Pings the watchdog only while the daemon is healthy, and keeps STATUS= current.

    Every half watchdog interval (``WATCHDOG_USEC`` / 2; ``period_s`` to
    override) it checks that no heartbeat is stale and that ``db_ping()``
    returns True, then sends ``WATCHDOG=1``; otherwise it withholds the ping
    and logs one warning line per episode naming the reason. It also sends
    ``STATUS=<status_line()>`` whenever that line changes. Without a watchdog
    it still maintains STATUS= every :data:`STATUS_PERIOD_S` seconds.

    A ``db_ping`` that hangs hangs this thread too, which stops the pings:
    exactly the outcome wanted for a database that no longer answers.
    """

    def __init__(
        self,
        heartbeats: Heartbeats,
        db_ping: Callable[[], bool],
        status_line: Callable[[], str],
        period_s: float | None = None,
        send: Callable[[str], None] = notify,
    ) -> None:
        super().__init__(name="pacsbox-supervisor", daemon=True)
        self.heartbeats = heartbeats
        self._db_ping = db_ping
        self._status_line = status_line
        self._send = send
        interval = watchdog_interval()
        self.watchdog_enabled = interval is not None
        if period_s is not None:
            self.period_s = period_s
        elif interval is not None:
            self.period_s = interval / 2
        else:
            self.period_s = STATUS_PERIOD_S
        self._stop_event = threading.Event()
        self._last_status: str | None = None
        self._withheld: str | None = None
        self._triggered = False
        self._status_error: str | None = None

    def run(self) -> None:
        # Health is checked every second, pings go out every period: a hung
        # worker is noticed within a second of going stale, not a period later.
        check_s = min(self.period_s, 1.0)
        last_ping = float("-inf")
        while True:
            now = time.monotonic()
            due = now - last_ping >= self.period_s - check_s / 2
            if self.tick(ping=due) and due:
                last_ping = now
            if self._stop_event.wait(check_s):
                return

    def stop(self, timeout: float | None = 5.0) -> None:
        """End the loop and wait for the thread (unless called from it)."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def tick(self, ping: bool = True) -> bool:
        """One round: refresh STATUS=, ping the watchdog if healthy; True when healthy.

        A worker silent for twice its allowance is hung beyond doubt: then
        ``WATCHDOG=trigger`` asks systemd to act now instead of waiting out
        WatchdogSec after the last ping (once per episode).
        """
        self._update_status()
        problem = self._problem()
        if problem is None:
            if self._withheld is not None:
                log.info("watchdog pings resumed")
                self._withheld = None
                self._triggered = False
            if self.watchdog_enabled and ping:
                self._send("WATCHDOG=1")
            return True
        key, message = problem
        if key != self._withheld:  # one line per episode, not per tick
            log.warning("watchdog ping withheld: %s", message)
            self._withheld = key
            self._triggered = False
        hung = self.heartbeats.hung()
        if hung and self.watchdog_enabled and not self._triggered:
            log.error("watchdog triggered: %s hung", ", ".join(hung))
            self._send("WATCHDOG=trigger")
            self._triggered = True
        return False

    def _problem(self) -> tuple[str, str] | None:
        """None when healthy, else (a key stable over the episode, a one-line reason)."""
        stale = self.heartbeats.stale()
        if stale:
            parts = []
            for name in stale:
                age = self.heartbeats.age(name)
                parts.append(name if age is None else f"{name} (no heartbeat for {age:.0f} s)")
            return "stale:" + ",".join(stale), "stale worker " + ", ".join(parts)
        try:
            db_ok = bool(self._db_ping())
        except Exception as exc:  # the ping's own failure is the finding
            return "db", f"database does not answer: {type(exc).__name__}: {exc}"
        return None if db_ok else ("db", "database does not answer")

    def _update_status(self) -> None:
        try:
            line = self._status_line()
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            if message != self._status_error:
                log.warning("status line failed: %s", message)
                self._status_error = message
            return
        self._status_error = None
        line = " ".join(line.split())  # STATUS= is one line
        if line != self._last_status:
            self._send("STATUS=" + line)
            self._last_status = line
