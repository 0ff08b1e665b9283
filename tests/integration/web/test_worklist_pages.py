"""The worklist page and the order-entry form: schedule with the form (a typed patient and
one picked from the archive), list and filter, discontinue and remove; Modify gates changes."""

from __future__ import annotations

from pacsbox.db import aes, worklist
from pacsbox.db.auth_models import Journal
from pacsbox.db.models import Patient
from tests.integration.web.conftest import login, store


def _schedule(browser, **fields):
    form = browser.get("/worklist/new").forms["order-form"]
    for k, v in fields.items():
        form[k] = v
    return form.submit(expect_errors=True)


def test_schedule_list_filter_discontinue_remove(app, archive):
    aes.ae_upsert("CT1")
    aes.ae_upsert("MR1")
    store(archive, patient_name="KNOWN^PAT", patient_id="PID9")
    clerk = login(app, "clerk", ["modify"])
    assert "PID9" not in clerk.get("/worklist/new").text  # private: needs View
    Patient.update(private=False).execute()
    page = clerk.get("/worklist/new")
    form = page.forms["order-form"]
    # From the patient page: the form comes filled in with that patient.
    pk = Patient.get(Patient.patient_id == "PID9").id
    picked = clerk.get(f"/patients/{pk}").click(linkid="schedule").forms["order-form"]
    assert (picked["patient_id"].value, picked["patient_name"].value) == ("PID9", "KNOWN^PAT")
    assert [o[0] for o in form["station_ae"].options] == ["CT1", "MR1"]
    assert '<option value="PID9">KNOWN^PAT</option>' in page.text  # the archive's patients
    # A typed patient.
    answer = _schedule(clerk, patient_id="NEW1", patient_name="NEW^PATIENT", procedure="CT HEAD",
                       accession="ACC1", modality="CT", station_ae="CT1", date="2026-12-04",
                       time="09:30").follow()  # fmt: skip
    assert "scheduled" in answer.text and "NEW^PATIENT" in answer.text
    # A patient picked from the archive by ID: the name comes from the index.
    _schedule(clerk, patient_id="PID9", modality="MR", station_ae="MR1", date="2026-12-05")
    items = {i.patient_id: i for i in worklist.items()}
    new, known = items["NEW1"], items["PID9"]
    assert (new.start_date, new.start_time, new.station_ae) == ("20261204", "093000", "CT1")
    assert new.requested_procedure_description == new.sps_description == "CT HEAD"
    assert new.source == "web:clerk" and new.study_instance_uid
    assert known.patient_name == "KNOWN^PAT" and known.modality == "MR"
    # The list and its JSON twin, filtered by date, modality and station.
    data = clerk.get("/worklist.json").json
    assert [i["patient_id"] for i in data["items"]] == ["NEW1", "PID9"]
    assert {"id", "patient_name", "accession", "modality", "station_ae", "start", "status"} <= set(
        data["items"][0]
    )
    by = lambda **q: [i["patient_id"] for i in clerk.get("/worklist.json", params=q).json["items"]]  # noqa: E731
    assert by(date="2026-12-05") == ["PID9"]
    assert by(modality="ct") == ["NEW1"]
    assert by(station="MR*") == ["PID9"]
    assert by(status="completed") == []
    # Discontinue, then remove.
    page = clerk.get("/worklist")
    page.forms[f"discontinue-{new.id}"].submit().follow()
    assert worklist.get(new.id).status == "discontinued"
    assert by(status="discontinued") == ["NEW1"]
    clerk.get("/worklist").forms[f"delete-{new.id}"].submit().follow()
    assert [i.patient_id for i in worklist.items()] == ["PID9"]
    actions = [j.action for j in Journal.select().where(Journal.user == "clerk")]
    assert actions.count("worklist-add") == 2
    assert "worklist-discontinue" in actions and "worklist-remove" in actions


def test_a_bad_order_comes_back_with_the_reason(app):
    aes.ae_upsert("CT1")
    clerk = login(app, "clerk", ["modify"])
    answer = _schedule(clerk, patient_name="X^Y", modality="CT", station_ae="CT1",
                       date="04.12.2026")  # fmt: skip
    assert answer.status_int == 400
    assert "YYYYMMDD" in answer.text and 'value="X^Y"' in answer.text
    r = clerk.post("/worklist.json", {"patient_name": "X^Y", "modality": "CT", "date": "20261204"},
                   expect_errors=True)  # fmt: skip
    assert r.status_int == 400 and "station AE" in r.json["error"]
    assert worklist.items() == []
    r = clerk.post("/worklist/999/delete.json", expect_errors=True)
    assert r.status_int == 404


def test_viewers_see_the_list_but_cannot_change_it(app):
    item = worklist.add({"patient_name": "A^B", "modality": "CT", "station_ae": "CT1",
                         "start_date": "20261204"})  # fmt: skip
    viewer = login(app, "viewer", ["view"])
    page = viewer.get("/worklist")
    assert (
        "A^B" in page.text and "Discontinue" not in page.text and "/worklist/new" not in page.text
    )
    assert 'href="/worklist"' in page.text  # in the navigation
    assert viewer.get("/worklist/new", expect_errors=True).status_int == 403
    assert viewer.post(f"/worklist/{item}/delete", expect_errors=True).status_int == 403
    assert viewer.post("/worklist", {"patient_name": "C^D"}, expect_errors=True).status_int == 403
    assert [i.id for i in worklist.items()] == [item]
