"""The outbound delivery (what forwards, routes and backups send with) against real peers:
DCMTK storescp, one that accepts only Implicit VR Little Endian, a port nobody
answers, and a pynetdicom SCP that refuses one instance."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, MRImageStorage  # type: ignore[attr-defined]

from pacsbox import meta
from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import lookup
from pacsbox.outbound.deliver import deliver, peer_of
from pacsbox.scu import Peer
from tests.helpers import cli, free_port, write_config
from tests.peers import StoreSCP
from tests.synth import make_instance

STUDY = "1.2.826.0.1.3680043.8.498.424242.1"


@pytest.fixture
def box(tmp_path):
    ini = write_config(tmp_path / "box", SyncWrites="no")
    archive = Archive(load(ini))
    sent = [make_instance(study_uid=STUDY) for _ in range(3)]
    rle = Path(get_testdata_file("MR_small_RLE.dcm")).read_bytes()
    for data in sent:
        archive.store(data, source="test")
    archive.store(rle, source="test")
    yield ini, archive, {meta.parse(d).attrs.sop_instance_uid: d for d in [*sent, rle]}
    archive.close()


def _dataset(data: bytes) -> bytes:
    return data[meta.parse(data).dataset_offset :]


def test_a_study_arrives_byte_for_byte_and_acknowledgements_are_reported(box, tmp_path):
    ini, archive, originals = box
    scp = StoreSCP(tmp_path / "ws", "WORKSTATION", "+xa", "+B", ini=ini)  # all syntaxes, as sent
    try:
        items = lookup.stored_selection(sop_uids=list(originals))
        seen: list[list[int]] = []
        progress: list[tuple[int, int]] = []
        out = deliver("PACSBOX", peer_of("WORKSTATION"), items, acknowledged=seen.append,
                      progress=lambda d, t: progress.append((d, t)), batch=2)  # fmt: skip
    finally:
        scp.stop()
    assert not out.refused and not out.unreachable, out.summary()
    assert sorted(out.acknowledged) == sorted(i for i, _ in items)
    assert [len(b) for b in seen] == [2, 2]  # in batches, and the rest at the end
    assert progress[-1] == (4, 4)
    got = {pydicom.dcmread(f).SOPInstanceUID: f.read_bytes() for f in scp.files()}
    assert got.keys() == originals.keys()
    for uid, data in got.items():  # what the box holds, as it holds it
        assert _dataset(data) == _dataset(archive.read_part10(lookup.find_instance(uid))), uid
    assert out.summary() == "4 delivered"


def test_a_peer_that_accepts_only_implicit_gets_converted_images(box, tmp_path):
    ini, _, originals = box
    scp = StoreSCP(tmp_path / "implicit", "IMPLICIT", "+xi", ini=ini)
    try:
        items = lookup.stored_selection(sop_uids=list(originals))
        out = deliver("PACSBOX", peer_of("IMPLICIT"), items)
    finally:
        scp.stop()
    assert len(out.acknowledged) == 4 and out.converted == 4, out.summary()
    want = pydicom.dcmread(get_testdata_file("MR_small.dcm"))  # the RLE file, uncompressed
    files = [pydicom.dcmread(f) for f in scp.files()]
    assert len(files) == 4
    for ds in files:
        assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
        if ds.SOPClassUID == MRImageStorage:
            assert np.array_equal(ds.pixel_array, want.pixel_array)
        else:
            original = pydicom.dcmread(io.BytesIO(originals[ds.SOPInstanceUID]))
            assert np.array_equal(ds.pixel_array, original.pixel_array)


def test_nobody_listening_is_unreachable_with_the_reason(box):
    items = lookup.stored_selection(study_uids=[STUDY])
    out = deliver("PACSBOX", Peer("GONE", "127.0.0.1", free_port()), items, timeout=5)
    assert out.acknowledged == [] and out.refused == {}
    assert out.unreachable.startswith("GONE (127.0.0.1:"), out.unreachable


def test_a_refused_instance_is_reported_with_its_status_and_the_rest_delivered(box):
    _, _, originals = box
    items = lookup.stored_selection(study_uids=[STUDY])
    refuse = items[1][1].sop_instance_uid
    received: list[str] = []

    def on_store(event):
        uid = event.request.AffectedSOPInstanceUID
        if uid == refuse:
            return 0xA700
        received.append(uid)
        return 0x0000 if len(received) == 1 else 0xB007

    ae = AE("REFUSER")
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)  # as stored
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])  # fmt: skip
    try:
        out = deliver("PACSBOX", Peer("REFUSER", "127.0.0.1", port), items)
    finally:
        server.shutdown()
    assert out.refused == {refuse: 0xA700}
    assert len(out.acknowledged) == 2 and list(out.warnings.values()) == [0xB007]
    assert out.summary() == "2 delivered (1 with warning B007), 1 refused (status A700)"


def test_an_unknown_ae_is_a_clear_error(box):
    ini, _, _ = box
    from pacsbox.errors import NotFound, UsageError

    with pytest.raises(NotFound, match="not in the AE table"):
        peer_of("NOBODY")
    cli(ini, "ae", "add", "NOPORT", "--host", "127.0.0.1")
    with pytest.raises(UsageError, match="no host and port"):
        peer_of("NOPORT")
