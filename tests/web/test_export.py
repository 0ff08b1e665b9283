"""Export from the web page: a study becomes a DICOMDIR ZIP, with the Export privilege only."""

from __future__ import annotations

import io
import zipfile

import pydicom
from pydicom.fileset import FileSet

from tests.web.conftest import login, store


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
