"""What the index needs from a DICOM object, read without touching pixel data.

Parsing stops before Pixel Data and defers large values, so indexing a
500 MB multi-frame object costs the same as a 10 KB one. The bytes that are
stored are never re-encoded: this module only reads.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from pacsbox.errors import CannotUnderstand, DatasetMismatch

# Attributes the index keeps, by level. Values are read as text so that
# storing them never fails on an odd VR; numbers are converted where the
# index sorts by them.
PATIENT_TAGS = {
    "patient_id": "PatientID",
    "issuer": "IssuerOfPatientID",
    "patient_name": "PatientName",
    "birth_date": "PatientBirthDate",
    "birth_time": "PatientBirthTime",
    "sex": "PatientSex",
    "age": "PatientAge",
    "size": "PatientSize",
    "weight": "PatientWeight",
}
STUDY_TAGS = {
    "study_date": "StudyDate",
    "study_time": "StudyTime",
    "accession_number": "AccessionNumber",
    "study_id": "StudyID",
    "referring_physician": "ReferringPhysicianName",
    "reading_physician": "NameOfPhysiciansReadingStudy",
    "study_description": "StudyDescription",
    "institution_name": "InstitutionName",
}
SERIES_TAGS = {
    "modality": "Modality",
    "series_date": "SeriesDate",
    "series_time": "SeriesTime",
    "body_part": "BodyPartExamined",
    "series_description": "SeriesDescription",
    "protocol_name": "ProtocolName",
    "station_name": "StationName",
}
INSTANCE_TEXT_TAGS = {
    "creation_date": "InstanceCreationDate",
    "creation_time": "InstanceCreationTime",
    "overlay_number": "OverlayNumber",
    "curve_number": "CurveNumber",
    "lut_number": "LUTNumber",
}
INSTANCE_INT_TAGS = {
    "samples_per_pixel": "SamplesPerPixel",
    "rows": "Rows",
    "columns": "Columns",
    "bits_allocated": "BitsAllocated",
    "bits_stored": "BitsStored",
    "pixel_representation": "PixelRepresentation",
    "number_of_frames": "NumberOfFrames",
}

_COLUMN_LIMITS = {
    "age": 4,
    "accession_number": 16,
    "study_id": 16,
    "modality": 16,
    "body_part": 16,
    "station_name": 16,
}

# cast: every keyword here is in pydicom's dictionary (tag_for_keyword says int | None)
_WANTED = cast("set[int]", {
    tag_for_keyword(kw)
    for kw in (
        "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
        "SpecificCharacterSet", "SeriesNumber", "InstanceNumber",
        *PATIENT_TAGS.values(), *STUDY_TAGS.values(), *SERIES_TAGS.values(),
        *INSTANCE_TEXT_TAGS.values(), *INSTANCE_INT_TAGS.values(),
    )
})  # fmt: skip


@dataclass
class InstanceAttrs:
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    charset: str = ""
    series_number: int | None = None
    instance_number: int | None = None
    patient: dict[str, str] = field(default_factory=dict)
    study: dict[str, str] = field(default_factory=dict)
    series: dict[str, str] = field(default_factory=dict)
    instance: dict[str, object] = field(default_factory=dict)


@dataclass
class Parsed:
    """A received object split into the part we add (meta) and the bytes we keep."""

    attrs: InstanceAttrs
    has_meta: bool  # True when ``data`` already is a Part-10 file
    dataset_offset: int  # where the data set starts in ``data``


# An archive reads what it is sent: pydicom's read-time validation (regexes
# over every value) is for authoring, and would slow every parse.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

# Character sets whose bytes decode without pydicom's ISO 2022 machinery.
_SIMPLE_CHARSETS = {
    "": "ascii",
    "ISO_IR 6": "ascii",
    "ISO_IR 100": "latin-1",
    "ISO_IR 192": "utf-8",
}
_TAGS: dict[str, int] = {}
_DICT_VR = {tag: dictionary_VR(tag) for tag in _WANTED}


def _tag(keyword: str) -> int:
    tag = _TAGS.get(keyword)
    if tag is None:
        tag = _TAGS[keyword] = cast(int, tag_for_keyword(keyword))  # our keywords only
    return tag


class _Values:
    """The wanted top-level elements, read from their undecoded bytes where that is exact.

    ``raw`` maps a tag to (explicit VR or None, value bytes). Texts in a
    single-byte or UTF-8 character set and US/IS numbers are decoded here;
    anything else (ISO 2022 escapes, an odd VR) is left to pydicom, through
    the Dataset ``make_dataset`` builds only when it is needed. With
    ``complete``, a tag missing from ``raw`` is absent from the data set.
    """

    __slots__ = ("raw", "little", "complete", "_make", "_ds")

    def __init__(
        self, raw: dict, little: bool, complete: bool, make_dataset: Callable[[], Dataset]
    ) -> None:
        self.raw = raw
        self.little = little
        self.complete = complete
        self._make = make_dataset
        self._ds: Dataset | None = None

    def dataset(self) -> Dataset:
        if self._ds is None:
            self._ds = self._make()
        return self._ds

    def text(self, keyword: str, codec: str | None = None) -> str:
        tag = _tag(keyword)
        item = self.raw.get(tag)
        if item is None:
            return "" if self.complete else _pydicom_text(self.dataset(), keyword)
        if codec is not None:
            try:
                value: bytes = item[1]
                return value.decode(codec).rstrip(" \x00")
            except UnicodeDecodeError:
                pass
        return _pydicom_text(self.dataset(), keyword)

    def number(self, keyword: str) -> int | None:
        tag = _tag(keyword)
        item = self.raw.get(tag)
        if item is None:
            return None if self.complete else _pydicom_int(self.dataset(), keyword)
        vr = item[0] or _DICT_VR.get(tag)
        if vr == "UN":  # explicit UN of a known tag (PS3.5 6.2.2): its dictionary VR's bytes
            vr = _DICT_VR.get(tag, vr)
        value = item[1]
        try:
            if vr == "US":
                if len(value) < 2:
                    return None
                return int.from_bytes(value[:2], "little" if self.little else "big")
            if vr == "IS":
                first = value.decode("ascii").split("\\")[0].strip(" \x00")
                return int(float(first)) if first else None
        except (UnicodeDecodeError, ValueError, OverflowError):
            return None
        return _pydicom_int(self.dataset(), keyword)


def _pydicom_text(ds: Dataset, keyword: str) -> str:
    # Converting to text decodes too (a sequence's items, a multi-value), so
    # it sits inside the guard with the read.
    try:
        value = ds.get(keyword)
        if value is None:
            return ""
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return "\\".join(str(v) for v in value)
        return str(value)
    except Exception:  # noqa: BLE001 - a malformed optional element must not block storage
        return ""


def _pydicom_int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        return int(float(str(value).split("\\")[0]))
    except Exception:  # noqa: BLE001
        return None


def _dataset_values(ds: Dataset, transfer_syntax: str) -> _Values:
    """Values of a Dataset pydicom read: its still undecoded elements take the fast path."""
    raw = {}
    for tag in _WANTED:
        elem = ds._dict.get(tag)  # type: ignore[call-overload]  # typed BaseTag keys; an int finds them
        if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
            raw[tag] = (elem.VR, elem.value)
    return _Values(raw, transfer_syntax != ExplicitVRBigEndian, False, lambda: ds)


def _clip(name: str, value: str) -> str:
    limit = _COLUMN_LIMITS.get(name, 324)
    return value[:limit]


def attrs_from_values(v: _Values, transfer_syntax: str) -> InstanceAttrs:
    """Extract the index attributes; raises DatasetMismatch when a UID is missing."""
    uids = []
    for key in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        value = v.text(key, "ascii").strip().rstrip("\x00")
        if not value:
            raise DatasetMismatch(f"data set lacks {key}")
        if len(value) > 64:
            raise DatasetMismatch(f"{key} is longer than 64 characters")
        uids.append(value)
    charset = "\\".join(
        part.strip() for part in v.text("SpecificCharacterSet", "ascii").split("\\")
    )
    codec = _SIMPLE_CHARSETS.get(charset.strip())
    text = v.text
    sop_class, sop_instance, study, series = uids
    attrs = InstanceAttrs(
        sop_class,
        sop_instance,
        study,
        series,
        transfer_syntax_uid=transfer_syntax,
        charset=charset,
        series_number=v.number("SeriesNumber"),
        instance_number=v.number("InstanceNumber"),
    )
    attrs.patient = {k: _clip(k, text(kw, codec)) for k, kw in PATIENT_TAGS.items()}
    attrs.study = {k: _clip(k, text(kw, codec)) for k, kw in STUDY_TAGS.items()}
    attrs.series = {k: _clip(k, text(kw, codec)) for k, kw in SERIES_TAGS.items()}
    inst: dict[str, object] = {k: _clip(k, text(kw, codec)) for k, kw in INSTANCE_TEXT_TAGS.items()}
    for k, kw in INSTANCE_INT_TAGS.items():
        inst[k] = v.number(kw)
    attrs.instance = inst
    return attrs


def _looks_like_bare_dataset(data: bytes) -> bool:
    """A bare data set (old media, no preamble) starts with a low group: 0002, 0004 or 0008."""
    if len(data) < 8:
        return False
    le = int.from_bytes(data[0:2], "little")
    be = int.from_bytes(data[0:2], "big")
    return le in (0x0002, 0x0004, 0x0008) or be in (0x0002, 0x0004, 0x0008)


def _meta_length(data: bytes) -> int:
    """Offset of the data set in a Part-10 file (after preamble, DICM and group 2)."""
    # Group 0002 is always Explicit VR Little Endian; its first element is
    # (0002,0000) File Meta Information Group Length (UL).
    pos = 132
    if data[pos : pos + 4] != b"\x02\x00\x00\x00" or data[pos + 4 : pos + 6] != b"UL":
        return -1
    length: int
    (length,) = struct.unpack_from("<I", data, pos + 8)
    return pos + 12 + length


def _plain_meta(data: bytes) -> tuple[int, str, str] | None:
    """(data set offset, Transfer Syntax UID, Media Storage SOP Instance UID) of a
    Part-10 meta group read directly, or None when it is not plain enough to trust
    (no group length, a length that does not end at the group's end, no syntax):
    pydicom's reader then decides, as before."""
    end = _meta_length(data)
    if end < 0 or end > len(data):
        return None
    texts: dict[int, str] = {}
    pos = 144  # after (0002,0000)
    while pos < end:
        if pos + 8 > end:
            return None
        group, elem = struct.unpack_from("<HH", data, pos)
        vr = data[pos + 4 : pos + 6]
        if group != 2:
            return None
        if vr in _LONG_VRS:
            if pos + 12 > end:
                return None
            (length,) = struct.unpack_from("<I", data, pos + 8)
            pos += 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            pos += 8
        if pos + length > end:
            return None
        if elem in (0x0003, 0x0010):
            texts[elem] = data[pos : pos + length].decode("ascii", "replace").rstrip("\x00 ")
        pos += length
    if end + 2 <= len(data) and struct.unpack_from("<H", data, end)[0] == 2:
        return None  # more group 2 after the stated length
    ts = texts.get(0x0010, "")
    if not ts:
        return None
    return end, ts, texts.get(0x0003, "")


def parse(data: bytes, transfer_syntax: str | None = None) -> Parsed:
    """Read the index attributes of a received object.

    ``data`` is a Part-10 file (preamble + DICM + meta) or a bare data set in
    ``transfer_syntax`` (default Implicit VR Little Endian, as on old media).
    Raises CannotUnderstand when it is not DICOM, DatasetMismatch when UIDs
    are missing.
    """
    has_meta = len(data) >= 132 and data[128:132] == b"DICM"
    fast = _plain_meta(data) if has_meta else None
    try:
        if fast is not None:
            offset, ts, meta_sop = fast
            values = _scan(data, ts, offset)
            walk = False  # the scan walked it whole
        elif has_meta:
            ds = pydicom.dcmread(
                io.BytesIO(data), stop_before_pixels=True, defer_size=4096, force=False
            )
            ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
            values = _dataset_values(ds, ts)
            offset = _meta_length(data)
            # Meta without a group length: pydicom found the end; no walk.
            walk = offset >= 0
            offset = max(offset, 0)
        elif transfer_syntax:
            values = _scan(data, transfer_syntax)
            ts = transfer_syntax
            offset, walk = 0, False  # the scan already walked it whole
        else:
            if not _looks_like_bare_dataset(data):
                raise CannotUnderstand("neither a DICOM file nor a DICOM data set")
            ds = pydicom.dcmread(
                io.BytesIO(data), stop_before_pixels=True, defer_size=4096, force=True
            )
            ts = str(ds.file_meta.get("TransferSyntaxUID", "") if ds.file_meta else "")
            if not ts:
                ts = ImplicitVRLittleEndian if ds.is_implicit_VR else ExplicitVRLittleEndian
            values = _dataset_values(ds, ts)
            offset, walk = 0, True
        if not values.raw and len(values.dataset()) == 0:
            raise CannotUnderstand("no data elements could be read")
    except (
        InvalidDicomError,
        EOFError,
        struct.error,
        ValueError,
        TypeError,
        KeyError,
        zlib.error,
    ) as exc:
        raise CannotUnderstand(f"not a readable DICOM object: {exc.__class__.__name__}") from None
    except CannotUnderstand:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on garbage input
        raise CannotUnderstand(f"not a readable DICOM object: {exc}") from None
    if not ts:
        raise CannotUnderstand("file meta has no Transfer Syntax UID")
    attrs = attrs_from_values(values, str(ts))
    if walk:
        check_complete(data, offset, str(ts))
    if has_meta:
        if fast is None:
            meta_sop = _pydicom_text(ds.file_meta, "MediaStorageSOPInstanceUID").rstrip("\x00 ")
        if meta_sop and meta_sop != attrs.sop_instance_uid:
            raise DatasetMismatch("file meta SOP Instance UID differs from the data set's")
    return Parsed(attrs=attrs, has_meta=has_meta, dataset_offset=offset)


_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


_STRUCTS = {
    e: (struct.Struct(e + "HHI"), struct.Struct(e + "I"), struct.Struct(e + "H")) for e in "<>"
}


def _walk(
    buf: bytes,
    pos: int,
    end: int,
    implicit: bool,
    endian: str,
    depth: int,
    found: dict | None = None,
) -> int:
    """Skip element by element to ``end`` or to the delimiter that closes this level.

    Pixel data is never decoded; only headers are read, so a truncated
    transfer (the usual kind of broken file) is caught at the cost of a few
    hundred struct reads. With ``found``, the top-level elements the index
    wants are collected on the way as (VR or None, value bytes, offset).
    """
    if depth > 64:
        raise CannotUnderstand("sequences nested too deeply")
    header, long_length, short_length = _STRUCTS[endian]
    collect = found is not None and depth == 0
    while pos < end:
        if pos + 8 > end:
            raise CannotUnderstand("data set ends inside an element header")
        group, elem, length = header.unpack_from(buf, pos)
        tag = (group << 16) | elem
        if tag == _ITEM_END or tag == _SEQ_END:
            return pos + 8
        if implicit or group == 0xFFFE:
            hdr, vr = 8, None
        else:
            vr = buf[pos + 4 : pos + 6]
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    raise CannotUnderstand("data set ends inside an element header")
                (length,) = long_length.unpack_from(buf, pos + 8)
                hdr = 12
            else:
                (length,) = short_length.unpack_from(buf, pos + 6)
                hdr = 8
        pos += hdr
        if length == _UNDEFINED:
            # A sequence, an item, or encapsulated pixel data; UN content is implicit LE.
            un = vr == b"UN"
            pos = _walk(buf, pos, end, implicit or un, "<" if un else endian, depth + 1)
            continue
        if collect and tag in _WANTED and pos + length <= end and found is not None:
            found[tag] = (
                None if vr is None else vr.decode("ascii", "replace"), buf[pos : pos + length], pos
            )  # fmt: skip
        pos += length
        if pos > end:
            raise CannotUnderstand(
                f"element ({group:04X},{elem:04X}) runs past the end of the data set (truncated)"
            )
    if depth > 0:
        raise CannotUnderstand("data set ends inside a sequence (truncated)")
    return pos


def check_complete(
    data: bytes, offset: int, transfer_syntax: str, found: dict | None = None
) -> None:
    """Raise CannotUnderstand unless the data set is structurally whole."""
    body, start = bytes(data), offset
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        try:
            body, start = zlib.decompress(memoryview(data)[offset:], -zlib.MAX_WBITS), 0
        except zlib.error:
            raise CannotUnderstand("deflated data set cannot be inflated") from None
    implicit = transfer_syntax == ImplicitVRLittleEndian
    endian = ">" if transfer_syntax == ExplicitVRBigEndian else "<"
    _walk(body, start, len(body), implicit, endian, 0, found)


def _scan(data: bytes, transfer_syntax: str, offset: int = 0) -> _Values:
    """The wanted top-level elements of a bare data set, checked whole in the same pass.

    What the network delivers: one structural walk replaces pydicom's reader,
    the dearest step of a small image's store. Values pydicom would have to
    convert (other character sets, odd VRs) become RawDataElements in a real
    Dataset on demand, so they decode exactly as pydicom decodes them.
    """
    found: dict = {}
    check_complete(data, offset, transfer_syntax, found)
    little = transfer_syntax != ExplicitVRBigEndian

    def make_dataset() -> Dataset:
        return Dataset({
            tag: RawDataElement(tag, vr, len(value), value, pos, vr is None, little)
            for tag, (vr, value, pos) in found.items()
        })  # fmt: skip

    return _Values(found, little, True, make_dataset)


def _meta_element(elem: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2sHI", 0x0002, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, elem, vr, len(value)) + value


def _pad(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + pad if len(raw) % 2 else raw


def part10_header(
    attrs: InstanceAttrs, implementation_uid: str, version_name: str, source_ae: str = ""
) -> bytes:
    """Preamble + DICM + file meta (PS3.10 7.1) for a data set received without one.

    Encoded directly: this runs for every received image, and pydicom's
    general writer is many times dearer for these seven elements.
    """
    body = b"".join(
        (
            _meta_element(0x0001, b"OB", b"\x00\x01"),
            _meta_element(0x0002, b"UI", _pad(attrs.sop_class_uid, b"\0")),
            _meta_element(0x0003, b"UI", _pad(attrs.sop_instance_uid, b"\0")),
            _meta_element(0x0010, b"UI", _pad(attrs.transfer_syntax_uid, b"\0")),
            _meta_element(0x0012, b"UI", _pad(implementation_uid, b"\0")),
            _meta_element(0x0013, b"SH", _pad(version_name[:16], b" ")),
            _meta_element(0x0016, b"AE", _pad(source_ae[:16], b" ")) if source_ae else b"",
        )
    )
    return (
        b"\0" * 128 + b"DICM" + struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body)) + body
    )
