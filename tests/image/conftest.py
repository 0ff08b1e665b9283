"""The qemu layer's one virtual machine, shared by test_qemu.py and
test_qemu_media.py: a boot under software emulation costs about 40 s, so the
tests take turns on one VM (first boot of a fresh 2 GB disk, an empty CD drive
and a USB controller for the media tests, DICOM and web ports forwarded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.image.boxes import UNIT, QemuBox, absent_reason, free_port, not_built_reason, wait_for
from tests.image.test_nspawn import CALLING_AE

HERE = Path(__file__).resolve().parent
ABSENT = absent_reason()
OFFLINE = {"test_recipe.py"}  # needs no image


# No image (not built, or `make test` could not build it and left
# out/skip-reason): the folder's tests are not collected and one line says
# why, instead of a skip line per test. (Named on the command line, a test
# file still skips by its own skipif marks.)
class _NoImage(pytest.File):
    def collect(self):
        pytest.skip(ABSENT)


def pytest_ignore_collect(collection_path, config):
    name = collection_path.name
    if (
        ABSENT
        and collection_path.parent == HERE
        and name.startswith("test_")
        and name not in OFFLINE
    ):
        return True
    return None


def pytest_collect_file(file_path, parent):
    if ABSENT and file_path == Path(__file__).resolve():
        return _NoImage.from_parent(parent, path=file_path)
    return None


# The session's VM is stopped right after the last test that uses it: an idle
# guest under software emulation still takes a third of a core, which every
# later test of the session would pay for.
_SHARED: dict = {"last": None, "box": None}


def pytest_collection_modifyitems(session, config, items):
    users = [i.nodeid for i in items if "qemu_vm" in getattr(i, "fixturenames", ())]
    _SHARED["last"] = users[-1] if users else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    if item.nodeid == _SHARED["last"] and _SHARED["box"] is not None:
        _SHARED["box"].kill()
        _SHARED["box"] = None


@pytest.fixture(scope="session")
def qemu_vm(tmp_path_factory):
    reason = not_built_reason(need_disk=True)
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("qemu")
    disk = QemuBox.make_disk(work / "disk.img")
    box = QemuBox(disk, work, free_port(), web_port=free_port(), media_slots=True)
    try:
        box.boot()
        wait_for(
            lambda: box.show(UNIT, "ActiveState")["ActiveState"] == "active", 120, f"{UNIT} active"
        )
        box.register_ae(CALLING_AE)
        _SHARED["box"] = box
        yield box
    finally:
        _SHARED["box"] = None
        box.kill()
