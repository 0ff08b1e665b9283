"""The power-cut tests: a volatile FUSE mount needs /dev/fuse, root and libfuse 3."""

from __future__ import annotations

import os

import pytest

from tests.powercut.mount import fuse_missing


@pytest.fixture(autouse=True)
def _fuse_here():
    """Skip with the reason when no volatile mount can be made (under ``make
    test``, PACSBOX_REQUIRE_TOOLS=1, which installs libfuse3-3: fail)."""
    why = fuse_missing()
    if why is None:
        return
    if os.environ.get("PACSBOX_REQUIRE_TOOLS") == "1":
        pytest.fail(why)
    pytest.skip(why)
