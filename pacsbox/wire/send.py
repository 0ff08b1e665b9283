"""Sending C-STORE requests on an association: the raw writer and pynetdicom's own send.

``RawStoreWriter`` writes the C-STORE-RQ PDUs to the socket itself (the
command encoded once, the data set read from the stored file straight into
one buffer) and, while the DUL thread is held off the socket's input
(``wire.tap``), reads each response back itself: pynetdicom's per-message
Python (message objects, a queue hop per PDV, the response through its DUL
thread and two queues) cost more than sending the image. Any PDU that is not
a P-DATA-TF is only peeked at and left to pynetdicom. For pynetdicom's own
``send_c_store``, ``settle`` and ``busy`` make back-to-back messages safe and
quick.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from pynetdicom.dimse_primitives import C_CANCEL
from pynetdicom.dsutils import split_dataset

from pacsbox.wire import compat, pdu, reactor
from pacsbox.wire.tap import Tap

if TYPE_CHECKING:
    from pynetdicom.association import Association

log = logging.getLogger("pacsbox.scu")

_NOT_MINE = object()  # the next PDU is not a P-DATA-TF: pynetdicom's to read


def nodelay(assoc: Association) -> None:
    """Turn Nagle off: pynetdicom writes PDU headers and data separately, and with
    delayed ACKs each small message would otherwise wait ~40 ms."""
    try:
        transport = assoc.dul.socket
        sock = transport.socket if transport is not None else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


@contextlib.contextmanager
def busy(*assocs: Association, delay: float = 0.00002) -> Iterator[None]:
    """Shorten pynetdicom's DUL idle sleep while a burst of messages flows.

    Every outgoing DIMSE message waits for the DUL thread's next turn; the
    normal delay comes back after the burst so an idle association costs no
    CPU. Associations ``wire.reactor`` wakes on work need none of this.
    """
    saved = []
    if compat.fast():
        for assoc in assocs:
            dul = getattr(assoc, "dul", None)
            if dul is None or reactor.waker_of(assoc) is not None:
                continue
            saved.append((dul, dul._run_loop_delay))
            dul._run_loop_delay = delay
    try:
        yield
    finally:
        for dul, value in saved:
            dul._run_loop_delay = value


def settle(assoc: Association) -> None:
    """Wait until the association's reactor has really resumed after the last send.

    pynetdicom's send_c_store pauses the reactor by waiting for its paused
    flag, which is still set from the previous send until the reactor thread
    wakes up; sending again before that lets the woken reactor take the new
    response off the queue as unexpected, and the send waits out the DIMSE
    timeout. Not needed inside the reactor (C-GET).
    """
    if not compat.fast() or threading.current_thread() is assoc:
        return
    deadline = time.monotonic() + 2.0
    while (
        assoc._is_paused
        and assoc._reactor_checkpoint.is_set()
        and assoc.is_alive()
        and time.monotonic() < deadline
    ):
        time.sleep(0.00005)


def _dataset_offset(fh: BinaryIO, path: str) -> int:
    """Where the data set starts in a stored Part-10 file (after the group 2 meta)."""
    head = fh.read(144)
    if len(head) == 144 and head[128:132] == b"DICM" and head[132:138] == b"\x02\x00\x00\x00UL":
        length: int
        (length,) = struct.unpack_from("<I", head, 140)
        return 144 + length
    return split_dataset(Path(path))[1]


def raw_writer(assoc: Association) -> RawStoreWriter | None:
    """A raw writer for this association, or None: pynetdicom's send_c_store then
    carries the requests (the socket is not a plain one, or compat said no)."""
    if not compat.fast():
        return None
    writer = RawStoreWriter(assoc)
    return writer if writer.usable else None


class RawStoreWriter:
    """Writes C-STORE requests to the association's socket and reads their responses.

    While ``hold()`` is in force ``response()`` reads the P-DATA-TF itself;
    a C-CANCEL-RQ read this way is filed where pynetdicom files it, so
    ``event.is_cancelled`` still sees it. The association's reactor is kept
    paused for the whole transfer.
    """

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        # None when the transport is not a plain socket: then not ``usable``, and
        # raw_writer hands out no writer.
        self.sock = cast(socket.socket, getattr(getattr(assoc.dul, "socket", None), "socket", None))
        peer = assoc.acceptor if assoc.is_requestor else assoc.requestor
        max_pdu = int(peer.maximum_length or 0)
        # PDU = 6 header + 4 item length + 2 (context, control) + fragment
        self.fragment = (max_pdu - 12) if max_pdu > 12 else 1 << 20
        self.buf = bytearray(self.fragment + 12)
        self.view = memoryview(self.buf)
        self.paused_here = False
        self.held = False
        self._tap: Tap | None = None
        self._saved_delay: float | None = None
        self.timeout = float(getattr(assoc, "dimse_timeout", None) or 60.0)

    @property
    def usable(self) -> bool:
        return self.sock is not None and self.sock.fileno() >= 0

    def alive(self) -> bool:
        """The socket is still open (a failed send may have been the peer going away)."""
        try:
            return self.sock.fileno() >= 0
        except OSError:
            return False

    def pause(self) -> None:
        """Stop the reactor from reading the DIMSE queue (no-op inside the reactor)."""
        a = self.assoc
        if threading.current_thread() is a or self.paused_here:
            return
        a._reactor_checkpoint.clear()
        deadline = time.monotonic() + 5.0
        while not a._is_paused and a.is_alive() and time.monotonic() < deadline:
            time.sleep(0.0001)
        self.paused_here = True

    def resume(self) -> None:
        self.unhold()
        if self.paused_here:
            self.assoc._reactor_checkpoint.set()
            self.paused_here = False

    def hold(self) -> None:
        """Keep the DUL thread off the socket's input (it still sends what it is given)."""
        if self.held:
            return
        dul = self.assoc.dul
        if self._tap is None:
            self._tap = Tap.of(dul)
        self._tap.hold()
        # Nothing to poll for while held: don't let busy()'s short delay spin it.
        self._saved_delay = dul._run_loop_delay
        dul._run_loop_delay = max(self._saved_delay, 0.001)
        self.held = True

    def unhold(self) -> None:
        if not self.held:
            return
        dul = self.assoc.dul
        if self._tap is not None:  # held: hold() made it
            self._tap.release()
        assert self._saved_delay is not None  # saved by hold()
        dul._run_loop_delay = self._saved_delay
        self.held = False
        waker = reactor.waker_of(dul)
        if waker is not None:
            waker.wake_dul()  # it may be asleep in select() without the socket

    def _pdv(self, cx_id: int, control: int, data: bytes | memoryview) -> None:
        n = len(data)
        head = pdu.pdu_header(n, cx_id, control)
        self.sock.sendall(head + bytes(data) if n < 65536 else head)
        if n >= 65536:
            self.sock.sendall(data)

    def get_pending(self, cx_id: int, command: bytes) -> None:
        """A pending C-GET-RSP on the same socket, so it never interleaves with a PDU."""
        self._pdv(cx_id, pdu.COMMAND | pdu.LAST, command)

    def send(
        self,
        cx_id: int,
        command: bytes,
        path: str | None,
        data: bytes | None,
        native: bool = False,
    ) -> int | None:
        """Send one C-STORE-RQ (the stored file at ``path``, or ``data``) and wait for
        its response; the peer's status or None."""
        head = pdu.pdu_header(len(command), cx_id, pdu.COMMAND | pdu.LAST) + command
        if data is not None:
            self.sock.sendall(head)
            mv = memoryview(data)
            for start in range(0, len(mv), self.fragment):
                chunk = mv[start : start + self.fragment]
                last = start + self.fragment >= len(mv)
                self._pdv(cx_id, pdu.LAST if last else 0x00, chunk)
        else:
            assert path is not None  # the callers pass one of path and data
            with open(path, "rb", buffering=0) as fh:
                offset = 0 if native else _dataset_offset(fh, path)
                fh.seek(offset)
                size = os.fstat(fh.fileno()).st_size - offset
                sent = 0
                while sent < size or size == 0:
                    want = min(self.fragment, size - sent)
                    got = fh.readinto(self.view[12 : 12 + want])
                    if not got:
                        break
                    sent += got
                    last = sent >= size
                    self.buf[:12] = pdu.pdu_header(got, cx_id, pdu.LAST if last else 0x00)
                    if head:
                        # The command PDU and the first data PDU in one system call
                        # (and one segment on the wire when the data is small).
                        self._send_parts(head, self.view[: 12 + got])
                        head = b""
                    else:
                        self.sock.sendall(self.view[: 12 + got])
                    if last:
                        break
                if head:
                    self.sock.sendall(head)  # an empty file: the command alone
        return self.response()

    def _send_parts(self, *parts: bytes | memoryview) -> None:
        """sendall() for several buffers with one sendmsg() where the kernel takes it all."""
        sent = self.sock.sendmsg(parts)
        for part in parts:
            if sent >= len(part):
                sent -= len(part)
                continue
            self.sock.sendall(memoryview(part)[sent:])
            sent = 0

    def response(self) -> int | None:
        """The status of the C-STORE-RSP that answers the request just sent."""
        if self.held:
            try:
                status = self._read_response()
            except (OSError, ValueError) as exc:
                log.warning("C-STORE response could not be read: %s", exc)
                status = None
            if status is not _NOT_MINE:
                if status is None and self.assoc.is_established:
                    log.error("no C-STORE response within the DIMSE timeout: aborting")
                    self.assoc.abort()
                return cast("int | None", status)  # a status, not the _NOT_MINE sentinel
            self.unhold()  # a PDU for pynetdicom: let its DUL thread read it
        _, rsp = self.assoc.dimse.get_msg(block=True)
        if rsp is None:
            # DIMSE timeout or the peer went away: like pynetdicom, end the association.
            if self.assoc.is_established:
                log.error("no C-STORE response within the DIMSE timeout: aborting")
                self.assoc.abort()
            return None
        status = getattr(rsp, "Status", None)
        return int(status) if status is not None else None

    def _read_response(self):
        """Read P-DATA-TF PDUs until a C-STORE-RSP command is complete.

        Returns its status, None on timeout, or _NOT_MINE when the next PDU is
        not a P-DATA-TF (it is left unread for pynetdicom).
        """
        command = bytearray()
        deadline = time.monotonic() + self.timeout
        while True:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            kind = self.sock.recv(1, socket.MSG_PEEK)
            if not kind:
                raise ConnectionError("the peer closed the connection")
            if kind[0] != pdu.P_DATA_TF:
                return _NOT_MINE
            (length,) = struct.unpack(">I", bytes(pdu.recv_exact(self.sock, 6)[2:6]))
            body = pdu.recv_exact(self.sock, length)
            self.assoc.dul._idle_timer.restart()  # the DUL did not see this traffic
            for _cx, control, fragment in pdu.pdvs(body):
                if not control & pdu.COMMAND:
                    continue  # no data set follows a C-STORE-RSP or a C-CANCEL-RQ
                command += fragment
                if not control & pdu.LAST:
                    continue
                cmd = pdu.Command(bytes(command))
                command = bytearray()
                if cmd.field == pdu.C_STORE_RSP:
                    return cmd.numbers.get(pdu.STATUS)
                if cmd.field == pdu.C_CANCEL_RQ:  # for the C-GET in progress
                    self._file_cancel(cmd.numbers.get(pdu.MESSAGE_ID_RESPONDED))

    def _file_cancel(self, msg_id: int | None) -> None:
        if msg_id is None:
            return
        cancel = C_CANCEL()
        cancel.MessageIDBeingRespondedTo = msg_id
        self.assoc.dimse.cancel_req[msg_id] = cancel
