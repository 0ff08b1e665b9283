"""Checks that keep a hostile medium from hurting the box.

Patient CDs and USB sticks come from outside the clinic: anything on them may
be crafted. Every byte the importer reads goes through here, so the rules are
in one place:

- only regular files are opened, with O_NOFOLLOW (a symlink is never followed
  out of the medium) and O_NONBLOCK (a FIFO cannot hang the import); the type
  is checked with lstat before opening (opening a device node can have side
  effects) and with fstat after (the name may have changed in between);
- the size is checked before reading, so a huge or sparse file costs nothing;
- relative paths from a DICOMDIR or a ZIP are refused if absolute or if any
  component is ``..``: nothing outside the medium is ever named;
- a file is only handed to the archive if it looks like DICOM (``DICM`` at
  offset 128, or a bare data set starting with a group 0002/0008 tag) and its
  element lengths all fit inside the file (pydicom silently accepts truncated
  files, so :func:`check_dicom` walks the element headers itself).
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass

GiB = 1024**3
MiB = 1024**2

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage


@dataclass(frozen=True)
class Limits:
    """Bounds on what one import may cost (bytes, files, depth, ZIP expansion)."""

    max_file_bytes: int = 4 * GiB  # one instance; larger files are skipped unread
    max_files: int = 200_000  # files looked at per import (a DVD holds ~20,000 images)
    max_depth: int = 32  # folder nesting followed by the folder scan
    max_dicomdir_bytes: int = 256 * MiB  # a DVD's DICOMDIR is a few MB
    zip_max_total_bytes: int = 64 * GiB  # declared uncompressed size of all entries
    zip_max_ratio: int = 100  # uncompressed / ZIP size, checked above zip_ratio_floor
    zip_ratio_floor: int = 64 * MiB  # small archives cannot hurt, whatever their ratio
    max_nesting: int = 64  # sequence nesting inside a data set


DEFAULT_LIMITS = Limits()


class Rejected(Exception):
    """One file is skipped; the message is the one-line reason shown in the report."""


def human_size(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def describe_mode(mode: int) -> str | None:
    """Why a file of this type is skipped, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "symbolic link (not followed)"
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe), not a file"
    if stat.S_ISSOCK(mode):
        return "socket, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file, not a file"
    if stat.S_ISDIR(mode):
        return "directory"
    return "not a regular file"


def check_relative(components: list[str]) -> list[str]:
    """Refuse a path (DICOMDIR Referenced File ID, ZIP entry) that could leave the medium."""
    if not components:
        raise Rejected("empty file path")
    out = []
    for i, comp in enumerate(components):
        if comp == "" and i == 0:
            raise Rejected("absolute path points outside the medium")
        if comp in ("", "."):
            continue
        if comp == ".." or "/" in comp or "\\" in comp or "\0" in comp:
            raise Rejected("path points outside the medium")
        if i == 0 and len(comp) == 2 and comp[1] == ":":
            raise Rejected("absolute (drive letter) path points outside the medium")
        out.append(comp)
    if not out:
        raise Rejected("empty file path")
    return out


_OPEN_FLAGS = (
    os.O_RDONLY
    | os.O_NOFOLLOW
    | os.O_NONBLOCK
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def read_regular_file(name: str, dir_fd: int | None, limit: int) -> bytes:
    """Read one regular file below ``dir_fd`` without following links or blocking.

    The first bytes are checked before the rest is read, so a large non-DICOM
    file (a viewer, a video) costs one small read. Raises Rejected naming the
    file type, size or content when it is not read.
    """
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as e:
        raise Rejected(f"cannot read: {e.strerror}") from None
    why = describe_mode(st.st_mode)
    if why:
        raise Rejected(why)
    check_size(st, limit)
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        raise Rejected(f"cannot open: {e.strerror}") from None
    try:
        return read_fd(fd, limit)
    finally:
        os.close(fd)


def check_size(st: os.stat_result, limit: int) -> None:
    if st.st_size > limit:
        sparse = ", sparse" if st.st_blocks * 512 < st.st_size // 2 else ""
        raise Rejected(
            f"file too large ({human_size(st.st_size)}{sparse}; limit {human_size(limit)})"
        )
    if st.st_size == 0:
        raise Rejected("empty file")


def read_fd(fd: int, limit: int) -> bytes:
    """Read an already opened file, re-checking type and size on the descriptor itself."""
    st = os.fstat(fd)
    why = describe_mode(st.st_mode)
    if why:
        raise Rejected(why)
    check_size(st, limit)
    try:
        check_head(os.pread(fd, 132, 0))
    except OSError as e:
        raise Rejected(f"read error: {e.strerror}") from None
    chunks = []
    total = 0
    while True:
        try:
            chunk = os.read(fd, min(8 * MiB, limit + 1 - total))
        except BlockingIOError:
            raise Rejected("file would block (not a regular file)") from None
        except OSError as e:
            raise Rejected(f"read error: {e.strerror}") from None
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise Rejected(f"file grew past the limit of {human_size(limit)} while read")
    return b"".join(chunks)


# -- is it DICOM, and is it whole? -------------------------------------------

_EXPLICIT_LONG = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR"}
_EXPLICIT_LONG |= {b"UT", b"UV"}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95")


class _Walker:
    """Walks element headers (not values) to prove every length fits in the file."""

    def __init__(self, buf: memoryview, implicit: bool, big: bool, max_nesting: int) -> None:
        self.buf = buf
        self.implicit = implicit
        self.e = ">" if big else "<"
        self.max_nesting = max_nesting

    def _need(self, pos: int, n: int, what: str) -> None:
        if pos + n > len(self.buf):
            raise Rejected(
                f"truncated file: {what} at byte {pos} runs past the end ({len(self.buf)} bytes)"
            )

    def _tag(self, pos: int) -> int:
        self._need(pos, 4, "element header")
        g: int
        el: int
        g, el = struct.unpack_from(self.e + "HH", self.buf, pos)
        return (g << 16) | el

    def dataset(self, pos: int, end: int | None, depth: int, implicit: bool | None = None) -> int:
        """Walk elements from pos to end (or to an item delimiter when end is None).

        depth 0 is the top level, which runs to the end of the file.
        """
        if depth > self.max_nesting:
            raise Rejected("sequences nested too deeply")
        implicit = self.implicit if implicit is None else implicit
        limit = len(self.buf) if end is None else end
        while pos < limit:
            if depth == 0 and limit - pos < 8 and not any(self.buf[pos:limit]):
                return limit  # trailing zero padding at the end of the file
            tag = self._tag(pos)
            if tag == _ITEM_END:
                self._need(pos, 8, "item delimiter")
                return pos + 8
            if implicit or (tag >> 16) == 0xFFFE:
                self._need(pos, 8, f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) header")
                vr = None
                (length,) = struct.unpack_from(self.e + "L", self.buf, pos + 4)
                pos += 8
            else:
                self._need(pos, 8, f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) header")
                vr = bytes(self.buf[pos + 4 : pos + 6])
                if not (vr.isalpha() and vr.isupper()):
                    raise Rejected(f"not a valid data set (bad VR at byte {pos + 4})")
                if vr in _EXPLICIT_LONG:
                    self._need(pos, 12, "element header")
                    (length,) = struct.unpack_from(self.e + "L", self.buf, pos + 8)
                    pos += 12
                else:
                    (length,) = struct.unpack_from(self.e + "H", self.buf, pos + 6)
                    pos += 8
            name = f"element ({tag >> 16:04X},{tag & 0xFFFF:04X})"
            if length == _UNDEFINED:
                # SQ, encapsulated pixel data (OB/OW) or UN holding implicit VR LE.
                pos = self.sequence(pos, depth + 1, implicit or vr == b"UN")
            else:
                self._need(pos, length, f"{name} value of {length} bytes")
                pos += length
        return pos

    def sequence(self, pos: int, depth: int, implicit: bool) -> int:
        """Walk items up to the sequence delimiter."""
        while True:
            tag = self._tag(pos)
            self._need(pos, 8, "item header")
            (length,) = struct.unpack_from(self.e + "L", self.buf, pos + 4)
            pos += 8
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM:
                raise Rejected(f"not a valid data set (expected an item at byte {pos - 8})")
            if length == _UNDEFINED:
                pos = self.dataset(pos, None, depth, implicit)
            else:
                self._need(pos, length, f"item of {length} bytes")
                pos += length


def check_head(head: bytes) -> None:
    """Raise Rejected unless the first 132 bytes can start a DICOM file or data set."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return
    if len(head) >= 8 and struct.unpack_from("<H", head, 0)[0] in (0x0002, 0x0008):
        return
    if len(head) >= 8 and head[:2] == b"\x00\x08" and head[4:6].isalpha():
        return
    raise Rejected("not DICOM (no DICM prefix and not a data set)")


def check_dicom(data: bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise Rejected unless ``data`` is a whole DICOM file or bare data set.

    Accepts Part-10 files (``DICM`` at 128), meta headers without preamble,
    and bare data sets (implicit or explicit VR little endian) that start
    with a group 0002 or 0008 tag; rejects DICOMDIRs (they describe a
    medium, they are not instances).
    """
    buf = memoryview(data)
    check_head(data[:132])
    if len(data) >= 132 and data[128:132] == b"DICM":
        pos = 132
    elif len(data) >= 8 and struct.unpack_from("<H", data, 0)[0] in (0x0002, 0x0008):
        pos = 0
    elif len(data) >= 8 and data[:2] == b"\x00\x08" and data[4:6].isalpha():
        _Walker(buf, False, True, limits.max_nesting).dataset(0, len(data), 0)
        return  # a bare explicit VR big endian data set
    else:
        raise Rejected("not DICOM (no DICM prefix and not a data set)")
    ts = None
    group = struct.unpack_from("<H", data, pos)[0] if len(data) >= pos + 2 else None
    if group == 0x0002:
        meta_end = _meta_end(buf, pos)
        ts = _meta_value(buf, pos, meta_end, 0x00020010)
        sop_class = _meta_value(buf, pos, meta_end, 0x00020002)
        if sop_class == DICOMDIR_SOP_CLASS:
            raise Rejected("DICOMDIR (a directory of the medium, not an instance)")
        pos = meta_end
    elif pos == 132:
        raise Rejected("not DICOM (DICM prefix without a meta header)")
    if ts in _DEFLATED:
        return  # a deflated body cannot be walked; the archive's parser decides
    big = ts == _EXPLICIT_BE
    # Like pydicom, trust the first element over the meta header: real files
    # exist that declare explicit VR and are encoded implicit.
    implicit = not (len(data) >= pos + 6 and bytes(buf[pos + 4 : pos + 6]).isalpha())
    if implicit:
        big = False
    walker = _Walker(buf, implicit, big, limits.max_nesting)
    end = walker.dataset(pos, len(data), 0)
    if end > len(data):  # pragma: no cover - _need guards every step
        raise Rejected("truncated file")


def _meta_end(buf: memoryview, pos: int) -> int:
    """End of the group 0002 meta header (explicit VR little endian by definition)."""
    walker = _Walker(buf, False, False, 4)
    while pos + 4 <= len(buf) and struct.unpack_from("<H", buf, pos)[0] == 0x0002:
        walker._need(pos, 8, "meta header element")
        vr = bytes(buf[pos + 4 : pos + 6])
        if vr in _EXPLICIT_LONG:
            walker._need(pos, 12, "meta header element")
            length = struct.unpack_from("<L", buf, pos + 8)[0]
            pos += 12
        else:
            length = struct.unpack_from("<H", buf, pos + 6)[0]
            pos += 8
        if length == _UNDEFINED:
            raise Rejected("not a valid meta header (undefined length)")
        walker._need(pos, length, "meta header value")
        pos += length
    return pos


def _meta_value(buf: memoryview, pos: int, end: int, want: int) -> str | None:
    while pos < end:
        g, e = struct.unpack_from("<HH", buf, pos)
        vr = bytes(buf[pos + 4 : pos + 6])
        if vr in _EXPLICIT_LONG:
            length = struct.unpack_from("<L", buf, pos + 8)[0]
            pos += 12
        else:
            length = struct.unpack_from("<H", buf, pos + 6)[0]
            pos += 8
        if (g << 16) | e == want:
            return bytes(buf[pos : pos + length]).decode("ascii", "replace").strip("\0 ")
        pos += length
    return None


def is_dicomdir_head(head: bytes) -> bool:
    """True when a Part-10 head's meta header names the Media Storage Directory class."""
    if len(head) < 132 or head[128:132] != b"DICM":
        return False
    buf = memoryview(head)
    try:
        end = _meta_end(buf, 132)
    except Rejected:
        return False
    try:
        return _meta_value(buf, 132, end, 0x00020002) == DICOMDIR_SOP_CLASS
    except struct.error:
        return False


def is_zip(head: bytes) -> bool:
    """A ZIP local file header (or an empty archive's end record)."""
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")
