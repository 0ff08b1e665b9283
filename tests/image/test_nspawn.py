"""The fast image layer: the built root booted by systemd-nspawn.

Real systemd 252 of the image, its units, presets, drop-ins, watchdog and the
data-partition unit; the root read-only and /var a tmpfs as on the appliance;
the data partition is a host folder bound on /var/lib/pacsbox. The DICOM port
is reached from the host on loopback (the container shares the host's
network), on a free port set in the instance configuration that lives on the
data partition, as an administrator would set it.

Skips with the reason when the image is not built (`make test-image` builds
it first).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.image.boxes import (
    AE,
    ROOT,
    UNIT,
    NspawnBox,
    free_port,
    instance_ini,
    not_built_reason,
    timespan,
    wait_for,
)

pytestmark = pytest.mark.skipif(bool(not_built_reason()), reason=not_built_reason() or "")

CALLING_AE = "IMGTEST"


def _dcmtk(tool: str, port: int, *args: str, calling: str, dimse: int, timeout: int):
    """A DCMTK tool against the box's AE on loopback, with bounded timeouts."""
    return subprocess.run(
        [tool, "-to", "10", "-ta", "10", "-td", str(dimse), "-aet", calling, "-aec", AE,
         "127.0.0.1", str(port), *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def echoscu(port: int, calling: str = CALLING_AE) -> subprocess.CompletedProcess:
    return _dcmtk("echoscu", port, calling=calling, dimse=10, timeout=30)


def storescu(port: int, *files: Path, calling: str = CALLING_AE) -> subprocess.CompletedProcess:
    return _dcmtk("storescu", port, *map(str, files), calling=calling, dimse=30, timeout=60)


def studies_total(box) -> int:
    """What `pacsbox status --json` (the front panel's source) counts, inside the image."""
    rc, out = box.sh("runuser -u pacsbox -- pacsbox status --json")
    try:
        return int(json.loads(out).get("studies_total", 0))
    except ValueError:
        return 0


def a_study(tmp: Path) -> tuple[Path, str]:
    """A real CT image from pydicom's test files, with fresh UIDs."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = tmp / "ct.dcm"
    ds.save_as(path)
    return path, ds.StudyInstanceUID


def boot(data: Path | None, log: Path, port: int) -> NspawnBox:
    box = NspawnBox(data, log, port).start()
    box.wait_booted(120)
    return box


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> tuple[Path, int]:
    """The data partition: the instance configuration with this test's port."""
    data = tmp_path_factory.mktemp("data")
    port = free_port()
    (data / "etc").mkdir()
    (data / "etc" / "PACSBOX.ini").write_text(instance_ini(port), encoding="utf-8")
    return data, port


@pytest.fixture(scope="module")
def box(data_dir, tmp_path_factory):
    data, port = data_dir
    log = tmp_path_factory.mktemp("log") / "nspawn.log"
    b = boot(data, log, port)
    try:
        wait_for(
            lambda: b.show(UNIT, "ActiveState")["ActiveState"] == "active", 60, f"{UNIT} active"
        )
        b.register_ae(CALLING_AE, "127.0.0.1")
        yield b
    finally:
        b.stop()


def test_daemon_reaches_active_and_answers_echoscu_from_the_host(box):
    props = box.show(UNIT, "ActiveState", "SubState", "Type", "WatchdogUSec", "User")
    assert props["ActiveState"] == "active", box.journal(UNIT)
    assert props["Type"] == "notify"
    assert props["User"] == "pacsbox"
    assert timespan(props["WatchdogUSec"]) > 0
    res = echoscu(box.port)
    assert res.returncode == 0, res.stdout + res.stderr


def test_root_is_read_only_and_data_partition_is_writable(box):
    rc, out = box.sh("touch /usr/lib/pacsbox/x")
    assert rc != 0 and "Read-only file system" in out
    rc, out = box.sh("touch /etc/x")
    assert rc != 0 and "Read-only file system" in out
    # /var is volatile (tmpfs); the data partition is its own mount.
    assert "tmpfs" in box.out("stat -f -c %T /var")
    box.out("mountpoint -q /var/lib/pacsbox")
    box.out("runuser -u pacsbox -- touch /var/lib/pacsbox/.probe && rm /var/lib/pacsbox/.probe")


def test_configuration_lives_on_the_data_partition(box, data_dir):
    data, port = data_dir
    assert (
        box.out("readlink /etc/pacsbox/PACSBOX.ini").strip() == "/var/lib/pacsbox/etc/PACSBOX.ini"
    )
    assert f"ServerPortNumber = {port}" in box.out("cat /etc/pacsbox/PACSBOX.ini")


def test_no_failed_units_and_the_self_check_passed(box):
    assert_self_check_passed(box)


def assert_self_check_passed(box) -> None:
    """No failed unit, and pacsbox-selfcheck.service finished with success (both layers)."""
    wait_for(
        lambda: (
            box.show("pacsbox-selfcheck.service", "ActiveState")["ActiveState"]
            in ("active", "failed")
        ),
        120,
        "the self-check to finish",
    )
    failed = box.failed_units()
    assert failed == [], (
        "failed units: " + " ".join(failed) + "\n" + "\n".join(box.journal(u, 10) for u in failed)
    )
    props = box.show("pacsbox-selfcheck.service", "ActiveState", "Result")
    assert props == {"ActiveState": "active", "Result": "success"}, box.journal(
        "pacsbox-selfcheck.service"
    )


def test_units_enabled_by_preset_and_ssh_absent(box):
    for unit in (
        UNIT,
        "pacsbox-frontpanel.service",
        "pacsbox-selfcheck.service",
        "pacsbox-data.service",
    ):
        assert box.out(f"systemctl is-enabled {unit}").strip() == "enabled", unit
    rc, _ = box.sh("test -e /usr/sbin/sshd")
    assert rc != 0, "sshd is installed in the image"


def test_storescu_then_the_study_survives_a_reboot(box, data_dir, tmp_path):
    data, port = data_dir
    path, study = a_study(tmp_path)
    res = storescu(port, path)
    assert res.returncode == 0, res.stdout + res.stderr
    # The daemon refreshes its status snapshot every few seconds.
    wait_for(lambda: studies_total(box) >= 1, 20, "the study in pacsbox status")
    # Files are on the data partition, not the volatile /var.
    assert any(data.rglob("*")), "nothing written to the data partition"
    box.stop()
    again = boot(data, box.log_path, port)
    try:
        wait_for(
            lambda: again.show(UNIT, "ActiveState")["ActiveState"] == "active",
            60,
            f"{UNIT} active after the reboot",
        )
        wait_for(lambda: studies_total(again) >= 1, 20, "the study after the reboot")
        res = echoscu(port)
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        again.stop()


def assert_watchdog_restarts_a_frozen_daemon(b) -> None:
    """SIGUSR2 (the daemon's debug trigger) stops its watchdog heartbeat while
    the process lives on; systemd must abort and restart it within
    WatchdogSec + 10 s. Skips if SIGUSR2 merely killed the daemon."""
    props = b.show(UNIT, "MainPID", "NRestarts", "WatchdogUSec")
    watchdog_s = timespan(props["WatchdogUSec"])
    pid = props["MainPID"]
    b.out(f"kill -USR2 {pid}")
    t0 = time.monotonic()

    def restarted():
        p = b.show(UNIT, "MainPID", "ActiveState", "NRestarts")
        return p if p["ActiveState"] == "active" and p["MainPID"] not in ("0", pid) else None

    # Wait longer than the criterion so a slow restart is told apart from none.
    after = wait_for(restarted, 2 * watchdog_s + 20, "the watchdog to restart the daemon")
    took = time.monotonic() - t0
    journal = b.journal(UNIT, 200)
    if not re.search(
        r"Watchdog (timeout|request)", journal
    ):  # WatchdogSec ran out, or WATCHDOG=trigger
        if re.search(r"USR2", journal):
            pytest.skip(
                "the daemon has no SIGUSR2 freeze trigger yet: SIGUSR2 killed it "
                "instead of stopping its heartbeat"
            )
        raise AssertionError(f"restarted, but not by the watchdog:\n{journal}")
    assert int(after["NRestarts"]) > int(props["NRestarts"])
    assert took <= watchdog_s + 10, (
        f"restarted by the watchdog {took:.0f}s after the freeze, more than WatchdogSec "
        f"({watchdog_s:.0f}s) + 10s: the daemon's heartbeat goes stale too late"
    )
    assert echoscu(b.port).returncode == 0


@pytest.mark.slow
def test_a_hung_daemon_is_restarted_by_the_watchdog(data_dir, tmp_path):
    """SIGUSR2 makes the daemon stop its watchdog heartbeat (the debug trigger);
    systemd must abort and restart it within WatchdogSec + 10 s."""
    data, port = data_dir
    b = boot(data, tmp_path / "nspawn.log", port)
    try:
        wait_for(lambda: b.show(UNIT, "ActiveState")["ActiveState"] == "active", 60, "active")
        assert_watchdog_restarts_a_frozen_daemon(b)
    finally:
        b.stop()


def test_missing_data_partition_fails_loudly(tmp_path):
    """No data partition: a failed unit, the daemon not started, an alert for
    the front panel; never an archive on the tmpfs."""
    b = boot(None, tmp_path / "nspawn.log", free_port())
    try:
        failed = b.failed_units()
        assert "pacsbox-data.service" in failed
        assert b.show(UNIT, "ActiveState")["ActiveState"] != "active"
        assert "DATA DISK" in b.out("cat /run/pacsbox/alert")
        assert "FAILED" in b.journal("pacsbox-data.service")
        rc, _ = b.sh("test -e /var/lib/pacsbox/pacsbox.db")
        assert rc != 0
    finally:
        b.stop()


def test_an_empty_configuration_is_written_again(tmp_path):
    """A power cut right after first boot can leave PACSBOX.ini empty (ext4
    writes a new file's data late): the next boot writes the default again
    instead of running on built-in defaults with no data folder."""
    data = tmp_path / "data"
    (data / "etc").mkdir(parents=True)
    (data / "etc" / "PACSBOX.ini").write_bytes(b"")
    b = boot(data, tmp_path / "nspawn.log", free_port())
    try:
        assert "was empty" in b.journal("pacsbox-data.service")
        shipped = (ROOT / "usr/share/pacsbox/PACSBOX.ini").read_text(encoding="utf-8")
        assert b.out("cat /etc/pacsbox/PACSBOX.ini") == shipped
    finally:
        b.stop()
