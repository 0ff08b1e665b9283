"""A really full disk (a 2 MB tmpfs as the archive): storescu gets A700, earlier images stay intact."""

from __future__ import annotations

import subprocess

import pytest

from pacsbox.db import close_database, open_database
from pacsbox.db.lookup import instance_path
from pacsbox.db.models import Instance
from tests.helpers import DCMTK_ENV, Server, cli, write_config
from tests.synth import make_instance, write_files


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "archive"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_full_archive_answers_a700_and_keeps_what_it_has(tmp_path, small_disk):
    # Watermarks at 100 % so the real ENOSPC path answers, not the purge policy.
    ini = write_config(
        tmp_path / "box", ArchiveDirectory=small_disk, HighWaterMark=100, LowWaterMark=99
    )
    cli(ini, "ae", "add", "STORESCU")
    files = write_files(
        tmp_path / "send",
        [
            make_instance(patient_id="FULL", rows=256, columns=256, instance_number=i + 1)
            for i in range(30)
        ],
    )
    server = Server(ini).start()
    try:
        r = subprocess.run(
            [
                "storescu",
                "-d",
                "+rn",
                "-nh",
                "-aet",
                "STORESCU",
                "-aec",
                server.ae_title,
                "127.0.0.1",
                str(server.port),
                *map(str, files),
            ],
            env=DCMTK_ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "0xa700" in r.stdout.lower() + r.stderr.lower()
        assert server.proc.poll() is None
        assert "disk full writing to" in server.output()  # ENOSPC, not the purge policy
    finally:
        server.stop()
    done = sorted((tmp_path / "send").glob("*.done"))
    assert 0 < len(done) < len(files)
    open_database(server.cfg.database_url, run_migrations=False)
    try:
        rows = list(Instance.select())
        assert len(rows) == len(done)
        stored = {instance_path(i).read_bytes()[-4096:] for i in rows}
        assert all(p.read_bytes()[-4096:] in stored for p in done)
    finally:
        close_database()
    assert not list(small_disk.rglob("*.part"))
