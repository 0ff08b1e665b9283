"""Fixtures: a configured data folder and a running pacsbox on a free port."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import Server, cli, write_config
from tests.postgres import PostgresServer


def pytest_configure(config):
    missing = [t for t in ("storescu", "echoscu", "findscu") if shutil.which(t) is None]
    if missing:
        raise pytest.UsageError(
            "DCMTK is missing (" + ", ".join(missing) + "): run `make test`, which installs it"
        )


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
    cli(path, "ae", "add", "STORESCU", "--host", "127.0.0.1")
    cli(path, "ae", "add", "FINDSCU", "--host", "127.0.0.1")
    return path


@pytest.fixture
def server(ini):
    srv = Server(ini).start()
    yield srv
    srv.stop()
