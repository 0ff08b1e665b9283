"""Fixtures: a configured data folder and a running pacsbox on a free port."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Server, add_aes, require_tools, write_config
from tests.postgres import PostgresServer

# Each folder is one kind of test (ARCHITECTURE.md, "The repository"); the
# folder gives the marker, so `-m "not interop"` and `make test-fast` select by it.
KINDS = ("unit", "integration", "interop", "image", "fuzz", "powercut")


def pytest_collection_modifyitems(config, items):
    root = Path(__file__).parent
    for item in items:
        try:
            kind = Path(item.fspath).relative_to(root).parts[0]
        except ValueError:
            continue
        if kind in KINDS:
            item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(autouse=True)
def _tools_of_the_folder(request):
    """Interop and image tests drive DCMTK: without it they skip (or fail under
    ``make test``, which installs it and sets PACSBOX_REQUIRE_TOOLS=1); the other
    folders never need it."""
    kind = Path(str(request.node.fspath)).relative_to(Path(__file__).parent).parts[0]
    if kind in ("interop", "image"):
        require_tools("storescu", "echoscu", "findscu")


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL for the index (started once, on first use)."""
    srv = PostgresServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def ini(tmp_path):
    """An INI in a fresh data folder; SCU AE title STORESCU and FINDSCU allowed."""
    path = write_config(tmp_path / "box")
    add_aes(path, "STORESCU", "FINDSCU", host="127.0.0.1")
    return path


@pytest.fixture
def server(ini):
    srv = Server(ini).start()
    yield srv
    srv.stop()
