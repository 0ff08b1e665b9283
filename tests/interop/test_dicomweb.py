"""DICOMweb against a running pacsbox with the real ``dicomweb-client`` (PyPI), DCMTK around it.

storescu sends the corpus over DIMSE; the client searches (QIDO-RS),
retrieves (WADO-RS: every data set compared byte for byte with the file
storescu sent, metadata, frames) and stores (STOW-RS, chunked), and findscu
finds what STOW stored. Bad input gets a clear 4xx and the server goes on.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from tests.helpers import Server, cli, dcmtk, free_port, require_tools, write_config
from tests.integration.web.conftest import PASSWORD
from tests.interop.test_find import final_status
from tests.peers import Orthanc
from tests.synth import ROOT, make_instance

dicomweb_client = pytest.importorskip("dicomweb_client", reason="pip install dicomweb-client")
from dicomweb_client.api import DICOMwebClient  # noqa: E402
from dicomweb_client.session_utils import create_session_from_user_pass  # noqa: E402

STUDY_A = ROOT + "71.1"
STUDY_B = ROOT + "71.2"


@dataclass
class Box:
    server: Server
    ini: Path
    url: str
    files: dict[str, Path]  # SOP Instance UID -> the file storescu sent
    series_a: list[str]
    corpus: Path

    def client(self, user: str = "tool", password: str = PASSWORD) -> DICOMwebClient:
        session = create_session_from_user_pass(user, password)
        return DICOMwebClient(self.url + "/dicom-web", session=session)


def _corpus(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Study A (P1): a CT series of 2 and an MR image; study B (P2): one CT of Dr Who."""
    folder.mkdir()
    series = [generate_uid(ROOT), generate_uid(ROOT)]
    specs = [
        dict(study_uid=STUDY_A, series_uid=series[0], patient_id="P1", instance_number=1),
        dict(study_uid=STUDY_A, series_uid=series[0], patient_id="P1", instance_number=2),
        dict(study_uid=STUDY_A, series_uid=series[1], patient_id="P1", modality="MR",
             series_number=2),
        dict(study_uid=STUDY_B, patient_id="P2", patient_name="ROE^JANE", study_date="20230301",
             extra={"ReferringPhysicianName": "WHO^DOCTOR"}),
    ]  # fmt: skip
    files = {}
    for n, spec in enumerate(specs):
        data = make_instance(**spec)
        path = folder / f"img{n}.dcm"
        path.write_bytes(data)
        files[pydicom.dcmread(path).SOPInstanceUID] = path
    return files, series


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dicomweb")
    files, series = _corpus(tmp / "corpus")
    port = free_port()
    ini = write_config(tmp / "box", SyncWrites="no", WebPort=port)
    cli(ini, "ae", "add", "STORESCU", "--host", "127.0.0.1")
    cli(ini, "ae", "add", "FINDSCU", "--host", "127.0.0.1")
    for name, privileges in (("tool", ["view", "import"]), ("plain", [])):
        cli(ini, "user", "add", name, *[f"--privilege={p}" for p in privileges],
            *(["--first-name", "Doctor", "--last-name", "Who"] if name == "plain" else []))  # fmt: skip
        cli(ini, "user", "passwd", name, input=PASSWORD + "\n")
    srv = Server(ini).start()
    try:
        dcmtk("storescu", "-aet", "STORESCU", "-aec", srv.ae_title, "127.0.0.1", str(srv.port),
              "+sd", str(tmp / "corpus"), check=True)  # fmt: skip
        yield Box(srv, ini, f"http://127.0.0.1:{port}", files, series, tmp / "corpus")
    finally:
        srv.stop()


def _uids(answer: list, keyword: str) -> set[str]:
    return {str(getattr(pydicom.Dataset.from_json(a), keyword)) for a in answer}


def test_search_studies_series_instances_with_filters(box):
    c = box.client()
    assert _uids(c.search_for_studies(search_filters={"PatientID": "P1"}), "StudyInstanceUID") == {
        STUDY_A
    }
    assert _uids(c.search_for_studies(search_filters={"StudyDate": "20230101-20231231"}),
                 "StudyInstanceUID") == {STUDY_B}  # fmt: skip
    assert _uids(c.search_for_studies(search_filters={"ModalitiesInStudy": "MR"}),
                 "StudyInstanceUID") == {STUDY_A}  # fmt: skip
    mr = c.search_for_series(STUDY_A, search_filters={"Modality": "MR"})
    assert _uids(mr, "SeriesInstanceUID") == {box.series_a[1]}
    inst = c.search_for_instances(STUDY_A, box.series_a[0])
    assert _uids(inst, "SOPInstanceUID") == {
        uid
        for uid, p in box.files.items()
        if pydicom.dcmread(p).SeriesInstanceUID == box.series_a[0]
    }
    (study,) = c.search_for_studies(search_filters={"PatientID": "P2"}, fields=["StudyDescription"])
    ds = pydicom.Dataset.from_json(study)
    assert ds.StudyDescription == "TEST STUDY" and ds.NumberOfStudyRelatedInstances == 1
    pages = [c.search_for_studies(limit=1, offset=n) for n in (0, 1, 2)]
    assert [len(p) for p in pages] == [1, 1, 0]
    assert len(c.search_for_studies(fuzzymatching=True)) == 2  # answered, with a Warning


ORTHANC_DICOMWEB = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
# The required keys of PS3.18 tables 10.6.3-3..5 both servers hold, compared value by value.
PARITY_KEYS = {
    "studies": ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
                "ModalitiesInStudy", "PatientName", "PatientID", "PatientBirthDate",
                "PatientSex", "StudyID", "NumberOfStudyRelatedSeries",
                "NumberOfStudyRelatedInstances"),
    "series": ("SeriesInstanceUID", "Modality", "SeriesNumber",
               "NumberOfSeriesRelatedInstances"),
    "instances": ("SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}  # fmt: skip


def _rows(answer: list, level: str) -> dict[str, dict[str, object]]:
    """{unique key: {required key: value}} of a QIDO answer."""
    out = {}
    for item in answer:
        ds = pydicom.Dataset.from_json(item)
        row: dict[str, object] = {}
        for kw in PARITY_KEYS[level]:
            value = ds.get(kw, "")
            if kw == "ModalitiesInStudy":
                row[kw] = sorted([value] if isinstance(value, str) else map(str, value))
            else:
                row[kw] = str(value)
        out[str(row[PARITY_KEYS[level][0]])] = row
    return out


def _qido(url: str, auth: str = "") -> list:
    """A QIDO GET with the query as written: Orthanc 1.10's plugin does not percent-decode
    query values (``ROE%2A`` matches nothing), so ``*`` and ``^`` go unencoded to both."""
    req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"[]")


def test_qido_parity_with_orthanc_dicomweb(box, tmp_path):
    """The same corpus in Orthanc + its DICOMweb plugin: the same matches, the same values."""
    require_tools("Orthanc")
    if not ORTHANC_DICOMWEB.exists():
        why = "needs orthanc-dicomweb (make test installs it)"
        if os.environ.get("PACSBOX_REQUIRE_TOOLS") == "1":
            pytest.fail(why)
        pytest.skip(why)
    orthanc = Orthanc(tmp_path / "orthanc", box.server.port, Plugins=[str(ORTHANC_DICOMWEB)],
                      DicomWeb={"Enable": True, "Root": "/dicom-web/"})  # fmt: skip
    auth = "Basic " + base64.b64encode(f"tool:{PASSWORD}".encode()).decode()
    try:
        dcmtk("storescu", "-aec", orthanc.aet, "127.0.0.1", str(orthanc.dicom), "+sd",
              str(box.corpus), check=True)  # fmt: skip
        s0 = box.series_a[0]
        queries = [
            ("studies", "/studies"),
            ("studies", "/studies?PatientID=P1"),
            ("studies", "/studies?PatientName=ROE*"),
            ("studies", "/studies?PatientName=ROE^JANE"),
            ("studies", "/studies?StudyDate=20230101-20231231"),
            ("studies", "/studies?ModalitiesInStudy=MR"),
            ("studies", f"/studies?StudyInstanceUID={STUDY_B}"),
            ("series", "/series?Modality=CT"),
            ("series", f"/studies/{STUDY_A}/series"),
            ("series", f"/studies/{STUDY_A}/series?SeriesNumber=2"),
            ("instances", f"/studies/{STUDY_A}/series/{s0}/instances"),
            ("instances", f"/studies/{STUDY_A}/series/{s0}/instances?InstanceNumber=2"),
        ]
        for level, query in queries:
            mine = _rows(_qido(box.url + "/dicom-web" + query, auth), level)
            other = _rows(_qido(f"http://127.0.0.1:{orthanc.http}/dicom-web" + query), level)
            assert mine == other, query
            assert mine, query  # every query matches something
    finally:
        orthanc.stop()


def test_retrieve_study_byte_for_byte_as_storescu_sent_it(box):
    c = box.client()
    got = c.retrieve_study(STUDY_A)
    assert {ds.SOPInstanceUID for ds in got} == {
        u for u, p in box.files.items() if pydicom.dcmread(p).StudyInstanceUID == STUDY_A
    }
    # The raw parts, through the client's own multipart decoder.
    resp = c._session.get(f"{box.url}/dicom-web/studies/{STUDY_A}",
                          headers={"Accept": 'multipart/related; type="application/dicom"'})  # fmt: skip
    assert resp.status_code == 200
    parts = list(c._decode_multipart_message(resp, stream=False))
    assert len(parts) == 3
    for part in parts:
        ds = pydicom.dcmread(io.BytesIO(part))
        sent = box.files[ds.SOPInstanceUID].read_bytes()
        sent_ds = pydicom.dcmread(box.files[ds.SOPInstanceUID])
        assert ds.file_meta.TransferSyntaxUID == sent_ds.file_meta.TransferSyntaxUID
        # The data set after the file meta group: the bytes storescu sent, unchanged.
        assert _dataset_bytes(part) == _dataset_bytes(sent)


def _dataset_bytes(part10: bytes) -> bytes:
    fh = io.BytesIO(part10)
    pydicom.filereader.read_preamble(fh, False)
    pydicom.filereader._read_file_meta_info(fh)
    return part10[fh.tell() :]


def test_metadata_and_frames(box):
    c = box.client()
    meta = c.retrieve_series_metadata(STUDY_A, box.series_a[0])
    assert len(meta) == 2
    for item in meta:
        ds = pydicom.Dataset.from_json(item)
        assert ds.PatientID == "P1" and ds.SeriesInstanceUID == box.series_a[0]
        assert "BulkDataURI" in item["7FE00010"]
    assert len(c.retrieve_study_metadata(STUDY_A)) == 3
    uid = next(iter(pydicom.Dataset.from_json(m).SOPInstanceUID for m in meta))
    (frame,) = c.retrieve_instance_frames(STUDY_A, box.series_a[0], uid, frame_numbers=[1])
    assert frame == pydicom.dcmread(box.files[uid]).PixelData
    (bulk,) = c.retrieve_bulkdata(next(m for m in meta if uid in str(m))["7FE00010"]["BulkDataURI"])
    assert bulk == frame
    jpeg = c.retrieve_instance_rendered(STUDY_A, box.series_a[0], uid, media_types=("image/jpeg",))
    assert jpeg[:2] == b"\xff\xd8"


def test_stow_chunked_then_findscu_finds_it_and_compressed_frames(box):
    c = box.client()
    c.set_chunk_size(4096)  # the client sends bodies over this size chunked
    study = generate_uid(ROOT)
    plain = pydicom.dcmread(io.BytesIO(make_instance(study_uid=study, patient_id="P9")))
    rle = pydicom.dcmread(io.BytesIO(make_instance(study_uid=study, patient_id="P9",
                                                   instance_number=2)))  # fmt: skip
    rle.compress(RLELossless, generate_instance_uid=False)
    answer = c.store_instances([plain, rle])
    assert len(answer.ReferencedSOPSequence) == 2
    rsp = dcmtk("findscu", "-v", "-S", "-aet", "FINDSCU", "-aec", box.server.ae_title,
                "127.0.0.1", str(box.server.port), "-k", "QueryRetrieveLevel=STUDY",
                "-k", f"StudyInstanceUID={study}", "-k", "PatientID", "-k",
                "NumberOfStudyRelatedInstances")  # fmt: skip
    out = rsp.stdout + rsp.stderr
    assert final_status(out).startswith("Success") and "P9" in out and study in out
    series = rle.SeriesInstanceUID
    (frame,) = c.retrieve_instance_frames(study, series, rle.SOPInstanceUID, frame_numbers=[1],
                                          media_types=(("image/dicom-rle", RLELossless),))  # fmt: skip
    assert frame == next(generate_frames(rle.PixelData, number_of_frames=1))
    (native,) = c.retrieve_instance_frames(study, series, rle.SOPInstanceUID, frame_numbers=[1],
                                           media_types=(("application/octet-stream",
                                                         ExplicitVRLittleEndian),))  # fmt: skip
    assert native == plain.PixelData.__class__(rle.pixel_array.tobytes())
    assert c.retrieve_instance(study, series, rle.SOPInstanceUID).file_meta.TransferSyntaxUID == (
        RLELossless
    )  # the stored syntax by default
    converted = c.retrieve_instance(study, series, rle.SOPInstanceUID,
                                    media_types=(("application/dicom", ExplicitVRLittleEndian),))  # fmt: skip
    assert converted.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert converted.pixel_array.tobytes() == rle.pixel_array.tobytes()


def _post(box: Box, body: bytes, ctype: str) -> requests.Response:
    return requests.post(box.url + "/dicom-web/studies", data=body, auth=("tool", PASSWORD),
                         headers={"Content-Type": ctype}, timeout=30)  # fmt: skip


def test_bad_input_is_a_clear_4xx_and_the_server_keeps_serving(box):
    c = box.client()
    before = len(c.search_for_instances())
    multi = 'multipart/related; type="application/dicom"; boundary=B'
    r = _post(box, b"--B\r\nContent-Type: application/dicom\r\n\r\nnot ended", multi)
    assert r.status_code == 400 and "closing delimiter" in r.json()["error"]
    r = _post(box, b"--B\r\nContent-Type: application/dicom\r\n\r\nnot DICOM\r\n--B--\r\n", multi)
    assert r.status_code == 409
    (failed,) = pydicom.Dataset.from_json(r.json()).FailedSOPSequence
    assert failed.FailureReason == 0xC000
    r = _post(box, b"{}", "application/json")
    assert r.status_code == 415
    assert len(c.search_for_instances()) == before  # nothing stored from them
    auth = ("tool", PASSWORD)
    r = requests.get(box.url + "/dicom-web/studies?PatientNickname=x", auth=auth, timeout=30)
    assert r.status_code == 400 and "PatientNickname" in r.json()["error"]
    r = requests.get(box.url + "/dicom-web/studies", auth=auth, timeout=30,
                     headers={"Accept": "application/dicom+xml"})  # fmt: skip
    assert r.status_code == 406
    # A 2 GB Content-Length is refused before a byte of the body is read.
    with socket.create_connection(("127.0.0.1", int(box.url.rsplit(":", 1)[1])), timeout=30) as s:
        cred = base64.b64encode(f"tool:{PASSWORD}".encode()).decode()
        s.sendall(
            (f"POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {cred}\r\n"
             f"Content-Type: {multi}\r\nContent-Length: {2 * 1024**3}\r\n\r\n--B\r\n").encode()
        )  # fmt: skip
        reply = http.client.HTTPResponse(s)
        reply.begin()
        assert reply.status == 413 and b"at most" in reply.read()
    assert len(c.search_for_instances()) == before  # still serving


def test_privileges_view_and_store(box):
    """DICOMweb needs View (a user without it, even Dr Who on his own patient's study, gets
    403 everywhere), STOW also Import or Upload; no credentials at all is a 401."""
    for method, url in (("GET", "/studies"), ("GET", f"/studies/{STUDY_B}/metadata"),
                        ("POST", "/studies")):  # fmt: skip
        r = requests.request(method, f"{box.url}/dicom-web{url}", data=b"x", timeout=30,
                             auth=("plain", PASSWORD),
                             headers={"Content-Type": "multipart/related; boundary=B"})  # fmt: skip
        assert r.status_code == 403 and "View" in r.json()["error"], url
    r = requests.get(f"{box.url}/dicom-web/studies", timeout=30)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
