"""Worker processes index their images through the daemon's one index writer.

Two processes writing one SQLite file queue for its lock and each pays its
own WAL fsync per commit, so a second process gained nothing on small
images. Instead a worker writes and fsyncs the file itself, then sends the
record (its attributes and where the file is) over a socket pair to the
daemon, whose group commit takes records from every process in one
transaction; the worker answers the modality after the daemon's reply.

Frames are a 4-byte length and a pickle. Both ends are our own processes on
a socket pair made at spawn, so nothing untrusted is ever unpickled.
"""

from __future__ import annotations

import itertools
import pickle
import socket
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future

from pacsbox.db import index as idx
from pacsbox.errors import DatabaseError, DuplicateRejected, OutcomeUnknown, OutOfResources

_LEN = struct.Struct(">I")


def _send(sock: socket.socket, lock: threading.Lock, obj) -> None:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    with lock:
        sock.sendall(_LEN.pack(len(body)) + body)


def _frames(sock: socket.socket):
    """Every frame until the other end closes."""
    buf = sock.makefile("rb")
    while True:
        head = buf.read(_LEN.size)
        if len(head) < _LEN.size:
            return
        size = _LEN.unpack(head)[0]
        body = buf.read(size)
        if len(body) < size:  # the other end died mid-frame
            return
        yield pickle.loads(body)


def _reply_of(fut: Future) -> tuple:
    exc = fut.exception()
    if exc is None:
        return ("ok", fut.result())
    if isinstance(exc, idx.LocationChanged):
        return ("moved", exc.storage_root, exc.folder)
    if isinstance(exc, DuplicateRejected):
        return ("rejected", str(exc))
    if isinstance(exc, OutOfResources):
        return ("out-of-resources", str(exc))
    return ("failed", f"{type(exc).__name__}: {exc}")


class RecordServer:
    """The daemon's end for one worker: records in, replies out after the commit.

    It also decompresses for a worker, which leaves the pixel libraries out
    to stay small (C-MOVE/C-GET to a peer that takes only uncompressed
    images); each in a thread of its own, so records never wait behind one.
    """

    def __init__(self, sock: socket.socket, submit: Callable[..., Future],
                 decompress: Callable[[bytes], bytes], name: str) -> None:
        self._sock = sock
        self._submit = submit
        self._decompress = decompress
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name=f"pacsbox-records-{name}",
                                        daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            for rid, kind, args in _frames(self._sock):
                if kind == "decompress":
                    threading.Thread(target=self._run_decompress, args=(rid, *args),
                                     daemon=True).start()
                    continue
                try:
                    fut = self._submit(*args)
                except Exception as exc:  # noqa: BLE001 - answered, never silently dropped
                    fut = Future()
                    fut.set_exception(exc)
                fut.add_done_callback(lambda fut, rid=rid: self._answer(rid, fut))
        except OSError:
            pass

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


class RecordClient:
    """A worker's end: ``record`` returns once the daemon has committed the row."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._waiting: dict[int, Future] = {}
        self._closed = False
        threading.Thread(target=self._replies, name="pacsbox-record-replies", daemon=True).start()

    def record(self, *args) -> idx.Recorded:
        """Same arguments and outcomes as ``Archive.submit_record`` in the daemon."""
        kind, *rest = self._ask("record", args)
        if kind == "ok":
            return rest[0]
        if kind == "moved":
            raise idx.LocationChanged(*rest)
        if kind == "rejected":
            raise DuplicateRejected(rest[0])
        if kind == "out-of-resources":
            raise OutOfResources(rest[0])
        if kind == "lost":
            raise OutcomeUnknown("the daemon stopped while recording")
        raise DatabaseError(rest[0])

    def decompress(self, data: bytes) -> bytes:
        """A compressed Part-10 object, decompressed by the daemon."""
        kind, *rest = self._ask("decompress", (data,))
        if kind != "ok":
            raise RuntimeError(rest[0] if rest else "the daemon stopped")
        return rest[0]

    def _ask(self, kind: str, args: tuple) -> tuple:
        fut: Future = Future()
        rid = next(self._ids)
        self._waiting[rid] = fut
        try:
            if self._closed:
                raise OSError("closed")
            _send(self._sock, self._lock, (rid, kind, args))
        except OSError:
            self._waiting.pop(rid, None)
            raise DatabaseError("the daemon's index writer is not reachable") from None
        return fut.result()

    def _replies(self) -> None:
        try:
            for rid, reply in _frames(self._sock):
                fut = self._waiting.pop(rid, None)
                if fut is not None:
                    fut.set_result(reply)
        except OSError:
            pass
        self._closed = True
        for rid in list(self._waiting):
            fut = self._waiting.pop(rid, None)
            if fut is not None:
                fut.set_result(("lost",))
