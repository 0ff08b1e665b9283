"""C-FIND response identifiers encoded directly (little endian, implicit or explicit VR).

A response identifier is text, a few numbers and sequences of more of the same;
pydicom's general writer spends most of a worklist C-FIND's time on them
(half a millisecond for 30 keys). Anything this encoder does not know (binary
values, a character set other than UTF-8 for non-ASCII text) returns None and
the caller uses pydicom's writer instead, so the bytes are always right.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, MutableSequence

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
)
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)  # an item tag; its length follows


class _Unknown(Exception):
    """A value this encoder leaves to pydicom."""


def _text(value: object, utf8: bool) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (tuple, MutableSequence)):  # a list or pydicom's MultiValue
        return b"\\".join(_text(v, utf8) for v in value)
    text = str(value)
    if text.isascii():
        return text.encode("ascii")
    if utf8:
        return text.encode("utf-8")
    raise _Unknown


def _value(elem: DataElement, utf8: bool, implicit: bool) -> bytes:
    vr, value = elem.VR, elem.value
    if vr == "SQ":
        return b"".join(_item(ds, utf8, implicit) for ds in value or ())
    if vr in _TEXT_VRS:
        data = _text(value, utf8)
        if len(data) % 2:
            data += b"\0" if vr == "UI" else b" "
        return data
    if vr == "US":
        if value is None or value == "":
            return b""
        values = value if isinstance(value, (list, tuple)) else [value]
        return b"".join(struct.pack("<H", int(v)) for v in values)
    raise _Unknown


def _element(elem: DataElement, utf8: bool, implicit: bool) -> bytes:
    data = _value(elem, utf8, implicit)
    tag = int(elem.tag)
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack("<I", len(data)) + data
    vr = elem.VR.encode("ascii")
    if elem.VR in _LONG_VRS:
        return head + vr + b"\0\0" + struct.pack("<I", len(data)) + data
    if len(data) > 0xFFFF:
        raise _Unknown
    return head + vr + struct.pack("<H", len(data)) + data


def _elements(elems: Iterable[DataElement], utf8: bool, implicit: bool) -> bytes:
    return b"".join(_element(e, utf8, implicit) for e in elems)


def _item(ds: Dataset, utf8: bool, implicit: bool) -> bytes:
    body = _elements(ds, utf8, implicit)
    return _ITEM + struct.pack("<I", len(body)) + body


def encode(ds: Dataset, implicit: bool) -> bytes | None:
    """The identifier's bytes in little endian (implicit or explicit VR), or None."""
    charset = ds.get("SpecificCharacterSet", "") or ""
    utf8 = str(charset).strip() == "ISO_IR 192"
    try:
        return _elements(ds, utf8, implicit)
    except (_Unknown, ValueError, TypeError, struct.error):
        return None


__all__ = ["encode"]
