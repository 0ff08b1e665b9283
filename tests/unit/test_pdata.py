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

from pacsbox import pdata
from pacsbox.scu import RawStoreWriter


def test_store_response_decodes_in_pynetdicom():
    command = pdata.store_response("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5", 7, 0xA700)
    pdu = pdata.pdu_header(len(command), 1, pdata.COMMAND | pdata.LAST) + command
    decoded = P_DATA_TF()
    decoded.decode(pdu)
    (item,) = decoded.presentation_data_value_items
    assert item.context_id == 1
    assert item.data[0] == pdata.COMMAND | pdata.LAST
    cmd = decode(DicomBytesIO(item.data[1:]), True, True)
    assert cmd.CommandField == 0x8001
    assert cmd.MessageIDBeingRespondedTo == 7
    assert cmd.Status == 0xA700
    assert cmd.AffectedSOPInstanceUID == "1.2.3.4.5"
    assert cmd.CommandGroupLength == len(command) - 12


def test_command_parse_and_pdv_split():
    command = pdata.command_set(
        pdata.element(pdata.AFFECTED_SOP_CLASS, pdata.ui("1.2.840.10008.5.1.4.1.1.2")),
        pdata.element(pdata.COMMAND_FIELD, pdata.us(pdata.C_STORE_RQ)),
        pdata.element(pdata.MESSAGE_ID, pdata.us(42)),
        pdata.element(pdata.MOVE_ORIGINATOR_AE, pdata.ae_title("MOVESCU")),
        pdata.element(pdata.AFFECTED_SOP_INSTANCE, pdata.ui("1.2.3")),
    )
    body = (
        pdata.pdu_header(len(command), 3, 0x03)[6:] + command
        + pdata.pdu_header(4, 3, 0x02)[6:] + b"DATA"
    )  # fmt: skip
    items = list(pdata.pdvs(body))
    assert [(cx, ctl) for cx, ctl, _ in items] == [(3, 0x03), (3, 0x02)]
    cmd = pdata.Command(bytes(items[0][2]))
    assert cmd.field == pdata.C_STORE_RQ and cmd.numbers[pdata.MESSAGE_ID] == 42
    assert cmd.texts[pdata.AFFECTED_SOP_INSTANCE] == "1.2.3"
    assert cmd.texts[pdata.MOVE_ORIGINATOR_AE] == "MOVESCU"
    assert bytes(items[1][2]) == b"DATA"
    try:
        list(pdata.pdvs(body[:-2]))
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
