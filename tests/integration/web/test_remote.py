"""The Remote page (SCU-2, WEB-4): a search of a real dcmqrscp lists its studies with what
is stored here, and the Retrieve button queues the job; Query gates the one, Move the other."""

from __future__ import annotations

import pytest

from pacsbox.db import queue
from pacsbox.db.aes import ae_upsert
from pacsbox.db.auth_models import Journal
from tests.helpers import free_port, require_tools
from tests.integration.web.conftest import login
from tests.interop.test_remote_qr import A, B, _studies
from tests.peers import QRSCP


@pytest.fixture
def qr(tmp_path, archive):
    """dcmqrscp holding studies A and B; B is also stored here."""
    require_tools("dcmqrscp", "storescu")
    scp = QRSCP(tmp_path / "qr")
    try:
        files = _studies(tmp_path / "files")
        scp.store(*files)
        archive.store(files[-1].read_bytes(), source="test")  # study B's one image
        ae_upsert("DCMQR", hostname="127.0.0.1", port=scp.port)
        yield scp
    finally:
        scp.stop()


def test_the_remote_page_lists_studies_with_the_local_column(app, qr):
    b = login(app, "searcher", ["query"])
    data = b.get("/remote.json", params={"ae": "DCMQR", "patient_id": "P*"}).json
    assert data["aes"] == ["DCMQR"] and data["error"] == ""
    rows = {r["StudyInstanceUID"]: r for r in data["results"]}
    assert set(rows) == {A, B}
    assert (rows[A]["local"], rows[B]["local"], rows[B]["local_count"]) == ("none", "all", 1)
    # A date range from the form's date inputs; the page shows the local column.
    html = b.get("/remote", params={"ae": "DCMQR", "date_from": "2023-01-01",
                                    "date_to": "2023-12-31"}).text  # fmt: skip
    assert "1 match on DCMQR" in html and "POE^BEN" in html and "ROE^ANN" not in html
    assert '<td class="local">all (1/1 instances)</td>' in html
    assert 'action="/remote/retrieve"' not in html  # no Move privilege, no Retrieve button
    # Patient level, and a study's series through its link.
    data = b.get(
        "/remote.json", params={"ae": "DCMQR", "level": "patient", "patient_name": "ROE*"}
    ).json
    assert [r["PatientID"] for r in data["results"]] == ["P77"]
    html = b.get("/remote", params={"ae": "DCMQR", "patient_id": "P77"}).text
    assert f"/remote?ae=DCMQR&amp;level=series&amp;study={A}" in html
    data = b.get("/remote.json", params={"ae": "DCMQR", "level": "series", "study": A}).json
    assert len(data["results"]) == 2 and {r["local"] for r in data["results"]} == {"none"}


def test_the_remote_page_says_what_went_wrong(app, qr):
    ae_upsert("DOWN", hostname="127.0.0.1", port=free_port())
    b = login(app, "searcher", ["query"])
    html = b.get("/remote", params={"ae": "DOWN", "patient_id": "P77"}).text
    assert '<p class="error" id="remote-error">DOWN (127.0.0.1:' in html
    assert 'value="P77"' in html  # the form is kept
    r = b.get("/remote.json", params={"ae": "DOWN"}, expect_errors=True)
    assert r.status_int == 502 and "does not answer" in r.json["error"]
    r = b.get("/remote.json", params={"ae": "DCMQR", "level": "series"}, expect_errors=True)
    assert r.status_int == 400 and "StudyInstanceUID" in r.json["error"]
    r = b.get("/remote.json", params={"ae": "DCMQR", "date_from": "May 2024"}, expect_errors=True)
    assert r.status_int == 400 and "YYYY-MM-DD" in r.json["error"]


def test_the_retrieve_button_queues_a_job_for_a_user_with_move(app, qr):
    b = login(app, "fetcher", ["query", "move", "forward"])
    html = b.get("/remote", params={"ae": "DCMQR", "patient_id": "P77"}).text
    assert html.count('action="/remote/retrieve"') == 1 and f'value="{A}"' in html
    r = b.post("/remote/retrieve", {"ae": "DCMQR", "study": A})
    assert r.status_int == 303
    job_id = int(r.headers["Location"].split("?")[0].rsplit("/", 1)[1])
    assert r.headers["Location"].startswith(f"/queue/{job_id}?msg=retrieve")
    job = queue.get(job_id)
    assert job is not None and (job.kind, job.destination, job.state) == (
        "retrieve", "DCMQR", "queued")  # fmt: skip
    assert job.owner == "fetcher" and job.payload == {"study_uid": A, "series_uid": ""}
    entry = Journal.get(Journal.action == "retrieve")
    assert (entry.user, entry.target) == ("fetcher", "DCMQR") and A in entry.detail
    # The JSON twin, for one series; and mistakes are 4xx with the reason.
    r = b.post("/remote/retrieve.json", {"ae": "DCMQR", "study": A, "series": "1.2.3"})
    assert queue.get(r.json["job"]).label == "1 series from DCMQR"
    r = b.post("/remote/retrieve.json", {"ae": "NOBODY", "study": A}, expect_errors=True)
    assert r.status_int == 404 and r.json["error"] == "AE NOBODY is not in the AE table"


def test_query_gates_the_search_and_move_the_retrieve(app, qr):
    searcher = login(app, "searcher", ["query"])
    mover = login(app, "mover", ["move"])
    other = login(app, "other", ["view", "forward", "download", "admin"])
    assert 'href="/remote"' in searcher.get("/studies").text
    assert 'href="/remote"' not in mover.get("/studies").text
    assert 'href="/remote"' not in other.get("/studies").text
    for b in (mover, other):
        assert b.get("/remote", params={"ae": "DCMQR"}, expect_errors=True).status_int == 403
    for b in (searcher, other):
        r = b.post("/remote/retrieve", {"ae": "DCMQR", "study": A}, expect_errors=True)
        assert r.status_int == 403
    assert mover.post("/remote/retrieve.json", {"ae": "DCMQR", "study": A}).json["ok"]
    # Without Forward /queue is closed to the mover: the job's page under /jobs, where
    # Move lets them cancel it.
    r = mover.post("/remote/retrieve", {"ae": "DCMQR", "study": A})
    job_id = int(r.headers["Location"].split("?")[0].rsplit("/", 1)[1])
    assert r.headers["Location"].startswith(f"/jobs/{job_id}?msg=retrieve%20job%20")
    assert mover.get(f"/jobs/{job_id}.json").json["jobs"][0]["kind"] == "retrieve"
    assert mover.post(f"/jobs/{job_id}/cancel.json").json["ok"]
    assert queue.get(job_id).state == "cancelled"
    assert [j.owner for j in queue.jobs(kind="retrieve")] == ["mover", "mover"]
