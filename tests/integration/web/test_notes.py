"""Study and image notes with attachments (issue 18 item 8, DATA-6): the Upload
privilege adds them, files are checked by content and size and stored under the
server's names, they show on the study page, travel with an export, go with
their study, and a PDF becomes an Encapsulated PDF instance only when asked."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import pydicom
import pytest

from pacsbox.db.models import Instance, Series, Study
from pacsbox.db.notes_models import StudyNote
from pacsbox.web.app import create_app
from tests.helpers import run_jobs
from tests.integration.web.conftest import login, store

PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def _files(cfg) -> list[Path]:
    folder = cfg.data_dir / "attachments"
    return sorted(p for p in folder.iterdir()) if folder.is_dir() else []


def _add(b, uid, name="report.pdf", content=PDF, text="see the report", **kw):
    return b.post(
        f"/studies/{uid}/notes.json",
        {"text": text, **kw},
        upload_files=[("file", name, content)],
        expect_errors=True,
    )


def test_a_note_with_a_pdf_shows_on_the_study_page_and_downloads(app, cfg, archive):
    res = store(archive)
    uid = res.study_instance_uid
    b = login(app, "clerk", privileges=("view", "upload"))
    r = _add(b, uid, text="prior at St. Elsewhere")
    assert r.status_int == 200, r.text
    note = r.json["note"]
    assert (note["author"], note["file_name"], note["content_type"], note["size"]) == (
        "clerk", "report.pdf", "application/pdf", len(PDF))  # fmt: skip
    # A note on one image of the study, text only.
    r = b.post(f"/studies/{uid}/notes.json", {"text": "artefact", "image": res.sop_instance_uid})
    assert r.status_int == 200 and r.json["note"]["sop_instance_uid"] == res.sop_instance_uid
    page = b.get(f"/studies/{uid}.json").json
    assert [n["text"] for n in page["notes"]] == ["prior at St. Elsewhere", "artefact"]
    on_image = b.get(f"/instances/{res.sop_instance_uid}.json").json["notes"]
    assert [n["text"] for n in on_image] == ["artefact"]
    assert "Note on this image" in b.get(f"/instances/{res.sop_instance_uid}").text
    html = b.get(f"/studies/{uid}").text
    assert "prior at St. Elsewhere" in html and "report.pdf" in html and "Add note" in html
    got = b.get(note["file_url"])
    assert got.body == PDF and got.content_type == "application/pdf"
    assert got.headers["Content-Disposition"].startswith("attachment;")
    # Stored under the server's own name, in the data folder's attachments/.
    (stored,) = _files(cfg)
    assert stored.read_bytes() == PDF and "report" not in stored.name
    # An image of another study is refused.
    other = store(archive)
    r = b.post(f"/studies/{uid}/notes.json", {"text": "x", "image": other.sop_instance_uid},
               expect_errors=True)  # fmt: skip
    assert r.status_int == 400 and "not in this study" in r.json["error"]


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("../../etc/passwd", "passwd.pdf"),
        ("..\\..\\windows\\win.ini", "win.pdf"),
        ("a\x00b.pdf", 400),  # bottle will not read such a part: a clear 400
        ("x" * 5000 + ".pdf", "x" * 96 + ".pdf"),
        ("", None),  # no name: no attachment at all
        ("\u202eevil.exe", "evil.pdf"),
    ],
)
def test_hostile_file_names_are_only_display_text(app, cfg, archive, tmp_path, raw, shown):
    uid = store(archive).study_instance_uid
    b = login(app, "clerk", privileges=("upload", "view"))
    r = _add(b, uid, name=raw)
    if shown == 400:
        assert r.status_int == 400 and "control characters" in r.json["error"]
        assert StudyNote.select().count() == 0 and _files(cfg) == []
        return
    assert r.status_int == 200, r.text
    assert r.json["note"]["file_name"] == (shown or "")
    files = _files(cfg)
    assert len(files) == (1 if shown else 0)
    for f in files:
        assert f.parent == cfg.data_dir / "attachments" and f.read_bytes() == PDF
    assert not (tmp_path / "etc").exists() and not (cfg.data_dir / "etc").exists()


@pytest.mark.parametrize(
    "name, content",
    [
        ("report.pdf", b"\x7fELF\x02\x01\x01" + b"\0" * 100),  # an executable called .pdf
        ("scan.png", b"MZ\x90\x00" + b"\0" * 100),
        ("page.pdf", b"<html><script>alert(1)</script>"),
        ("empty.pdf", b""),
    ],
)
def test_a_file_that_is_not_pdf_png_or_jpeg_by_content_is_refused(app, cfg, archive, name,
                                                                  content):  # fmt: skip
    uid = store(archive).study_instance_uid
    b = login(app, "clerk", privileges=("upload", "view"))
    r = _add(b, uid, name=name, content=content)
    assert r.status_int == 400
    assert "PDF, PNG and JPEG" in r.json["error"] or "empty" in r.json["error"]
    assert StudyNote.select().count() == 0 and _files(cfg) == []


def test_attachment_max_mb_refuses_larger_files_with_413(cfg, archive, clock):
    app = create_app(cfg.replace(AttachmentMaxMB=0.01), archive, clock=clock)  # 10485 bytes
    uid = store(archive).study_instance_uid
    b = login(app, "clerk", privileges=("upload", "view"))
    r = _add(b, uid, content=PDF + b"\0" * 20_000)
    assert r.status_int == 413 and "AttachmentMaxMB" in r.json["error"]
    assert StudyNote.select().count() == 0 and _files(cfg) == []
    # Far past the limit: refused from the Content-Length, before the body is read
    # (so before the CSRF token in it is even looked at).
    r = b.t.post(f"/studies/{uid}/notes.json", {"text": "x"},
                 upload_files=[("file", "big.pdf", PDF + b"\0" * 300_000)], expect_errors=True)  # fmt: skip
    assert r.status_int == 413 and "AttachmentMaxMB" in r.json["error"]
    assert StudyNote.select().count() == 0 and _files(cfg) == []
    r = _add(b, uid, name="small.png", content=PNG)  # under the limit
    assert r.status_int == 200 and r.json["note"]["content_type"] == "image/png"


def test_without_upload_or_without_csrf_nothing_is_added(app, cfg, archive):
    uid = store(archive).study_instance_uid
    b = login(app, "viewer", privileges=("view", "modify", "import"))
    assert _add(b, uid).status_int == 403
    assert "Add note" not in b.get(f"/studies/{uid}").text
    clerk = login(app, "clerk", privileges=("upload", "view"))
    r = clerk.t.post(f"/studies/{uid}/notes.json", {"text": "no token"}, expect_errors=True)
    assert r.status_int == 403
    assert StudyNote.select().count() == 0 and _files(cfg) == []


def test_the_author_or_an_admin_removes_a_note(app, cfg, archive):
    uid = store(archive).study_instance_uid
    author = login(app, "author", privileges=("upload", "view"))
    other = login(app, "other", privileges=("upload", "modify", "view"))
    admin = login(app, "boss", privileges=("admin", "view"))
    first = _add(author, uid).json["note"]["id"]
    second = _add(author, uid, name="b.png", content=PNG).json["note"]["id"]
    r = other.post(f"/notes/{first}/delete.json", expect_errors=True)
    assert r.status_int == 403 and len(_files(cfg)) == 2
    assert author.post(f"/notes/{first}/delete.json").status_int == 200
    assert admin.post(f"/notes/{second}/delete.json").status_int == 200
    assert StudyNote.select().count() == 0 and _files(cfg) == []
    assert other.get(f"/notes/{first}/file", expect_errors=True).status_int == 404


def test_a_private_study_s_notes_stay_hidden(app, archive):
    uid = store(archive).study_instance_uid
    author = login(app, "author", privileges=("upload", "view"))
    pk = _add(author, uid).json["note"]["id"]
    Study.update(private=True).execute()
    nosy = login(app, "nosy", privileges=("upload",))
    assert nosy.get(f"/notes/{pk}/file", expect_errors=True).status_int == 404
    assert _add(nosy, uid).status_int == 404


def test_deleting_the_study_removes_its_notes_and_files(app, cfg, archive):
    keep = store(archive).study_instance_uid
    gone = store(archive).study_instance_uid
    b = login(app, "clerk", privileges=("upload", "modify", "view"))
    _add(b, keep)
    _add(b, gone, name="x.png", content=PNG)
    assert len(_files(cfg)) == 2
    r = b.post(f"/studies/{gone}/delete.json", {"confirm": "yes"})
    assert r.status_int == 200
    assert [n.study_instance_uid for n in StudyNote.select()] == [keep]
    (left,) = _files(cfg)
    assert left.read_bytes() == PDF


def test_an_export_carries_the_notes_and_attachments(app, cfg, archive, tmp_path):
    uid = store(archive).study_instance_uid
    b = login(app, "clerk", privileges=("upload", "export", "view"))
    _add(b, uid, text="compare with 2019")
    _add(b, uid, name="photo.png", content=PNG, text="")
    r = b.post(f"/studies/{uid}/export.json")
    assert run_jobs(cfg, archive) == ["done"]
    body = b.get(f"/jobs/{r.json['job']}/download").body
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        names = {n.rsplit("/", 1)[-1]: n for n in z.namelist()}
        assert {"NOTES.TXT", "ATT00001.PDF", "ATT00002.PNG"} <= set(names)
        text = z.read(names["NOTES.TXT"]).decode()
        assert z.read(names["ATT00001.PDF"]) == PDF and z.read(names["ATT00002.PNG"]) == PNG
        # Beside the study's images: DICOM/PT000001/ST000001/.
        assert names["NOTES.TXT"].split("/")[:-1] == names["ATT00001.PDF"].split("/")[:-1]
        assert names["NOTES.TXT"].split("/")[-2].startswith("ST")
    assert uid in text and "compare with 2019" in text and "photo.png" in text
    assert "clerk" in text


def test_the_pdf_goes_into_the_study_as_encapsulated_pdf_only_when_asked(app, cfg, archive,
                                                                         tmp_path):  # fmt: skip
    res = store(archive, patient_name="NOTE^PDF", patient_id="N1")
    uid = res.study_instance_uid
    b = login(app, "clerk", privileges=("upload", "view"))
    pdf_note = _add(b, uid).json["note"]["id"]
    png_note = _add(b, uid, name="p.png", content=PNG).json["note"]["id"]
    assert Instance.select().count() == 1  # an attachment alone adds no DICOM
    r = b.post(f"/notes/{png_note}/dicom.json", expect_errors=True)
    assert r.status_int == 400 and "only a PDF" in r.json["error"]
    r = b.post(f"/notes/{pdf_note}/dicom.json")
    assert r.status_int == 200
    inst = Instance.get(Instance.sop_instance_uid == r.json["sop_instance_uid"])
    assert inst.sop_class_uid == "1.2.840.10008.5.1.4.1.1.104.1"
    assert inst.series.study.study_instance_uid == uid and inst.series.modality == "DOC"
    assert Series.select().count() == 2
    data = archive.read_part10(inst)
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.EncapsulatedDocument[: len(PDF)] == PDF and ds.EncapsulatedDocumentLength == len(PDF)
    assert (str(ds.PatientName), ds.PatientID, ds.StudyInstanceUID) == ("NOTE^PDF", "N1", uid)
    if shutil.which("dciodvfy"):
        path = tmp_path / "epdf.dcm"
        path.write_bytes(data)
        out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        report = out.stdout + out.stderr
        assert "EncapsulatedPDF" in report
        assert [ln for ln in report.splitlines() if ln.startswith("Error")] == [], report
