"""meta.parse on bare data sets as the network delivers them, in every encoding.

The receive path reads the index attributes with its own structural walk
(not pydicom's reader); what it returns must equal what pydicom reads from
the same bytes, for each transfer syntax and for character sets that need
pydicom's decoders (ISO 2022 escapes, Cyrillic, Greek).
"""

from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from pacsbox import meta
from pacsbox.errors import CannotUnderstand, DatasetMismatch

CHARSETS = [
    ("ISO_IR 100", "Müller^Jürgen"),
    ("ISO_IR 192", "山田^太郎"),
    ("ISO_IR 144", "Люкceмбypг^Иван"),
    ("ISO_IR 126", "Διονυσιος^Ανδρεας"),
    ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎"),
]


def dataset(charset: str | None = None, name: str = "DOE^JOHN") -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.1"
    ds.PatientName = name
    ds.PatientID = "PID 7"
    ds.StudyDate = "20240101"
    ds.Modality = "CT"
    ds.SeriesNumber = "3"
    ds.InstanceNumber = 12
    ds.Rows = 2
    ds.Columns = 2
    ds.BitsAllocated = 16
    ds.ReferencedStudySequence = [Dataset()]
    ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID = "9.9.9"
    ds.PixelData = b"\x01\x00" * 4
    return ds


def encode(ds: Dataset, ts: str) -> bytes:
    uid = pydicom.uid.UID(ts)
    fp = DicomBytesIO()
    fp.is_little_endian = uid.is_little_endian
    fp.is_implicit_VR = uid.is_implicit_VR
    write_dataset(fp, ds)
    data = fp.getvalue()
    if uid == DeflatedExplicitVRLittleEndian:
        import zlib

        c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = c.compress(data) + c.flush()
    return data


@pytest.mark.parametrize(
    "ts",
    [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
     DeflatedExplicitVRLittleEndian],
)  # fmt: skip
def test_every_uncompressed_syntax_gives_the_same_attributes(ts):
    attrs = meta.parse(encode(dataset(), ts), ts).attrs
    assert (attrs.sop_instance_uid, attrs.study_instance_uid) == ("1.2.3.4.5", "1.2.3.4")
    assert attrs.patient["patient_name"] == "DOE^JOHN"
    assert attrs.patient["patient_id"] == "PID 7"
    assert attrs.series["modality"] == "CT"
    assert attrs.series_number == 3 and attrs.instance_number == 12
    assert attrs.instance["rows"] == 2 and attrs.instance["bits_allocated"] == 16


@pytest.mark.parametrize(("charset", "name"), CHARSETS)
def test_character_sets_decode_as_pydicom_does(charset, name):
    ds = dataset(charset, name)
    data = encode(ds, ExplicitVRLittleEndian)
    attrs = meta.parse(data, ExplicitVRLittleEndian).attrs
    expected = pydicom.dcmread(DicomBytesIO(data), force=True)
    expected.file_meta = pydicom.dataset.FileMetaDataset()
    expected.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    assert attrs.patient["patient_name"] == str(expected.PatientName) == name


def test_missing_uid_is_a900_and_truncation_is_c000():
    ds = dataset()
    del ds.StudyInstanceUID
    with pytest.raises(DatasetMismatch):
        meta.parse(encode(ds, ExplicitVRLittleEndian), ExplicitVRLittleEndian)
    whole = encode(dataset(), ExplicitVRLittleEndian)
    with pytest.raises(CannotUnderstand):
        meta.parse(whole[:-3], ExplicitVRLittleEndian)
    with pytest.raises(CannotUnderstand):
        meta.parse(b"this is not DICOM at all, just text" * 3, ImplicitVRLittleEndian)


def _reference_attrs(ds: Dataset, ts: str) -> meta.InstanceAttrs:
    """Every value converted by pydicom itself: what the fast decoders must equal."""
    return meta.attrs_from_values(meta._Values({}, True, False, lambda: ds), ts)


def _corpus_files():
    """pydicom's test files that are Part-10 objects with every UID (the others test
    pydicom's error paths, not ours)."""
    from pathlib import Path

    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    usable = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in ("", ".dcm")):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            ts = str(ds.file_meta.TransferSyntaxUID)
            _reference_attrs(ds, ts)
            meta.parse(path.read_bytes())
        except Exception:  # noqa: BLE001 - not a usable Part-10 object
            continue
        usable.append(path)
    return usable


CORPUS = _corpus_files()


def test_the_corpus_is_there():
    assert len(CORPUS) > 100


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_fast_decoding_equals_pydicom_on_its_own_test_files(path):
    """The undecoded-bytes path (both for files and for bare network data sets)
    gives exactly what pydicom's conversion gives, on pydicom's real test files."""
    data = path.read_bytes()
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ts = str(ds.file_meta.TransferSyntaxUID)
    expected = _reference_attrs(ds, ts)
    assert meta.parse(data).attrs == expected
    offset = meta._meta_length(data)
    if offset > 0 and ts in (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian):
        assert meta.parse(data[offset:], ts).attrs == expected
