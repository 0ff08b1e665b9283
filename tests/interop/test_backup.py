"""Back up and restore (DATA-7) with Orthanc as the off-site copy: a route that takes
every study, with commitment, then a box that lost its disk gets everything back
with ``pacsbox sync run``, byte for byte. Once the backup has committed them,
PurgeRequiresCommitment no longer keeps the studies."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest

from pacsbox import meta
from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import lookup
from pacsbox.db.models import Instance
from tests.helpers import Server, cli, dcmtk, poll, write_config
from tests.peers import Orthanc
from tests.synth import make_instance

pytestmark = pytest.mark.skipif(shutil.which("Orthanc") is None, reason="no Orthanc")
STUDIES = ("1.2.826.0.1.3680043.8.498.818181.1", "1.2.826.0.1.3680043.8.498.818181.2")


def _box(folder: Path) -> Path:
    ini = write_config(folder, StableStudySeconds=1, PurgeRequiresCommitment="yes")
    cli(ini, "ae", "add", "CT1", "--host", "127.0.0.1")
    return ini


def _jobs(ini: Path, kind: str) -> list[dict]:
    return [j for j in json.loads(cli(ini, "queue", "--json").stdout) if j["kind"] == kind]


def _all_done(ini: Path, kind: str, n: int) -> bool:
    jobs = _jobs(ini, kind)
    return len(jobs) == n and all(j["state"] == "done" for j in jobs)


def _point_orthanc_at(orthanc: Orthanc, port: int) -> None:
    """The box came back on another port: Orthanc's entry for it follows."""
    body = json.dumps({"AET": "PACSBOX", "Host": "127.0.0.1", "Port": port}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{orthanc.http}/modalities/pacsbox",
                                 data=body, method="PUT")  # fmt: skip
    urllib.request.urlopen(req, timeout=10).read()


def test_a_backup_route_with_commitment_and_a_restore_after_a_lost_disk(tmp_path):
    sent: dict[str, bytes] = {}
    files = tmp_path / "images"
    files.mkdir()
    for study in STUDIES:
        for i in range(3):
            data = make_instance(study_uid=study, instance_number=i + 1)
            parsed = meta.parse(data)
            (files / f"{parsed.attrs.sop_instance_uid}.dcm").write_bytes(data)
            sent[parsed.attrs.sop_instance_uid] = data[parsed.dataset_offset :]
    ini = _box(tmp_path / "box")
    server = Server(ini).start()
    orthanc = Orthanc(tmp_path / "orthanc", server.port)
    try:
        cli(ini, "ae", "add", "ORTHANC", "--host", "127.0.0.1", "--port", str(orthanc.dicom))
        cli(ini, "route", "add", "BACKUP", "--to", "ORTHANC", "--commit")
        r = dcmtk("storescu", "-aet", "CT1", "-aec", server.ae_title, "127.0.0.1",
                  str(server.port), *sorted(map(str, files.iterdir())))  # fmt: skip
        assert r.returncode == 0, r.stderr
        poll(lambda: _all_done(ini, "route", 2) and _all_done(ini, "commit", 2), 90,
             what="both studies backed up and committed")  # fmt: skip
        assert len(orthanc.get("/instances")) == 6
        # Committed everywhere the rule asks: the purge would no longer keep them for it.
        dry = cli(ini, "purge", "--dry-run", check=False).stdout
        assert "not committed anywhere" not in dry
        server.stop()

        # The disk is lost: a new box with the same AE title restores from the backup.
        shutil.rmtree(tmp_path / "box")
        ini = _box(tmp_path / "box")
        server = Server(ini).start()
        cli(ini, "ae", "add", "ORTHANC", "--host", "127.0.0.1", "--port", str(orthanc.dicom))
        _point_orthanc_at(orthanc, server.port)
        r = cli(ini, "sync", "run", "ORTHANC", "--wait")
        assert "2 retrieves queued" in r.stdout, r.stdout
        poll(lambda: _all_done(ini, "retrieve", 2), 90, what="the restore")
    finally:
        orthanc.stop()
        server.stop()
    archive = Archive(load(ini))
    try:
        got = {}
        for inst in Instance.select():
            data = lookup.instance_path(inst).read_bytes()
            got[inst.sop_instance_uid] = data[meta.parse(data).dataset_offset :]
    finally:
        archive.close()
    assert got == sent  # every image back, byte for byte
