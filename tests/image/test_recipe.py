"""The image recipe, offline: what `make image` puts in, and how `make test`
decides to build the image or skip its tests (`build.sh --for-tests`).
Runs everywhere in a second; needs neither root nor the network."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "image-build" / "build.sh"


def packages() -> set[str]:
    text = (REPO / "image-build" / "packages.txt").read_text()
    return {
        w for line in text.splitlines() if not line.lstrip().startswith("#") for w in line.split()
    }


def test_the_image_has_what_the_import_unit_runs():
    """pacsbox-import@.service mounts, unmounts and ejects (pacsbox.media.autoimport):
    mount and umount come with minbase (util-linux's mount), eject is its own
    package in Debian 12. Without it a read disc stayed in the drive."""
    unit = (REPO / "systemd" / "pacsbox-import@.service").read_text()
    assert "pacsbox import --device" in unit
    assert {"eject", "udev", "kmod", "linux-image-amd64"} <= packages()


def for_tests(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    out = tmp_path / "out"
    res = subprocess.run(
        ["bash", str(BUILD), "--for-tests"],
        env={**os.environ, "PACSBOX_IMAGE_OUT": str(out), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    reason = out / "skip-reason"
    return res, reason.read_text().strip() if reason.exists() else ""


def test_make_test_skips_the_image_tests_by_choice(tmp_path):
    res, reason = for_tests(tmp_path, PACSBOX_IMAGE_TESTS="0")
    assert res.returncode == 0, res.stderr
    assert reason.startswith("PACSBOX_IMAGE_TESTS=0"), reason
    assert len(reason.splitlines()) == 1


def test_make_test_skips_the_image_tests_when_debian_is_unreachable(tmp_path):
    """No network: make test goes on; the image tests skip with one line saying why."""
    if os.geteuid() != 0:
        res, reason = for_tests(tmp_path)
        assert res.returncode == 0 and "needs root" in reason, (res.stderr, reason)
        return
    res, reason = for_tests(tmp_path, DEBIAN_MIRROR="http://127.0.0.1:9/debian")
    assert res.returncode == 0, res.stderr
    assert reason.startswith("image not built: http://127.0.0.1:9/debian/dists/bookworm/Release")
    assert "unreachable" in reason and len(reason.splitlines()) == 1, reason
    assert not (tmp_path / "out" / "root").exists(), "nothing built"
