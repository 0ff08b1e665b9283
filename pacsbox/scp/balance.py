"""Dealing DICOM connections out to the processes that share the port.

All processes accept from one listening socket (the daemon's, inherited by
the workers). Each keeps its count of open connections in a slot of a small
shared file; a process that has more than the least loaded one (the daemon
counting as DAEMON_WEIGHT more) lets it take the next connection: it waits a
moment before accepting, and finds the connection gone. The kernel's
SO_REUSEPORT hash knows nothing of load and often deals several modalities
to one process.
"""

from __future__ import annotations

import mmap
import os
import threading
import time
from pathlib import Path

MAX_PROCESSES = 64
# The daemon (slot 0) also commits every process's index records; once it
# serves one connection it counts as this many more. A lone modality stays
# with the daemon, where its records commit with no hop to another process;
# further modalities go to the workers, whose records the daemon then
# commits with less competition for its interpreter lock.
DAEMON_WEIGHT = 3
# How long a busier process leaves a new connection to the others, per
# connection it has more: longer than a busy process may take to get the GIL
# back after select() wakes it, short enough that a process stuck elsewhere
# cannot hold a connection up.
YIELD_EACH = 0.01
YIELD_MAX = 0.05
RECHECK = 0.001


class Balance:
    """This process's slot in the shared table of open connections."""

    def __init__(self, path: Path, slot: int, processes: int) -> None:
        size = 4 * MAX_PROCESSES
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._counts = memoryview(self._map).cast("i")
        self.slot = slot
        self.processes = max(1, min(processes, MAX_PROCESSES))
        self._lock = threading.Lock()
        self._counts[slot] = 0

    def wait_turn(self) -> None:
        """Before accepting: give way to a less loaded process for a moment."""
        deadline = None
        while True:
            mine = (self._load(self.slot), self.slot)
            least = min((self._load(i), i) for i in range(self.processes) if i != self.slot)
            if mine < least:  # on a tie the lower slot (the daemon first) takes it
                return
            now = time.monotonic()
            if deadline is None:
                deadline = now + min(YIELD_EACH * max(1, mine[0] - least[0]), YIELD_MAX)
            elif now >= deadline:
                return
            # Counts change as the others accept: look again soon, not at the deadline.
            time.sleep(RECHECK)

    def _load(self, slot: int) -> int:
        n = self._counts[slot]
        return n + DAEMON_WEIGHT if slot == 0 and n else n

    def opened(self) -> None:
        self._add(1)

    def closed(self) -> None:
        self._add(-1)

    def _add(self, n: int) -> None:
        with self._lock:
            self._counts[self.slot] = max(0, self._counts[self.slot] + n)
