"""A real PostgreSQL server for the tests that run the index on it (issue 2: Database URL).

Debian's ``postgresql`` package provides the binaries; the cluster is made
in a temporary folder, listens on a free loopback port, skips fsync (test
data only) and is stopped when the test session ends. PostgreSQL refuses to
run as root, so as root it runs as the ``postgres`` user the package makes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.helpers import free_port, poll


def _bin(name: str) -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)  # fmt: skip
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make test`, which installs it")
    return found[-1]


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PostgresServer:
    """One cluster for the session; ``new_database()`` gives each user a fresh database."""

    USER = "pacs"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pacsbox-pg-"))
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> PostgresServer:
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        data = self.dir / "data"
        made = subprocess.run(
            _as_owner([str(_bin("initdb")), "-D", str(data), "-A", "trust", "-U", self.USER]),
            capture_output=True, text=True, timeout=120, cwd=self.dir,
        )  # fmt: skip
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed: {made.stderr.strip()[-500:]}")
        self.proc = subprocess.Popen(
            _as_owner([str(_bin("postgres")), "-D", str(data), "-p", str(self.port),
                       "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1",
                       "-c", "fsync=off", "-c", "max_connections=200"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir,
        )  # fmt: skip
        poll(self._answers, timeout=60, what="PostgreSQL")
        return self

    def url(self, database: str) -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{database}"

    def _answers(self) -> bool:
        import psycopg2

        try:
            psycopg2.connect(self.url("postgres")).close()
            return True
        except psycopg2.OperationalError:
            return False

    def new_database(self) -> str:
        import psycopg2

        name = "box_" + uuid.uuid4().hex[:12]
        conn = psycopg2.connect(self.url("postgres"))
        conn.autocommit = True
        try:
            conn.cursor().execute(f"CREATE DATABASE {name}")
        finally:
            conn.close()
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


DATABASES = ["sqlite", "postgresql"]


def index_settings(request, db: str) -> dict[str, str]:
    """Settings for an index in ``db``: SQLite's default file, or a fresh PostgreSQL database."""
    if db == "postgresql":
        return {"Database": request.getfixturevalue("postgres").new_database()}
    return {}
