"""In-process web app over a real archive in tmp_path, with an injected clock."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import webtest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacsbox import config
from pacsbox.archive import Archive
from pacsbox.web import users
from pacsbox.web.app import create_app

PASSWORD = "correct horse battery"
CT = "1.2.840.10008.5.1.4.1.1.2"


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def make_dicom(
    *,
    patient_name="DOE^JOHN",
    patient_id="PID1",
    study_uid=None,
    series_uid=None,
    sop_uid=None,
    description="CT HEAD",
    study_date="20240105",
    referring="",
    reading="",
    institution="",
    rows=64,
    columns=64,
    frames=1,
    photometric="MONOCHROME2",
    modality="CT",
) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CT
    sop_uid = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.StudyDescription = description
    ds.StudyDate = study_date
    ds.StudyTime = "101010"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ReferringPhysicianName = referring
    if reading:
        ds.NameOfPhysiciansReadingStudy = reading
    ds.InstitutionName = institution
    ds.AccessionNumber = "ACC1"
    ds.StudyID = "S1"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 3 if photometric == "RGB" else 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if photometric == "RGB" else 16
    ds.BitsStored = 8 if photometric == "RGB" else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if photometric == "RGB":
        ds.PlanarConfiguration = 0
        arr = np.zeros((rows, columns, 3), np.uint8)
        arr[..., 0] = 200
    else:
        arr = np.arange(rows * columns, dtype=np.uint16).reshape(rows, columns) % 4096
        ds.WindowCenter = 2048
        ds.WindowWidth = 4096
        ds.RescaleSlope = 1
        ds.RescaleIntercept = 0
    if frames > 1:
        ds.NumberOfFrames = frames
        arr = np.stack([arr] * frames)
    ds.PixelData = arr.tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture
def cfg(tmp_path):
    base = tmp_path / "box"
    base.mkdir()
    c = config.load(None).replace(DataDirectory=str(base), SyncWrites=False)
    return c.replace(ArchiveDirectory=str(base / "archive"))


@pytest.fixture
def archive(cfg):
    a = Archive(cfg)
    yield a
    a.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(cfg, archive, clock):
    return create_app(cfg, archive, clock=clock)


@pytest.fixture
def web(app):
    return webtest.TestApp(app)


def store(archive, **kw):
    """Store one generated image; returns the archive's StoreResult (all three UIDs)."""
    return archive.store(make_dicom(**kw), source="test")


class Browser:
    """A logged-in webtest client that knows its CSRF token."""

    def __init__(self, app, name: str, password: str = PASSWORD) -> None:
        self.t = webtest.TestApp(app)
        r = self.t.post("/login.json", {"name": name, "password": password})
        self.csrf = r.json["csrf"]

    def get(self, url, **kw):
        return self.t.get(url, **kw)

    def post(self, url, params=None, **kw):
        params = dict(params or {})
        params.setdefault("csrf_token", self.csrf)
        return self.t.post(url, params, **kw)


def login(app, name, privileges=(), clock=None, **kw) -> Browser:
    if name == "root":
        users.set_password("root", PASSWORD)
    else:
        users.add_user(name, list(privileges), PASSWORD, **kw)
    return Browser(app, name)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
