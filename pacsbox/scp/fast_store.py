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


class _Pending:
    __slots__ = ("cx_id", "command", "chunks")

    def __init__(self, cx_id: int, command: pdata.Command) -> None:
        self.cx_id = cx_id
        self.command = command
        self.chunks: list = []


class FastStore:
    """One association's C-STORE receiver; lives on its DUL thread."""

    def __init__(self, assoc, store: StoreFn, max_pdu: int) -> None:
        self.assoc = assoc
        self.dul = assoc.dul
        self.sock: socket.socket | None = None
        self.store = store
        self.limit = max_pdu if max_pdu > 0 else _UNLIMITED
        self.contexts: dict[int, str] | None = None  # known once the association is up
        self.pending: _Pending | None = None
        pdata.Tap.of(self.dul).claim = self.claim

    def _established(self) -> bool:
        if self.contexts is None:
            if not self.assoc.is_established:
                return False
            self.sock = self.dul.socket.socket
            self.contexts = {
                int(cx.context_id): str(cx.transfer_syntax[0])
                for cx in self.assoc.accepted_contexts
                if cx.as_scp and is_storage_like(str(cx.abstract_syntax))
            }
        return self.sock is not None

    def claim(self) -> bool | None:
        """Take the next PDU if it belongs to a C-STORE request (True), else None."""
        dul = self.dul
        if dul.state_machine.current_state != "Sta6" or not self._established():
            self.pending = None
            return None
        try:
            ready, _, _ = select.select([self.sock], [], [], 0)
            if not ready:
                return False  # what the library would answer, without its own select()
            head = self.sock.recv(6, socket.MSG_PEEK)
        except (OSError, ValueError):
            return None  # pynetdicom notices the closed connection
        if len(head) < 6 or head[0] != pdata.P_DATA_TF:
            self.pending = None  # release, abort, a split header: pynetdicom's
            return None
        (length,) = struct.unpack_from(">I", head, 2)
        if length > self.limit:
            self.pending = None
            return None
        if self.pending is None and (
            self.assoc.dimse.message is not None or not dul.event_queue.empty()
        ):
            return None  # pynetdicom is assembling a message of its own
        try:
            pdu = pdata.recv_exact(self.sock, 6 + length)
        except (OSError, ConnectionError) as exc:
            log.warning("connection lost while receiving a C-STORE: %s", exc)
            self.pending = None
            dul.event_queue.put("Evt17")  # transport closed, as pynetdicom's reader says
            return True
        try:
            items = list(pdata.pdvs(memoryview(pdu)[6:]))
        except ValueError:
            items = []
        if self.pending is None and not self._starts_store(items):
            self._to_pynetdicom(pdu)
            return True
        if self.pending is None:
            cx_id, _, fragment = items[0]
            self.pending = _Pending(cx_id, pdata.Command(bytes(fragment)))
            items = items[1:]
        for cx_id, control, fragment in items:
            pending = self.pending
            if pending is None or control & pdata.COMMAND or cx_id != pending.cx_id:
                log.warning(
                    "association from %s: unexpected PDV during a C-STORE data set: aborting",
                    self.assoc.requestor.ae_title.strip(),
                )
                self.pending = None
                dul.event_queue.put("Evt19")  # invalid PDU: A-ABORT, as pynetdicom would
                return True
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
            self.sock.sendall(
                pdata.pdu_header(len(rsp), pending.cx_id, pdata.COMMAND | pdata.LAST) + rsp
            )
        except OSError as exc:
            log.warning(
                "C-STORE response to %s not sent: %s", self.assoc.requestor.ae_title.strip(), exc
            )
            self.dul.event_queue.put("Evt17")

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
