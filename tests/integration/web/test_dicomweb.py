"""DICOMweb in-process: QIDO through the one matcher, privacy, auth, STOW statuses, metadata cache."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
import webtest
from pydicom import dcmread
from pydicom.uid import generate_uid

from pacsbox import edit
from pacsbox.db.auth_models import Journal
from pacsbox.db.lookup import instance_path
from pacsbox.db.models import Instance, Patient, Study
from pacsbox.web import users
from tests.integration.web.conftest import PASSWORD, login, make_dicom, store

DW = "/dicom-web"
MULTI = 'multipart/related; type="application/dicom"; boundary=XYZ'


def basic(name: str, password: str = PASSWORD) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def multipart(*parts: tuple[str, bytes], boundary: str = "XYZ") -> bytes:
    out = b""
    for ctype, data in parts:
        out += f"--{boundary}\r\nContent-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def values(answer: list, tag: str) -> list:
    return sorted(str(item[tag]["Value"][0]) for item in answer if "Value" in item.get(tag, {}))


@pytest.fixture
def corpus(archive):
    """Three studies: two CT of DOE^JOHN (one with an MR series too), one US of ROE^JANE."""
    a = store(archive, patient_id="P1", study_date="20240105", description="HEAD")
    store(archive, patient_id="P1", study_uid=a.study_instance_uid, modality="MR")
    b = store(archive, patient_id="P1", study_date="20240210", description="CHEST")
    c = store(archive, patient_name="ROE^JANE", patient_id="P2", study_date="20230101",
              modality="US", description="ABDOMEN")  # fmt: skip
    Study.update(private=False).execute()
    Patient.update(private=False).execute()
    return a, b, c


@pytest.fixture
def tool(app):
    users.add_user("tool", ["view", "import"], PASSWORD)
    return webtest.TestApp(
        app, extra_environ={"HTTP_AUTHORIZATION": basic("tool")["Authorization"]}
    )


def test_qido_matches_keys_by_keyword_tag_list_range_and_child(tool, corpus):
    a, b, c = corpus
    uids = lambda url: values(tool.get(DW + url).json, "0020000D")  # noqa: E731
    assert uids("/studies?PatientID=P1") == sorted([a.study_instance_uid, b.study_instance_uid])
    assert uids("/studies?00100020=P2") == [c.study_instance_uid]
    assert uids("/studies?PatientName=ROE*") == [c.study_instance_uid]
    assert uids("/studies?StudyDate=20240101-20241231") == sorted(
        [a.study_instance_uid, b.study_instance_uid]
    )
    assert uids("/studies?ModalitiesInStudy=MR") == [a.study_instance_uid]
    assert uids("/studies?Modality=US") == [c.study_instance_uid]  # a series key: has one
    assert uids(f"/studies?StudyInstanceUID={a.study_instance_uid},{c.study_instance_uid}") == (
        sorted([a.study_instance_uid, c.study_instance_uid])
    )
    series = tool.get(f"{DW}/studies/{a.study_instance_uid}/series").json
    assert values(series, "00080060") == ["CT", "MR"]
    assert tool.get(f"{DW}/series?Modality=MR").json[0]["00100020"]["Value"] == ["P1"]
    inst = tool.get(f"{DW}/instances?Modality=US").json
    assert values(inst, "00080018") == [c.sop_instance_uid]
    assert inst[0]["00081190"]["Value"][0].endswith(
        f"/dicom-web/studies/{c.study_instance_uid}/series/{c.series_instance_uid}"
        f"/instances/{c.sop_instance_uid}"
    )


def test_qido_default_and_included_attributes_limit_offset(tool, corpus):
    (first,) = tool.get(f"{DW}/studies?PatientID=P2").json
    for tag in ("00080020", "00080050", "00080061", "00100010", "00100020", "0020000D",
                "00201206", "00201208", "00081190", "00080056"):  # fmt: skip
        assert tag in first, tag
    assert "00081030" not in first  # Study Description is not a default
    (asked,) = tool.get(f"{DW}/studies?PatientID=P2&includefield=00081030").json
    assert asked["00081030"]["Value"] == ["ABDOMEN"]
    (everything,) = tool.get(f"{DW}/studies?PatientID=P2&includefield=all").json
    assert everything["00081030"]["Value"] == ["ABDOMEN"]
    all_uids = values(tool.get(f"{DW}/studies").json, "0020000D")
    pages = [tool.get(f"{DW}/studies?limit=2&offset={n}").json for n in (0, 2, 4)]
    assert [len(p) for p in pages] == [2, 1, 0]
    assert sorted(u for p in pages for u in values(p, "0020000D")) == all_uids


def test_qido_bad_input_is_a_clear_4xx(tool, corpus):
    for url, status, words in [
        ("/studies?NoSuchKey=1", 400, "neither an attribute keyword nor a tag"),
        ("/studies?StudyDate=yesterday", 400, "StudyDate"),
        ("/studies?PatientComments=x", 400, "PatientComments: not a key"),
        ("/studies?limit=ten", 400, "limit"),
        ("/studies?fuzzymatching=maybe", 400, "fuzzymatching"),
    ]:
        r = tool.get(DW + url, expect_errors=True)
        assert r.status_int == status and words in r.json["error"], (url, r.text)
    r = tool.get(DW + "/studies", headers={"Accept": "application/dicom+xml"}, expect_errors=True)
    assert r.status_int == 406 and "application/dicom+json" in r.json["error"]
    r = tool.get(DW + "/studies?fuzzymatching=true")
    assert r.status_int == 200 and "fuzzymatching is not supported" in r.headers["Warning"]


def test_private_study_is_invisible_to_a_user_who_may_not_see_it(app, archive, corpus):
    """Only the anonymous reader may not see private studies: a DICOMweb user has View."""
    a, b, c = corpus
    Study.update(private=True).where(Study.study_instance_uid == c.study_instance_uid).execute()
    ctx = app.config["pacsbox.ctx"]
    ctx.cfg = ctx.cfg.replace(DicomWebAnonymous=True)
    anon = webtest.TestApp(app)
    seen = values(anon.get(DW + "/studies").json, "0020000D")
    assert c.study_instance_uid not in seen and a.study_instance_uid in seen
    assert anon.get(f"{DW}/instances?PatientID=P2").json == []
    for tail in ("", "/metadata", "/thumbnail"):
        r = anon.get(f"{DW}/studies/{c.study_instance_uid}{tail}", expect_errors=True)
        assert r.status_int == 404, tail  # like an unknown study
    assert anon.get(f"{DW}/studies/{c.study_instance_uid}/series").json == []
    login(app, "viewer", ["view"])
    viewer = webtest.TestApp(
        app, extra_environ={"HTTP_AUTHORIZATION": basic("viewer")["Authorization"]}
    )
    assert c.study_instance_uid in values(viewer.get(DW + "/studies").json, "0020000D")


def test_auth_anonymous_basic_and_session_with_csrf(app, archive, corpus):
    a, _, _ = corpus
    anon = webtest.TestApp(app)
    r = anon.get(DW + "/studies", expect_errors=True)
    assert r.status_int == 401 and "Basic" in r.headers["WWW-Authenticate"]
    assert anon.post(DW + "/studies", b"x", headers={"Content-Type": MULTI},
                     expect_errors=True).status_int == 401  # fmt: skip
    users.add_user("tool", ["view", "import"], PASSWORD)
    wrong = anon.get(DW + "/studies", headers=basic("tool", "wrong"), expect_errors=True)
    assert wrong.status_int == 401
    page = login(app, "clerk", ["view", "import"])  # the web page's session cookie
    assert page.get(DW + "/studies").status_int == 200
    body = multipart(("application/dicom", make_dicom()))
    r = page.t.post(DW + "/studies", body, headers={"Content-Type": MULTI}, expect_errors=True)
    assert r.status_int == 403 and "CSRF" in r.json["error"]
    r = page.t.post(DW + "/studies", body, headers={"Content-Type": MULTI,
                    "X-CSRF-Token": page.csrf})  # fmt: skip
    assert r.status_int == 200
    r = anon.post(DW + "/studies", multipart(("application/dicom", make_dicom())),
                  headers={"Content-Type": MULTI, **basic("tool")})  # fmt: skip
    assert r.status_int == 200  # Basic needs no CSRF token


def test_reads_are_journaled_once_per_request_at_the_study_level(tool, corpus):
    a, _, _ = corpus
    Journal.delete().execute()
    tool.get(f"{DW}/studies/{a.study_instance_uid}")
    tool.get(f"{DW}/studies/{a.study_instance_uid}/metadata")
    rows = [(j.user, j.action, j.target) for j in Journal.select().order_by(Journal.id)]
    assert rows == [
        ("tool", "dicomweb-retrieve", a.study_instance_uid),
        ("tool", "dicomweb-metadata", a.study_instance_uid),
    ]


def test_stow_statuses(app, archive, cfg, tool):
    good, other = make_dicom(), make_dicom()
    r = tool.post(DW + "/studies", multipart(("application/dicom", good)),
                  headers={"Content-Type": MULTI})  # fmt: skip
    assert r.status_int == 200 and len(r.json["00081199"]["Value"]) == 1
    r = tool.post(DW + "/studies", multipart(("application/dicom", other),
                  ("application/dicom", b"not dicom at all")), headers={"Content-Type": MULTI})  # fmt: skip
    assert r.status_int == 202
    (failed,) = r.json["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    r = tool.post(DW + "/studies", multipart(("text/plain", b"hello")),
                  headers={"Content-Type": MULTI}, expect_errors=True)  # fmt: skip
    assert r.status_int == 409
    stray = make_dicom()
    r = tool.post(f"{DW}/studies/{generate_uid()}", multipart(("application/dicom", stray)),
                  headers={"Content-Type": MULTI}, expect_errors=True)  # fmt: skip
    assert r.status_int == 409 and r.json["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
    sop = dcmread(io.BytesIO(stray)).SOPInstanceUID
    assert Instance.get_or_none(Instance.sop_instance_uid == sop) is None
    for body, ctype, status in [
        (b"garbage", MULTI, 400),
        (multipart(("application/dicom", good))[:-10], MULTI, 400),  # no closing delimiter
        (good, "application/dicom", 415),
        (
            multipart(("application/dicom", good)),
            'multipart/related; type="application/dicom+xml"; boundary=XYZ',
            415,
        ),
    ]:
        r = tool.post(DW + "/studies", body, headers={"Content-Type": ctype}, expect_errors=True)
        assert r.status_int == status, (status, r.text)
    assert Instance.select().count() == 2
    small = app.config["pacsbox.ctx"]
    small.cfg = cfg.replace(StowMaxMB=0.001)
    r = tool.post(DW + "/studies", multipart(("application/dicom", make_dicom())),
                  headers={"Content-Type": MULTI}, expect_errors=True)  # fmt: skip
    assert r.status_int == 413 and "at most" in r.json["error"]
    assert Instance.select().count() == 2


def test_metadata_comes_from_the_series_cache_and_follows_changes(tool, archive, cfg):
    first = store(archive)
    Study.update(private=False).execute()
    url = f"{DW}/studies/{first.study_instance_uid}/series/{first.series_instance_uid}/metadata"
    (item,) = tool.get(url).json
    assert item["00100010"]["Value"] == [{"Alphabetic": "DOE^JOHN"}]
    assert item["7FE00010"]["BulkDataURI"].endswith(f"{first.sop_instance_uid}/bulkdata/7fe00010")
    assert "Value" not in item["7FE00010"] and "InlineBinary" not in item["7FE00010"]
    cached = list((Path(cfg.data_dir) / "dicomweb-metadata").glob("*.json"))
    assert len(cached) == 1
    # Served from the cache: the file is not opened again while the series is unchanged.
    inst = Instance.get(Instance.sop_instance_uid == first.sop_instance_uid)
    path = instance_path(inst)
    path.rename(path.with_suffix(".away"))
    assert len(tool.get(url).json) == 1
    path.with_suffix(".away").rename(path)
    store(archive, study_uid=first.study_instance_uid, series_uid=first.series_instance_uid)
    assert len(tool.get(url).json) == 2  # a new instance: the cache is rebuilt
    bulk = tool.get(item["7FE00010"]["BulkDataURI"].split("localhost:80")[-1])
    assert bulk.headers["Content-Type"].startswith(
        'multipart/related; type="application/octet-stream"'
    )


def test_an_edit_reaches_the_cached_metadata(tool, archive):
    res = store(archive)
    Study.update(private=False).execute()
    url = f"{DW}/studies/{res.study_instance_uid}/metadata"
    assert tool.get(url).json[0]["00080050"]["Value"] == ["ACC1"]
    edit.run(archive, edit.study_edit(res.study_instance_uid, {"accession_number": "ACC-NEW"}))
    assert tool.get(url).json[0]["00080050"]["Value"] == ["ACC-NEW"]  # the file was rewritten


def test_rendered_and_thumbnails(tool, archive):
    res = store(archive, frames=3)
    Study.update(private=False).execute()
    inst = f"{DW}/studies/{res.study_instance_uid}/series/{res.series_instance_uid}/instances/{res.sop_instance_uid}"
    jpeg = tool.get(inst + "/rendered?window=100,200&quality=80")
    assert jpeg.headers["Content-Type"] == "image/jpeg" and jpeg.body[:2] == b"\xff\xd8"
    png = tool.get(inst + "/frames/3/rendered?viewport=32,32", headers={"Accept": "image/png"})
    assert png.body[:8] == b"\x89PNG\r\n\x1a\n"
    for thumb in (f"{DW}/studies/{res.study_instance_uid}", inst.rsplit("/instances", 1)[0], inst):
        r = tool.get(thumb + "/thumbnail")
        assert r.headers["Content-Type"] == "image/jpeg"
    for bad, status in [
        ("/rendered?window=abc", 400),
        ("/rendered?viewport=1,2,3,4,5,6", 400),
        ("/frames/9/rendered", 400),
        ("/frames/1,2/rendered", 400),
        ("/frames/4", 404),
    ]:
        assert tool.get(inst + bad, expect_errors=True).status_int == status, bad
    r = tool.get(inst + "/rendered", headers={"Accept": "image/gif"}, expect_errors=True)
    assert r.status_int == 406
    frames = tool.get(inst + "/frames/1,3")
    assert frames.body.count(b"Content-Type: application/octet-stream") == 2


def test_retrieve_negotiates_the_transfer_syntax(tool, archive):
    res = store(archive)
    Study.update(private=False).execute()
    url = f"{DW}/studies/{res.study_instance_uid}"
    dicom = 'multipart/related; type="application/dicom"'
    for accept in ("", "*/*", dicom, dicom + "; transfer-syntax=*",
                   dicom + "; transfer-syntax=1.2.840.10008.1.2.1"):  # fmt: skip
        r = tool.get(url, headers={"Accept": accept} if accept else {})
        assert r.headers["Content-Type"].startswith(dicom), accept
        assert b"transfer-syntax=1.2.840.10008.1.2.1" in r.body
    for accept in (dicom + "; transfer-syntax=1.2.840.10008.1.2.4.50", "application/zip"):
        r = tool.get(url, headers={"Accept": accept}, expect_errors=True)
        assert r.status_int == 406 and "offered" in r.json["error"], accept
