"""Worker processes index their images through the daemon's one index writer.

Two processes writing one SQLite file queue for its lock and each pays its
own WAL fsync per commit, so a second process gained nothing on small
images. Instead a worker writes and fsyncs the file itself, then sends the
record (its attributes and where the file is) over a socket pair to the
daemon, whose group commit takes records from every process in one
transaction. While the daemon records, the worker fsyncs the file's folder;
it answers the modality once both are done.

Frames are a 4-byte length and a pickle. Both ends are our own processes on
a socket pair made at spawn, so nothing untrusted is ever unpickled.
"""

from __future__ import annotations

import itertools
import pickle
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from functools import partial
from typing import BinaryIO

from pacsbox.db import commit, rows
from pacsbox.errors import (
    DatabaseError,
    DatasetMismatch,
    DuplicateRejected,
    OutcomeUnknown,
    OutOfResources,
)

_LEN = struct.Struct(">I")
_RECV = 1 << 18


def _send(sock: socket.socket, lock: threading.Lock, obj: object) -> None:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    with lock:
        sock.sendall(_LEN.pack(len(body)) + body)


def _frame(buf: BinaryIO) -> tuple[int, tuple] | None:
    """The next frame, or None once the other end has closed (or died mid-frame)."""
    head = buf.read(_LEN.size)
    if len(head) < _LEN.size:
        return None
    size = _LEN.unpack(head)[0]
    body = buf.read(size)
    if len(body) < size:
        return None
    frame: tuple[int, tuple] = pickle.loads(body)
    return frame


def _bunches(sock: socket.socket) -> Iterator[list]:
    """Every frame until the other end closes, in bunches: all those already
    received (a worker's associations send while the daemon commits)."""
    buf = bytearray()
    while chunk := sock.recv(_RECV):
        buf += chunk
        frames = []
        start = 0
        while len(buf) - start >= _LEN.size:
            end = start + _LEN.size + _LEN.unpack_from(buf, start)[0]
            if len(buf) < end:
                break
            frames.append(pickle.loads(buf[start + _LEN.size : end]))
            start = end
        del buf[:start]
        if frames:
            yield frames


def _reply_of(fut: Future) -> tuple:
    exc = fut.exception()
    if exc is None:
        return ("ok", fut.result())
    if isinstance(exc, rows.LocationChanged):
        return ("moved", exc.storage_root, exc.folder)
    if isinstance(exc, DuplicateRejected):
        return ("rejected", str(exc))
    if isinstance(exc, OutOfResources):
        return ("out-of-resources", str(exc))
    if isinstance(exc, DatasetMismatch):
        return ("mismatch", str(exc))
    if isinstance(exc, OutcomeUnknown):
        return ("lost", str(exc))
    return ("failed", f"{type(exc).__name__}: {exc}")


class RecordServer:
    """The daemon's end for one worker: records in, replies out after the commit.

    It also decompresses for a worker, which leaves the pixel libraries out
    to stay small (C-MOVE/C-GET to a peer that takes only uncompressed
    images); each in a thread of its own, so records never wait behind one.
    """

    def __init__(
        self,
        sock: socket.socket,
        record_many: Callable[[list[tuple]], list[Future]],
        decompress: Callable[[bytes], bytes],
        name: str,
    ) -> None:
        self._sock = sock
        self._record_many = record_many
        self._decompress = decompress
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._serve, name=f"pacsbox-records-{name}", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        try:
            for frames in _bunches(self._sock):
                records = []
                for rid, kind, args in frames:
                    if kind == "decompress":
                        threading.Thread(
                            target=self._run_decompress, args=(rid, *args), daemon=True
                        ).start()
                    else:
                        records.append((rid, args))
                if records:
                    self._record([rid for rid, _ in records], [args for _, args in records])
        except OSError:
            pass

    def _record(self, rids: list[int], records: list[tuple]) -> None:
        try:
            futs = self._record_many(records)
        except Exception as exc:  # noqa: BLE001 - answered, never silently dropped
            futs = [Future() for _ in rids]
            for fut in futs:
                fut.set_exception(exc)
        for rid, fut in zip(rids, futs, strict=True):
            fut.add_done_callback(partial(self._answer, rid))

    def _run_decompress(self, rid: int, data: bytes) -> None:
        fut: Future = Future()
        try:
            fut.set_result(self._decompress(data))
        except Exception as exc:  # noqa: BLE001 - the worker reports the failed sub-operation
            fut.set_exception(exc)
        self._answer(rid, fut)

    def _answer(self, rid: int, fut: Future) -> None:
        try:
            _send(self._sock, self._lock, (rid, _reply_of(fut)))
        except OSError:
            pass  # the worker is gone; its file is adopted or already indexed

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


class _Wait:
    """One request's rendezvous: its reply, and an Event that wakes its thread."""

    __slots__ = ("reply", "event")

    def __init__(self) -> None:
        self.reply: tuple | None = None
        self.event = threading.Event()


class RecordClient:
    """A worker's end: ``record`` returns once the daemon has committed the row.

    There is no reply thread: a waiting caller reads the socket itself
    (whoever takes ``_reading`` reads replies, hands the others' to them and
    stops once its own came; then it wakes a waiting caller to read on).
    Most replies are so read by the thread that waits for them, without a
    hand-over between threads, each of which waited for this process's
    interpreter lock while other associations held it.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._in = sock.makefile("rb")
        self._lock = threading.Lock()
        self._reading = threading.Lock()
        self._ids = itertools.count()
        self._waiting: dict[int, _Wait] = {}
        self._closed = False

    def record(self, *args: object, meanwhile: Callable[[], None] | None = None) -> rows.Recorded:
        """``Archive.record_many`` in the daemon, for one (attrs, file, calling AE).

        ``meanwhile`` runs while the daemon records. If it fails after the
        row was committed, the outcome is unknown (the file stays, A701).
        """
        reply = self._ask("record", args)
        return commit.alongside(meanwhile, lambda: self._outcome(reply()))

    def _outcome(self, reply: tuple) -> rows.Recorded:
        kind, *rest = reply
        if kind == "ok":
            recorded: rows.Recorded = rest[0]
            return recorded
        if kind == "moved":
            raise rows.LocationChanged(*rest)
        if kind == "rejected":
            raise DuplicateRejected(rest[0])
        if kind == "out-of-resources":
            raise OutOfResources(rest[0])
        if kind == "mismatch":
            raise DatasetMismatch(rest[0])
        if kind == "lost":
            raise OutcomeUnknown(rest[0])
        raise DatabaseError(rest[0])

    def decompress(self, data: bytes) -> bytes:
        """A compressed Part-10 object, decompressed by the daemon."""
        kind, *rest = self._ask("decompress", (data,))()
        if kind != "ok":
            raise RuntimeError(rest[0] if rest else "the daemon stopped")
        decompressed: bytes = rest[0]
        return decompressed

    def _ask(self, kind: str, args: tuple) -> Callable[[], tuple]:
        """Send a request; returns the call that waits for its reply."""
        wait = _Wait()
        rid = next(self._ids)
        self._waiting[rid] = wait
        try:
            if self._closed:
                raise OSError("closed")
            _send(self._sock, self._lock, (rid, kind, args))
        except OSError:
            self._waiting.pop(rid, None)
            raise DatabaseError("the daemon's index writer is not reachable") from None
        return partial(self._await, wait)

    def _await(self, wait: _Wait) -> tuple:
        while wait.reply is None:
            if self._reading.acquire(blocking=False):
                try:
                    while wait.reply is None and self._read_one():
                        pass
                finally:
                    self._reading.release()
                self._pass_reading_on()
            else:
                wait.event.wait()
                wait.event.clear()
        return wait.reply

    def _read_one(self) -> bool:
        """Hand one reply to its caller; False (and everyone told) once the daemon is gone."""
        try:
            frame = _frame(self._in)
        except OSError:
            frame = None
        if frame is None:
            self._closed = True
            for rid in list(self._waiting):
                self._answer(rid, ("lost", "the daemon stopped while recording"))
            return False
        self._answer(*frame)
        return True

    def _answer(self, rid: int, reply: tuple) -> None:
        wait = self._waiting.pop(rid, None)
        if wait is not None:
            wait.reply = reply
            wait.event.set()

    def _pass_reading_on(self) -> None:
        """Wake one caller still waiting, so that someone reads its reply."""
        wait = next(iter(self._waiting.copy().values()), None)
        if wait is not None:
            wait.event.set()
