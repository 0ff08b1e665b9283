"""DCMTK storescu sends every file pydicom ships; what it stores must come back byte for byte.

Expectations are computed from the files themselves (with pydicom), never
from the index: a file whose data set has its four UIDs must be stored with
its data set unchanged; one without them must be refused with A900 and leave
nothing behind; files that are not DICOM at all are refused by storescu
before they reach us, and the raw-bytes test below sends those anyway.
"""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, RTPlanStorage

from pacsbox.db import close_database, open_database
from pacsbox.db.lookup import instance_path
from pacsbox.db.models import Instance
from tests.helpers import DCMTK_ENV, Server, cli, dcmtk, free_port, poll, write_config

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"

# storescu's option that proposes exactly the file's transfer syntax, so the
# data set travels unconverted and byte identity is a fair test.
PROPOSE = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.5": "-xr",
}
UID_KEYS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def _dataset_bytes(data: bytes) -> bytes:
    """The data set part of a Part-10 file (after preamble, DICM and group 0002)."""
    if data[128:132] != b"DICM":
        return data
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    meta_len = ds.file_meta.get("FileMetaInformationGroupLength")
    return data[132 + 12 + meta_len :]


def _describe(path: Path) -> dict | None:
    """What pydicom says about a file, or None when it is not a readable DICOM file."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        if len(ds) == 0:
            return None
        ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if ds.file_meta else ""
        sop = str(ds.get("SOPInstanceUID", "") or "")
    except Exception:  # noqa: BLE001 - anything pydicom cannot read is "not DICOM"
        return None
    complete = all(str(ds.get(k, "") or "").strip() for k in UID_KEYS)
    return {"ts": ts, "sop": sop, "complete": complete}


def _corpus() -> list[Path]:
    return sorted(p for p in TEST_FILES.iterdir() if p.is_file())


@pytest.fixture(params=["yes", "no"], ids=["fast-receive", "pynetdicom-receive"])
def server(tmp_path, request):
    """Both receive paths (FastStoreReceive): each must store every file as sent."""
    ini = write_config(tmp_path / "box", FastStoreReceive=request.param)
    cli(ini, "ae", "add", "STORESCU", "--host", "127.0.0.1")
    srv = Server(ini).start()
    yield srv
    srv.stop()


@pytest.fixture
def reference_scp(tmp_path):
    """DCMTK storescp writing exactly what it receives (+B): the bytes storescu puts on the wire."""
    out = tmp_path / "ref"
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        ["storescp", "+B", "+xa", "-aet", "REF", "-od", str(out), str(port)],
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    poll(
        lambda: dcmtk("echoscu", "-aec", "REF", "127.0.0.1", str(port)).returncode == 0,
        what="reference storescp",
    )
    yield port, out
    proc.terminate()
    proc.wait(10)


def _wire_bytes(ref_dir: Path) -> dict[str, bytes]:
    out = {}
    for p in ref_dir.iterdir():
        data = p.read_bytes()
        sop = str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
        out[sop] = _dataset_bytes(data)
    return out


def test_every_pydicom_file(server, reference_scp):
    ref_port, ref_dir = reference_scp
    sent_ok: dict[str, Path] = {}
    refused: list[str] = []
    not_sendable: list[str] = []
    for path in _corpus():
        info = _describe(path)
        opt = PROPOSE.get(info["ts"]) if info else None
        args = (
            ["-R"]
            + ([opt] if opt else [])
            + [
                "-aet",
                "STORESCU",
                "-aec",
                server.ae_title,
                "127.0.0.1",
                str(server.port),
                str(path),
            ]
        )
        r = dcmtk("storescu", *args)
        if r.returncode == 0:
            ref = args[:-5] + ["-aec", "REF", "127.0.0.1", str(ref_port), str(path)]
            dcmtk("storescu", *ref, check=True)
            assert info is not None and info["complete"], f"{path.name} should have been refused"
            sent_ok[info["sop"]] = path
        elif (
            "Received Store Response" in r.stderr
            or "DataSetDoesNotMatchSOPClass" in r.stderr
            or (info and info["sop"] and "missing SOP" not in r.stderr)
        ):
            refused.append(path.name)
            assert info is not None and not info["complete"], (
                f"{path.name} has all its UIDs but was refused: {r.stderr[-300:]}"
            )
        else:
            not_sendable.append(path.name)
    # The corpus is big enough to mean something.
    assert len(sent_ok) >= 25, sent_ok
    assert refused, "the files lacking Study/Series UIDs must reach us and be refused"
    open_database(server.cfg.database_url, run_migrations=False)
    try:
        rows = {i.sop_instance_uid: i for i in Instance.select()}
        assert set(rows) == set(sent_ok), "index must hold exactly what storescu saw stored"
        wire = _wire_bytes(ref_dir)
        for sop, src in sent_ok.items():
            stored = instance_path(rows[sop]).read_bytes()
            assert _dataset_bytes(stored) == wire[sop], f"{src.name} was not stored as received"
        files = [p for p in Path(server.cfg.ArchiveDirectory).rglob("*") if p.is_file()]
        assert len(files) == len(sent_ok), "refused objects must leave no file behind"
    finally:
        close_database()
    # Still serving after all of that.
    assert (
        dcmtk(
            "echoscu", "-aet", "STORESCU", "-aec", server.ae_title, "127.0.0.1", str(server.port)
        ).returncode
        == 0
    )


@pytest.mark.parametrize(
    "name", ["MR_truncated.dcm", "rtplan_truncated.dcm", "README.txt", "no_meta.dcm", "zipMR.gz"]
)
def test_broken_bytes_are_refused(server, name, tmp_path):
    """Bytes storescu would not send, pushed raw: a failure status and nothing stored."""
    raw = (TEST_FILES / name).read_bytes()
    # Wrap the raw bytes as a Part-10 file claiming CT so the SCU sends them unread.
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7"
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    path = tmp_path / "raw.dcm"
    with open(path, "wb") as fh:
        fh.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(fh, meta)
        fh.write(raw[132:] if raw[128:132] == b"DICM" else raw)
    ae = AE(ae_title="STORESCU")
    for sop_class in (CTImageStorage, MRImageStorage, RTPlanStorage):
        for ts in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2"):
            ae.add_requested_context(sop_class, ts)
    old = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
        assert assoc.is_established
        status = assoc.send_c_store(path)
        assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
    assert status.Status in (0xC000, 0xA900), hex(status.Status)
    files = [p for p in Path(server.cfg.ArchiveDirectory).rglob("*") if p.is_file()]
    assert files == []
    assert "failed (0x" in server.output()
    assert os.path.exists(server.cfg.status_path)
