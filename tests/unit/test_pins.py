"""pyproject.toml pins what the image locks, so the venv `make test` builds runs the
pydicom and pynetdicom the box ships (wire/ depends on pynetdicom's internals)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MUST_PIN = ("pydicom", "pynetdicom")


def _pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^,;\s]+)", dep.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def _lock() -> dict[str, str]:
    text = (ROOT / "image-build" / "requirements.lock").read_text()
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^([^#\s=]+)==(\S+)$", text, re.M)}


def test_pydicom_and_pynetdicom_are_pinned_exactly():
    pins = _pyproject_pins()
    assert [name for name in MUST_PIN if name not in pins] == []


def test_every_pyproject_pin_equals_the_image_lock():
    lock = _lock()
    wrong = {
        name: (version, lock.get(name))
        for name, version in _pyproject_pins().items()
        if lock.get(name) != version
    }
    assert wrong == {}
