"""A patient CD and a USB stick hot-plugged into the booted appliance (BOX-3,
MEDIA-1, issue 6): the whole chain as on hardware, with nothing stood in.

The VM has an empty IDE CD drive and a USB 3 controller from boot; the test
builds the media on the host (pydicom files, a DICOMDIR, xorriso's ISO 9660;
FAT sticks, partitioned or not, made with sfdisk, mkfs.vfat and mtools, no
mounting) and puts them in through the QEMU monitor (QMP). Inside, the kernel sees the
disc or the stick, udev's ``61-pacsbox-media.rules`` asks systemd for
``pacsbox-import@<dev>.service``, which mounts the medium read-only, imports
it into the running archive, unmounts it and ejects the disc. The test then
asks from the host: the studies answer a C-FIND on the forwarded DICOM port,
the unit's journal says it finished, the monitor shows the tray open; a
stick is pulled out again and nothing is left failed or behind.

Slow (each medium 8-15 s; the VM, booted once, is shared with
test_qemu.py): marked slow; skips with the reason when the image is not
built.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.fileset import FileSet

from tests.image.boxes import AE, QemuBox, not_built_reason, wait_for
from tests.image.test_nspawn import CALLING_AE
from tests.synth import make_study, write_files

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(not_built_reason(need_disk=True)), reason=not_built_reason(need_disk=True) or ""
    ),
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("xorriso", "mkfs.vfat", "mcopy", "sfdisk", "findscu")),
        reason="needs xorriso, dosfstools, mtools, fdisk and dcmtk on the host",
    ),
]

IMPORT_TIMEOUT = 180


@pytest.fixture(scope="module")
def vm(qemu_vm):
    """The session's VM (tests/image/conftest.py), shared with test_qemu.py."""
    return qemu_vm


# -- media made on the host ----------------------------------------------------------------


def studies(tmp: Path, patient_id: str, n: int, per_series: int = 2) -> tuple[list[Path], dict]:
    """``n`` one-series studies of one patient as Part-10 files; {study UID: image count}."""
    files: list[Path] = []
    counts: dict[str, int] = {}
    for i in range(n):
        datas = make_study(
            patient_id=patient_id, patient_name=f"MEDIA^{patient_id}", per_series=per_series,
            accession=f"{patient_id}{i}", description=f"MEDIA TEST {i}", pixel_seed=i,
        )  # fmt: skip
        written = write_files(tmp / f"study{i}", datas)
        uid = pydicom.dcmread(written[0], stop_before_pixels=True).StudyInstanceUID
        counts[uid] = len(written)
        files += written
    return files, counts


def patient_cd(tmp: Path) -> tuple[Path, dict]:
    """A patient CD as a modality burns it: DICOMDIR + IHE folders, plain ISO 9660
    level 1 (no Rock Ridge, no Joliet: Linux shows lowercase names), a viewer's
    autorun file beside it."""
    files, counts = studies(tmp / "src", "CDPAT", 2)
    fs = FileSet()
    for f in files:
        fs.add(f)
    root = tmp / "cdroot"
    fs.write(root)
    (root / "AUTORUN.INF").write_text("[autorun]\nopen=viewer.exe\n")
    iso = tmp / "patient.iso"
    subprocess.run(
        ["xorriso", "-outdev", str(iso), "-compliance", "iso_9660_level=1", "-rockridge", "off"]
        + ["-joliet", "off", "-volid", "PATIENTCD", "-map", str(root), "/"],
        check=True,
        capture_output=True,
    )
    return iso, counts


def usb_stick(tmp: Path, size_mb: int = 64, partitioned: bool = True) -> tuple[Path, dict]:
    """A USB stick as a laptop leaves it: MBR, one FAT32 partition from 1 MiB,
    loose DICOM files in folders (no DICOMDIR); or, not ``partitioned``, FAT
    on the whole device (a "superfloppy", as some cameras and tools format).
    Made without mounting: the filesystem is built in a file with
    mkfs.vfat -C and mtools, then placed."""
    patient = "USBPAT" if partitioned else "FLOPPYPAT"
    files, counts = studies(tmp / "src", patient, 2, per_series=3)
    fat = tmp / "fat.img"
    fat_mb = size_mb - 1 if partitioned else size_mb
    subprocess.run(
        ["mkfs.vfat", "-F", "32", "-n", "STICK", "-C", str(fat), str(fat_mb * 1024)],
        check=True,
        capture_output=True,
    )
    subprocess.run(["mmd", "-i", str(fat), "::/EXPORT"], check=True)
    for d in sorted({f.parent for f in files}):
        subprocess.run(["mcopy", "-s", "-i", str(fat), str(d), "::/EXPORT/"], check=True)
    if not partitioned:
        return fat, counts
    stick = tmp / "stick.img"
    subprocess.run(["truncate", "-s", f"{size_mb}M", str(stick)], check=True)
    subprocess.run(
        ["sfdisk", "-q", str(stick)],
        input=f"label: dos\nstart=1MiB, size={fat_mb}MiB, type=c\n",
        text=True,
        check=True,
    )
    subprocess.run(
        ["dd", f"if={fat}", f"of={stick}", "bs=1M", "seek=1", "conv=notrunc", "status=none"],
        check=True,
    )
    return stick, counts


# -- what the host sees ---------------------------------------------------------------


def study_instances(port: int, study_uid: str, tmp: Path) -> int | None:
    """NumberOfStudyRelatedInstances of a study by C-FIND on the DICOM port, None if not found."""
    out = tmp / f"find-{study_uid[-12:]}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    res = subprocess.run(
        ["findscu", "-to", "10", "-ta", "10", "-td", "30", "-aet", CALLING_AE, "-aec", AE]
        + ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}"]
        + ["-k", "NumberOfStudyRelatedInstances", "-X", "-od", str(out), "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    answers = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    if not answers:
        return None
    assert [a.StudyInstanceUID for a in answers] == [study_uid]
    return int(answers[0].NumberOfStudyRelatedInstances)


def import_runs(vm: QemuBox, unit_glob: str, runs: int = 1) -> tuple[str, str] | None:
    """(unit, its journal) once import units matching ``unit_glob`` ended ``runs``
    times (finished or failed); the journal of the latest run only."""
    text = vm.sh(f"journalctl -b -u '{unit_glob}' --no-pager -o cat")[1]
    ends = list(
        re.finditer(
            r"(pacsbox-import@[\w-]+\.service): (Deactivated successfully|Failed with result)",
            text,
        )
    )
    if len(ends) < runs:
        return None
    last = ends[runs - 1]
    start = text.rfind(f"Starting {last.group(1)}", 0, last.start())
    return last.group(1), text[max(start, 0) : text.find("\n", last.end()) + 1]


def assert_succeeded(journal: str, imported: int, present: int = 0) -> None:
    assert "Failed with result" not in journal, journal
    # Not stopped from outside (BindsTo= the device: an eject seen too early
    # would stop the unit before its report).
    assert "Stopping pacsbox-import@" not in journal, journal
    assert "Deactivated successfully" in journal, journal
    assert f"{imported} imported, {present} already present, 0 rejected" in journal, journal


# -- the tests ------------------------------------------------------------------------


def test_a_patient_cd_put_in_the_drive_is_imported_and_ejected(vm, tmp_path):
    iso, counts = patient_cd(tmp_path)
    assert not vm.block("cdrom0").get("inserted"), "the drive should start empty"

    vm.insert_disc(iso)

    unit, journal = wait_for(
        lambda: import_runs(vm, "pacsbox-import@sr*"),
        IMPORT_TIMEOUT,
        "the import unit of the disc to finish",
        interval=2.0,
    )
    assert unit == "pacsbox-import@sr0.service"
    total = sum(counts.values())
    assert_succeeded(journal, total)
    assert "/dev/sr0: iso9660 'PATIENTCD' read as dicomdir" in journal, journal
    assert "/dev/sr0 ejected" in journal, journal
    for uid, n in counts.items():
        assert study_instances(vm.port, uid, tmp_path) == n, uid
    assert vm.failed_units() == []
    # The drive opened its tray: the technician sees the disc is done.
    wait_for(lambda: vm.block("cdrom0").get("tray_open"), 30, "the tray to open")

    # Pushed back in, the same disc is read once more (every insertion
    # starts the unit once): nothing new, everything already present.
    vm.qmp("blockdev-close-tray", id="cdrom0")
    unit, journal = wait_for(
        lambda: import_runs(vm, "pacsbox-import@sr*", runs=2),
        IMPORT_TIMEOUT,
        "the second import of the disc to finish",
        interval=2.0,
    )
    assert_succeeded(journal, 0, present=total)
    wait_for(lambda: vm.block("cdrom0").get("tray_open"), 30, "the tray to open again")
    all_runs = vm.sh("journalctl -b -u 'pacsbox-import@sr*' --no-pager -o cat")[1]
    assert all_runs.count("Starting pacsbox-import@sr0.service") == 2, all_runs


@pytest.mark.parametrize("partitioned", [True, False], ids=["partitioned", "superfloppy"])
def test_a_usb_stick_plugged_in_is_imported(vm, tmp_path, partitioned):
    stick, counts = usb_stick(tmp_path, partitioned=partitioned)
    before = vm.sh("journalctl -b -u 'pacsbox-import@sd*' --no-pager -o cat")[1]
    runs = before.count("Starting pacsbox-import@") + 1

    vm.plug_usb_stick(stick)

    unit, journal = wait_for(
        lambda: import_runs(vm, "pacsbox-import@sd*", runs),
        IMPORT_TIMEOUT,
        "the import unit of the stick to finish",
        interval=2.0,
    )
    # The partition, not the whole disk (which holds a partition table, no
    # filesystem); a superfloppy's filesystem is the whole disk.
    pattern = (
        r"pacsbox-import@sd[a-z]1\.service" if partitioned else r"pacsbox-import@sd[a-z]\.service"
    )
    assert re.fullmatch(pattern, unit), unit
    assert_succeeded(journal, sum(counts.values()))
    assert "vfat 'STICK' read as folder" in journal, journal
    all_runs = vm.sh("journalctl -b -u 'pacsbox-import@sd*' --no-pager -o cat")[1]
    assert all_runs.count("Starting pacsbox-import@") == runs, all_runs
    for uid, n in counts.items():
        assert study_instances(vm.port, uid, tmp_path) == n, uid
    assert vm.failed_units() == []

    # Pulled out afterwards: nothing fails, no mount point is left behind
    # (the mount itself lived in the unit's own namespace).
    dev = unit.split("@")[1].removesuffix(".service")
    vm.unplug_usb_stick()
    wait_for(lambda: vm.sh(f"test -e /dev/{dev}")[0] != 0, 60, f"/dev/{dev} to go away")
    assert vm.failed_units() == []
    assert vm.sh(f"test -e /run/pacsbox/media/{dev}")[0] != 0, "mount point left behind"
