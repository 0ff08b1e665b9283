"""Importing media through the real archive: File-set Reader, ISO discs, hostile media, ZIPs.

A user checks that every instance of the medium is in the index, that the
report names every skipped file with its reason, and that nothing outside
the medium was read (a valid DICOM file placed just outside the medium and
reachable only through ``..``, an absolute path or a symlink is never stored).
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import socket
import stat
import subprocess
import threading
import warnings
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacsbox import config
from pacsbox.archive import Archive
from pacsbox.db import lookup
from pacsbox.media.importer import ImportReport, run_import, run_import_files

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
DICOMDIRTESTS = TEST_FILES / "dicomdirtests"


@pytest.fixture
def archive(tmp_path):
    ini = tmp_path / "PACSBOX.ini"
    ini.write_text("[storage]\nDataDirectory = data\n")
    arc = Archive(config.load(ini))
    yield arc
    arc.close()


@pytest.fixture
def store(archive):
    return functools.partial(archive.store, source="import")


def make_instance(i: int = 0, study: str | None = None, rows: int = 8) -> Dataset:
    """A small CT image, enough for the archive to index it."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "IMP001"
    ds.PatientName = "Import^Test"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.SeriesNumber = 1
    ds.Modality = "CT"
    ds.InstanceNumber = i + 1
    ds.Rows = ds.Columns = rows
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(256)) * (rows * rows * 2 // 256)
    return ds


def write_part10(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def part10_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def stored(uid: str) -> bool:
    return lookup.find_instance(uid) is not None


def reasons(report: ImportReport) -> dict[str, str]:
    return {f.name: f.reason for f in report.rejected}


def write_dicomdir(path: Path, file_ids: list[list[str] | str]) -> None:
    """A DICOMDIR whose IMAGE records reference ``file_ids`` verbatim (hostile ones too)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.FileSetID = "HOSTILE"
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    records = []
    for _ in file_ids:
        rec = Dataset()
        rec.OffsetOfTheNextDirectoryRecord = 0
        rec.RecordInUseFlag = 0xFFFF
        rec.OffsetOfReferencedLowerLevelDirectoryEntity = 0
        rec.DirectoryRecordType = "IMAGE"
        rec.InstanceNumber = 1
        records.append(rec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hostile IDs are not valid CS values, on purpose
        for rec, fid in zip(records, file_ids, strict=True):
            rec.ReferencedFileID = fid
        ds.DirectoryRecordSequence = records
        ds.save_as(path, enforce_file_format=True)


# -- pydicom's own File-sets -------------------------------------------------------


@pytest.mark.parametrize("dicomdir", ["DICOMDIR", "TINY_ALPHA/DICOMDIR"])
def test_dicomdirtests_every_referenced_instance_is_stored(store, dicomdir):
    path = DICOMDIRTESTS / dicomdir
    fs = FileSet(pydicom.dcmread(path))
    expected = {inst.SOPInstanceUID for inst in fs}

    report = run_import(path.parent, store)  # the medium's root: DICOMDIR found there

    assert report.kind == "dicomdir"
    assert report.rejected == []
    assert len(report.imported) == len(fs)
    assert all(stored(uid) for uid in expected)
    again = run_import(path, store)  # the DICOMDIR path itself; all already present
    assert len(again.already_present) == len(fs) and not again.imported


def test_medium_without_dicomdir_is_scanned(store, tmp_path):
    medium = tmp_path / "stick"
    shutil.copytree(DICOMDIRTESTS / "77654033", medium / "PATIENT")
    (medium / "README.TXT").write_text("viewer instructions\n")

    report = run_import(medium, store)

    assert report.kind == "folder"
    assert len(report.imported) == 7
    assert reasons(report) == {"README.TXT": "not DICOM (no DICM prefix and not a data set)"}


# -- a CD built with xorriso, names as Linux shows them ------------------------------


def test_iso9660_level1_cd_lowercase_names(store, tmp_path):
    staging = tmp_path / "staging"
    study = generate_uid()
    fs = FileSet()
    uids = []
    for i in range(5):
        ds = make_instance(i, study)
        uids.append(ds.SOPInstanceUID)
        fs.add(ds)
    fs.write(staging)  # DICOMDIR + PT000000/ST000000/SE000000/IM00000n
    iso = tmp_path / "cd.iso"
    subprocess.run(
        ["xorriso", "-outdev", str(iso), "-compliance", "iso_9660_level=1", "-rockridge", "off"]
        + ["-joliet", "off", "-volid", "PATIENTCD", "-map", str(staging), "/"],
        check=True,
        capture_output=True,
    )
    # Extract as the Linux kernel presents a plain ISO 9660 disc (isofs map=normal):
    # lowercase names, no ";1" versions.
    mnt = tmp_path / "mnt"
    subprocess.run(
        ["xorriso", "-ecma119_map", "lowercase", "-osirrox", "on", "-indev", str(iso)]
        + ["-extract", "/", str(mnt)],
        check=True,
        capture_output=True,
    )
    names = {p.name for p in mnt.rglob("*")}
    assert "dicomdir" in names and "DICOMDIR" not in names
    assert "im000000" in names  # while the DICOMDIR records say IM000000

    report = run_import(mnt, store)

    assert report.kind == "dicomdir", report.lines()
    assert report.rejected == []
    assert len(report.imported) == 5
    assert all(stored(uid) for uid in uids)


# -- hostile media ----------------------------------------------------------------


def _hostile_medium(tmp_path: Path) -> tuple[Path, dict[str, str], str]:
    """A medium with two good files and one of each hostile case; returns good names->UIDs."""
    medium = tmp_path / "medium"
    outside = tmp_path / "outside"
    secret = make_instance(99)
    write_part10(secret, outside / "SECRET")
    good = {}
    for name in ("GOOD1", "DIR/GOOD2"):
        ds = make_instance(len(good))
        write_part10(ds, medium / name)
        good[name] = ds.SOPInstanceUID
    os.symlink(outside / "SECRET", medium / "LINKFILE")
    os.symlink(outside, medium / "LINKDIR")
    os.mkfifo(medium / "FIFO")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(medium / "SOCKET"))
    sock.close()
    if os.geteuid() == 0:
        os.mknod(medium / "DEVICE", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null
    with open(medium / "HUGE", "wb") as f:
        f.truncate(5 * 1024**3)  # 5 GiB, sparse: costs nothing on disk
    (medium / "JUNK").write_bytes(b"MZ this is a viewer program, not DICOM\n" * 50)
    whole = part10_bytes(make_instance(7, rows=64))
    (medium / "TRUNC").write_bytes(whole[: len(whole) - 1000])
    (medium / "EMPTY").write_bytes(b"")
    return medium, good, secret.SOPInstanceUID


def _run_with_deadline(fn, *args, **kw) -> ImportReport:
    """Run an import in a thread; a FIFO that blocked it would fail the test, not hang it."""
    out: list[ImportReport] = []
    t = threading.Thread(target=lambda: out.append(fn(*args, **kw)), daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "import did not finish (blocked on a FIFO or device?)"
    return out[0]


EXPECTED_SCAN_REASONS = {
    "LINKFILE": "symbolic link (not followed)",
    "LINKDIR": "symbolic link (not followed)",
    "FIFO": "FIFO (named pipe), not a file",
    "SOCKET": "socket, not a file",
    "DEVICE": "device file, not a file",
    "HUGE": "file too large (5.0 GiB, sparse; limit 4.0 GiB)",
    "JUNK": "not DICOM (no DICM prefix and not a data set)",
    "EMPTY": "empty file",
}


def test_hostile_folder_scan_imports_only_valid_files(store, tmp_path):
    medium, good, secret_uid = _hostile_medium(tmp_path)

    report = _run_with_deadline(run_import, medium, store)

    assert report.kind == "folder"
    assert sorted(f.name for f in report.imported) == sorted(good)
    assert all(stored(uid) for uid in good.values())
    assert not stored(secret_uid)
    got = reasons(report)
    for name, reason in EXPECTED_SCAN_REASONS.items():
        if name == "DEVICE" and os.geteuid() != 0:
            continue
        assert got.pop(name) == reason
    assert got.pop("TRUNC").startswith("truncated file: element (7FE0,0010)")
    assert got == {}


def test_hostile_dicomdir_records_never_leave_the_medium(store, tmp_path):
    medium, good, secret_uid = _hostile_medium(tmp_path)
    write_dicomdir(
        medium / "DICOMDIR",
        [
            "GOOD1",
            ["DIR", "GOOD2"],
            ["..", "outside", "SECRET"],
            ["", *str(tmp_path / "outside" / "SECRET").strip("/").split("/")],  # \tmp\...\SECRET
            "/etc/passwd",
            ["LINKDIR", "SECRET"],
            "LINKFILE",
            "FIFO",
            "SOCKET",
            "HUGE",
            "JUNK",
            "TRUNC",
            "MISSING",
        ],
    )

    report = _run_with_deadline(run_import, medium, store)

    assert report.kind == "dicomdir"
    assert len(report.imported) == 2
    assert all(stored(uid) for uid in good.values())
    assert not stored(secret_uid)
    got = reasons(report)
    assert got.pop("..\\outside\\SECRET") == "DICOMDIR record: path points outside the medium"
    absolute = [k for k in got if k.startswith("\\")]
    assert len(absolute) == 1
    assert got.pop(absolute[0]) == "DICOMDIR record: absolute path points outside the medium"
    assert got.pop("/etc/passwd") == "DICOMDIR record: path points outside the medium"
    assert got.pop("LINKDIR\\SECRET") == "path goes through a symbolic link (not followed)"
    assert got.pop("MISSING") == "referenced file is missing on the medium"
    assert got.pop("TRUNC").startswith("truncated file")
    for name in ("LINKFILE", "FIFO", "SOCKET", "HUGE", "JUNK"):
        assert got.pop(name) == EXPECTED_SCAN_REASONS[name]
    assert got == {}


@pytest.mark.filterwarnings("ignore:End of file reached")
def test_unreadable_dicomdir_falls_back_to_scanning(store, tmp_path):
    medium = tmp_path / "medium"
    ds = make_instance()
    write_part10(ds, medium / "A" / "IM1")
    (medium / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)

    report = run_import(medium, store)

    assert report.kind == "folder"
    assert [f.name for f in report.imported] == ["A/IM1"]
    assert any("DICOMDIR unreadable" in n for n in report.notes)


# -- ZIPs --------------------------------------------------------------------------


def test_zip_with_dotdot_absolute_nested_and_link_entries(store, tmp_path):
    good = make_instance(1)
    evil = make_instance(2)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("inner.dcm", part10_bytes(make_instance(3)))
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("study/good.dcm", part10_bytes(good))
        z.writestr("../evil.dcm", part10_bytes(evil))
        z.writestr("/abs.dcm", part10_bytes(evil))
        z.writestr("a/../../up.dcm", part10_bytes(evil))
        z.writestr("win\\..\\..\\up.dcm", part10_bytes(evil))
        z.writestr("nested.zip", inner.getvalue())
        link = zipfile.ZipInfo("link.dcm")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")
        z.writestr("notes.txt", "hello")
        z.writestr("DICOMDIR", b"\0" * 128 + b"DICM")  # an export's directory: left out quietly

    report = run_import(path, store)

    assert report.kind == "zip"
    assert [f.name for f in report.imported] == ["study/good.dcm"]
    assert stored(good.SOPInstanceUID) and not stored(evil.SOPInstanceUID)
    got = reasons(report)
    assert got.pop("../evil.dcm") == "ZIP entry path points outside the medium"
    assert got.pop("/abs.dcm") == "ZIP entry absolute path points outside the medium"
    assert got.pop("a/../../up.dcm") == "ZIP entry path points outside the medium"
    assert got.pop("win\\..\\..\\up.dcm") == "ZIP entry path points outside the medium"
    assert got.pop("nested.zip").startswith("ZIP archive inside the ZIP (not unpacked")
    assert got.pop("link.dcm") == "ZIP entry is a symbolic link (not followed)"
    assert got.pop("notes.txt") == "not DICOM (no DICM prefix and not a data set)"
    assert got == {}
    assert report.notes == ["DICOMDIR: DICOMDIR not imported (every entry is scanned)"]


def test_zip_bomb_is_refused_unread(store, tmp_path):
    bomb = tmp_path / "bomb.zip"
    zeros = bytes(1024 * 1024)
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("real.dcm", part10_bytes(make_instance()))
        for n in range(2):
            with z.open(f"zeros{n}.dcm", "w", force_zip64=True) as f:
                for _ in range(64):
                    f.write(zeros)
    assert bomb.stat().st_size < 1024 * 1024  # 128 MiB packed into a few hundred KB

    report = run_import(bomb, store)

    assert report.imported == [] and report.already_present == []
    assert [f.name for f in report.rejected] == ["bomb.zip"]
    assert report.rejected[0].reason.startswith("ZIP bomb: expands")


def test_upload_of_files_and_zip_in_one_report(store, tmp_path):
    one = write_part10(make_instance(1), tmp_path / "up" / "one.dcm")
    zpath = tmp_path / "up" / "two.zip"
    two = make_instance(2)
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("two.dcm", part10_bytes(two))
    junk = tmp_path / "up" / "junk.txt"
    junk.write_text("not an image")

    report = run_import_files([one, zpath, junk], store)

    assert sorted(f.name for f in report.imported) == ["one.dcm", "two.zip:two.dcm"]
    assert reasons(report) == {"junk.txt": "not DICOM (no DICM prefix and not a data set)"}
    assert report.ok


def test_progress_reaches_the_total(store):
    seen = []
    report = run_import(DICOMDIRTESTS, store, progress=seen.append)
    assert seen[-1].done == seen[-1].total == len(report.imported) == 31
    assert seen[-1].line().endswith("31 imported, 0 already present, 0 rejected")


# -- the insert handler behind pacsbox-import@.service --------------------------------

# What `udevadm info /dev/sr0` shows after a data CD goes into a SATA drive.
CD_INSERT = {
    "ACTION": "change",
    "DEVNAME": "/dev/sr0",
    "DEVTYPE": "disk",
    "SUBSYSTEM": "block",
    "MAJOR": "11",
    "MINOR": "0",
    "ID_BUS": "ata",
    "ID_TYPE": "cd",
    "ID_CDROM": "1",
    "ID_CDROM_CD": "1",
    "ID_CDROM_DVD": "1",
    "ID_CDROM_MEDIA": "1",
    "ID_CDROM_MEDIA_CD": "1",
    "ID_CDROM_MEDIA_STATE": "complete",
    "ID_CDROM_MEDIA_SESSION_COUNT": "1",
    "ID_CDROM_MEDIA_TRACK_COUNT": "1",
    "ID_CDROM_MEDIA_TRACK_COUNT_DATA": "1",
    "ID_FS_TYPE": "iso9660",
    "ID_FS_USAGE": "filesystem",
    "ID_FS_LABEL": "PATIENTCD",
    "PACSBOX_MEDIA": "1",
    "SYSTEMD_WANTS": "pacsbox-import@sr0.service",
}


class FakeDrive:
    """Stands in for mount/umount/eject: "mounting" extracts the disc's ISO like Linux shows it."""

    def __init__(self, iso: Path) -> None:
        self.iso = iso
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> None:
        self.calls.append(argv)
        if argv[0] == "mount":
            target = Path(argv[-1])
            subprocess.run(
                ["xorriso", "-ecma119_map", "lowercase", "-osirrox", "on", "-indev", str(self.iso)]
                + ["-extract", "/", str(target)],
                check=True,
                capture_output=True,
            )
        elif argv[0] == "umount":
            for p in Path(argv[-1]).iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()


@pytest.fixture
def patient_cd(tmp_path):
    staging = tmp_path / "cdroot"
    fs = FileSet()
    uids = []
    study = generate_uid()
    for i in range(3):
        ds = make_instance(i, study)
        uids.append(ds.SOPInstanceUID)
        fs.add(ds)
    fs.write(staging)
    (staging / "AUTORUN.INF").write_text("[autorun]\nopen=viewer.exe\n")  # not referenced
    iso = tmp_path / "patient.iso"
    subprocess.run(
        ["xorriso", "-outdev", str(iso), "-compliance", "iso_9660_level=1", "-rockridge", "off"]
        + ["-joliet", "off", "-volid", "PATIENTCD", "-map", str(staging), "/"],
        check=True,
        capture_output=True,
    )
    return iso, uids


def test_cd_insert_mounts_read_only_imports_unmounts_and_ejects(
    archive, store, patient_cd, tmp_path
):
    from pacsbox.media.autoimport import import_device

    iso, uids = patient_cd
    drive = FakeDrive(iso)
    cfg = archive.cfg.replace(AutoImport=True, MediaMountDirectory=str(tmp_path / "media"))
    seen = []

    report = import_device(
        "/dev/sr0",
        cfg,
        store,
        dict(CD_INSERT),
        runner=drive,
        progress=seen.append,
        mountinfo=tmp_path / "no-mountinfo",
    )

    mnt = str(tmp_path / "media" / "sr0")
    assert drive.calls == [
        ["mount", "-o", "ro,nosuid,nodev,noexec", "/dev/sr0", mnt],
        ["umount", mnt],
        ["eject", "/dev/sr0"],
    ]
    assert report.ok and report.rejected == []
    assert len(report.imported) == 3 and all(stored(uid) for uid in uids)
    assert "/dev/sr0: iso9660 'PATIENTCD' read as dicomdir" in report.notes
    assert "/dev/sr0 ejected" in report.notes
    assert seen[-1].done == seen[-1].total == 3
    assert not Path(mnt).exists()


def test_usb_stick_is_not_ejected(archive, store, patient_cd, tmp_path):
    from pacsbox.media.autoimport import import_device

    iso, uids = patient_cd
    drive = FakeDrive(iso)
    cfg = archive.cfg.replace(MediaMountDirectory=str(tmp_path / "media"))
    props = {
        "DEVNAME": "/dev/sdb1",
        "ID_BUS": "usb",
        "ID_FS_TYPE": "vfat",
        "ID_FS_USAGE": "filesystem",
    }

    report = import_device(
        "/dev/sdb1", cfg, store, props, runner=drive, mountinfo=tmp_path / "none"
    )

    assert [c[0] for c in drive.calls] == ["mount", "umount"]
    assert len(report.imported) == 3


def test_insert_handler_refusals(archive, store, patient_cd, tmp_path):
    from pacsbox.errors import MediaError
    from pacsbox.media.autoimport import import_device

    iso, _ = patient_cd
    drive = FakeDrive(iso)
    cfg = archive.cfg.replace(MediaMountDirectory=str(tmp_path / "media"))
    nomount = tmp_path / "none"

    off = import_device(
        "/dev/sr0", cfg.replace(AutoImport=False), store, dict(CD_INSERT), runner=drive
    )
    assert off.notes == ["automatic import is off (AutoImport = no): /dev/sr0 not imported"]
    assert off.ok and not off.imported

    blank = {k: v for k, v in CD_INSERT.items() if not k.startswith("ID_FS_")}
    r = import_device("/dev/sr0", cfg, store, blank, runner=drive, mountinfo=nomount)
    assert r.aborted == "no filesystem on /dev/sr0 (blank or audio disc?)"

    empty = {k: v for k, v in CD_INSERT.items() if not k.startswith(("ID_FS_", "ID_CDROM_MEDIA"))}
    r = import_device("/dev/sr0", cfg, store, empty, runner=drive, mountinfo=nomount)
    assert r.aborted == "no disc in /dev/sr0"

    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("36 25 8:1 / /var/lib/pacsbox rw,relatime shared:1 - ext4 /dev/sdb1 rw\n")
    usb = {"ID_BUS": "usb", "ID_FS_TYPE": "ext4", "ID_FS_USAGE": "filesystem"}
    r = import_device("/dev/sdb1", cfg, store, usb, runner=drive, mountinfo=mountinfo)
    assert (
        r.aborted
        == "/dev/sdb1 is already mounted at /var/lib/pacsbox: not treated as an inserted medium"
    )
    assert drive.calls == []

    def no_mount(argv):
        raise MediaError("mount failed: wrong fs type, bad option, bad superblock on /dev/sr0")

    r = import_device("/dev/sr0", cfg, store, dict(CD_INSERT), runner=no_mount, mountinfo=nomount)
    assert r.aborted.startswith("cannot mount /dev/sr0: mount failed: wrong fs type")
