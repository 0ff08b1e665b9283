"""Progress for long work: a bar on a terminal, a line now and then elsewhere.

Long commands (rebuild, import, export, burn, purge) take a callback
``(done, total)``; the CLI passes ``Bar`` so an operator sees where it is,
and the daemon passes its job table so the status and web page show it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Bar:
    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self._last = 0.0
        self._start = time.monotonic()
        self._done = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        final = bool(total) and done >= total
        if final and self._done:
            return
        if not final and now - self._last < (0.1 if self.tty else 5.0):
            return
        self._done = final
        self._last = now
        frac = done / total if total else 0.0
        rate = done / max(now - self._start, 1e-6)
        if self.tty:
            filled = int(frac * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total} ({rate:.0f}/s)")
            if final:
                self.stream.write("\n")
        else:
            self.stream.write(f"{self.label}: {done}/{total} ({frac:.0%}, {rate:.0f}/s)\n")
        self.stream.flush()
