"""Edits of patient/study attributes on the web page reach the stored files (DATA-3):
what WADO and the export send carries them, a rebuild keeps them, the originals are
in holding/, a failure or a crash half-way loses nothing and a re-run finishes."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pydicom
import pytest
import webtest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from pacsbox import config, edit, recovery, storage
from pacsbox.archive import Archive
from pacsbox.db import dirty, lookup, queue
from pacsbox.db.auth_models import Journal
from pacsbox.db.models import Instance, Patient, Study, utcnow
from pacsbox.errors import OutOfResources
from pacsbox.outbound.runner import busy_limit
from pacsbox.web import users
from pacsbox.web.app import create_app
from tests.helpers import cli, run_jobs, write_config
from tests.integration.web.conftest import PASSWORD, Clock, make_dicom


class Box:
    def __init__(self, base: Path, **settings) -> None:
        self.ini = write_config(base, SyncWrites="no", **settings)
        self.cfg = config.load(self.ini)
        self.archive = Archive(self.cfg)
        self.app = create_app(self.cfg, self.archive, clock=Clock())

    def reopen(self) -> None:
        """Close and open again, as a restart does (the start-up check runs)."""
        self.archive.close()
        self.archive = Archive(self.cfg)
        recovery.startup_check(self.cfg)


@pytest.fixture
def box(tmp_path):
    b = Box(tmp_path / "box")
    yield b
    b.archive.close()


def browser(app) -> webtest.TestApp:
    users.set_password("root", PASSWORD)
    t = webtest.TestApp(app)
    form = t.get("/login").forms[0]
    form["name"], form["password"] = "root", PASSWORD
    form.submit()
    return t


def fill(t: webtest.TestApp, url: str, **values: str) -> webtest.TestResponse:
    """Open an edit page, change some fields, save: what a person does."""
    form = next(f for f in t.get(url).forms.values() if f.action == url)
    for name, value in values.items():
        form[name] = value
    return form.submit()


def job_of(box: Box, t: webtest.TestApp, answer: webtest.TestResponse) -> dict:
    """Follow the edit's answer to its job page, run the queue (the daemon's runner, here
    in this thread) and read the job's outcome."""
    assert answer.status_int == 303, answer.text[:300]
    url = answer.headers["Location"].split("?")[0].replace("http://localhost:80", "")
    assert url.startswith("/jobs/")
    page = t.get(url)
    assert "queued" in page.text  # the job is shown
    run_jobs(box.cfg, box.archive)
    (job,) = t.get(url + ".json").json["jobs"]
    job["url"] = url
    return job


def store_study(archive, n: int = 4, **kw) -> tuple[str, list[str]]:
    """A study of ``n`` images, two to a series; (Study Instance UID, SOP Instance UIDs)."""
    study = generate_uid()
    sops, series = [], ""
    for i in range(n):
        series = generate_uid() if i % 2 == 0 else series
        res = archive.store(make_dicom(study_uid=study, series_uid=series, **kw), source="test")
        sops.append(res.sop_instance_uid)
    return study, sops


def stored(sop: str) -> pydicom.Dataset:
    return pydicom.dcmread(lookup.instance_path(lookup.find_instance(sop)))


def held(cfg) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(cfg.holding_dir.rglob("*")) if p.is_file()]


def test_edits_reach_the_files_wado_export_and_a_rebuild(box):
    t = browser(box.app)
    study, sops = store_study(box.archive, patient_id="PID1", patient_name="DOE^JOHN")
    _, others = store_study(box.archive, 1, patient_id="PID1", patient_name="DOE^JOHN")
    _, strangers = store_study(box.archive, 1, patient_id="ZZZ", patient_name="ROE^RICHARD")
    before = {s: stored(s) for s in sops}
    pk = Patient.get(Patient.patient_id == "PID1").id

    job = job_of(box, t, fill(t, f"/studies/{study}/edit", accession_number="ACC-NEW"))
    assert job["state"] == "done" and "4 files rewritten" in job["last_error"], job
    job = job_of(
        box, t, fill(t, f"/patients/{pk}/edit", patient_name="SMITH^ANNA", patient_id="PID-NEW")
    )
    assert job["state"] == "done" and "5 files rewritten" in job["last_error"], job

    # The files carry the edits; nothing else in them changed.
    for sop in sops:
        ds = stored(sop)
        assert (str(ds.PatientName), ds.PatientID, ds.AccessionNumber) == (
            "SMITH^ANNA",
            "PID-NEW",
            "ACC-NEW",
        )
        old = before[sop]
        for elem in old:
            if elem.keyword not in ("PatientName", "PatientID", "AccessionNumber"):
                assert ds[elem.tag].value == elem.value, elem.keyword
        assert ds.file_meta.TransferSyntaxUID == old.file_meta.TransferSyntaxUID
    ds = stored(others[0])
    assert (ds.PatientID, ds.AccessionNumber) == ("PID-NEW", "ACC1")
    assert stored(strangers[0]).PatientID == "ZZZ"
    # The originals are in holding/: 4 from the study edit, 5 from the patient's.
    kept = held(box.cfg)
    assert len(kept) == 9
    assert {d.SOPInstanceUID for d in kept} == {*sops, *others}
    assert all(str(d.PatientName) == "DOE^JOHN" and d.PatientID == "PID1" for d in kept)
    # The index and the pages.
    row = t.get(f"/studies/{study}.json").json["study"]
    assert (row["patient_name"], row["patient_id"], row["accession_number"]) == (
        "SMITH^ANNA",
        "PID-NEW",
        "ACC-NEW",
    )
    # WADO-URI application/dicom sends the edited object.
    inst = lookup.find_instance(sops[0])
    r = t.get(
        "/wado",
        {
            "requestType": "WADO",
            "studyUID": study,
            "seriesUID": inst.series.series_instance_uid,
            "objectUID": sops[0],
            "contentType": "application/dicom",
        },
    )
    ds = pydicom.dcmread(io.BytesIO(r.body))
    assert (str(ds.PatientName), ds.PatientID, ds.AccessionNumber) == (
        "SMITH^ANNA",
        "PID-NEW",
        "ACC-NEW",
    )
    # The DICOMDIR export: its records and its files.
    page = t.get(f"/studies/{study}").forms
    export = next(f for f in page.values() if f.action.endswith("/export"))
    exported = job_of(box, t, export.submit())
    assert exported["state"] == "done", exported
    r = t.get(exported["download"])
    out = box.cfg.data_dir / "unzipped"
    zipfile.ZipFile(io.BytesIO(r.body)).extractall(out)
    fs = FileSet(next(out.rglob("DICOMDIR")))
    assert sorted(i.SOPInstanceUID for i in fs) == sorted(sops)
    for instance in fs:
        assert instance.PatientID == "PID-NEW"
        ds = instance.load()
        assert (str(ds.PatientName), ds.AccessionNumber) == ("SMITH^ANNA", "ACC-NEW")
    # Audit journal, as for every edit.
    assert Journal.select().where(Journal.action == "edit").count() == 2
    # check is clean; a rebuild from the files keeps every edit.
    assert cli(box.ini, "check").returncode == 0
    cli(box.ini, "rebuild-index")
    assert not Patient.select().where(Patient.patient_id == "PID1").exists()
    pt = Patient.get(Patient.patient_id == "PID-NEW")
    assert (pt.patient_name, pt.num_studies, pt.num_instances) == ("SMITH^ANNA", 2, 5)
    assert Study.get(Study.study_instance_uid == study).accession_number == "ACC-NEW"
    assert cli(box.ini, "check").returncode == 0


def test_a_patient_id_of_another_patient_is_refused(box):
    t = browser(box.app)
    _, sops = store_study(box.archive, 2, patient_id="PID1", patient_name="DOE^JOHN")
    store_study(box.archive, 1, patient_id="PID2", patient_name="ROE^RICHARD")
    pk = Patient.get(Patient.patient_id == "PID1").id
    url = f"/patients/{pk}/edit"
    form = next(f for f in t.get(url).forms.values() if f.action == url)
    form["patient_id"] = "PID2"
    r = form.submit(expect_errors=True)
    assert r.status_int == 400
    assert "Patient ID PID2 is already the ID of patient ROE^RICHARD" in r.text
    assert "merging patients is not done by an edit" in r.text
    assert [stored(s).PatientID for s in sops] == ["PID1", "PID1"]
    assert Patient.get_by_id(pk).patient_id == "PID1"
    assert not list(box.cfg.holding_dir.rglob("*.*"))


@pytest.mark.parametrize(
    "fields,words",
    [
        ({"birth_date": "19991340"}, "birth_date: a date as YYYYMMDD"),
        ({"sex": "X"}, "sex: M, F, O or empty"),
        ({"patient_id": " "}, "a patient needs an ID"),
        ({"patient_name": "A" * 400}, "at most"),
    ],
)
def test_bad_values_are_refused_before_any_file_changes(box, fields, words):
    t = browser(box.app)
    _, sops = store_study(box.archive, 1)
    pk = Patient.select().first().id
    url = f"/patients/{pk}/edit"
    form = next(f for f in t.get(url).forms.values() if f.action == url)
    for k, v in fields.items():
        form[k] = v
    r = form.submit(expect_errors=True)
    assert r.status_int == 400 and words in r.text
    assert not list(box.cfg.holding_dir.rglob("*.*"))


def test_a_failure_half_way_loses_nothing_and_a_rerun_finishes(box, monkeypatch):
    t = browser(box.app)
    study, sops = store_study(box.archive, 4, patient_id="PID1")
    real = storage.write_file
    calls = []

    def disk_full_on_the_third(folder, chunks, **kw):
        calls.append(folder)
        if len(calls) == 3:
            raise OutOfResources(f"disk full writing to {folder}")
        return real(folder, chunks, **kw)

    monkeypatch.setattr(storage, "write_file", disk_full_on_the_third)
    job = job_of(box, t, fill(t, f"/studies/{study}/edit", accession_number="ACC-NEW"))
    assert job["state"] == "failed" and "disk full" in job["last_error"]
    # Every instance is old or new, each readable, each indexed; the study row
    # still has the value it started from, so the same edit can be made again.
    values = sorted(stored(s).AccessionNumber for s in sops)
    assert values == ["ACC-NEW", "ACC-NEW", "ACC1", "ACC1"]
    assert Study.get(Study.study_instance_uid == study).accession_number == "ACC1"
    assert cli(box.ini, "check").returncode == 0
    monkeypatch.setattr(storage, "write_file", real)
    # The job page shows the reason, and its Retry runs the same edit again.
    page = t.get(job["url"])
    assert "disk full" in page.text
    retry = next(f for f in page.forms.values() if f.action.endswith("/retry"))
    assert retry.submit().status_int == 303
    assert run_jobs(box.cfg, box.archive) == ["done"]
    (job,) = t.get(job["url"] + ".json").json["jobs"]
    assert job["state"] == "done" and "2 files rewritten" in job["last_error"], job
    assert job["attempts"] == 2
    assert [stored(s).AccessionNumber for s in sops] == ["ACC-NEW"] * 4
    assert Study.get(Study.study_instance_uid == study).accession_number == "ACC-NEW"
    assert sorted(d.SOPInstanceUID for d in held(box.cfg)) == sorted(sops)  # one each
    assert cli(box.ini, "check").returncode == 0


def test_an_edit_job_cut_by_a_dead_daemon_is_given_back_and_finishes(box, monkeypatch):
    """The daemon dies two files into an edit: the job is still running in the queue;
    the next start gives it back (queue.recover) and the re-run finishes it."""
    t = browser(box.app)
    study, sops = store_study(box.archive, 4, patient_id="PID1")
    answer = fill(t, f"/studies/{study}/edit", accession_number="ACC-NEW")
    url = answer.headers["Location"].split("?")[0].replace("http://localhost:80", "")
    job = queue.claim("4242-deadbeef-00000000", utcnow(), busy_limit(box.cfg))
    assert url == f"/jobs/{job.id}"
    real = storage.write_file
    calls = []

    def dies_on_the_third(folder, chunks, **kw):
        calls.append(folder)
        if len(calls) == 3:
            raise SystemExit("kill -9")  # nothing after this runs, no outcome is recorded
        return real(folder, chunks, **kw)

    monkeypatch.setattr(storage, "write_file", dies_on_the_third)
    with pytest.raises(SystemExit):
        edit.run(box.archive, edit.Edit(**job.payload["edit"]))
    monkeypatch.undo()
    assert t.get(url + ".json").json["jobs"][0]["state"] == "running"
    box.reopen()
    assert queue.recover() == 1  # what the daemon's runner does as it starts
    assert run_jobs(box.cfg, box.archive) == ["done"]
    (done,) = t.get(url + ".json").json["jobs"]
    assert (done["attempts"], done["state"]) == (2, "done")
    assert "2 files rewritten" in done["last_error"]
    assert [stored(s).AccessionNumber for s in sops] == ["ACC-NEW"] * 4
    assert Study.get(Study.study_instance_uid == study).accession_number == "ACC-NEW"
    assert cli(box.ini, "check").returncode == 0


def _edited_bytes(box, sop: str) -> bytes:
    ds = stored(sop)
    ds.AccessionNumber = "ACC-NEW"
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def test_a_crash_before_the_swap_leaves_the_old_file_indexed(box):
    """Killed after the new file was written, before its row: the start-up
    check moves the unindexed new file to holding; the instance is as it was."""
    _, sops = store_study(box.archive, 1)
    inst = lookup.find_instance(sops[0])
    study = inst.series.study
    original = lookup.instance_path(inst).read_bytes()
    dirty.mark_dirty(study.storage_root, study.folder)  # as Archive.rewrite does first
    storage.write_file(Path(study.storage_root) / study.folder, [_edited_bytes(box, sops[0])])
    assert cli(box.ini, "check", check=False).returncode == 1  # an unindexed file
    box.reopen()
    assert lookup.instance_path(lookup.find_instance(sops[0])).read_bytes() == original
    assert [d.AccessionNumber for d in held(box.cfg)] == ["ACC-NEW"]
    assert cli(box.ini, "check").returncode == 0


def test_a_crash_after_the_swap_leaves_the_new_file_indexed(box, monkeypatch):
    """Killed after the row swap, before the original moved to holding: the
    start-up check moves the unindexed original there."""
    study, sops = store_study(box.archive, 2)
    monkeypatch.setattr(Archive, "_hold_replaced", lambda *a: None)  # the crash
    plan = edit.study_edit(study, {"accession_number": "ACC-NEW"})
    edit.run(box.archive, plan)
    monkeypatch.undo()
    assert cli(box.ini, "check", check=False).returncode == 1  # originals still there
    box.reopen()
    assert [stored(s).AccessionNumber for s in sops] == ["ACC-NEW", "ACC-NEW"]
    assert sorted(d.AccessionNumber for d in held(box.cfg)) == ["ACC1", "ACC1"]
    assert cli(box.ini, "check").returncode == 0


def test_native_files_and_names_beyond_ascii(tmp_path):
    box = Box(tmp_path / "native", StorageFormat="Native")
    try:
        _, sops = store_study(box.archive, 2, patient_id="PID1")
        pk = Patient.select().first().id
        plan = edit.patient_edit(pk, {"patient_name": "MÜLLER^JÖRG"})
        edit.run(box.archive, plan)
        for sop in sops:
            inst = lookup.find_instance(sop)
            raw = lookup.instance_path(inst).read_bytes()
            assert raw[128:132] != b"DICM" and inst.native  # still a bare data set
            ds = pydicom.dcmread(io.BytesIO(box.archive.read_part10(inst)))
            assert str(ds.PatientName) == "MÜLLER^JÖRG" and ds.SpecificCharacterSet == "ISO_IR 192"
        box.archive.close()
        cli(box.ini, "rebuild-index")
        box.archive = Archive(box.cfg)
        assert Patient.select().first().patient_name == "MÜLLER^JÖRG"
        assert Instance.select().count() == 2
    finally:
        box.archive.close()


def test_a_later_image_of_an_edited_study_takes_the_edit(box):
    """A modality that still has the old values sends one more image of the study
    (into a series it had, and a new one): the index keeps the edit, no patient
    row appears for the old ID, and the follow-up gives the files the edit."""
    t = browser(box.app)
    study, sops = store_study(box.archive, 2, patient_id="PID1", patient_name="DOE^JOHN")
    pk = Patient.get(Patient.patient_id == "PID1").id
    job_of(box, t, fill(t, f"/studies/{study}/edit", accession_number="ACC-NEW"))
    job_of(box, t, fill(t, f"/patients/{pk}/edit", patient_name="SMITH^ANNA", patient_id="PID-NEW"))
    series = lookup.find_instance(sops[0]).series.series_instance_uid
    late = [
        box.archive.store(make_dicom(study_uid=study, series_uid=s), source="test").sop_instance_uid
        for s in (series, generate_uid())
    ]
    assert [stored(s).PatientID for s in late] == ["PID1", "PID1"]  # as received, for now
    assert [p.patient_id for p in Patient.select()] == ["PID-NEW"]  # no row for the old ID
    pt = Patient.get_by_id(pk)
    st = Study.get(Study.study_instance_uid == study)
    assert (pt.patient_name, pt.num_studies, pt.num_instances) == ("SMITH^ANNA", 1, 4)
    assert (st.accession_number, st.num_instances) == ("ACC-NEW", 4)
    assert st.edit_from == lookup.find_instance(late[0]).id
    assert edit.pending() == [st.id]

    summary = edit.follow_up(box.archive, st.id)  # what the daemon runs for a marked study
    assert summary.startswith("2 later images rewritten"), summary
    for sop in [*sops, *late]:
        ds = stored(sop)
        assert (ds.PatientID, str(ds.PatientName), ds.AccessionNumber) == (
            "PID-NEW",
            "SMITH^ANNA",
            "ACC-NEW",
        )
    assert edit.pending() == []
    assert {d.SOPInstanceUID for d in held(box.cfg)} >= set(late)  # originals kept
    assert cli(box.ini, "check").returncode == 0
    cli(box.ini, "rebuild-index")
    assert [p.patient_id for p in Patient.select()] == ["PID-NEW"]
    assert Study.get(Study.study_instance_uid == study).num_instances == 4


def test_an_image_that_names_another_patient_joins_its_study(box, caplog):
    """No edit: a modality's mistake (the same study under two Patient IDs) leaves
    the study with its patient, creates no empty patient row, and says so."""
    study, _ = store_study(box.archive, 1, patient_id="PID1")
    box.archive.store(make_dicom(study_uid=study, patient_id="OTHER"), source="test")
    assert [(p.patient_id, p.num_studies, p.num_instances) for p in Patient.select()] == [
        ("PID1", 1, 2)
    ]
    assert "names Patient ID OTHER, but its study" in caplog.text
    assert edit.pending() == []
