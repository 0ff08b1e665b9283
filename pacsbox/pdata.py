"""C-STORE on the wire: P-DATA-TF PDUs and command sets read and written by hand.

pynetdicom turns every PDU into objects, hops through two queues and two
threads and encodes each command set with pydicom: about 1 ms of Python per
message, more than Orthanc spends on a whole small image. pacsbox keeps
pynetdicom for everything else (association negotiation, release, abort,
C-ECHO, C-FIND, the rare odd message) and carries only the C-STORE request
and response itself, in both directions: ``scp.fast_store`` receives, and
``scu.RawStoreWriter`` sends. Both take the socket from pynetdicom's DUL
thread through a ``Tap`` (PS3.8 9.3.5 P-DATA-TF, E.2 message control header,
PS3.7 9.3.1 C-STORE command sets, Implicit VR Little Endian).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator

P_DATA_TF = 0x04

# Message control header bits (PS3.8 E.2)
COMMAND = 0x01
LAST = 0x02

# Command Field values (PS3.7 E.1)
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_FIND_RSP = 0x8020
C_CANCEL_RQ = 0x0FFF

# Command set elements (group 0000)
AFFECTED_SOP_CLASS = 0x0002
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
MESSAGE_ID_RESPONDED = 0x0120
MOVE_ORIGINATOR_AE = 0x1030
MOVE_ORIGINATOR_ID = 0x1031
PRIORITY = 0x0700
DATA_SET_TYPE = 0x0800
STATUS = 0x0900
AFFECTED_SOP_INSTANCE = 0x1000

NO_DATA_SET = 0x0101
HAS_DATA_SET = 0x0000


def pdu_header(fragment_length: int, cx_id: int, control: int) -> bytes:
    """Header of a P-DATA-TF PDU carrying one PDV of ``fragment_length`` bytes."""
    return struct.pack(
        ">BBIIBB", P_DATA_TF, 0, fragment_length + 6, fragment_length + 2, cx_id, control
    )


def element(tag_element: int, value: bytes) -> bytes:
    """One group-0000 element, Implicit VR LE, value already padded to even length."""
    return struct.pack("<HHI", 0x0000, tag_element, len(value)) + value


def ui(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\x00" * (len(raw) % 2)


def us(n: int) -> bytes:
    return struct.pack("<H", n & 0xFFFF)


def ae_title(title: str) -> bytes:
    raw = title.encode("ascii", "replace")[:16]
    return raw + b" " * (len(raw) % 2)


def command_set(*elements: bytes) -> bytes:
    """A command set with its Command Group Length (0000,0000) in front."""
    body = b"".join(elements)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def store_response(sop_class: str, sop_instance: str, msg_id: int, status: int) -> bytes:
    """A C-STORE-RSP command set (PS3.7 9.3.1.2)."""
    return command_set(
        element(AFFECTED_SOP_CLASS, ui(sop_class)),
        element(COMMAND_FIELD, us(C_STORE_RSP)),
        element(MESSAGE_ID_RESPONDED, us(msg_id)),
        element(DATA_SET_TYPE, us(NO_DATA_SET)),
        element(STATUS, us(status)),
        element(AFFECTED_SOP_INSTANCE, ui(sop_instance)),
    )


def find_response(sop_class: str, msg_id: int, status: int) -> bytes:
    """A C-FIND-RSP command set with an identifier following (PS3.7 9.3.2.2)."""
    return command_set(
        element(AFFECTED_SOP_CLASS, ui(sop_class)),
        element(COMMAND_FIELD, us(C_FIND_RSP)),
        element(MESSAGE_ID_RESPONDED, us(msg_id)),
        element(DATA_SET_TYPE, us(HAS_DATA_SET)),
        element(STATUS, us(status)),
    )


def send_message(
    sock: socket.socket, cx_id: int, command: bytes, dataset=None, fragment: int = 1 << 20
) -> None:
    """One DIMSE message as P-DATA-TF PDUs: the command, then the data set in fragments."""
    out = [pdu_header(len(command), cx_id, COMMAND | LAST), command]
    if dataset is not None:
        view = memoryview(dataset)
        for start in range(0, max(len(view), 1), fragment):
            chunk = view[start : start + fragment]
            last = start + fragment >= len(view)
            out += [pdu_header(len(chunk), cx_id, LAST if last else 0x00), chunk]
    sock.sendall(b"".join(out))


class Command:
    """The elements of a received command set: US values and UIDs/AE titles as text."""

    __slots__ = ("numbers", "texts")

    def __init__(self, raw: bytes) -> None:
        self.numbers: dict[int, int] = {}
        self.texts: dict[int, str] = {}
        offset = 0
        end = len(raw)
        while offset + 8 <= end:
            group, elem, length = struct.unpack_from("<HHI", raw, offset)
            value = raw[offset + 8 : offset + 8 + length]
            offset += 8 + length
            if group != 0:
                continue
            if length == 2 and elem not in (AFFECTED_SOP_CLASS, AFFECTED_SOP_INSTANCE):
                (self.numbers[elem],) = struct.unpack("<H", value)
            elif elem in (AFFECTED_SOP_CLASS, AFFECTED_SOP_INSTANCE, MOVE_ORIGINATOR_AE):
                self.texts[elem] = bytes(value).rstrip(b"\x00 ").decode("ascii", "replace")

    @property
    def field(self) -> int | None:
        return self.numbers.get(COMMAND_FIELD)


def pdvs(body) -> Iterator[tuple[int, int, memoryview]]:
    """(context id, control header, fragment) of each PDV item in a P-DATA-TF body.

    Raises ValueError on an item that runs past the PDU (a malformed PDU).
    """
    view = memoryview(body)
    offset = 0
    end = len(view)
    while offset < end:
        if offset + 6 > end:
            raise ValueError("truncated PDV item header")
        (length,) = struct.unpack_from(">I", view, offset)
        if length < 2 or offset + 4 + length > end:
            raise ValueError(f"PDV item length {length} does not fit the PDU")
        yield view[offset + 4], view[offset + 5], view[offset + 6 : offset + 4 + length]
        offset += 4 + length


def recv_exact(sock: socket.socket, n: int) -> bytearray:
    """Exactly ``n`` bytes (the socket's own timeout applies); ConnectionError on EOF."""
    out = bytearray(n)
    view = memoryview(out)
    got = 0
    while got < n:
        r = sock.recv_into(view[got:], n - got)
        if r == 0:
            raise ConnectionError("the peer closed the connection")
        got += r
    return out


class Tap:
    """Stands between pynetdicom's DUL thread and the association's socket.

    The DUL thread asks ``_is_transport_event()`` on every turn whether a
    PDU came in; the tap answers instead. While ``held`` it answers "no"
    (another thread owns the socket's input: ``scu.RawStoreWriter``
    reading C-STORE responses); otherwise it lets ``claim`` take a PDU
    (``scp.fast_store``), and failing that asks pynetdicom's own method.
    The lock makes ``hold()`` wait out a PDU the DUL thread is reading.
    """

    def __init__(self, dul) -> None:
        self.dul = dul
        self.lock = threading.Lock()
        self.held = False
        self.claim: Callable[[], bool | None] | None = None
        # Bytes ``claim`` read past what it handled: the DUL thread must not
        # wait on the socket for what is already here.
        self.inbox = bytearray()
        self._library = dul._is_transport_event  # the library's bound method
        dul._is_transport_event = self._transport_event
        dul._pacsbox_tap = self

    @classmethod
    def of(cls, dul) -> Tap:
        tap = getattr(dul, "_pacsbox_tap", None)
        return tap if tap is not None else cls(dul)

    def _transport_event(self) -> bool:
        with self.lock:
            if self.held:
                return False
            if self.claim is not None:
                taken = self.claim()
                if taken is not None:
                    return taken
            return self._library()

    def hold(self) -> None:
        with self.lock:
            self.held = True

    def release(self) -> None:
        with self.lock:
            self.held = False
