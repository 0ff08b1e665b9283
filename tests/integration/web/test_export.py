"""Export and burn from the web page: queue jobs (issue 17 item 1) with the Export
privilege only; an export's DICOMDIR ZIP downloads from its job page, also after the
app and the archive are opened again; burns to one drive wait for each other."""

from __future__ import annotations

import io
import zipfile

import pydicom
from pydicom.fileset import FileSet

from pacsbox.archive import Archive
from pacsbox.db import queue
from pacsbox.db.models import utcnow
from pacsbox.outbound.runner import busy_limit
from pacsbox.web.app import create_app
from tests.helpers import run_jobs
from tests.integration.web.conftest import login, store


def test_export_study_is_a_job_whose_zip_downloads_after_a_reopen(app, cfg, archive, clock,
                                                                  tmp_path):  # fmt: skip
    first = store(archive, patient_name="EXPORT^ME", patient_id="E1")
    store(archive, patient_name="EXPORT^ME", patient_id="E1", study_uid=first.study_instance_uid)
    uid = first.study_instance_uid
    b = login(app, "exporter", privileges=("view", "export"))
    page = b.get(f"/studies/{uid}")
    assert "Export DICOMDIR" in page.text
    r = b.post(f"/studies/{uid}/export")
    assert r.status_int == 303 and "/jobs/" in r.headers["Location"]
    job_id = int(r.headers["Location"].split("/jobs/")[1].split("?")[0])
    (job,) = b.get(f"/jobs/{job_id}.json").json["jobs"]
    assert (job["kind"], job["state"], job["download"]) == ("export", "queued", "")
    assert b.get(f"/jobs/{job_id}/download", expect_errors=True).status_int == 404
    assert run_jobs(cfg, archive) == ["done"]
    page = b.get(f"/jobs/{job_id}")
    assert "Download ZIP" in page.text and "100%" in page.text and "2 images" in page.text

    # The web page and the archive opened again (a restart): the link still works.
    archive.close()
    again = Archive(cfg)
    try:
        b2 = login(create_app(cfg, again, clock=clock), "exporter2", privileges=("view", "export"))
        assert b2.get(f"/jobs/{job_id}/download", expect_errors=True).status_int == 404  # not his
        b.t.app = create_app(cfg, again, clock=clock)
        r = b.get(f"/jobs/{job_id}/download")
    finally:
        again.close()
    assert r.content_type == "application/zip"
    assert 'filename="study-dicomdir.zip"' in r.headers["Content-Disposition"]
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
    assert queue.jobs() == []


def test_burn_study_is_a_job_with_progress(archive, clock, tmp_path):
    disc = tmp_path / "disc.iso"
    cfg = archive.cfg.replace(BurnerDevice=f"stdio:{disc}")
    app = create_app(cfg, archive, clock=clock)
    uid = store(archive, patient_name="BURN^ME").study_instance_uid
    b = login(app, "burner", privileges=("view", "export"))
    r = b.post(f"/studies/{uid}/burn.json", {"media": "cd"})
    assert r.json["message"] == f"burn job {r.json['job']} queued"
    assert run_jobs(cfg, archive) == ["done"]
    (job,) = b.get(f"/jobs/{r.json['job']}.json").json["jobs"]
    assert job["state"] == "done" and job["percent"] == 100, job
    assert "verified" in job["last_error"] and disc.stat().st_size > 0
    assert "burn" in b.get("/jobs").text
    assert (
        b.post(f"/studies/{uid}/burn.json", {"media": "tape"}, expect_errors=True).json["error"]
        == "media is cd, dvd or dvd-dl"
    )

    bad_cfg = archive.cfg.replace(BurnerDevice="stdio:/dev/full")
    b2 = login(create_app(bad_cfg, archive, clock=clock), "burner2", privileges=("view", "export"))
    failed = b2.post(f"/studies/{uid}/burn.json", {"media": "cd"}).json["job"]
    assert run_jobs(bad_cfg, archive) == ["failed"]  # a spoilt disc is not tried again alone
    (job,) = b2.get(f"/jobs/{failed}.json").json["jobs"]
    assert job["state"] == "failed" and "write error" in job["last_error"]
    page = b2.get(f"/jobs/{failed}").text
    assert "write error" in page and f'action="/jobs/{failed}/retry"' in page
    # Another user does not see someone else's job.
    other = login(app, "other", privileges=("view",))
    assert other.get(f"/jobs/{r.json['job']}.json", expect_errors=True).status_int == 404


def test_a_burn_waits_for_a_burn_to_its_drive_but_not_for_a_forward(app, cfg, archive):
    """Two burns to one drive never run at once, even with DeliveryConcurrency 2; a
    forward runs beside a burn."""
    cfg = cfg.replace(DeliveryConcurrency=2)
    uid = store(archive, patient_name="BURN^TWICE").study_instance_uid
    b = login(app, "burner", privileges=("view", "export"))
    first, second = (b.post(f"/studies/{uid}/burn.json", {"media": "cd"}).json["job"]
                     for _ in range(2))  # fmt: skip
    forward = queue.submit("forward", "WS", {"studies": [uid]})
    limit = busy_limit(cfg)
    assert queue.claim("daemon", utcnow(), limit).id == first
    assert queue.claim("daemon", utcnow(), limit).id == forward  # the second burn waits
    assert queue.claim("daemon", utcnow(), limit) is None
    states = {j["id"]: j["state"] for j in b.get("/jobs.json").json["jobs"]}
    assert (states[first], states[second]) == ("running", "queued")
    queue.succeed(first)
    assert queue.claim("daemon", utcnow(), limit).id == second
