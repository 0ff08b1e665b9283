"""An edit on the web page is what a workstation receives: C-MOVE with DCMTK movescu to
a DCMTK storescp, dcmdump of what arrived; then a rebuild keeps it (DATA-3, NET-5)."""

from __future__ import annotations

import pydicom
import webtest
from pydicom.uid import generate_uid

from pacsbox import config
from pacsbox.archive import Archive
from pacsbox.db.models import Patient
from pacsbox.web import users
from pacsbox.web.app import create_app
from tests.helpers import Server, cli, dcmtk, move_study, poll, run_jobs
from tests.integration.web.conftest import PASSWORD, Clock, make_dicom
from tests.peers import StoreSCP


def _edit(t: webtest.TestApp, url: str, archive: Archive, **values: str) -> None:
    """Save an edit form, run its queue job (no daemon runs yet), see it done."""
    form = next(f for f in t.get(url).forms.values() if f.action == url)
    for name, value in values.items():
        form[name] = value
    job = form.submit().headers["Location"].split("?")[0].replace("http://localhost:80", "")
    assert job.startswith("/jobs/")
    assert run_jobs(archive.cfg, archive) == ["done"]
    (done,) = t.get(job + ".json").json["jobs"]
    assert done["state"] == "done", done


def _carries(cfg: config.Config, sop: str, patient_id: str) -> bool:
    """Whether the archive (holding aside) has ``sop`` with ``patient_id``, as the daemon left it."""
    for path in cfg.archive_dir.rglob("*"):
        if path.is_file():
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            if ds.get("SOPInstanceUID") == sop and ds.get("PatientID") == patient_id:
                return True
    return False


def _dump(path) -> str:
    """dcmdump's lines for Patient's Name, Patient ID and Accession Number."""
    tags = ("0010,0010", "0010,0020", "0008,0050")
    return dcmtk("dcmdump", *(a for t in tags for a in ("+P", t)), str(path), check=True).stdout


def test_moved_images_carry_the_edit_and_a_rebuild_keeps_it(ini, tmp_path):
    cfg = config.load(ini)
    archive = Archive(cfg)
    study = generate_uid()
    sops = []
    for _ in range(3):
        data = make_dicom(study_uid=study, patient_id="PID1", patient_name="DOE^JOHN")
        sops.append(archive.store(data, source="test").sop_instance_uid)
    pk = Patient.get(Patient.patient_id == "PID1").id
    app = create_app(cfg, archive, clock=Clock())
    users.set_password("root", PASSWORD)
    t = webtest.TestApp(app)
    login = t.get("/login").forms[0]
    login["name"], login["password"] = "root", PASSWORD
    login.submit()
    _edit(t, f"/studies/{study}/edit", archive, accession_number="ACC-NEW")
    _edit(t, f"/patients/{pk}/edit", archive, patient_name="SMITH^ANNA", patient_id="PID-NEW")
    archive.close()

    scp = StoreSCP(tmp_path / "received", "WORKSTATION", ini=ini)
    out = scp.dir
    server = None
    try:
        server = Server(ini).start()
        # The modality still has the old values: one more image of the study
        # arrives with them, and the daemon gives it the edit.
        late = tmp_path / "late.dcm"
        late.write_bytes(make_dicom(study_uid=study, patient_id="PID1", patient_name="DOE^JOHN"))
        r = dcmtk("storescu", "-aec", server.ae_title, "127.0.0.1", str(server.port), str(late))
        assert r.returncode == 0, r.stderr
        sops.append(pydicom.dcmread(late).SOPInstanceUID)
        poll(lambda: _carries(cfg, sops[-1], "PID-NEW"), 30, what="the follow-up")
        move_study(server, study)
        files = poll(
            lambda: len(list(out.iterdir())) == 4 and sorted(out.iterdir()), what="4 images"
        )
    finally:
        if server is not None:
            server.stop()
        scp.stop()
    for f in files:
        dump = _dump(f)
        assert "[SMITH^ANNA]" in dump and "[PID-NEW]" in dump and "[ACC-NEW]" in dump, dump
        assert "DOE^JOHN" not in dump and "[PID1]" not in dump
    assert sorted(pydicom.dcmread(f).SOPInstanceUID for f in files) == sorted(sops)
    # The originals are in holding/, with the values they arrived with.
    kept = [p for p in cfg.holding_dir.rglob("*") if p.is_file()]
    assert len(kept) == 7 and all("[DOE^JOHN]" in _dump(p) for p in kept)
    # A rebuild from the files keeps the edit; check is clean.
    assert cli(ini, "check").returncode == 0
    cli(ini, "rebuild-index")
    archive = Archive(cfg)
    try:
        pt = Patient.get(Patient.patient_id == "PID-NEW")
        assert pt.patient_name == "SMITH^ANNA" and pt.num_instances == 4
        assert pt.studies.get().accession_number == "ACC-NEW"
        assert not Patient.select().where(Patient.patient_id == "PID1").exists()
    finally:
        archive.close()
    # And a workstation's C-FIND after the rebuild sees the edited values.
    server = Server(ini).start()
    try:
        rsp = tmp_path / "rsp"
        rsp.mkdir()
        dcmtk(
            "findscu", "-S", "-aet", "FINDSCU", "-aec", server.ae_title, "-X", "-od", str(rsp),
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
            "-k", "PatientName", "-k", "PatientID", "-k", "AccessionNumber",
            "127.0.0.1", str(server.port), check=True,
        )  # fmt: skip
    finally:
        server.stop()
    (found,) = [pydicom.dcmread(p) for p in rsp.glob("rsp*.dcm")]
    assert (str(found.PatientName), found.PatientID, found.AccessionNumber) == (
        "SMITH^ANNA",
        "PID-NEW",
        "ACC-NEW",
    )
    assert cli(ini, "check").returncode == 0
