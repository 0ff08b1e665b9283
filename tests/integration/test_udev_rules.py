"""udev/61-pacsbox-media.rules checked offline with the real ``udevadm test``.

No CD drive or USB bus exists here, so each case attaches a real loop device
(``losetup``) to a real image (an ISO built with xorriso, or blank bytes for
a blank disc); the system's own rules run on it, so ID_FS_TYPE/ID_FS_USAGE
come from udev's real blkid builtin. The properties only a CD drive or the
USB bus would add (ID_CDROM, ID_CDROM_MEDIA, ID_BUS) are set by a one-line
stand-in rule that sorts before ours. Everything runs in a private mount
namespace with a tmpfs over /run (rules and udev database) and over /dev (a
fresh node for the loop device), so ``udevadm test`` leaves no trace.

Needs root, losetup and unshare; skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "udev" / "61-pacsbox-media.rules"
UNIT = ROOT / "systemd" / "pacsbox-import@.service"

CD_DATA = (
    'ENV{ID_CDROM}="1", ENV{ID_CDROM_CD}="1", ENV{ID_CDROM_MEDIA}="1", ENV{ID_CDROM_MEDIA_CD}="1"'
)
CD_EMPTY = 'ENV{ID_CDROM}="1", ENV{ID_CDROM_CD}="1"'
USB = 'ENV{ID_BUS}="usb", ENV{ID_USB_DRIVER}="usb-storage"'
ATA = 'ENV{ID_BUS}="ata"'

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("udevadm", "losetup", "unshare")),
    reason="needs root, udevadm (Debian package udev), losetup and unshare",
)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    src = d / "src"
    src.mkdir()
    (src / "DICOMDIR").write_bytes(b"\0" * 2048)
    out = {}
    for name, label in (("disc", "PATIENTCD"), ("own", "PACSBOX-DATA")):
        out[name] = d / f"{name}.iso"
        subprocess.run(
            ["xorriso", "-outdev", str(out[name]), "-volid", label, "-map", str(src), "/"],
            check=True,
            capture_output=True,
        )
    out["blank"] = d / "blank.img"
    out["blank"].write_bytes(bytes(1024 * 1024))
    return out


def udev_test(
    image: Path, drive_rule: str, action: str, tmp_path: Path, rules: Path = RULES
) -> dict:
    """Attach ``image`` to a loop device and run ``udevadm test`` with our rules; its properties."""
    try:
        loop = subprocess.run(
            ["losetup", "--find", "--show", "--read-only", str(image)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except subprocess.CalledProcessError as e:
        pytest.skip(f"no loop devices here: {e.stderr.strip()}")
    try:
        name = Path(loop).name
        major, minor = (Path("/sys/class/block") / name / "dev").read_text().split(":")
        rulesdir = tmp_path / "rules"
        rulesdir.mkdir(exist_ok=True)
        shutil.copy(rules, rulesdir / rules.name)
        (rulesdir / "59-test-drive.rules").write_text(f'KERNEL=="{name}", {drive_rule}\n')
        script = f"""
            set -e
            mount -t tmpfs none /run
            mkdir -p /run/udev/rules.d
            cp {rulesdir}/*.rules /run/udev/rules.d/
            mount -t tmpfs none /dev
            mknod /dev/null c 1 3
            mknod /dev/{name} b {major} {minor.strip()}
            udevadm test --action={action} /sys/class/block/{name}
        """
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0 and "unshare" in done.stderr:
            pytest.skip(f"cannot make a mount namespace: {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr[-2000:]
        props = dict(
            line.split("=", 1)
            for line in done.stdout.splitlines()
            if "=" in line and line[0].isupper()
        )
        props["_kernel"] = name
        return props
    finally:
        subprocess.run(["losetup", "--detach", loop], check=False)


def wants(props: dict) -> str:
    return props.get("SYSTEMD_WANTS", "")


@needs_root
def test_data_cd_inserted_starts_the_import_unit(images, tmp_path):
    props = udev_test(images["disc"], CD_DATA, "change", tmp_path)  # insertion = change on srN
    assert props["ID_FS_TYPE"] == "iso9660"  # from udev's own blkid, not from us
    assert wants(props) == f"pacsbox-import@{props['_kernel']}.service"
    assert "systemd" in props["TAGS"]


@needs_root
def test_blank_or_missing_disc_starts_nothing(images, tmp_path):
    blank = udev_test(images["blank"], CD_DATA, "change", tmp_path)  # a disc put in for burning
    assert "ID_FS_TYPE" not in blank and wants(blank) == ""
    empty = udev_test(images["disc"], CD_EMPTY, "change", tmp_path)  # drive without medium
    assert wants(empty) == ""


@needs_root
def test_usb_stick_with_a_filesystem_starts_the_import_unit(images, tmp_path):
    props = udev_test(images["disc"], USB, "add", tmp_path)
    assert wants(props) == f"pacsbox-import@{props['_kernel']}.service"
    # `udevadm trigger` (a change event) does not import the same stick again.
    assert wants(udev_test(images["disc"], USB, "change", tmp_path)) == ""


@needs_root
def test_internal_disks_and_own_partitions_start_nothing(images, tmp_path):
    assert wants(udev_test(images["disc"], ATA, "add", tmp_path)) == ""
    assert wants(udev_test(images["own"], USB, "add", tmp_path)) == ""  # label PACSBOX-DATA


@needs_root
def test_rules_must_sort_after_persistent_storage(images, tmp_path):
    """Why the file is 61-: named 60-pacsbox it runs before blkid and never matches."""
    early = tmp_path / "60-pacsbox-media.rules"
    shutil.copy(RULES, early)
    props = udev_test(images["disc"], USB, "add", tmp_path, rules=early)
    assert props["ID_FS_TYPE"] == "iso9660" and wants(props) == ""


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_import_unit_verifies(tmp_path):
    # systemd-analyze verify insists that ExecStart's binary exists; the wheel
    # installs /usr/bin/pacsbox only in the image, so stand in /bin/true.
    text = UNIT.read_text()
    assert "ExecStart=/usr/bin/pacsbox import --device /dev/%I" in text
    (tmp_path / UNIT.name).write_text(text.replace("/usr/bin/pacsbox", "/bin/true"))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "pacsbox-import@sr0.service")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""
