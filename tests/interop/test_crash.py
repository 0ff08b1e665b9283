"""kill -9 in the middle of an ingest: every acknowledged image survives, byte for byte.

Two storescu processes send 1,200 images over two associations; storescu
renames a file to ``.done`` only after our success response. The server is
killed with SIGKILL several times mid-stream and restarted; the senders retry
what was not acknowledged. At the end every ``.done`` file must be indexed and
stored unchanged, and the start-up check must leave no temp file and no
unindexed file behind.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pydicom
import pytest

from pacsbox.db import close_database, open_database
from pacsbox.db.lookup import instance_path
from pacsbox.db.models import Instance
from tests.helpers import DCMTK_ENV, Server, cli, poll
from tests.synth import make_instance, write_files

pytestmark = pytest.mark.slow

PER_SENDER = 600
ROUNDS = 3


def _senders(server: Server, folders: list[Path]) -> list[subprocess.Popen]:
    """Start one storescu per folder; like a modality, retry what failed last time (.bad)."""
    procs = []
    for folder in folders:
        for bad in folder.glob("*.bad"):
            bad.rename(bad.with_suffix(""))
        files = sorted(str(p) for p in folder.glob("*.dcm"))
        if not files:
            continue
        procs.append(
            subprocess.Popen(
                [
                    "storescu",
                    "+rn",
                    "-nh",
                    "-aet",
                    "STORESCU",
                    "-aec",
                    server.ae_title,
                    "127.0.0.1",
                    str(server.port),
                    *files,
                ],
                env=DCMTK_ENV,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return procs


def _done(folders: list[Path]) -> list[Path]:
    return [p for f in folders for p in f.glob("*.done")]


def test_kill9_during_ingest_loses_nothing_acknowledged(ini, tmp_path):
    folders = []
    for s in range(2):
        study = f"1.2.826.0.1.3680043.10.1395.7.{s}"
        datas = [
            make_instance(
                patient_id=f"CRASH{s}",
                study_uid=study,
                series_uid=study + ".1",
                instance_number=i + 1,
                rows=32,
                columns=32,
            )
            for i in range(PER_SENDER)
        ]
        folders.append(tmp_path / f"sender{s}")
        write_files(folders[-1], datas)
    originals = {}
    for f in folders:
        for p in f.glob("*.dcm"):
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            originals[p.stem] = (str(ds.SOPInstanceUID), p.read_bytes())

    server = Server(ini)
    for round_no in range(ROUNDS):
        server.start()
        before = len(_done(folders))
        procs = _senders(server, folders)
        target = before + (PER_SENDER * 2 - before) // 3
        poll(lambda t=target: len(_done(folders)) >= t, timeout=120, what=f"round {round_no}")
        server.kill9()
        for p in procs:
            p.wait(60)
    # Final round: let the senders finish so we know the end state.
    server.start()
    for p in _senders(server, folders):
        assert p.wait(300) == 0
    server.stop()

    done = _done(folders)
    assert len(done) == PER_SENDER * 2
    r = cli(ini, "check", check=False)
    assert r.returncode == 0, r.stdout
    open_database(server.cfg.database_url, run_migrations=False)
    try:
        rows = {i.sop_instance_uid: i for i in Instance.select()}
        assert len(rows) == PER_SENDER * 2
        for p in done:
            sop, data = originals[p.name[: -len(".dcm.done")]]
            stored = instance_path(rows[sop]).read_bytes()
            # storescu re-encodes headers its own way; every element must be equal.
            assert pydicom.dcmread(io.BytesIO(stored)) == pydicom.dcmread(io.BytesIO(data))
    finally:
        close_database()
    archive = Path(server.cfg.ArchiveDirectory)
    assert not list(archive.rglob("*.part"))
    assert len([p for p in archive.rglob("*") if p.is_file()]) == PER_SENDER * 2
