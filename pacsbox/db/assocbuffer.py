"""Association log entries on their way to the index, off the association's thread.

The store path is benchmarked, so an association only appends one entry
to a bounded in-memory list (no I/O, no database lock); a background thread
writes them in batches about once a second, prunes the table now and then,
and sleeps while there is nothing to write. A busy or failing index delays
the entries (they wait in the buffer); a full buffer drops the newest and
counts them: neither ever reaches an association.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time

from pacsbox.db import assoclog
from pacsbox.db.models import utcnow

log = logging.getLogger("pacsbox.db")

CAPACITY = 5000  # entries waiting; more are dropped (and counted) until the index answers
FLUSH_EVERY = 1.0  # seconds between batches
PRUNE_EVERY = 300.0  # seconds between prunes of the table
WARN_EVERY = 60.0  # at most one warning a minute about a failing index


class Recorder:
    """The process's buffer and its writer thread (started on the first entry)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.days = 7
        self.keep = 20
        self.dropped = 0
        self._items: collections.deque[assoclog.Entry] = collections.deque()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at = 0.0
        self._warned_at = -WARN_EVERY

    def configure(self, days: int, keep: int) -> None:
        """AssociationLogDays and AssociationLogKeep, from the process's configuration."""
        self.days, self.keep = days, keep

    def record(self, entry: assoclog.Entry) -> None:
        """Queue one entry; never blocks on I/O, never raises."""
        with self._lock:
            if len(self._items) >= self.capacity:
                self.dropped += 1
                return
            self._items.append(entry)
            if len(self._items) == 1:
                self._wake.set()  # the writer sleeps until there is something to write
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pacsbox-assoclog", daemon=True
                )
                self._thread.start()

    def prune(self, now: dt.datetime | None = None) -> int:
        """Keep the table bounded by this process's settings; returns rows removed.
        Raises peewee errors when the index fails."""
        self._pruned_at = time.monotonic()
        return assoclog.prune(now or utcnow(), self.days, self.keep)

    def pending(self) -> int:
        with self._lock:
            return len(self._items)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(FLUSH_EVERY)  # gather a batch
            self._wake.clear()
            if not self.flush():
                self._wake.set()  # what waits is tried again after the next pause

    def flush(self) -> bool:
        """Write what waits (and prune when due); False when the index failed, and
        the entries stay for the next try. Safe from any thread."""
        with self._flushing:
            with self._lock:
                batch = list(self._items)
                self._items.clear()
                dropped, self.dropped = self.dropped, 0
            try:
                if batch:
                    assoclog.write(batch)
                if batch and time.monotonic() - self._pruned_at >= PRUNE_EVERY:
                    self.prune()
            except Exception as exc:  # noqa: BLE001 - any index failure: keep them, say it once
                with self._lock:
                    room = max(0, self.capacity - len(self._items))
                    self._items.extendleft(reversed(batch[-room:] if room else []))
                    self.dropped += dropped + len(batch) - min(room, len(batch))
                if time.monotonic() - self._warned_at >= WARN_EVERY:
                    self._warned_at = time.monotonic()
                    log.warning("association log not written (%d waiting): %s", len(batch), exc)
                return False
            if dropped:
                log.warning("association log: %d entries dropped (buffer full)", dropped)
            return True


recorder = Recorder()


def record(entry: assoclog.Entry) -> None:
    """Queue an entry for the association log (see ``Recorder.record``)."""
    recorder.record(entry)
