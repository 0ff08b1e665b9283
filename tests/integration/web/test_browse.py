"""Search with wild cards, keyset paging, sort, read/unread, edit, delete, XSS escaping."""

from __future__ import annotations

from pydicom.uid import generate_uid

from pacsbox.db.auth_models import Journal
from pacsbox.db.models import Instance, Patient, Study
from pacsbox.web import browse
from pacsbox.web.app import create_app
from tests.helpers import run_jobs
from tests.integration.web.conftest import login, store


def finished(b, job: int, archive) -> dict:
    """The job's page once the queue's runner (here, in this thread) has run it."""
    run_jobs(archive.cfg, archive)
    (j,) = b.get(f"/jobs/{job}.json").json["jobs"]
    assert j["state"] == "done", j["last_error"]
    return j


def uids(b, url):
    return [s["study_uid"] for s in b.get(url).json["studies"]]


def test_search_with_wildcards_and_ranges(cfg, archive, clock):
    app = create_app(cfg.replace(PersonNameCaseInsensitive=False), archive, clock=clock)
    a = store(archive, patient_name="DOE^JOHN", patient_id="PID-1", study_date="20240105")
    b_ = store(
        archive, patient_name="DOE^JANE", patient_id="PID-2", study_date="20231231", modality="MR"
    )
    c = store(archive, patient_name="ROE^RICHARD", patient_id="X7", study_date="20240301")
    b = login(app, "root")
    A, B, C = a.study_instance_uid, b_.study_instance_uid, c.study_instance_uid
    assert set(uids(b, "/studies.json?patient_name=DOE*")) == {A, B}
    assert set(uids(b, "/studies.json?patient_name=DOE^J?NE")) == {B}
    # Case counts, as in C-FIND, unless PersonNameCaseInsensitive (test below).
    assert uids(b, "/studies.json?patient_name=doe^j?ne") == []
    assert uids(b, "/studies.json?patient_id=PID-1") == [A]
    assert set(uids(b, "/studies.json?patient_id=PID-?")) == {A, B}
    assert set(uids(b, "/studies.json?study_date=20240101-")) == {A, C}
    assert uids(b, "/studies.json?study_date=-20231231") == [B]
    assert uids(b, "/studies.json?date_from=2024-03-01&date_to=2024-03-31") == [C]
    assert uids(b, "/studies.json?modality=MR") == [B]
    assert set(uids(b, "/studies.json?series_date=&accession=ACC*")) == {A, B, C}
    assert uids(b, "/studies.json?modality=mr") == [B]  # modalities are upper case (CS)
    assert set(uids(b, "/studies.json?modality=MR%5CCT")) == {A, B, C}  # a value list
    assert uids(b, "/studies.json?description=CT*&patient_id=X*") == [C]
    assert set(uids(b, f"/studies.json?study_uid={A}%5C{C}")) == {A, C}  # a list of UIDs
    assert set(uids(b, "/studies.json?study_time=10*")) == {A, B, C}  # hour 10 (the old hint)
    assert set(uids(b, "/studies.json?study_time=1000-1030")) == {A, B, C}
    assert uids(b, "/studies.json?study_time=11") == []
    # Sort by date, both ways.
    assert uids(b, "/studies.json") == [C, A, B]
    assert uids(b, "/studies.json?sort=date_asc") == [B, A, C]
    # LIKE metacharacters are literal, and bad input is a 400 with a reason.
    assert uids(b, "/studies.json?patient_id=PID%25") == []
    r = b.get("/studies.json?study_date=2024-13", expect_errors=True)
    assert r.status_int == 400 and "date" in r.json["error"]
    r = b.get("/studies.json?study_time=noon", expect_errors=True)
    assert r.status_int == 400 and "StudyTime: 'noon' is not a time" in r.json["error"]
    assert b.get("/studies.json?after=garbage!", expect_errors=True).status_int == 400
    assert "DOE^JANE" in b.get("/studies?patient_name=DOE*").text


def test_names_ignore_case_by_default(app, archive):
    """PersonNameCaseInsensitive (on by default) serves the web search as it serves C-FIND."""
    a = store(archive, patient_name="Doe^John", patient_id="P1")
    b = login(app, "root")
    assert uids(b, "/studies.json?patient_name=DOE^J?HN") == [a.study_instance_uid]
    pk = Study.get(Study.study_instance_uid == a.study_instance_uid).patient_id
    r = b.post(f"/patients/{pk}/edit.json", {"patient_name": "Smith^Anna"})
    finished(b, r.json["job"], archive)
    assert uids(b, "/studies.json?patient_name=smith*") == [a.study_instance_uid]
    assert [
        p["patient_id"] for p in b.get("/patients.json?patient_name=sMiTh*").json["patients"]
    ] == ["P1"]
    assert b.get("/patients.json?patient_name=DOE*").json["patients"] == []


def test_an_empty_date_never_matches_a_range(app, archive):
    dated = store(archive, study_date="20231231").study_instance_uid
    store(archive, study_date="")
    b = login(app, "root")
    assert uids(b, "/studies.json?study_date=-20240101") == [dated]
    assert uids(b, "/studies.json?date_to=2024-01-01") == [dated]
    r = b.get("/studies.json?study_date=-", expect_errors=True)
    assert r.status_int == 400 and "StudyDate: a range needs" in r.json["error"]


def test_keyset_paging_returns_every_study_once(app, archive, monkeypatch):
    monkeypatch.setattr(browse, "PAGE", 3)
    made = {
        store(archive, study_date=f"202401{d:02d}").study_instance_uid
        for d in (1, 1, 2, 3, 3, 3, 4)
    }
    b = login(app, "root")
    seen, url, pages = [], "/studies.json", 0
    while url:
        data = b.get(url).json
        seen += [s["study_uid"] for s in data["studies"]]
        pages += 1
        url = f"/studies.json?after={data['next']}" if data["next"] else ""
    assert sorted(seen) == sorted(made) and len(seen) == 7 and pages == 3


def test_mark_read_edit_and_delete_with_confirmation(app, archive, cfg):
    res = store(archive)
    other = store(archive, study_uid=res.study_instance_uid, series_uid=generate_uid())
    uid = res.study_instance_uid
    b = login(app, "power", ["view", "modify", "mark"])
    assert uids(b, "/studies.json?read=no") == [uid]
    b.post(f"/studies/{uid}/read", {"read": "yes"})
    assert uids(b, "/studies.json?read=yes") == [uid]
    # Edit (a job rewriting the files, see test_edit.py) with a journal entry.
    r = b.post(
        f"/studies/{uid}/edit.json", {"study_description": "BRAIN W/O", "accession_number": "A9"}
    )
    assert r.json["changed"] == ["accession_number", "study_description"]
    finished(b, r.json["job"], archive)
    assert b.get(f"/studies/{uid}.json").json["study"]["description"] == "BRAIN W/O"
    pk = Study.get(Study.study_instance_uid == uid).patient_id
    r = b.post(f"/patients/{pk}/edit.json", {"patient_name": "SMITH^ANNA"})
    finished(b, r.json["job"], archive)
    assert uids(b, "/studies.json?patient_name=SMITH*") == [uid]
    # Delete a series: confirmation page first, then the POST with confirm=yes.
    page = b.get(f"/series/{other.series_instance_uid}/delete")
    assert "cannot be undone" in page.text
    r = b.post(f"/series/{other.series_instance_uid}/delete", {}, expect_errors=True)
    assert r.status_int == 400  # not confirmed
    path = cfg.archive_dir
    files_before = len(list(path.rglob("*.dcm")) or list(path.rglob("*")))
    b.post(f"/series/{other.series_instance_uid}/delete", {"confirm": "yes"})
    assert Study.get(Study.study_instance_uid == uid).num_series == 1
    assert not Instance.select().where(Instance.sop_instance_uid == other.sop_instance_uid).exists()
    b.post(f"/studies/{uid}/delete", {"confirm": "yes"})
    assert Study.select().count() == 0 and Patient.select().count() == 0
    assert not [p for p in path.rglob("*") if p.is_file()]
    assert files_before >= 1
    actions = [j.action for j in Journal.select().where(Journal.user == "power")]
    assert actions.count("delete") == 2 and "edit" in actions and "mark-read" in actions


XSS = '<script>alert("x")</script>'


def test_dicom_text_is_escaped(app, archive):
    res = store(
        archive, patient_name=f"EVIL^{XSS}"[:60], description='"><img src=x onerror=alert(1)>'
    )
    b = login(app, "root")
    uid = res.study_instance_uid
    for url in (
        "/studies",
        f"/studies/{uid}",
        f"/instances/{res.sop_instance_uid}",
        f"/series/{res.series_instance_uid}",
        "/patients",
        f"/studies/{uid}/edit",
    ):
        html = b.get(url).text
        assert "<script>alert" not in html and "<img src=x" not in html, url
    assert "&lt;script&gt;" in b.get("/studies").text
    # JSON twins carry the raw value with a JSON content type.
    r = b.get("/studies.json")
    assert r.content_type == "application/json" and XSS[:20] in r.json["studies"][0]["patient_name"]


def test_viewer_pages_through_a_series(app, archive):
    first = store(archive)
    second = store(
        archive, study_uid=first.study_instance_uid, series_uid=first.series_instance_uid
    )
    Instance.update(instance_number=2).where(
        Instance.sop_instance_uid == second.sop_instance_uid
    ).execute()
    b = login(app, "root")
    data = b.get(f"/instances/{first.sop_instance_uid}.json").json
    assert data["next"] == f"/instances/{second.sop_instance_uid}" and data["prev"] == ""
    data = b.get(f"/instances/{second.sop_instance_uid}.json").json
    assert data["prev"] == f"/instances/{first.sop_instance_uid}"
    html = b.get(f"/instances/{first.sop_instance_uid}?wc=100&ww=50").text
    assert "image.jpg?frame=1&amp;wc=100&amp;ww=50" in html
