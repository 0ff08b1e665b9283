"""Export from the web page: a study becomes a DICOMDIR ZIP, with the Export privilege only."""

from __future__ import annotations

import io
import zipfile

import pydicom
from pydicom.fileset import FileSet

from tests.integration.web.conftest import login, store


def test_export_study_as_dicomdir_zip(app, archive, tmp_path):
    first = store(archive, patient_name="EXPORT^ME", patient_id="E1")
    store(archive, patient_name="EXPORT^ME", patient_id="E1", study_uid=first.study_instance_uid)
    uid = first.study_instance_uid
    b = login(app, "exporter", privileges=("view", "export"))
    page = b.get(f"/studies/{uid}")
    assert "Export DICOMDIR" in page.text
    r = b.post(f"/studies/{uid}/export")
    assert r.status_int == 200 and r.content_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.body)) as z:
        names = z.namelist()
        z.extractall(tmp_path / "x")
    assert any(n.endswith("DICOMDIR") for n in names)
    dicomdir = next((tmp_path / "x").rglob("DICOMDIR"))
    fs = FileSet(pydicom.dcmread(dicomdir))
    assert len(fs) == 2 and {i.StudyInstanceUID for i in fs} == {uid}


def test_export_needs_the_export_privilege(app, archive):
    uid = store(archive, patient_name="NO^EXPORT").study_instance_uid
    b = login(app, "viewer", privileges=("view",))
    assert "Export DICOMDIR" not in b.get(f"/studies/{uid}").text
    r = b.post(f"/studies/{uid}/export", expect_errors=True)
    assert r.status_int == 403


def _wait_job(b, job_id):
    from tests.helpers import poll

    return poll(
        lambda: (lambda j: j if j["state"] != "running" else None)(
            b.get(f"/jobs/{job_id}.json").json["jobs"][0]
        ),
        timeout=60,
        what="the burn job",
    )


def test_burn_study_is_a_job_with_progress(archive, clock, tmp_path):
    from pacsbox.web.app import create_app

    disc = tmp_path / "disc.iso"
    app = create_app(archive.cfg.replace(BurnerDevice=f"stdio:{disc}"), archive, clock=clock)
    uid = store(archive, patient_name="BURN^ME").study_instance_uid
    b = login(app, "burner", privileges=("view", "export"))
    r = b.post(f"/studies/{uid}/burn.json", {"media": "cd"})
    job = _wait_job(b, r.json["job"])
    assert job["state"] == "done" and job["percent"] == 100, job
    assert "verified" in job["message"] and disc.stat().st_size > 0
    assert "burn" in b.get("/jobs").text

    bad = create_app(archive.cfg.replace(BurnerDevice="stdio:/dev/full"), archive, clock=clock)
    b2 = login(bad, "burner2", privileges=("view", "export"))
    job = _wait_job(b2, b2.post(f"/studies/{uid}/burn.json", {"media": "cd"}).json["job"])
    assert job["state"] == "failed" and "write error" in job["message"]
    # Another user does not see someone else's job.
    other = login(app, "other", privileges=("view",))
    assert other.get(f"/jobs/{r.json['job']}.json", expect_errors=True).status_int == 404
