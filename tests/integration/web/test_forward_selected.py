"""The search results' Forward: tick studies, pick a destination, one forward job of
them all; only what the user may see, and only with the Forward privilege."""

from __future__ import annotations

from pacsbox.db import aes, queue
from pacsbox.db.models import Patient, Study
from tests.integration.web.conftest import login, store


def test_ticked_search_results_are_forwarded_in_one_job(app, archive):
    a = store(archive, patient_id="P1").study_instance_uid
    b = store(archive, patient_id="P2").study_instance_uid
    store(archive, patient_id="P3")
    aes.ae_upsert("WS", hostname="127.0.0.1", port=11112)
    root = login(app, "root")
    page = root.get("/studies")
    form = next(f for f in page.forms.values() if f.action == "/studies/forward")
    assert form["to"].options[0][0] == "WS"
    for uid in (a, b):  # a box per row, tied to the form below the table
        assert f'name="study" value="{uid}" form="forward-selected"' in page.text
    r = root.t.post("/studies/forward.json", [("study", a), ("study", b), ("to", "WS"),
                                            ("csrf_token", root.csrf)])  # fmt: skip
    job = queue.get(r.json["job"])
    assert sorted(job.payload["studies"]) == sorted([a, b]) and job.total == 2
    assert job.label == "2 studies to WS" and job.owner == "root"
    # Nothing ticked: a reason, not a job.
    r = root.post("/studies/forward", {"to": "WS"}, expect_errors=True)
    assert r.status_int == 400 and "tick the studies to forward first" in r.text
    assert len(queue.jobs(kind="forward")) == 1


def test_checkboxes_only_for_forward_and_only_for_visible_studies(app, archive):
    a = store(archive, patient_id="P1").study_instance_uid
    hidden = store(archive, patient_id="P2").study_instance_uid
    Study.update(private=False).where(Study.study_instance_uid == a).execute()
    Patient.update(private=False).where(Patient.patient_id == "P1").execute()
    Study.update(private=True).where(Study.study_instance_uid == hidden).execute()
    Patient.update(private=True).where(Patient.patient_id == "P2").execute()
    aes.ae_upsert("WS", hostname="127.0.0.1", port=11112)
    viewer = login(app, "viewer", ["mark"])
    assert 'form="forward-selected"' not in viewer.get("/studies").text
    r = viewer.post("/studies/forward", {"study": a, "to": "WS"}, expect_errors=True)
    assert r.status_int == 403
    sender = login(app, "sender", ["forward"])
    assert f'value="{a}" form="forward-selected"' in sender.get("/studies").text
    fields = [("study", a), ("study", hidden), ("to", "WS"), ("csrf_token", sender.csrf)]
    r = sender.t.post("/studies/forward", fields, expect_errors=True)
    assert r.status_int == 404 and queue.jobs(kind="forward") == []
    r = sender.post("/studies/forward.json", {"study": a, "to": "WS"})  # the one it may see
    assert queue.get(r.json["job"]).payload["studies"] == [a]
