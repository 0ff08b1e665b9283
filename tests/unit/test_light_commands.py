"""The queue's commands start fast: with a daemon running, `pacsbox forward`, `queue`
and `route` only write and read rows, so they must not load the DICOM libraries
(pydicom alone costs a CLI 0.15-0.3 s, which a forward's bench measures)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    ["pacsbox.outbound.commands", "pacsbox.outbound.route_commands", "pacsbox.outbound.forward"],
)
def test_the_queue_commands_load_no_dicom_library(module):
    code = (
        f"import sys, {module}, pacsbox.cli; "
        "print(sorted(k for k in ('pydicom', 'pynetdicom', 'numpy') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
