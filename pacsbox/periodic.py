"""A daemon's background thread that does one turn of work every few seconds.

The router and the metadata warmer share the shape: beat the heartbeat (so the
watchdog can tell a hung thread), run a turn, log a failed turn in one line
and let the next one try again, stop promptly when the daemon stops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Periodic:
    """Subclasses give ``turn()``, a thread ``name`` and the seconds between turns."""

    name = "periodic"
    interval = 2.0

    def __init__(self, heartbeat: Callable[[], None] | None = None) -> None:
        self.heartbeat = heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def turn(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, grace: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(grace)

    def _loop(self) -> None:
        log = logging.getLogger("pacsbox." + self.name)
        while not self._stop.is_set():
            if self.heartbeat is not None:
                self.heartbeat()
            try:
                self.turn()
            except Exception as exc:  # noqa: BLE001 - a busy index: the next turn tries again
                log.warning("%s: turn failed: %s", self.name, exc)
            self._stop.wait(self.interval)
