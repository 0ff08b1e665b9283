"""The full image layer: the flashable disk image booted in qemu-system-x86_64.

Software emulation (no KVM here), the image's own kernel and initramfs, its
GPT disk grown to 2 GB as if written to a bigger card, so the first boot
creates and formats the data partition exactly as on hardware. User
networking forwards loopback ports to the DICOM port 11112 (and the web
page's 8080) of the shipped default configuration. Commands inside run in the
debug shell on the virtio console (kernel option pacsbox.debug_shell).

Slow (about 40 s to boot, twice, on the VM shared with test_qemu_media.py,
and once more by UEFI): marked slow; skips with the reason when the image is
not built.
"""

from __future__ import annotations

import http.client

import pytest

from tests.image.boxes import (
    BOOT_TIMEOUT,
    OVMF_CODE,
    ROOT,
    UNIT,
    QemuBox,
    free_port,
    not_built_reason,
    wait_for,
)
from tests.image.test_nspawn import (
    a_study,
    assert_self_check_passed,
    assert_watchdog_restarts_a_frozen_daemon,
    echoscu,
    storescu,
    studies_total,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(not_built_reason(need_disk=True)), reason=not_built_reason(need_disk=True) or ""
    ),
]

HAS_WEB = (ROOT / "usr/lib/pacsbox/lib/python3.11/site-packages/pacsbox/web").is_dir()


@pytest.fixture(scope="module")
def vm(qemu_vm):
    """The session's VM (tests/image/conftest.py), shared with test_qemu_media.py."""
    return qemu_vm


def test_first_boot_made_the_data_partition_and_the_self_check_passed(vm):
    source = vm.out("findmnt -n -o SOURCE,FSTYPE /var/lib/pacsbox")
    assert "ext4" in source, source
    assert (
        vm.out("blkid -s PARTLABEL -o value $(findmnt -n -o SOURCE /var/lib/pacsbox)").strip()
        == "pacsbox-data"
    )
    assert_self_check_passed(vm)


def test_root_is_a_read_only_squashfs(vm):
    assert vm.out("findmnt -n -o FSTYPE /").strip() == "squashfs"
    assert "ro" in vm.out("findmnt -n -o OPTIONS /").split(",")
    rc, out = vm.sh("touch /usr/x")
    assert rc != 0 and "Read-only file system" in out
    assert vm.out("findmnt -n -o FSTYPE /var").strip() == "tmpfs"
    rc, _ = vm.sh("test -e /usr/sbin/sshd")
    assert rc != 0, "sshd is installed"


def test_echoscu_and_storescu_from_the_host(vm, tmp_path):
    res = echoscu(vm.port)
    assert res.returncode == 0, res.stdout + res.stderr
    path, _ = a_study(tmp_path)
    res = storescu(vm.port, path)
    assert res.returncode == 0, res.stdout + res.stderr
    wait_for(lambda: studies_total(vm) >= 1, 30, "the study in pacsbox status")


@pytest.mark.skipif(not HAS_WEB, reason="the image has no pacsbox.web module yet")
def test_the_web_page_answers(vm):
    conn = http.client.HTTPConnection("127.0.0.1", vm.web_port, timeout=30)
    conn.request("GET", "/")
    resp = conn.getresponse()
    assert resp.status in (200, 302, 303, 401), resp.status


def test_a_hung_daemon_is_restarted_by_the_watchdog(vm):
    assert_watchdog_restarts_a_frozen_daemon(vm)


def test_a_stored_study_survives_a_reboot(vm):
    """Last: powers the VM off and boots the same disk again."""
    if studies_total(vm) < 1:
        pytest.skip("no study stored by the earlier test")
    vm.stop()
    assert vm.proc.returncode is not None, "the VM did not power off"
    vm.boot()
    wait_for(
        lambda: vm.show(UNIT, "ActiveState")["ActiveState"] == "active",
        120,
        f"{UNIT} active after the reboot",
    )
    wait_for(lambda: studies_total(vm) >= 1, 30, "the study after the reboot")
    res = echoscu(vm.port)
    assert res.returncode == 0, res.stdout + res.stderr
    # Second boot: the data partition was found, not made again.
    assert "first boot" not in vm.journal("pacsbox-data.service")


@pytest.mark.skipif(not OVMF_CODE.exists(), reason="no UEFI firmware (apt-get install ovmf)")
def test_the_flashable_disk_boots_by_uefi(tmp_path):
    """As written to a PC's disk: OVMF finds systemd-boot on the ESP, which
    boots the pacsbox entry; the first boot makes the data partition and the
    daemon listens (it rejects an unknown calling AE, which proves it is ours)."""
    disk = QemuBox.make_disk(tmp_path / "disk.img")
    box = QemuBox(disk, tmp_path, free_port(), uefi=True)
    box.start()
    try:

        def listening():
            res = echoscu(box.port)
            return "Calling AE Title Not Recognized" in res.stdout + res.stderr

        wait_for(listening, BOOT_TIMEOUT, f"DICOM on the UEFI-booted disk ({box.log_path})", 1.0)
        assert "pacsbox-data" in box.log_path.read_text(errors="replace")
    finally:
        box.kill()
