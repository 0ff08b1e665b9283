"""Group commit and the index's durability: how records reach the disk.

Concurrent records share one transaction and one COMMIT
(``GroupCommitter``); the store path's COMMITs do not wait for the WAL's
fsync (``together(lazy=True)``), and ``made_durable`` syncs the WAL when a
caller must know its row is on disk. Other multi-row writes take
``transaction.write_transaction``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TypeVar

from peewee import SqliteDatabase

from pacsbox.db.models import database
from pacsbox.db.rows import Recorded, apply_counts
from pacsbox.db.transaction import write_transaction
from pacsbox.errors import OutcomeUnknown

T = TypeVar("T")


def alongside(meanwhile: Callable[[], None] | None, wait: Callable[[], T]) -> T:
    """``wait()`` for a record already on its way, running ``meanwhile`` first.

    The record may commit before ``meanwhile`` (a folder fsync) is done, so
    a failure of ``meanwhile`` after a successful record is OutcomeUnknown
    (the file stays; a crash before the fsync is the start-up check's to
    mend, see ``recovery.startup_check``). A failed record raises its own error.
    """
    failed: Exception | None = None
    if meanwhile is not None:
        try:
            meanwhile()
        except Exception as exc:  # noqa: BLE001 - decided once the record's outcome is in
            failed = exc
    result = wait()
    if failed is not None:
        raise OutcomeUnknown(f"recorded, but {failed}")
    return result


def _replaced(result: object) -> bool:
    return isinstance(result, Recorded) and result.outcome == "replaced"


def made_durable() -> None:
    """fsync the SQLite WAL after a COMMIT that did not wait for the disk.

    One fdatasync covers every frame written before it. The WAL is opened by
    name: SQLite removes it when its last connection closes. Raises
    OutcomeUnknown: the row is committed but maybe not on disk.
    """
    db = database.obj
    if not isinstance(db, SqliteDatabase):
        return
    try:
        fd = os.open(db.database + "-wal", os.O_RDONLY)
    except FileNotFoundError:
        return  # checkpointed and removed: its content is in the synced database file
    except OSError as exc:
        raise OutcomeUnknown(f"index journal not synced: {exc}") from None
    try:
        os.fdatasync(fd)
    except OSError as exc:
        raise OutcomeUnknown(f"index journal not synced: {exc}") from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def _lazy_commit() -> Iterator[None]:
    """This connection's COMMITs skip the WAL fsync (SQLite: synchronous is per connection)."""
    if not isinstance(database.obj, SqliteDatabase):
        yield
        return
    database.execute_sql("PRAGMA synchronous = NORMAL")
    try:
        yield
    finally:
        database.execute_sql("PRAGMA synchronous = FULL")


def together(fns: list, isolate: bool = False, lazy: bool = False) -> list:
    """Run record functions in one transaction, add their counts, commit.

    Without ``isolate`` any failure rolls back everyone and is raised (a
    batch then retries isolated). With it, each runs in a savepoint and its
    exception is returned in its place; the others still commit.

    ``lazy`` (the store path): the COMMIT does not wait for the WAL's fsync,
    which would be a large part of a small image's store time. The row may
    then be lost in a power cut but never its image: the file and
    its folder were fsynced before, the folder is marked dirty by a commit
    that did wait (``mark_dirty``, kept until a later waiting commit has
    made these rows durable), and the start-up check indexes every file of a
    dirty folder that has no row. SQLite in WAL mode stays consistent; a
    lost commit is lost whole.
    """
    with _lazy_commit() if lazy else contextlib.nullcontext():
        return _in_one_transaction(fns, isolate)


def _in_one_transaction(fns: list, isolate: bool) -> list:
    results: list = []
    with write_transaction():
        for fn in fns:
            if not isolate:
                results.append(fn())
                continue
            try:
                with database.savepoint():
                    results.append(fn())
            except Exception as exc:  # noqa: BLE001 - handed to its caller
                results.append(exc)
        apply_counts([r for r in results if not isinstance(r, Exception)])
    return results


class GroupCommitter:
    """One writer thread that makes concurrent index records durable together.

    A batch is whatever queued while the last one committed, run in one
    transaction; callers get their result only after the shared COMMIT. If a
    record fails (a duplicate rejected, a study that moved), the batch is
    rolled back and run again with a savepoint per record, so only that one
    fails. With one association nothing waits.

    The writer does no fsync at all: each caller fsyncs its file's folder
    while its record is made (``meanwhile``; callers of one folder share
    one, ``storage._FolderSync``), and an inline caller does it after its
    commit, having handed the writer lock on. Fsyncs in the writer would
    make every record of a batch wait for every folder in it.

    The COMMIT does not wait for the disk (see ``together``): what makes an
    acknowledged image survive a power cut is its file and folder, fsynced
    before the record, in a folder marked dirty by a commit that did wait;
    the start-up check indexes any file there whose row was lost. Only a
    replace, which then moves the earlier file away, waits for its row to be
    durable first.
    """

    MAX_BATCH = 64

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        # Held by whoever commits now (an inline caller or the writer's batch).
        self._idle = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="pacsbox-index-writer", daemon=True)
        self._thread.start()

    def run(self, fn: Callable[[], T], meanwhile: Callable[[], None] | None = None) -> T:
        # Alone (one association, an import): commit in the caller's thread,
        # with no hand-over to the writer. Several at once: join the batch.
        if self._idle.acquire(blocking=False):
            try:
                result: T = together([fn], lazy=True)[0]
            finally:
                self._idle.release()
            if _replaced(result):
                made_durable()
            return alongside(meanwhile, lambda: result)
        return alongside(meanwhile, self.submit(fn).result)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Join the next batch without waiting; the Future is done after its COMMIT."""
        fut: Future[T] = Future()
        self._queue.put((fn, fut))
        return fut

    def run_batch(self, fns: list) -> list[Future]:
        """Commit ``fns`` together in the caller's thread (waiting for the writer
        lock); their Futures are done on return. A worker's records come in
        bunches on one socket: its reader commits them itself, without the hop
        to the writer thread."""
        ready: list[tuple[Callable, Future]] = [(fn, Future()) for fn in fns]
        with self._idle:
            self._commit_batch(ready)
        return [fut for _, fut in ready]

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def _batches(self) -> Iterator[list]:
        """What has queued up, up to MAX_BATCH at a time, until the None that ends it."""
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    yield batch
                    return
                batch.append(nxt)
            yield batch

    def _loop(self) -> None:
        for batch in self._batches():
            with self._idle:
                self._commit_batch(batch)
        if not database.is_closed():
            database.close()

    def _commit_batch(self, ready: list) -> None:
        if not ready:
            return
        fns = [fn for fn, _ in ready]
        try:
            results = together(fns, lazy=True)
        except Exception as exc:  # noqa: BLE001 - one record (or the COMMIT) failed
            if len(ready) == 1:
                ready[0][1].set_exception(exc)
                return
            try:
                results = together(fns, isolate=True, lazy=True)
            except Exception as exc:  # noqa: BLE001 - the COMMIT failed: nobody is stored
                for _, fut in ready:
                    fut.set_exception(exc)
                return
        if any(_replaced(r) for r in results):
            try:
                made_durable()
            except OutcomeUnknown as exc:
                results = [exc if _replaced(r) else r for r in results]
        for (_, fut), result in zip(ready, results, strict=True):
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)
