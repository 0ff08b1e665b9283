"""The C-STORE receive path that bypasses pynetdicom's decoder (wire.receive).

storescu and the corpus test exercise the common shape (one command PDU, then
data PDUs of one fragment each). Here a peer speaks the protocol by hand over
an association pynetdicom negotiated, in the shapes the standard allows and
the ones it forbids, and a pynetdicom SCU mixes C-STOREs with other messages
on one association. What a user checks: stored bytes equal sent bytes, every
request gets its response, a protocol violation ends that association only
and stores nothing.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from pacsbox.db import close_database, open_database
from pacsbox.db.lookup import instance_path
from pacsbox.db.models import Instance
from tests.helpers import dcmtk, poll
from tests.synth import make_instance

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def dataset_of(part10: bytes) -> bytes:
    (meta_len,) = struct.unpack_from("<I", part10, 140)
    return part10[144 + meta_len :]


def command(sop_uid: str, msg_id: int = 1) -> bytes:
    def el(elem: int, value: bytes) -> bytes:
        return struct.pack("<HHI", 0, elem, len(value)) + value

    def ui(uid: str) -> bytes:
        raw = uid.encode()
        return raw + b"\0" * (len(raw) % 2)

    body = b"".join([
        el(0x0002, ui(CTImageStorage)), el(0x0100, struct.pack("<H", 0x0001)),
        el(0x0110, struct.pack("<H", msg_id)), el(0x0700, struct.pack("<H", 0)),
        el(0x0800, struct.pack("<H", 0)), el(0x1000, ui(sop_uid)),
    ])  # fmt: skip
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def pdv(cx_id: int, control: int, data: bytes) -> bytes:
    return struct.pack(">IBB", len(data) + 2, cx_id, control) + data


def pdu(*items: bytes) -> bytes:
    body = b"".join(items)
    return struct.pack(">BBI", 0x04, 0, len(body)) + body


class RawPeer:
    """An association negotiated by pynetdicom whose socket the test then drives by hand."""

    def __init__(self, server) -> None:
        ae = AE(ae_title="STORESCU")
        ae.add_requested_context(CTImageStorage, EXPLICIT_LE)
        ae.add_requested_context(Verification)
        self.assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
        assert self.assoc.is_established
        # Keep pynetdicom's own threads off the socket: the test speaks for it.
        self.assoc._reactor_checkpoint.clear()
        self.assoc.dul._is_transport_event = lambda: False
        self.sock = self.assoc.dul.socket.socket
        self.sock.settimeout(10)
        self.cx = next(
            c.context_id
            for c in self.assoc.accepted_contexts
            if c.abstract_syntax == CTImageStorage
        )

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_pdu(self) -> tuple[int, bytes]:
        head = self._exact(6)
        kind, _, length = struct.unpack(">BBI", head)
        return kind, self._exact(length)

    def store_status(self) -> int:
        kind, body = self.read_pdu()
        assert kind == 0x04, f"expected a P-DATA-TF, got PDU type {kind:#x}"
        (item_len,) = struct.unpack_from(">I", body, 0)
        cmd = body[6 : 4 + item_len]
        offset = 0
        fields = {}
        while offset < len(cmd):
            _, elem, n = struct.unpack_from("<HHI", cmd, offset)
            fields[elem] = cmd[offset + 8 : offset + 8 + n]
            offset += 8 + n
        assert struct.unpack("<H", fields[0x0100])[0] == 0x8001  # C-STORE-RSP
        return struct.unpack("<H", fields[0x0900])[0]

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    def vanish(self) -> None:
        """Drop the connection without a word (a modality switched off mid-image)."""
        self.sock.shutdown(socket.SHUT_RDWR)
        self.close()

    def close(self) -> None:
        """Hand the socket back to pynetdicom so its abort does not wait for an answer."""
        del self.assoc.dul._is_transport_event
        self.assoc._reactor_checkpoint.set()
        self.assoc.abort()


def stored(server) -> dict[str, bytes]:
    open_database(server.cfg.database_url, run_migrations=False)
    try:
        return {i.sop_instance_uid: instance_path(i).read_bytes() for i in Instance.select()}
    finally:
        close_database()


def test_command_and_data_in_one_pdu_and_many_small_fragments(server):
    a = make_instance(rows=32, columns=32, pixel_seed=1)
    b = make_instance(rows=32, columns=32, pixel_seed=2)
    uid_a = str(pydicom.dcmread(pydicom.filebase.DicomBytesIO(a)).SOPInstanceUID)
    uid_b = str(pydicom.dcmread(pydicom.filebase.DicomBytesIO(b)).SOPInstanceUID)
    ds_a, ds_b = dataset_of(a), dataset_of(b)
    peer = RawPeer(server)
    try:
        # 1. The command and the whole data set as two PDVs of one PDU.
        peer.send(pdu(pdv(peer.cx, 0x03, command(uid_a, 1)), pdv(peer.cx, 0x02, ds_a)))
        assert peer.store_status() == 0x0000
        # 2. The data set in 100-byte fragments, three PDVs per PDU.
        peer.send(pdu(pdv(peer.cx, 0x03, command(uid_b, 2))))
        frags = [ds_b[i : i + 100] for i in range(0, len(ds_b), 100)]
        items = [
            pdv(peer.cx, 0x02 if k == len(frags) - 1 else 0x00, f) for k, f in enumerate(frags)
        ]
        for k in range(0, len(items), 3):
            peer.send(pdu(*items[k : k + 3]))
        assert peer.store_status() == 0x0000
    finally:
        peer.close()
    got = stored(server)
    assert dataset_of(got[uid_a]) == ds_a
    assert dataset_of(got[uid_b]) == ds_b


@pytest.mark.parametrize("violation,logged", [
    ("other context", "unexpected PDV"),
    ("command inside data", "unexpected PDV"),
    ("unknown PDU type", "unknown PDU type 0xFF"),
    ("PDU of 4 GB", "a PDU of 4294967280 bytes"),
])  # fmt: skip
def test_protocol_violation_aborts_that_association_and_stores_nothing(server, violation, logged):
    data = make_instance(rows=16, columns=16)
    uid = str(pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)).SOPInstanceUID)
    ds = dataset_of(data)
    peer = RawPeer(server)
    try:
        peer.send(pdu(pdv(peer.cx, 0x03, command(uid))))
        peer.send(pdu(pdv(peer.cx, 0x00, ds[:50])))
        if violation == "other context":
            peer.send(pdu(pdv(peer.cx + 2, 0x02, ds[50:])))
        elif violation == "command inside data":
            peer.send(pdu(pdv(peer.cx, 0x03, command(uid, 2))))
        elif violation == "unknown PDU type":
            peer.send(b"\xff\x00" + struct.pack(">I", 4) + b"\0" * 4)
        else:  # a header that claims more than any receive buffer should hold
            peer.send(struct.pack(">BBI", 0x04, 0, 0xFFFFFFF0) + b"\0" * 32)
        kind, _ = peer.read_pdu()
        assert kind == 0x07, f"expected an A-ABORT, got PDU type {kind:#x}"
    finally:
        peer.close()
    poll(lambda: logged in server.output(), 10, what="the abort in the log")
    assert stored(server) == {}
    r = dcmtk("echoscu", "-aet", "STORESCU", "-aec", server.ae_title, "127.0.0.1", str(server.port))
    assert r.returncode == 0


def test_peer_vanishing_mid_data_set_stores_nothing(server):
    data = make_instance(rows=16, columns=16)
    uid = str(pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)).SOPInstanceUID)
    peer = RawPeer(server)
    peer.send(pdu(pdv(peer.cx, 0x03, command(uid))))
    peer.send(pdu(pdv(peer.cx, 0x00, dataset_of(data)[:64])))
    peer.vanish()
    poll(lambda: "aborted" in server.output(), 10, what="the association to end")
    assert stored(server) == {}


def test_stores_mixed_with_echo_and_find_on_one_association(server, tmp_path):
    """pynetdicom as the SCU: C-ECHO, C-STORE, C-FIND, C-STORE, C-ECHO in turn."""
    files = []
    for k in range(2):
        path = tmp_path / f"{k}.dcm"
        path.write_bytes(make_instance(rows=16, columns=16, patient_id="MIX1", pixel_seed=k))
        files.append(path)
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, EXPLICIT_LE)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0
        assert assoc.send_c_store(pydicom.dcmread(files[0])).Status == 0
        ident = pydicom.Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.PatientID = "MIX1"
        ident.StudyInstanceUID = ""
        found = [
            rsp.Status
            for rsp, _ in assoc.send_c_find(ident, StudyRootQueryRetrieveInformationModelFind)
        ]
        assert found[-1] == 0 and 0xFF00 in found
        assert assoc.send_c_store(pydicom.dcmread(files[1])).Status == 0
        assert assoc.send_c_echo().Status == 0
    finally:
        assoc.release()
    poll(lambda: "released: 2 stored" in server.output(), 10, what="the release line")
    got = stored(server)
    assert len(got) == 2
    for path in files:
        uid = str(pydicom.dcmread(path).SOPInstanceUID)
        assert dataset_of(got[uid]) == dataset_of(Path(path).read_bytes())


def test_small_pdus_from_storescu(server, tmp_path):
    """storescu limited to 4 KB PDUs: a 128x128 image arrives in about 9 of them."""
    path = tmp_path / "img.dcm"
    path.write_bytes(make_instance(rows=128, columns=128))
    r = dcmtk("storescu", "-aet", "STORESCU", "-aec", server.ae_title, "--max-send-pdu", "4096",
              "127.0.0.1", str(server.port), str(path))  # fmt: skip
    assert r.returncode == 0, r.stderr
    uid = str(pydicom.dcmread(path).SOPInstanceUID)
    assert dataset_of(stored(server)[uid]) == dataset_of(path.read_bytes())
