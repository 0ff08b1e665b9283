"""WADO-URI: authentication (session, Basic, WADO account), 400 reasons, 404, privacy."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import webtest
from pydicom import dcmread

from pacsbox.db.models import Patient, Study
from pacsbox.web import users
from tests.integration.web.conftest import PASSWORD, login, store


def basic(name: str, password: str = PASSWORD) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def wado_url(res, **extra) -> str:
    q = {
        "requestType": "WADO",
        "studyUID": res.study_instance_uid,
        "seriesUID": res.series_instance_uid,
        "objectUID": res.sop_instance_uid,
        **extra,
    }
    return "/wado?" + "&".join(f"{k}={v}" for k, v in q.items())


def test_wado_with_session_basic_and_wado_account(app, archive):
    res = store(archive)
    t = webtest.TestApp(app)
    r = t.get(wado_url(res), expect_errors=True)
    assert r.status_int == 401 and "Basic" in r.headers["WWW-Authenticate"]
    b = login(app, "root")
    r = b.get(wado_url(res))
    assert r.content_type == "image/jpeg" and r.body[:2] == b"\xff\xd8"
    assert b.get(wado_url(res, contentType="image/png")).body[:4] == b"\x89PNG"
    users.add_user("pacs-wado", ["view", "download"], PASSWORD, wado_only=True)
    r = t.get(wado_url(res, contentType="application/dicom"), headers=basic("pacs-wado"))
    assert r.content_type == "application/dicom"
    assert dcmread(io.BytesIO(r.body)).SOPInstanceUID == res.sop_instance_uid
    assert (
        t.get(
            wado_url(res), headers=basic("pacs-wado", "wrong-pass"), expect_errors=True
        ).status_int
        == 401
    )
    # application/dicom needs Download.
    users.add_user("looker", ["view"], PASSWORD)
    r = t.get(
        wado_url(res, contentType="application/dicom"), headers=basic("looker"), expect_errors=True
    )
    assert r.status_int == 403
    r = t.get(wado_url(res, windowCenter=100, windowWidth=50, rows=32), headers=basic("looker"))
    assert r.content_type == "image/jpeg"


def test_malformed_requests_are_400_with_a_reason(app, archive):
    res = store(archive)
    b = login(app, "root")
    ok = wado_url(res)
    cases = {
        ok.replace("requestType=WADO", "requestType=QIDO"): "requestType",
        ok.replace(f"objectUID={res.sop_instance_uid}", "objectUID=1.2.3.abc"): "objectUID",
        ok.replace(f"objectUID={res.sop_instance_uid}", "objectUID=../../etc/passwd"): "objectUID",
        ok.replace(
            f"objectUID={res.sop_instance_uid}", "objectUID=%2e%2e%2fpacsbox.db"
        ): "objectUID",
        ok.replace(f"seriesUID={res.series_instance_uid}", "seriesUID=1.02.3"): "seriesUID",
        ok.replace(f"studyUID={res.study_instance_uid}", "studyUID=" + "1." * 40): "studyUID",
        ok.replace(f"&seriesUID={res.series_instance_uid}", ""): "seriesUID",
        ok + "&contentType=text/html": "contentType",
        ok + "&frameNumber=x": "frameNumber",
        ok + "&windowCenter=10": "windowWidth",
        ok + "&foo=bar": "unknown parameter",
    }
    for url, reason in cases.items():
        r = b.get(url, expect_errors=True)
        assert r.status_int == 400 and reason in r.text, (url, r.status_int)


def test_unknown_and_private_objects_are_404(app, archive):
    res = store(archive, referring="WELBY^MARCUS")
    other = store(archive)
    b = login(app, "root")
    assert b.get(wado_url(res, objectUID="1.2.3.4"), expect_errors=True).status_int == 404
    # The object exists but not in that series/study.
    r = b.get(wado_url(res, seriesUID=other.series_instance_uid), expect_errors=True)
    assert r.status_int == 404
    assert b.get(wado_url(res, aetitle="OTHERBOX"), expect_errors=True).status_int == 404
    Study.update(private=True).execute()
    Patient.update(private=True).execute()
    users.add_user("plain", [], PASSWORD)
    users.add_user("welby", [], PASSWORD, first_name="marcus", last_name="welby")
    t = webtest.TestApp(app)
    assert t.get(wado_url(res), headers=basic("plain"), expect_errors=True).status_int == 404
    assert t.get(wado_url(res), headers=basic("welby")).status_int == 200
    assert t.get(wado_url(other), headers=basic("welby"), expect_errors=True).status_int == 404


def test_image_urls_refuse_traversal(app, archive):
    store(archive)
    b = login(app, "root")
    for url in (
        "/instances/..%2f..%2fpacsbox.db/image.jpg",
        "/instances/1.2/../../x/image.jpg",
        "/instances/1.2.3/image.jpg?size=99999",
        "/instances/abc/file",
    ):
        assert b.get(url, expect_errors=True).status_int in (400, 404), url


def test_native_storage_downloads_as_part10(cfg, clock, tmp_path):
    """StorageFormat=Native keeps the data set alone; downloads must still be Part-10 files."""
    from pacsbox.archive import Archive
    from pacsbox.web.app import create_app

    archive = Archive(cfg.replace(StorageFormat="Native"))
    try:
        res = store(archive, patient_name="NATIVE^ONE")
        app = create_app(archive.cfg, archive, clock=clock)
        b = login(app, "dl", privileges=("view", "download"))
        for url in (
            wado_url(res, contentType="application/dicom"),
            f"/instances/{res.sop_instance_uid}/file",
        ):
            r = b.get(url)
            assert r.content_type == "application/dicom"
            assert r.body[128:132] == b"DICM", url
            assert dcmread(io.BytesIO(r.body)).SOPInstanceUID == res.sop_instance_uid
    finally:
        archive.close()


def test_transfer_syntax_is_honoured_or_refused_and_anonymize_is_refused(app, archive):
    """WADO-URI's transferSyntax and anonymize are never silently ignored."""
    from pydicom.data import get_testdata_file
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless

    rle = archive.store(Path(get_testdata_file("MR_small_RLE.dcm")).read_bytes(), source="test")
    plain = store(archive)
    b = login(app, "root")
    dicom = {"contentType": "application/dicom"}
    # A compressed object, asked for as Explicit VR Little Endian: decompressed.
    r = b.get(wado_url(rle, transferSyntax=ExplicitVRLittleEndian, **dicom))
    ds = dcmread(io.BytesIO(r.body))
    want = dcmread(get_testdata_file("MR_small.dcm"))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (ds.pixel_array == want.pixel_array).all()
    # As stored: the stored bytes.
    r = b.get(wado_url(rle, transferSyntax=RLELossless, **dicom))
    assert dcmread(io.BytesIO(r.body)).file_meta.TransferSyntaxUID == RLELossless
    # One this box cannot make: 406 with the reason.
    r = b.get(wado_url(plain, transferSyntax=JPEGBaseline8Bit, **dicom), expect_errors=True)
    assert r.status_int == 406 and "is not offered for this object" in r.text
    # anonymize=yes: refused (501), never answered with the identified object.
    r = b.get(wado_url(plain, anonymize="yes", **dicom), expect_errors=True)
    assert r.status_int == 501 and "does not de-identify" in r.text
    assert b"DOE^JOHN" not in r.body
    for bad, reason in (
        (wado_url(plain, anonymize="no", **dicom), "anonymize must be yes"),
        (wado_url(plain, anonymize="yes"), "go with contentType=application/dicom"),
        (wado_url(plain, transferSyntax=ExplicitVRLittleEndian), "go with contentType"),
        (wado_url(plain, transferSyntax="1.2.x", **dicom), "transferSyntax is not a valid UID"),
    ):
        r = b.get(bad, expect_errors=True)
        assert r.status_int == 400 and reason in r.text, (bad, r.status_int)


def test_image_quality_and_region_shape_the_jpeg(app, archive):
    from PIL import Image

    res = store(archive)  # 64 x 64
    b = login(app, "root")
    low = b.get(wado_url(res, imageQuality=5)).body
    high = b.get(wado_url(res, imageQuality=100)).body
    assert len(low) < len(high)
    quarter = Image.open(io.BytesIO(b.get(wado_url(res, region="0,0,0.5,0.5")).body))
    assert quarter.size == (32, 32)
    strip = b.get(wado_url(res, region="0.25,0,0.75,1", contentType="image/png")).body
    assert Image.open(io.BytesIO(strip)).size == (32, 64)
    r = b.get(wado_url(res, presentationUID="1.2.3"), expect_errors=True)
    assert r.status_int == 501 and "presentation states" in r.text
    for bad, reason in (
        (wado_url(res, imageQuality=101), "imageQuality is 1 to 100"),
        (wado_url(res, imageQuality=50, contentType="image/png"), "for image/jpeg"),
        (wado_url(res, region="0.5,0,0.2,1"), "region is four numbers"),
        (wado_url(res, region="0,0,1"), "region is four numbers"),
    ):
        r = b.get(bad, expect_errors=True)
        assert r.status_int == 400 and reason in r.text, (bad, r.status_int)
