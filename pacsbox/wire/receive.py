"""Receive C-STORE requests straight from the association's socket.

pynetdicom spends more Python per small image between the last PDU and the
handler and back (PDU objects, its DIMSE decoder, a queue hop, a response
encoded through pydicom) than the whole store costs. This takes the
C-STORE-RQ P-DATA-TF PDUs off the socket in the DUL thread itself (a
``wire.tap.Tap``), gathers the data set fragments as received (never
decoded), hands them to the caller's store function and writes the
C-STORE-RSP.

Only what is unambiguously a C-STORE request on an accepted storage context
is taken, and only while pynetdicom has no message of its own half
assembled. Every other PDU goes to pynetdicom unchanged: a P-DATA-TF already
read is handed to its decoder exactly as its own reader would, others are
not even read. A data PDV on another context or a command PDV in the middle
of a data set is a protocol error and aborts the association (Evt19, as
pynetdicom does).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from pacsbox.wire import compat, pdu
from pacsbox.wire.tap import Tap

if TYPE_CHECKING:
    from pynetdicom.association import Association

log = logging.getLogger("pacsbox.scp")

# store(data, transfer syntax, SOP class, SOP instance) -> DIMSE status
StoreFn = Callable[[bytes, str, str, str], int]
# takes(abstract syntax) -> True for the storage SOP classes this receiver carries
TakesFn = Callable[[str], bool]

_UNLIMITED = 64 * 1024 * 1024  # a PDU bound when MaxPDULength is 0 (unlimited)
_READ = 64 * 1024  # bytes asked for per read when no PDU length tells us more
_PDU_TYPES = frozenset(range(1, 8))
_NOT_UP: dict[int, str] = {}  # FastStore.contexts until the association is up (never filled)


class _Pending:
    __slots__ = ("cx_id", "command", "chunks")

    def __init__(self, cx_id: int, command: pdu.Command) -> None:
        self.cx_id = cx_id
        self.command = command
        self.chunks: list = []


class FastStore:
    """One association's C-STORE receiver; lives on its DUL thread.

    It reads the socket itself, as much as is there (a small image's
    command and data set PDUs usually in one read), straight from the file
    descriptor: Python's socket methods poll() before every call on a socket
    with a timeout, and every system call hands the interpreter lock to
    another association's thread.

    Whatever it reads and does not take (another message, a release, an
    abort) it hands to pynetdicom decoded, exactly as pynetdicom's own
    reader would. ``claim`` returns with nothing left unread in ``inbox``
    unless it has just handed pynetdicom an event; the reactor acts on that
    and asks again, never sleeping while the inbox holds bytes
    (``wire.reactor``).
    """

    def __init__(self, assoc: Association, store: StoreFn, max_pdu: int, takes: TakesFn) -> None:
        self.assoc = assoc
        self.dul = assoc.dul
        self.sock: socket.socket | None = None
        self.fd = -1
        self.timeout: float | None = None
        self.blocking = False
        self.store = store
        self.takes = takes
        self.limit = max_pdu if max_pdu > 0 else _UNLIMITED
        self.contexts = _NOT_UP  # {context id: transfer syntax} once the association is up
        self.pending: _Pending | None = None
        tap = Tap.of(self.dul)
        tap.claim = self.claim
        self.inbox = tap.inbox  # read from the socket, not yet taken
        self._room = memoryview(bytearray(_READ))

    def _established(self) -> bool:
        if self.contexts is _NOT_UP:
            if not self.assoc.is_established:
                return False
            transport = self.dul.socket
            assert transport is not None  # an established association has its socket
            self.sock = transport.socket
            if self.sock is not None:
                self.fd = self.sock.fileno()
                self.timeout = self.sock.gettimeout()
                self.blocking = os.get_blocking(self.fd)
            self.contexts = {
                int(cast(int, cx.context_id)): str(cx.transfer_syntax[0])
                for cx in self.assoc.accepted_contexts
                if cx.as_scp and self.takes(str(cx.abstract_syntax))
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
                raw = self._next_pdu()
                if raw is None:
                    return True  # aborted
                if not self._take(raw):
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
            raw = bytearray(size)
            have = len(inbox)
            raw[:have] = inbox
            inbox.clear()
            view = memoryview(raw)
            while have < size:
                have += self._read_into(view[have:], wait=True)
            return raw
        while len(inbox) < size:  # beyond what we offered: grows only as bytes come
            self._read_more(wait=True)
        raw = inbox[:size]
        del inbox[:size]
        return raw

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

    def _take(self, raw: bytearray) -> bool:
        """Handle one PDU; False if it went to pynetdicom (which must act on it first)."""
        if raw[0] != pdu.P_DATA_TF or self.dul.state_machine.current_state != "Sta6":
            self.pending = None  # release, abort, or anything after them: pynetdicom's
            self._to_pynetdicom(raw)
            return False
        if self.pending is None and (
            self.assoc.dimse.message is not None or not self.dul.event_queue.empty()
        ):
            self._to_pynetdicom(raw)  # pynetdicom is assembling a message of its own
            return False
        try:
            items = list(pdu.pdvs(memoryview(raw)[6:]))
        except ValueError:
            items = []
        if self.pending is None and not self._starts_store(items):
            self._to_pynetdicom(raw)
            return False
        if self.pending is None:
            cx_id, _, fragment = items[0]
            self.pending = _Pending(cx_id, pdu.Command(bytes(fragment)))
            items = items[1:]
        for cx_id, control, fragment in items:
            pending = self.pending
            if pending is None or control & pdu.COMMAND or cx_id != pending.cx_id:
                self._abort("unexpected PDV during a C-STORE data set")
                return False
            pending.chunks.append(fragment)
            if control & pdu.LAST:
                self.pending = None
                self._complete(pending)
        return True

    def _starts_store(self, items: list[tuple[int, int, memoryview]]) -> bool:
        if not items:
            return False
        cx_id, control, fragment = items[0]
        if cx_id not in self.contexts or control & (pdu.COMMAND | pdu.LAST) != (
            pdu.COMMAND | pdu.LAST
        ):
            return False
        command = pdu.Command(bytes(fragment))
        return (
            command.field == pdu.C_STORE_RQ
            and command.numbers.get(pdu.DATA_SET_TYPE, pdu.NO_DATA_SET) != pdu.NO_DATA_SET
            and pdu.MESSAGE_ID in command.numbers
            and pdu.AFFECTED_SOP_INSTANCE in command.texts
        )

    def _complete(self, pending: _Pending) -> None:
        cmd = pending.command
        sop_class = cmd.texts.get(pdu.AFFECTED_SOP_CLASS, "")
        sop_instance = cmd.texts.get(pdu.AFFECTED_SOP_INSTANCE, "")
        data = b"".join(pending.chunks)
        status = self.store(data, self.contexts[pending.cx_id], sop_class, sop_instance)
        rsp = pdu.store_response(sop_class, sop_instance, cmd.numbers[pdu.MESSAGE_ID], status)
        try:
            self._send(pdu.pdu_header(len(rsp), pending.cx_id, pdu.COMMAND | pdu.LAST) + rsp)
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
            assert self.sock is not None  # claim() runs only once _established() found it
            self.sock.sendall(memoryview(data)[n:])

    def _to_pynetdicom(self, raw: bytearray) -> None:
        """What pynetdicom's own reader does with a PDU it has read (dul._read_pdu_data)."""
        dul = self.dul
        try:
            decoded, event = dul._decode_pdu(raw)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is an invalid PDU
            log.warning("invalid P-DATA-TF PDU: %s", exc)
            dul.event_queue.put("Evt19")
            return
        dul.event_queue.put(event)
        dul._recv_pdu.put(decoded)


def attach(assoc: Association, store: StoreFn, max_pdu: int, takes: TakesFn) -> FastStore | None:
    """Watch this association's socket for C-STOREs on the contexts ``takes`` accepts;
    call from EVT_CONN_OPEN, before the peer can send its first request (at
    EVT_ESTABLISHED it may already have). None, and pynetdicom receives
    everything, when compat found its internals changed."""
    if not compat.fast():
        return None
    return FastStore(assoc, store, max_pdu, takes)
