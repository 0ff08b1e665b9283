"""Export to DICOM File-sets (MEDIA-4), checked with third-party readers.

DCMTK dcmdump must parse each DICOMDIR, dicom3tools dciodvfy must report no
error for it, pydicom's FileSet must read back exactly the exported instances
with byte-identical pixel data, and every name must be ISO 9660 level 1.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from pacsbox.errors import MediaError, UsageError
from pacsbox.export import build_iso, export_fileset
from pacsbox.export.names import is_file_id_component, is_level1_name

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("dcmdump", "dciodvfy", "xorriso")),
    reason="needs dcmdump (dcmtk), dciodvfy (dicom3tools) and xorriso",
)


def _meta(sop_class: str, sop_uid: str, ts: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ts
    return meta


def _common(ds: Dataset, patient: str, study: str, series: str, modality: str, sn: int) -> None:
    ds.PatientName = f"TEST^{patient}"
    ds.PatientID = patient
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.StudyID = "S1"
    ds.AccessionNumber = "ACC1"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "export test"
    ds.SeriesInstanceUID = series
    ds.SeriesNumber = sn
    ds.Modality = modality


def write_image(
    path: Path, patient: str, study: str, series: str, modality: str, sn: int, number: int,
    *, size: int = 16, implicit: bool = False,
) -> Path:  # fmt: skip
    """A small CT or MR image; pixel values differ per instance."""
    sop_class = CT if modality == "CT" else MR
    sop_uid = generate_uid()
    ts = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = _meta(sop_class, sop_uid, ts)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    _common(ds, patient, study, series, modality, sn)
    ds.InstanceNumber = number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes((number * 7 + i) % 251 for i in range(size * size * 2))
    ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    return path


def write_sr(path: Path, patient: str, study: str, series: str) -> Path:
    """A verified Basic Text SR with a HAS CONCEPT MOD item and a text item."""
    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = _meta(BASIC_TEXT_SR, sop_uid, ExplicitVRLittleEndian)
    ds.SOPClassUID, ds.SOPInstanceUID = BASIC_TEXT_SR, sop_uid
    _common(ds, patient, study, series, "SR", 99)
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = "20240102", "103000"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "VERIFIED"
    observer = Dataset()
    observer.VerifyingObserverName = "DOC^TOR"
    observer.VerifyingOrganization = "PACSBOX"
    observer.VerificationDateTime = "20240102110000"
    observer.VerifyingObserverIdentificationCodeSequence = Sequence()
    ds.VerifyingObserverSequence = Sequence([observer])
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator = "18748-4", "LN"
    title.CodeMeaning = "Diagnostic Imaging Report"
    ds.ConceptNameCodeSequence = Sequence([title])
    lang = Dataset()
    lang.RelationshipType, lang.ValueType = "HAS CONCEPT MOD", "CODE"
    lang.ConceptNameCodeSequence = Sequence([_code("121049", "DCM", "Language of Content Item")])
    lang.ConceptCodeSequence = Sequence([_code("en", "RFC5646", "English")])
    text = Dataset()
    text.RelationshipType, text.ValueType = "CONTAINS", "TEXT"
    text.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    text.TextValue = "No abnormality."
    ds.ContentSequence = Sequence([lang, text])
    ds.save_as(path, enforce_file_format=True)
    return path


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
    return code


def make_corpus(folder: Path) -> list[Path]:
    """2 patients, 3 studies, CT/MR series, one SR, one Implicit VR, one JPEG file."""
    folder.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    p1s1, p1s2, p2s1 = generate_uid(), generate_uid(), generate_uid()
    ct, mr, ct2, sr = generate_uid(), generate_uid(), generate_uid(), generate_uid()
    for i in range(1, 4):
        files.append(write_image(folder / f"ct{i}.dcm", "PAT1", p1s1, ct, "CT", 1, i))
    for i in range(1, 3):
        files.append(write_image(folder / f"mr{i}.dcm", "PAT1", p1s2, mr, "MR", 2, i))
    files.append(write_image(folder / "imp.dcm", "PAT2", p2s1, ct2, "CT", 1, 1, implicit=True))
    files.append(write_image(folder / "ct2b.dcm", "PAT2", p2s1, ct2, "CT", 1, 2))
    files.append(write_sr(folder / "sr.dcm", "PAT2", p2s1, sr))
    jpeg = get_testdata_file("SC_rgb_jpeg_dcmtk.dcm", download=False)
    assert jpeg, "pydicom test file SC_rgb_jpeg_dcmtk.dcm is missing"
    files.append(Path(shutil.copy(jpeg, folder / "jpeg.dcm")))
    return files


def dciodvfy_errors(dicomdir: Path) -> tuple[list[str], list[str]]:
    """(error lines, warning lines) of dciodvfy on a DICOMDIR."""
    out = subprocess.run(["dciodvfy", str(dicomdir)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    errors = [ln for ln in lines if ln.startswith("Error")]
    warnings = [ln for ln in lines if ln.startswith("Warning")]
    return errors, warnings


def check_volume(directory: Path) -> dict[str, Path]:
    """Validate one volume like a user would; return SOP Instance UID -> file on it."""
    dicomdir = directory / "DICOMDIR"
    dump = subprocess.run(
        ["dcmdump", "-q", str(dicomdir)], capture_output=True, text=True, timeout=60
    )
    assert dump.returncode == 0, dump.stderr
    assert "MediaStorageDirectoryStorage" in dump.stdout
    errors, warnings = dciodvfy_errors(dicomdir)
    for w in warnings:
        print(f"dciodvfy {dicomdir}: {w}")
    assert not errors, "\n".join(errors)
    for path in directory.rglob("*"):
        for part in path.relative_to(directory).parts:
            assert is_file_id_component(part), f"{path} is not a level-1 DICOM name"
    fs = FileSet(dicomdir)
    found = {}
    for inst in fs:
        found[inst.SOPInstanceUID] = Path(inst.path)
        assert all(is_file_id_component(p) for p in inst.ReferencedFileID), inst.ReferencedFileID
    return found


def test_export_one_cd_volume(tmp_path: Path) -> None:
    files = make_corpus(tmp_path / "src")
    seen: list[tuple[int, int]] = []
    volumes = export_fileset(files, tmp_path / "out", progress=lambda d, t: seen.append((d, t)))
    assert len(volumes) == 1
    vol = volumes[0]
    assert vol.label == "PACSBOX" and vol.directory == tmp_path / "out" / "PACSBOX"
    assert vol.instances == len(files)
    assert seen[-1] == (2 * len(files), 2 * len(files))
    # the JPEG file stays compressed on a CD: documented deviation, named on the volume
    assert vol.profile == "STD-GEN-CD" and "JPEG Baseline" in vol.deviations[0]

    found = check_volume(vol.directory)
    sources = {dcmread(f).SOPInstanceUID: f for f in files}
    assert set(found) == set(sources)
    for uid, src in sources.items():
        a, b = dcmread(src), dcmread(found[uid])
        assert a.PixelData == b.PixelData if "PixelData" in a else True
        if a.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian:
            assert found[uid].read_bytes() == src.read_bytes(), "explicit LE copied verbatim"
        elif a.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian:
            assert b.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian, "implicit re-encoded"

    dd = dcmread(vol.directory / "DICOMDIR")
    assert dd.FileSetID == "PACSBOX"
    by_type: dict[str, list[Dataset]] = {}
    for rec in dd.DirectoryRecordSequence:
        by_type.setdefault(rec.DirectoryRecordType, []).append(rec)
    assert len(by_type["PATIENT"]) == 3 and len(by_type["STUDY"]) == 4  # + the JPEG file
    for rec in by_type["PATIENT"]:
        assert rec.PatientID and "PatientName" in rec
    for rec in by_type["STUDY"]:
        assert rec.StudyInstanceUID and rec.StudyID
    for rec in by_type["SERIES"]:
        assert rec.Modality and rec.SeriesNumber is not None
    for rec in by_type["IMAGE"]:
        assert rec.InstanceNumber is not None and rec.ReferencedTransferSyntaxUIDInFile
    (sr,) = by_type["SR DOCUMENT"]
    assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "VERIFIED"
    assert sr.VerificationDateTime == "20240102110000"
    assert sr.ContentDate and sr.ContentTime and sr.ConceptNameCodeSequence
    assert [it.RelationshipType for it in sr.ContentSequence] == ["HAS CONCEPT MOD"]
    assert sr.ReferencedFileID[-1].startswith("SR")


def test_export_dvd_with_jpeg_is_dvd_jpeg_profile(tmp_path: Path) -> None:
    files = make_corpus(tmp_path / "src")
    (vol,) = export_fileset(files, tmp_path / "out", media="dvd", label="Clinic disc")
    assert vol.label == "CLINIC_DISC"
    assert vol.profile == "STD-GEN-DVD-JPEG" and vol.deviations == []
    check_volume(vol.directory)


def _series_of(directory: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for inst in FileSet(directory / "DICOMDIR"):
        out.setdefault(inst.SeriesInstanceUID, set()).add(inst.SOPInstanceUID)
    return out


def test_split_into_three_volumes_without_splitting_series(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = []
    study = generate_uid()
    for s in range(6):  # 6 series of 4 x 32 KiB images
        series = generate_uid()
        for i in range(1, 5):
            files.append(
                write_image(src / f"s{s}i{i}.dcm", "PAT9", study, series, "CT", s + 1, i, size=128)
            )
    volume_bytes = 1_100_000  # room for 2 series (+ ISO overhead) per volume
    volumes = export_fileset(files, tmp_path / "out", volume_bytes=volume_bytes, label="SPLIT",
                             zip_volumes=True)  # fmt: skip
    assert [v.label for v in volumes] == ["SPLIT_1", "SPLIT_2", "SPLIT_3"]
    assert [v.number for v in volumes] == [1, 2, 3]
    all_uids: set[str] = set()
    series_home: dict[str, str] = {}
    for vol in volumes:
        found = check_volume(vol.directory)
        assert len(found) == vol.instances
        all_uids |= set(found)
        for series_uid in _series_of(vol.directory):
            assert series_uid not in series_home, f"series {series_uid} split across volumes"
            series_home[series_uid] = vol.label
        assert dcmread(vol.directory / "DICOMDIR").FileSetID == vol.label
        with zipfile.ZipFile(vol.zip_path) as zf:
            assert "DICOMDIR" in zf.namelist() and zf.testzip() is None
        iso = build_iso(vol.directory, tmp_path / f"{vol.label}.iso", vol.label)
        assert iso.stat().st_size <= volume_bytes, "the volume must fit its medium"
    assert len(all_uids) == len(files) and len(series_home) == 6


def test_series_bigger_than_a_volume_is_split_by_instances(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    study, series = generate_uid(), generate_uid()
    files = [write_image(src / f"i{i}.dcm", "PAT8", study, series, "MR", 1, i, size=128)
             for i in range(1, 31)]  # fmt: skip
    volumes = export_fileset(files, tmp_path / "out", volume_bytes=1_100_000)
    assert len(volumes) >= 2
    uids = [uid for v in volumes for uid in check_volume(v.directory)]
    assert len(uids) == len(set(uids)) == 30


def test_viewer_folder_is_copied_and_must_be_level1(tmp_path: Path) -> None:
    files = make_corpus(tmp_path / "src")[:2]
    viewer = tmp_path / "viewer"
    (viewer / "BIN").mkdir(parents=True)
    (viewer / "README.TXT").write_text("open DICOMDIR")
    (viewer / "BIN" / "VIEWER.EXE").write_bytes(b"MZ")
    (vol,) = export_fileset(files, tmp_path / "out", viewer_dir=viewer)
    assert (vol.directory / "VIEWER" / "BIN" / "VIEWER.EXE").read_bytes() == b"MZ"
    for path in vol.directory.rglob("*"):
        assert is_level1_name(path.name, is_dir=path.is_dir()), path
    (viewer / "index.html").write_text("<html>")
    with pytest.raises(UsageError, match="index.html"):
        export_fileset(files, tmp_path / "out2", viewer_dir=viewer)


def test_iso_has_level1_names_and_volume_id(tmp_path: Path) -> None:
    files = make_corpus(tmp_path / "src")
    (vol,) = export_fileset(files, tmp_path / "out")
    iso = build_iso(vol.directory, tmp_path / "vol.iso", vol.label)
    out = subprocess.run(
        ["xorriso", "-no_rc", "-indev", str(iso), "-pvd_info", "-find", "/", "-exec", "lsdl"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert re.search(r"Volume [Ii]d\s*:\s*'?PACSBOX'?", text), text
    paths = re.findall(r"^[d-][rwx-]{9} .*'(/[^']*)'$", out.stdout, re.M)
    assert "/DICOMDIR" in paths and len([p for p in paths if "/IM" in p]) == len(files) - 1
    for p in paths:
        for part in p.strip("/").split("/"):
            assert not part or is_file_id_component(part), p
    assert "Rock Ridge" not in text or "Rock Ridge   : -" in text


def test_unreadable_file_is_refused_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "junk.dcm"
    bad.write_bytes(b"not dicom at all")
    with pytest.raises(MediaError, match="junk.dcm"):
        export_fileset([bad], tmp_path / "out")


def test_missing_type1_keys_are_invented_and_dciodvfy_catches_bad_records(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    path = write_image(src / "bare.dcm", "PAT7", generate_uid(), generate_uid(), "CT", 1, 1)
    ds = dcmread(path)
    for kw in ("StudyID", "SeriesNumber", "InstanceNumber", "StudyDate", "StudyTime"):
        delattr(ds, kw)
    ds.save_as(path)
    (vol,) = export_fileset([path], tmp_path / "out")
    check_volume(vol.directory)  # no dciodvfy error: StudyID etc. were invented
    # the validator is live: a record without its Type 1 keys is reported
    dd = dcmread(vol.directory / "DICOMDIR")
    for rec in dd.DirectoryRecordSequence:
        if rec.DirectoryRecordType == "STUDY":
            del rec.StudyID
    dd.save_as(tmp_path / "BAD")
    errors, _ = dciodvfy_errors(tmp_path / "BAD")
    assert any("StudyID" in e for e in errors)
