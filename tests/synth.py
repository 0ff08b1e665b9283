"""Synthetic DICOM objects made with pydicom, for tests and benchmarks (nothing downloaded)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

ROOT = "1.2.826.0.1.3680043.10.1395.9."


def make_instance(
    *,
    patient_id: str = "PAT1",
    patient_name: str = "DOE^JOHN",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    modality: str = "CT",
    study_date: str = "20240115",
    study_time: str = "101500",
    accession: str = "ACC1",
    study_id: str = "S1",
    series_number: int = 1,
    instance_number: int = 1,
    rows: int = 64,
    columns: int = 64,
    description: str = "TEST STUDY",
    charset: str | None = None,
    pixel_seed: int = 0,
    extra: dict | None = None,
) -> bytes:
    """One Part-10 image (Explicit VR LE, 16-bit) as bytes."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    ds.SOPInstanceUID = sop_uid or generate_uid(ROOT)
    ds.StudyInstanceUID = study_uid or generate_uid(ROOT)
    ds.SeriesInstanceUID = series_uid or generate_uid(ROOT)
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.SeriesDate = study_date
    ds.SeriesTime = study_time
    ds.AccessionNumber = accession
    ds.StudyID = study_id
    ds.StudyDescription = description
    ds.ReferringPhysicianName = "REF^DOC"
    ds.Modality = modality
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 1024
    ds.WindowWidth = 2048
    rng = np.random.default_rng(pixel_seed or instance_number)
    ds.PixelData = rng.integers(0, 4096, size=(rows, columns), dtype=np.uint16).tobytes()
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def make_study(
    folder: Path | None = None,
    *,
    patient_id: str = "PAT1",
    n_series: int = 1,
    per_series: int = 2,
    **kw,
) -> list[bytes]:
    """A study of ``n_series`` x ``per_series`` images; written to ``folder`` when given."""
    study_uid = kw.pop("study_uid", None) or generate_uid(ROOT)
    out = []
    for s in range(n_series):
        series_uid = generate_uid(ROOT)
        for i in range(per_series):
            out.append(
                make_instance(
                    patient_id=patient_id,
                    study_uid=study_uid,
                    series_uid=series_uid,
                    series_number=s + 1,
                    instance_number=i + 1,
                    **kw,
                )
            )
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for n, data in enumerate(out):
            (folder / f"img{n:05d}.dcm").write_bytes(data)
    return out


def write_files(folder: Path, datas: list[bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, data in enumerate(datas):
        p = folder / f"f{n:06d}.dcm"
        p.write_bytes(data)
        paths.append(p)
    return paths
