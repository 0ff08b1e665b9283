"""DIMSE messages on the wire: P-DATA-TF PDUs and command sets read and written by hand.

Pure encoding and decoding (PS3.8 9.3.5 P-DATA-TF, E.2 message control
header; PS3.7 9.3.1 C-STORE and 9.3.2 C-FIND command sets, Implicit VR
Little Endian), so the hot messages cost a few byte operations instead of
pynetdicom's PDU objects and pydicom-encoded command sets.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

P_DATA_TF = 0x04

# Message control header bits (PS3.8 E.2)
COMMAND = 0x01
LAST = 0x02

# Command Field values (PS3.7 E.1)
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_FIND_RSP = 0x8020
C_GET_RSP = 0x8010
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
REMAINING = 0x1020
COMPLETED = 0x1021
FAILED = 0x1022
WARNING = 0x1023

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
    # A peer's malformed UID echoed back in a response must not fail to encode.
    raw = uid.encode("ascii", "replace")
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


def store_request(
    sop_class: str,
    sop_instance: str,
    msg_id: int,
    originator_ae: str | None = None,
    originator_id: int | None = None,
) -> bytes:
    """A C-STORE-RQ command set, medium priority (PS3.7 9.3.1.1)."""
    parts = [
        element(AFFECTED_SOP_CLASS, ui(sop_class)),
        element(COMMAND_FIELD, us(C_STORE_RQ)),
        element(MESSAGE_ID, us(msg_id)),
        element(PRIORITY, us(0x0000)),
        element(DATA_SET_TYPE, us(HAS_DATA_SET)),
        element(AFFECTED_SOP_INSTANCE, ui(sop_instance)),
    ]
    if originator_ae:
        parts.append(element(MOVE_ORIGINATOR_AE, ae_title(originator_ae)))
        parts.append(element(MOVE_ORIGINATOR_ID, us(int(originator_id or 0))))
    return command_set(*parts)


def get_pending(
    sop_class: str, msg_id: int, remaining: int, completed: int, failed: int, warning: int
) -> bytes:
    """A pending (FF00) C-GET-RSP command set with its sub-operation counts (PS3.7 9.3.3.2)."""
    return command_set(
        element(AFFECTED_SOP_CLASS, ui(sop_class)),
        element(COMMAND_FIELD, us(C_GET_RSP)),
        element(MESSAGE_ID_RESPONDED, us(msg_id)),
        element(DATA_SET_TYPE, us(NO_DATA_SET)),
        element(STATUS, us(0xFF00)),
        element(REMAINING, us(min(max(remaining, 0), 0xFFFF))),
        element(COMPLETED, us(min(completed, 0xFFFF))),
        element(FAILED, us(min(failed, 0xFFFF))),
        element(WARNING, us(min(warning, 0xFFFF))),
    )


def send_message(
    sock: socket.socket,
    cx_id: int,
    command: bytes,
    dataset: bytes | bytearray | memoryview | None = None,
    fragment: int = 1 << 20,
) -> None:
    """One DIMSE message as P-DATA-TF PDUs: the command, then the data set in fragments."""
    out: list[bytes | memoryview] = [pdu_header(len(command), cx_id, COMMAND | LAST), command]
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
            if offset + 8 + length > end:
                break  # a truncated element: what came before it is all there is
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


def pdvs(body: bytes | bytearray | memoryview) -> Iterator[tuple[int, int, memoryview]]:
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
