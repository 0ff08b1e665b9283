"""The full image layer: the flashable disk image booted in qemu-system-x86_64.

Software emulation (no KVM here), the image's own kernel and initramfs, its
GPT disk grown to 2 GB as if written to a bigger card, so the first boot
creates and formats the data partition exactly as on hardware. User
networking forwards loopback ports to the DICOM port 11112 (and the web
page's 8080) of the shipped default configuration. Commands inside run in the
debug shell on the virtio console (kernel option pacsbox.debug_shell).

Slow (about 40 s to boot, twice, on the VM shared with test_qemu_media.py,
and once more by UEFI): marked slow; skips with the reason when the image is
not built. The shared VM's first boot is a freshly flashed box: the first-start
test sets it up from its front panel before any other test could.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse

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


# -- first start: from the front panel's setup code to a stored image -------------------

SETUP_CODE = re.compile(r"Setup:\s+code ([2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4})")
ROOT_PASSWORD = "clinic root password 1"
SET_UP: dict[str, str] = {}  # the code and the study, for the check after the reboot


class Browser:
    """HTTP to the forwarded web port with one session cookie, as a browser keeps it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie = ""

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, dict, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body, headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", errors="replace")
        finally:
            conn.close()
        cookie = resp.getheader("Set-Cookie") or ""
        if cookie.startswith("pacsbox_sid="):
            self.cookie = cookie.split(";", 1)[0]
        return resp.status, dict(resp.getheaders()), text

    def get(self, path: str) -> str:
        status, _, text = self.request("GET", path)
        assert status == 200, (path, status, text[:300])
        return text


def panel_screen(vm, want: str) -> str | None:
    """The front panel's latest whole screen on the console, if it has ``want``."""
    screens = vm.panel_screens()
    return screens[-1] if screens and want in screens[-1] else None


@pytest.mark.skipif(not HAS_WEB, reason="the image has no pacsbox.web module yet")
def test_a_new_box_is_set_up_with_the_code_on_its_front_panel(vm, tmp_path):
    """Issue 16: no keyboard, no screen, no SSH. The code is read off the panel's
    console output; the rest is a browser and a modality on the host."""
    screen = wait_for(
        lambda: panel_screen(vm, "Setup:"), 120, f"the setup code on the console ({vm.log_path})"
    )
    code = SETUP_CODE.search(screen).group(1)
    assert "AE title: PACSBOX   state: ok" in screen  # beside the usual status (BOX-5)
    assert "enter it at http://10.0.2.15:8080/" in screen  # the guest's own address
    # The secret is in no world-readable file and not repeated in the journal.
    assert code not in vm.out("cat /var/lib/pacsbox/status.json")
    assert vm.out("stat -c '%a %U' /var/lib/pacsbox/setup-code").strip() == "600 pacsbox"
    assert vm.out(f"journalctl -b -o cat --no-pager | grep -c {code} || true").strip() == "1"

    web = Browser(vm.web_port)
    login = web.get("/login")
    assert "enter the setup code shown on the box's display" in login
    status, headers, _ = web.request(
        "POST",
        "/setup",
        {"code": code.lower().replace("-", " "), "new": ROOT_PASSWORD, "again": ROOT_PASSWORD},
    )
    assert status == 303 and headers["Location"].startswith("/studies"), (status, headers)
    assert web.cookie, "no session after the setup"

    # The AE table's web form: the modality on the host (qemu's user network
    # shows the host as 10.0.2.2), accepted from that address only.
    form = web.get("/aes")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    status, headers, text = web.request(
        "POST",
        "/aes",
        {"csrf_token": csrf, "title": "STORESCU", "hostname": "", "ipaddr": "10.0.2.2",
         "port": "", "allowaccess": "1", "archivedir": "", "description": "host modality"},
    )  # fmt: skip
    assert status == 303 and "saved" in headers["Location"], (status, text[:300])

    path, study_uid = a_study(tmp_path)
    res = storescu(vm.port, path, calling="STORESCU")
    assert res.returncode == 0, res.stdout + res.stderr
    studies = json.loads(web.get("/studies.json"))
    assert study_uid in json.dumps(studies), studies

    # The code is gone from the console the moment root had a password.
    after = wait_for(
        lambda: panel_screen(vm, "STORESCU"), 60, "the stored study on the front panel"
    )
    assert "Setup:" not in after and code not in after
    rc, _ = vm.sh("test -e /var/lib/pacsbox/setup-code")
    assert rc != 0, "the setup code's file is still there"
    assert "enter the setup code" not in Browser(vm.web_port).get("/login")
    SET_UP.update(code=code, study=study_uid)


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


def test_the_setup_code_never_comes_back(vm):
    """After the reboot (the test above): the panel shows the box, never the code;
    root's own password logs in and the setup page is closed."""
    if not SET_UP or vm.proc.poll() is not None:
        pytest.skip("the first-start test did not set the box up")
    screen = wait_for(
        lambda: panel_screen(vm, "state: ok"), 120, "the front panel after the reboot"
    )
    assert "Setup:" not in screen
    assert SET_UP["code"] not in vm.log_path.read_text(errors="replace")  # this boot's console
    web = Browser(vm.web_port)
    assert "enter the setup code" not in web.get("/login")
    status, _, _ = web.request("POST", "/setup", {"code": SET_UP["code"], "new": "x" * 9})
    assert status == 409
    status, headers, _ = web.request("POST", "/login", {"name": "root", "password": ROOT_PASSWORD})
    assert status == 303 and headers["Location"] == "/studies"
    assert SET_UP["study"] in web.get("/studies.json")


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
