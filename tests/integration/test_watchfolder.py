"""Watch folder: a file is imported only once complete, then moved to done/ or failed/.

Polls are driven by hand (``poll_once``) so the test decides what the writer
does between two polls; the thread loop is checked separately with a deadline.
"""

from __future__ import annotations

import functools
import io

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacsbox import config
from pacsbox.archive import Archive
from pacsbox.db import lookup
from pacsbox.media.watchfolder import WatchFolder, being_written
from tests.helpers import poll


@pytest.fixture
def store(tmp_path):
    ini = tmp_path / "PACSBOX.ini"
    ini.write_text("[storage]\nDataDirectory = data\n")
    arc = Archive(config.load(ini))
    yield functools.partial(arc.store, source="watch")
    arc.close()


def part10(rows: int = 64) -> tuple[bytes, str]:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "WATCH1"
    ds.Modality = "OT"
    ds.Rows = ds.Columns = rows
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(256)) * (rows * rows // 256)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), ds.SOPInstanceUID


def test_slow_writer_is_imported_only_when_complete(store, tmp_path):
    folder = tmp_path / "watch"
    watch = WatchFolder(folder, store)
    data, uid = part10()
    target = folder / "slow.dcm"
    chunk = len(data) // 5  # four chunks, then a last write that is never empty

    for i in range(4):  # like a slow network copy: a chunk between every two polls
        with open(target, "ab") as f:
            f.write(data[i * chunk : (i + 1) * chunk])
        assert watch.poll_once() == []
        assert target.exists() and lookup.find_instance(uid) is None
    with open(target, "ab") as f:
        f.write(data[4 * chunk :])
    assert watch.poll_once() == []  # changed since the last poll: not yet

    reports = watch.poll_once()  # unchanged across two polls: complete

    assert [len(r.imported) for r in reports] == [1]
    assert lookup.find_instance(uid) is not None
    assert not target.exists() and (folder / "done" / "slow.dcm").read_bytes() == data


def test_file_held_open_by_its_writer_waits(store, tmp_path):
    folder = tmp_path / "watch"
    watch = WatchFolder(folder, store)
    data, uid = part10()
    with open(folder / "open.dcm", "wb") as f:
        f.write(data)
        f.flush()
        if not being_written(folder / "open.dcm"):
            pytest.skip("file leases (F_SETLEASE) not available here; size/mtime check only")
        for _ in range(3):  # stable size and mtime, but a writer still has it open
            assert watch.poll_once() == []
    watch.poll_once()
    assert lookup.find_instance(uid) is not None
    assert (folder / "done" / "open.dcm").exists()


def test_junk_goes_to_failed_with_reason_and_partials_are_left_alone(store, tmp_path):
    folder = tmp_path / "watch"
    watch = WatchFolder(folder, store)
    (folder / "junk.dcm").write_bytes(b"definitely not DICOM\n" * 20)
    (folder / "copying.dcm.part").write_bytes(b"half a file")
    (folder / ".hidden.dcm").write_bytes(b"editor swap")

    watch.poll_once()
    watch.poll_once()

    assert (folder / "failed" / "junk.dcm").exists()
    reason = (folder / "failed" / "junk.dcm.reason.txt").read_text()
    assert "rejected junk.dcm: not DICOM (no DICM prefix and not a data set)" in reason
    assert (folder / "copying.dcm.part").exists() and (folder / ".hidden.dcm").exists()
    assert sorted(p.name for p in (folder / "done").iterdir()) == []


def test_same_name_twice_and_duplicates(store, tmp_path):
    folder = tmp_path / "watch"
    watch = WatchFolder(folder, store)
    data, uid = part10()
    for _ in range(2):
        (folder / "a.dcm").write_bytes(data)
        watch.poll_once()
        watch.poll_once()
    assert sorted(p.name for p in (folder / "done").iterdir()) == ["a.dcm", "a.dcm.1"]


def test_thread_loop_imports_and_beats(store, tmp_path):
    folder = tmp_path / "watch"
    beats = []
    watch = WatchFolder(folder, store, heartbeat=lambda: beats.append(1), interval=0.05)
    data, uid = part10()
    (folder / "drop.dcm").write_bytes(data)
    watch.start()
    try:
        poll(
            lambda: (folder / "done" / "drop.dcm").exists(),
            timeout=30,
            what="the watch folder to import the file",
        )
    finally:
        watch.stop()
    assert lookup.find_instance(uid) is not None
    assert len(beats) >= 2
