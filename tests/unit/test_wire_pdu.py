"""P-DATA-TF and command sets written and read by hand: round trips through pynetdicom.

What the peer sees must be what pynetdicom itself would decode: these tests
feed our bytes to pynetdicom's own PDU and DIMSE decoders, and a large
two-part send through a socket with a tiny buffer (partial sends) must
arrive whole and in order.
"""

from __future__ import annotations

import socket
import threading
import types

from pydicom.filebase import DicomBytesIO
from pynetdicom.dsutils import decode
from pynetdicom.pdu import P_DATA_TF

from pacsbox.wire import pdu
from pacsbox.wire.send import RawStoreWriter


def test_store_response_decodes_in_pynetdicom():
    command = pdu.store_response("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5", 7, 0xA700)
    raw = pdu.pdu_header(len(command), 1, pdu.COMMAND | pdu.LAST) + command
    decoded = P_DATA_TF()
    decoded.decode(raw)
    (item,) = decoded.presentation_data_value_items
    assert item.context_id == 1
    assert item.data[0] == pdu.COMMAND | pdu.LAST
    cmd = decode(DicomBytesIO(item.data[1:]), True, True)
    assert cmd.CommandField == 0x8001
    assert cmd.MessageIDBeingRespondedTo == 7
    assert cmd.Status == 0xA700
    assert cmd.AffectedSOPInstanceUID == "1.2.3.4.5"
    assert cmd.CommandGroupLength == len(command) - 12


def _decoded_command(command: bytes):
    raw = pdu.pdu_header(len(command), 1, pdu.COMMAND | pdu.LAST) + command
    decoded = P_DATA_TF()
    decoded.decode(raw)
    (item,) = decoded.presentation_data_value_items
    return decode(DicomBytesIO(item.data[1:]), True, True)


def test_store_request_decodes_in_pynetdicom():
    cmd = _decoded_command(
        pdu.store_request("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 9, "MOVESCU", 5)
    )
    assert cmd.CommandField == 0x0001
    assert (cmd.MessageID, cmd.Priority, cmd.CommandDataSetType) == (9, 0, 0)
    assert cmd.AffectedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert cmd.AffectedSOPInstanceUID == "1.2.3.4"
    assert (cmd.MoveOriginatorApplicationEntityTitle, cmd.MoveOriginatorMessageID) == (
        "MOVESCU",
        5,
    )
    plain = _decoded_command(pdu.store_request("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 9))
    assert "MoveOriginatorApplicationEntityTitle" not in plain


def test_get_pending_decodes_in_pynetdicom_with_counts_capped():
    cmd = _decoded_command(pdu.get_pending("1.2.840.10008.5.1.4.1.2.2.3", 3, -1, 70000, 2, 1))
    assert (cmd.CommandField, cmd.MessageIDBeingRespondedTo, cmd.Status) == (0x8010, 3, 0xFF00)
    assert cmd.CommandDataSetType == 0x0101
    assert cmd.NumberOfRemainingSuboperations == 0
    assert cmd.NumberOfCompletedSuboperations == 65535
    assert (cmd.NumberOfFailedSuboperations, cmd.NumberOfWarningSuboperations) == (2, 1)


def test_command_parse_and_pdv_split():
    command = pdu.command_set(
        pdu.element(pdu.AFFECTED_SOP_CLASS, pdu.ui("1.2.840.10008.5.1.4.1.1.2")),
        pdu.element(pdu.COMMAND_FIELD, pdu.us(pdu.C_STORE_RQ)),
        pdu.element(pdu.MESSAGE_ID, pdu.us(42)),
        pdu.element(pdu.MOVE_ORIGINATOR_AE, pdu.ae_title("MOVESCU")),
        pdu.element(pdu.AFFECTED_SOP_INSTANCE, pdu.ui("1.2.3")),
    )
    body = (
        pdu.pdu_header(len(command), 3, 0x03)[6:] + command
        + pdu.pdu_header(4, 3, 0x02)[6:] + b"DATA"
    )  # fmt: skip
    items = list(pdu.pdvs(body))
    assert [(cx, ctl) for cx, ctl, _ in items] == [(3, 0x03), (3, 0x02)]
    cmd = pdu.Command(bytes(items[0][2]))
    assert cmd.field == pdu.C_STORE_RQ and cmd.numbers[pdu.MESSAGE_ID] == 42
    assert cmd.texts[pdu.AFFECTED_SOP_INSTANCE] == "1.2.3"
    assert cmd.texts[pdu.MOVE_ORIGINATOR_AE] == "MOVESCU"
    assert bytes(items[1][2]) == b"DATA"
    try:
        list(pdu.pdvs(body[:-2]))
    except ValueError:
        pass
    else:
        raise AssertionError("a PDV running past the PDU must be refused")


def test_two_part_send_survives_partial_sends():
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    head = b"H" * 300
    data = bytes(range(256)) * 4096  # 1 MB: far more than one sendmsg can take
    got = bytearray()

    def reader():
        while len(got) < len(head) + len(data):
            chunk = b.recv(65536)
            if not chunk:
                break
            got.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    RawStoreWriter._send_parts(types.SimpleNamespace(sock=a), head, memoryview(data))
    t.join(10)
    a.close()
    b.close()
    assert bytes(got) == head + data
