"""The job pages (web/jobs.py): one page under /jobs and /queue, read from the durable
queue; who may see, retry and cancel which job; an export's ZIP goes with its job."""

from __future__ import annotations

import datetime as dt

from pacsbox.db import queue
from pacsbox.db.models import Patient, Study, utcnow
from pacsbox.web import users
from tests.helpers import run_jobs
from tests.integration.web.conftest import login, store


def _public(archive):
    uid = store(archive, patient_name="JOBS^PAGE").study_instance_uid
    Study.update(private=False).execute()  # users without View see public studies only
    Patient.update(private=False).execute()
    return uid


def test_one_job_page_under_jobs_and_queue_with_what_each_user_may_see(app, archive):
    uid = _public(archive)
    alice = login(app, "alice", ["export", "forward"])
    carol = login(app, "carol", ["export"])
    admin = login(app, "boss", ["admin"])
    mine = alice.post(f"/studies/{uid}/export.json").json["job"]
    hers = carol.post(f"/studies/{uid}/burn.json", {"media": "dvd"}).json["job"]
    assert alice.get("/jobs.json").json == alice.get("/queue.json").json  # the same page
    assert [j["id"] for j in alice.get("/jobs.json").json["jobs"]] == [mine]
    assert [j["id"] for j in carol.get("/jobs.json").json["jobs"]] == [hers]
    assert carol.get("/queue.json", expect_errors=True).status_int == 403  # Forward, as before
    assert alice.get(f"/jobs/{hers}.json", expect_errors=True).status_int == 404
    assert [j["id"] for j in admin.get("/jobs.json").json["jobs"]] == [hers, mine]
    (burn,) = carol.get(f"/jobs/{hers}.json").json["jobs"]
    assert (burn["kind"], burn["state"], burn["link"]) == ("burn", "queued", f"/studies/{uid}")
    assert burn["destination"].startswith("local:")
    page = carol.get(f"/jobs/{hers}").text
    assert f'action="/jobs/{hers}/cancel"' in page and "JOBS^PAGE" not in page


def test_retry_and_cancel_need_the_privilege_that_started_the_job(app, archive):
    uid = _public(archive)
    carol = login(app, "carol", ["export"])
    admin = login(app, "boss", ["admin"])
    other = login(app, "dave", ["export"])
    job = carol.post(f"/studies/{uid}/export.json").json["job"]
    assert other.post(f"/jobs/{job}/cancel.json", expect_errors=True).status_int == 404
    assert carol.post(f"/jobs/{job}/cancel.json").json["message"] == f"job {job} cancelled"
    r = carol.post(f"/jobs/{job}/cancel.json", expect_errors=True)
    assert r.status_int == 404 and r.json["error"] == f"job {job} has ended already"
    users.update_user("carol", privileges=["view"])  # Export taken away
    r = carol.post(f"/jobs/{job}/retry.json", expect_errors=True)
    assert r.status_int == 403 and "Export" in r.json["error"]
    assert queue.get(job).state == "cancelled"
    assert admin.post(f"/jobs/{job}/retry.json").json["message"] == f"job {job} queued again"
    assert queue.get(job).state == "queued"
    # Without Export no download either, even of one's own job.
    assert run_jobs(archive.cfg, archive) == ["done"]
    assert carol.get(f"/jobs/{job}/download", expect_errors=True).status_int == 403


def test_an_exports_zip_goes_when_its_job_leaves_the_queue(app, cfg, archive):
    uid = _public(archive)
    b = login(app, "alice", ["export"])
    first = b.post(f"/studies/{uid}/export.json").json["job"]
    run_jobs(cfg, archive)
    zip_path = cfg.data_dir / "exports" / str(first) / "study-dicomdir.zip"
    assert zip_path.is_file() and b.get(f"/jobs/{first}/download").body == zip_path.read_bytes()
    second = b.post(f"/studies/{uid}/export.json").json["job"]
    assert queue.purge_finished(utcnow() + dt.timedelta(days=1)) == 1  # the done one
    assert run_jobs(cfg, archive) == ["done"]  # the next export tidies the folders of jobs gone
    assert (cfg.data_dir / "exports" / str(second) / "study-dicomdir.zip").is_file()
    assert not zip_path.parent.exists()
    assert b.get(f"/jobs/{first}/download", expect_errors=True).status_int == 404
