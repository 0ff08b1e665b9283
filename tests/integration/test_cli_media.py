"""`pacsbox export` and `pacsbox burn` over what the archive holds, read back by pydicom."""

from __future__ import annotations

from pathlib import Path

from pydicom.fileset import FileSet

from pacsbox.archive import Archive
from pacsbox.config import load
from tests.helpers import cli
from tests.synth import make_study


def test_export_then_burn_to_file(ini, tmp_path):
    archive = Archive(load(ini))
    sops = []
    for data in make_study(tmp_path / "src", patient_id="EXP1", n_series=2, per_series=3):
        sops.append(archive.store(data, source="test").sop_instance_uid)
    for data in make_study(tmp_path / "src2", patient_id="OTHER", n_series=1, per_series=2):
        archive.store(data, source="test")
    archive.close()

    out = tmp_path / "out"
    r = cli(ini, "export", "--patient", "EXP1", "--out", str(out), "--label", "clinic cd")
    assert "volume 1 CLINIC_CD: 6 instances" in r.stdout
    fs = FileSet(out / "CLINIC_CD" / "DICOMDIR")
    assert sorted(i.SOPInstanceUID for i in fs) == sorted(sops)

    disc = tmp_path / "disc.iso"
    r = cli(ini, "burn", str(out / "CLINIC_CD"), "--device", f"stdio:{disc}")
    assert "files verified" in r.stdout and disc.stat().st_size > 0

    r = cli(ini, "burn", str(out / "CLINIC_CD"), "--device", "stdio:/dev/full", check=False)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 5 and last.startswith("pacsbox: ") and "write error" in last


def test_export_needs_a_selection(ini, tmp_path):
    r = cli(ini, "export", "--out", str(tmp_path / "x"), check=False)
    assert r.returncode == 2 and "--patient" in r.stderr
    r = cli(ini, "export", "--study", "1.2.3", "--out", str(tmp_path / "x"), check=False)
    assert r.returncode == 3 and "nothing" in r.stderr
    assert not Path(tmp_path / "x").exists()
