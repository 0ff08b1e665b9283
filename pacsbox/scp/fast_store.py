"""Receive C-STORE requests straight from the association's socket.

A small image costs pynetdicom about 1.5 ms of Python between the last PDU
and our handler and back (PDU objects, the DIMSE message decoder, a queue
hop to the association thread, the response encoded through pydicom): more
than Orthanc's whole cost per image. This takes the C-STORE-RQ P-DATA-TF
PDUs off the socket in the DUL thread itself (``pdata.Tap``), gathers the
data set fragments as received (never decoded), hands them to the same
store function the pynetdicom handler uses, and writes the C-STORE-RSP.

Only what is unambiguously a C-STORE request on an accepted storage
context is taken, and only while pynetdicom has no message of its own half
assembled. Every other PDU (C-ECHO, C-FIND, release, abort, anything odd)
goes to pynetdicom unchanged: a P-DATA-TF already read is handed to its
decoder exactly as its own reader would, others are not even read. A data
PDV on another context or a command PDV in the middle of a data set is a
protocol error and aborts the association (Evt19, as pynetdicom does).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
from collections.abc import Callable

from pacsbox import pdata
from pacsbox.scp.server import is_storage_like

log = logging.getLogger("pacsbox.scp")

# store(data, transfer syntax, SOP class, SOP instance) -> DIMSE status
StoreFn = Callable[[bytes, str, str, str], int]

_UNLIMITED = 64 * 1024 * 1024  # a PDU bound when MaxPDULength is 0 (unlimited)
_READ = 64 * 1024  # bytes asked for per read when no PDU length tells us more
_PDU_TYPES = frozenset(range(1, 8))


class _Pending:
    __slots__ = ("cx_id", "command", "chunks")

    def __init__(self, cx_id: int, command: pdata.Command) -> None:
        self.cx_id = cx_id
        self.command = command
        self.chunks: list = []


class FastStore:
    """One association's C-STORE receiver; lives on its DUL thread.

    It reads the socket itself, as much as is there (a small image's
    command and data set PDUs usually in one read), straight from the file
    descriptor: Python's socket methods poll() before every recv() and send()
    on a socket with a timeout, and with pynetdicom's select() and a peek
    first a small image cost twelve system calls to receive where two do.
    In a process serving several associations each call also hands the
    interpreter lock to another thread and waits to get it back.

    Whatever it reads and does not take (another message, a release, an
    abort) it hands to pynetdicom decoded, exactly as pynetdicom's own
    reader would. ``claim`` returns with nothing left unread in ``inbox``
    unless it has just handed pynetdicom an event; the reactor acts on that
    and asks again, never sleeping while the inbox holds bytes
    (``scp.reactor``).
    """

    def __init__(self, assoc, store: StoreFn, max_pdu: int) -> None:
        self.assoc = assoc
        self.dul = assoc.dul
        self.sock: socket.socket | None = None
        self.fd = -1
        self.timeout: float | None = None
        self.blocking = False
        self.store = store
        self.limit = max_pdu if max_pdu > 0 else _UNLIMITED
        self.contexts: dict[int, str] | None = None  # known once the association is up
        self.pending: _Pending | None = None
        tap = pdata.Tap.of(self.dul)
        tap.claim = self.claim
        self.inbox = tap.inbox  # read from the socket, not yet taken
        self._room = memoryview(bytearray(_READ))

    def _established(self) -> bool:
        if self.contexts is None:
            if not self.assoc.is_established:
                return False
            self.sock = self.dul.socket.socket
            if self.sock is not None:
                self.fd = self.sock.fileno()
                self.timeout = self.sock.gettimeout()
                self.blocking = os.get_blocking(self.fd)
            self.contexts = {
                int(cx.context_id): str(cx.transfer_syntax[0])
                for cx in self.assoc.accepted_contexts
                if cx.as_scp and is_storage_like(str(cx.abstract_syntax))
            }
        return self.sock is not None and self.fd >= 0

    def claim(self) -> bool | None:
        """Take what came in (True); False when nothing did; None: pynetdicom reads."""
        dul = self.dul
        if not self.inbox:
            if dul.state_machine.current_state != "Sta6" or not self._established():
                self.pending = None
                return None
            try:
                if not self._read_more(wait=False):
                    return False  # what the library would answer, without its select()
            except ConnectionError:
                return self._lost(None)  # the peer closed: pynetdicom's reader says Evt17
            except OSError:
                return None  # a closed socket: pynetdicom notices
        try:
            while self.inbox:
                pdu = self._next_pdu()
                if pdu is None:
                    return True  # aborted
                if not self._take(pdu):
                    return True  # handed to pynetdicom: it acts before we read on
        except (OSError, ConnectionError) as exc:
            return self._lost(exc)
        return True

    def _lost(self, exc: BaseException | None) -> bool:
        if exc is not None and self.pending is not None:
            log.warning("connection lost while receiving a C-STORE: %s", exc)
        self._reset()
        self.dul.event_queue.put("Evt17")  # transport closed, as pynetdicom's reader says
        return True

    def _reset(self) -> None:
        self.pending = None
        self.inbox.clear()

    def _abort(self, why: str) -> None:
        log.warning("association from %s: %s: aborting", self.assoc.requestor.ae_title.strip(), why)
        self._reset()
        self.dul.event_queue.put("Evt19")  # invalid PDU: A-ABORT, as pynetdicom would

    def _next_pdu(self) -> bytearray | None:
        """The next whole PDU, from the inbox and, for its rest, the socket; None
        after aborting on a PDU no peer may send."""
        inbox = self.inbox
        while len(inbox) < 6:
            self._read_more(wait=True)
        kind = inbox[0]
        (length,) = struct.unpack_from(">I", inbox, 2)
        if kind not in _PDU_TYPES:
            self._abort(f"unknown PDU type 0x{kind:02X}")  # pynetdicom: Evt19 too
            return None
        if length > _UNLIMITED:
            self._abort(f"a PDU of {length} bytes")
            return None
        size = 6 + length
        if len(inbox) < size and length <= self.limit:
            # A large PDU: its rest straight into a buffer of its size.
            pdu = bytearray(size)
            have = len(inbox)
            pdu[:have] = inbox
            inbox.clear()
            view = memoryview(pdu)
            while have < size:
                have += self._read_into(view[have:], wait=True)
            return pdu
        while len(inbox) < size:  # beyond what we offered: grows only as bytes come
            self._read_more(wait=True)
        pdu = inbox[:size]
        del inbox[:size]
        return pdu

    def _read_more(self, wait: bool) -> int:
        """Append what the socket has to the inbox; 0 when nothing came (not waiting)."""
        n = self._read_into(self._room, wait)
        self.inbox += self._room[:n]
        return n

    def _read_into(self, view: memoryview, wait: bool) -> int:
        """One read() into ``view``; blocks (the socket's own timeout) only if ``wait``.

        Raises ConnectionError at end of stream, TimeoutError (an OSError)
        when the peer stays silent mid-PDU longer than NetworkTimeout.
        """
        while True:
            if self.blocking:  # never in pacsbox (every socket has a timeout), kept safe
                ready, _, _ = select.select([self.fd], [], [], self.timeout if wait else 0)
                if not ready:
                    if wait:
                        raise TimeoutError("the peer went silent mid-PDU")
                    return 0
            try:
                n = os.readv(self.fd, [view])
            except BlockingIOError:
                if not wait:
                    return 0
                ready, _, _ = select.select([self.fd], [], [], self.timeout)
                if not ready:
                    raise TimeoutError("the peer went silent mid-PDU") from None
                continue
            if n == 0:
                raise ConnectionError("the peer closed the connection")
            return n

    def _take(self, pdu: bytearray) -> bool:
        """Handle one PDU; False if it went to pynetdicom (which must act on it first)."""
        if pdu[0] != pdata.P_DATA_TF or self.dul.state_machine.current_state != "Sta6":
            self.pending = None  # release, abort, or anything after them: pynetdicom's
            self._to_pynetdicom(pdu)
            return False
        if self.pending is None and (
            self.assoc.dimse.message is not None or not self.dul.event_queue.empty()
        ):
            self._to_pynetdicom(pdu)  # pynetdicom is assembling a message of its own
            return False
        try:
            items = list(pdata.pdvs(memoryview(pdu)[6:]))
        except ValueError:
            items = []
        if self.pending is None and not self._starts_store(items):
            self._to_pynetdicom(pdu)
            return False
        if self.pending is None:
            cx_id, _, fragment = items[0]
            self.pending = _Pending(cx_id, pdata.Command(bytes(fragment)))
            items = items[1:]
        for cx_id, control, fragment in items:
            pending = self.pending
            if pending is None or control & pdata.COMMAND or cx_id != pending.cx_id:
                self._abort("unexpected PDV during a C-STORE data set")
                return False
            pending.chunks.append(fragment)
            if control & pdata.LAST:
                self.pending = None
                self._complete(pending)
        return True

    def _starts_store(self, items) -> bool:
        if not items:
            return False
        cx_id, control, fragment = items[0]
        if cx_id not in self.contexts or control & (pdata.COMMAND | pdata.LAST) != (
            pdata.COMMAND | pdata.LAST
        ):
            return False
        command = pdata.Command(bytes(fragment))
        return (
            command.field == pdata.C_STORE_RQ
            and command.numbers.get(pdata.DATA_SET_TYPE, pdata.NO_DATA_SET) != pdata.NO_DATA_SET
            and pdata.MESSAGE_ID in command.numbers
            and pdata.AFFECTED_SOP_INSTANCE in command.texts
        )

    def _complete(self, pending: _Pending) -> None:
        cmd = pending.command
        sop_class = cmd.texts.get(pdata.AFFECTED_SOP_CLASS, "")
        sop_instance = cmd.texts.get(pdata.AFFECTED_SOP_INSTANCE, "")
        data = b"".join(pending.chunks)
        status = self.store(data, self.contexts[pending.cx_id], sop_class, sop_instance)
        rsp = pdata.store_response(sop_class, sop_instance, cmd.numbers[pdata.MESSAGE_ID], status)
        try:
            self._send(pdata.pdu_header(len(rsp), pending.cx_id, pdata.COMMAND | pdata.LAST) + rsp)
        except OSError as exc:
            log.warning(
                "C-STORE response to %s not sent: %s", self.assoc.requestor.ae_title.strip(), exc
            )
            self.dul.event_queue.put("Evt17")

    def _send(self, data: bytes) -> None:
        """write() first (no poll); sendall, with the socket's timeout, for any rest."""
        try:
            n = 0 if self.blocking else os.write(self.fd, data)
        except BlockingIOError:
            n = 0
        if n < len(data):
            self.sock.sendall(memoryview(data)[n:])

    def _to_pynetdicom(self, pdu: bytearray) -> None:
        """What pynetdicom's own reader does with a PDU it has read (dul._read_pdu_data)."""
        dul = self.dul
        try:
            decoded, event = dul._decode_pdu(pdu)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is an invalid PDU
            log.warning("invalid P-DATA-TF PDU: %s", exc)
            dul.event_queue.put("Evt19")
            return
        dul.event_queue.put(event)
        dul._recv_pdu.put(decoded)


def attach(assoc, store: StoreFn, max_pdu: int) -> FastStore:
    """Watch this association's socket for C-STOREs; call from EVT_CONN_OPEN, before
    the peer can send its first request (at EVT_ESTABLISHED it may already have)."""
    return FastStore(assoc, store, max_pdu)
