"""What a medium offers: the files to import, found the way a File-set Reader would.

A folder or mounted medium with a DICOMDIR is read through its directory
records (PS3.10 File-set Reader); one without is scanned file by file; a
DICOMDIR path reads the File-set it describes; a ZIP offers its entries.

Every file below the medium's root is opened relative to a directory file
descriptor, one path component at a time, with O_NOFOLLOW: a symlink or a
``..`` in a DICOMDIR record can never reach a file outside the medium.

ISO 9660 discs without Rock Ridge or Joliet appear under Linux with lowercase
names (``dicomdir``, ``im000000``), sometimes with a ``;1`` version or a
trailing dot, while their DICOMDIR records say ``IM000000``; names are
therefore matched case-insensitively after stripping those decorations.
"""

from __future__ import annotations

import io
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pacsbox.media.safety import (
    DEFAULT_LIMITS,
    Limits,
    Rejected,
    check_head,
    check_relative,
    describe_mode,
    human_size,
    is_dicomdir_head,
    is_zip,
    read_regular_file,
)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


@dataclass
class Item:
    """One file the medium offers: how to read it, or why it is skipped unread."""

    name: str
    read: Callable[[], bytes] | None = None
    reason: str | None = None


@dataclass
class Source:
    """A medium opened for import; use as a context manager so descriptors are closed."""

    kind: str  # "folder", "dicomdir", "zip", "file"
    location: str
    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _close: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        while self._close:
            self._close.pop()()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def normalize(name: str) -> str:
    """The name a case-insensitive ISO 9660 match compares: lowercase, no ``;1``, no trailing dot."""
    name = re.sub(r";\d*$", "", name)
    return name.rstrip(".").lower()


class Medium:
    """A directory tree read only through descriptors below its root."""

    def __init__(self, root: Path) -> None:
        try:
            self.fd = os.open(root, _DIR_FLAGS)
        except OSError as e:
            raise Rejected(f"cannot open folder: {e.strerror}") from None
        self._listings: dict[tuple[str, ...], dict[str, str]] = {}

    def close(self) -> None:
        os.close(self.fd)

    def _names(self, parts: tuple[str, ...], fd: int) -> dict[str, str]:
        names = self._listings.get(parts)
        if names is None:
            names = {}
            for n in sorted(os.listdir(fd)):
                names.setdefault(n, n)
                names.setdefault(normalize(n), n)
            self._listings[parts] = names
        return names

    def find(self, name: str) -> str | None:
        """The actual name in the root matching ``name`` case-insensitively."""
        names = self._names((), self.fd)
        return names.get(name) or names.get(normalize(name))

    def read(self, comps: list[str], limit: int, *, fold_case: bool = True) -> bytes:
        """Read root/comps..., each component a real directory (never a link)."""
        fd = self.fd
        actual: list[str] = []
        try:
            for i, comp in enumerate(comps):
                if fold_case:
                    names = self._names(tuple(actual), fd)
                    real = names.get(comp) or names.get(normalize(comp))
                    if real is None:
                        raise Rejected("referenced file is missing on the medium")
                else:
                    real = comp
                if i == len(comps) - 1:
                    return read_regular_file(real, fd, limit)
                try:
                    st = os.stat(real, dir_fd=fd, follow_symlinks=False)
                except OSError as e:
                    raise Rejected(f"cannot read: {e.strerror}") from None
                if not stat.S_ISDIR(st.st_mode):
                    why = describe_mode(st.st_mode) or "not a folder"
                    raise Rejected(f"path goes through a {why}")
                nfd = os.open(real, _DIR_FLAGS, dir_fd=fd)
                if fd != self.fd:
                    os.close(fd)
                fd = nfd
                actual.append(real)
        finally:
            if fd != self.fd:
                os.close(fd)
        raise Rejected("empty file path")

    def walk(self, limits: Limits) -> Iterator[Item]:
        """Every entry below the root, depth first in name order, links and specials marked."""
        count = 0

        def visit(fd: int, parts: list[str], depth: int) -> Iterator[Item]:
            nonlocal count
            with os.scandir(fd) as it:
                entries = sorted(it, key=lambda e: e.name)
            for e in entries:
                rel = parts + [e.name]
                name = "/".join(rel)
                try:
                    mode = e.stat(follow_symlinks=False).st_mode
                except OSError as err:
                    yield Item(name, reason=f"cannot read: {err.strerror}")
                    continue
                if stat.S_ISDIR(mode):
                    if depth >= limits.max_depth:
                        yield Item(
                            name + "/", reason=f"folder nested deeper than {limits.max_depth}"
                        )
                        continue
                    try:
                        sub = os.open(e.name, _DIR_FLAGS, dir_fd=fd)
                    except OSError as err:
                        yield Item(name + "/", reason=f"cannot open folder: {err.strerror}")
                        continue
                    try:
                        yield from visit(sub, rel, depth + 1)
                    finally:
                        os.close(sub)
                    continue
                count += 1
                if count > limits.max_files:
                    raise _TooMany
                why = describe_mode(mode)
                if why:
                    yield Item(name, reason=why)
                else:
                    yield Item(name, read=self._reader(rel, limits))

        try:
            yield from visit(self.fd, [], 0)
        except _TooMany:
            yield Item("...", reason=f"stopped: more than {limits.max_files} files on the medium")

    def _reader(self, rel: list[str], limits: Limits) -> Callable[[], bytes]:
        return lambda: self.read(rel, limits.max_file_bytes, fold_case=False)


class _TooMany(Exception):
    pass


def open_source(path: Path, limits: Limits = DEFAULT_LIMITS) -> Source:
    """Open a folder, mounted medium, DICOMDIR, ZIP or single file for import.

    Raises Rejected when the path itself cannot be read (missing, a FIFO...).
    """
    path = Path(path)
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError as e:
        raise Rejected(f"{path}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        # The path the user typed may be a link (e.g. /media/cdrom); what is
        # below it is still read without following links.
        st = os.stat(path)
        path = path.resolve()
    if stat.S_ISDIR(st.st_mode):
        return _folder_source(path, limits)
    why = describe_mode(st.st_mode)
    if why:
        raise Rejected(f"{path}: {why}")
    if normalize(path.name) == "dicomdir":
        return _dicomdir_source(path.parent, path.name, limits)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    head = os.pread(fd, 4096, 0)
    if is_zip(head):
        return _zip_source(path, fd, limits)
    os.close(fd)
    if is_dicomdir_head(head):
        return _dicomdir_source(path.parent, path.name, limits)
    medium = Medium(path.parent)
    src = Source("file", str(path), _close=[medium.close])
    src.items.append(Item(path.name, read=medium._reader([path.name], limits)))
    return src


def _folder_source(root: Path, limits: Limits) -> Source:
    medium = Medium(root)
    dicomdir = medium.find("DICOMDIR")
    if dicomdir is not None:
        medium.close()
        return _dicomdir_source(root, dicomdir, limits)
    src = Source("folder", str(root), _close=[medium.close])
    src.items.extend(_without_dicomdirs(medium.walk(limits), src))
    return src


def _without_dicomdirs(items: Iterable[Item], src: Source) -> Iterator[Item]:
    """A DICOMDIR deeper in a scanned tree (or in a ZIP) is not an instance: leave it out quietly."""
    for item in items:
        if normalize(re.split(r"[\\/]", item.name)[-1]) == "dicomdir":
            src.notes.append(f"{item.name}: DICOMDIR not imported (every file is scanned instead)")
            continue
        yield item


def _dicomdir_source(root: Path, name: str, limits: Limits) -> Source:
    """Follow the DICOMDIR's records; fall back to scanning if it cannot be read."""
    import pydicom  # local: only media reading needs the parser here

    medium = Medium(root)
    src = Source("dicomdir", str(root / name), _close=[medium.close])
    try:
        data = medium.read([name], limits.max_dicomdir_bytes, fold_case=False)
        ds = pydicom.dcmread(io.BytesIO(data))
        # pydicom converts values when first asked, so a crafted record fails
        # here, not at dcmread: it is the DICOMDIR that is unreadable.
        file_ids = _file_ids(ds)
    except Exception as e:  # a hostile DICOMDIR must not stop the import
        lines = [line for line in str(e).splitlines() if line.strip()]
        reason = lines[0][:120] if lines else type(e).__name__
        src.kind = "folder"
        src.notes.append(f"{name} unreadable ({reason}); scanned every file instead")
        src.items.extend(i for i in medium.walk(limits) if i.name != name)
        return src
    seen: set[tuple[str, ...]] = set()
    for comps in file_ids:
        display = "\\".join(comps)
        key = tuple(normalize(c) for c in comps)
        if key in seen:
            continue
        seen.add(key)
        if len(seen) > limits.max_files:
            src.items.append(Item("...", reason=f"stopped: more than {limits.max_files} records"))
            break
        try:
            safe = check_relative(comps)
        except Rejected as e:
            src.items.append(Item(display, reason=f"DICOMDIR record: {e}"))
            continue
        src.items.append(Item(display, read=_record_reader(medium, safe, limits)))
    src.notes.append(f"{name}: {len(src.items)} referenced files")
    return src


def _file_ids(ds: Any) -> list[list[str]]:
    """The Referenced File ID (0004,1500) of each record that has one, as components.

    Raises ValueError when the records are not data sets or an ID is not text
    (a crafted VR turns it into bytes, a number or a sequence).
    """
    from pydicom.dataset import Dataset
    from pydicom.multival import MultiValue

    out = []
    for n, rec in enumerate(ds.DirectoryRecordSequence, 1):
        if not isinstance(rec, Dataset):
            raise ValueError(f"directory record {n} is not a data set")
        fid = rec.get("ReferencedFileID")  # CS with up to 8 components
        if fid is None or fid == "":
            continue
        comps = list(fid) if isinstance(fid, list | MultiValue) else [fid]
        if not all(isinstance(c, str) for c in comps):
            raise ValueError(f"directory record {n}: Referenced File ID is not text")
        out.append([str(c) for c in comps])
    return out


def _record_reader(medium: Medium, comps: list[str], limits: Limits) -> Callable[[], bytes]:
    return lambda: medium.read(comps, limits.max_file_bytes)


def _zip_source(path: Path, fd: int, limits: Limits) -> Source:
    """Entries of a ZIP, with the archive refused whole when it is a bomb."""
    fobj = os.fdopen(fd, "rb")
    src = Source("zip", str(path), _close=[fobj.close])
    size = os.fstat(fd).st_size
    try:
        zf = zipfile.ZipFile(fobj)
    except (zipfile.BadZipFile, NotImplementedError, OSError, ValueError) as e:
        # NotImplementedError: a "version needed to extract" zipfile does not know.
        src.items.append(Item(path.name, reason=f"not a readable ZIP archive ({e})"))
        return src
    src._close.insert(0, zf.close)
    # Not ZipInfo.is_dir(): it raises IndexError on an entry with an empty name.
    infos = [i for i in zf.infolist() if not i.filename.endswith("/")]
    declared = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    bomb = None
    if packed > size:
        bomb = "entries overlap (ZIP bomb)"
    elif declared > limits.zip_max_total_bytes:
        bomb = f"ZIP bomb: expands to {human_size(declared)} (limit {human_size(limits.zip_max_total_bytes)})"
    elif declared > limits.zip_ratio_floor and declared > limits.zip_max_ratio * max(size, 1):
        ratio = declared // max(size, 1)
        bomb = f"ZIP bomb: expands {ratio} times to {human_size(declared)} (limit {limits.zip_max_ratio} times)"
    if bomb:
        src.items.append(Item(path.name, reason=bomb))
        return src
    infos = list(_zip_without_dicomdirs(infos, src))
    for n, info in enumerate(infos):
        if n >= limits.max_files:
            src.items.append(Item("...", reason=f"stopped: more than {limits.max_files} entries"))
            break
        src.items.append(_zip_item(zf, info, limits))
    return src


def _zip_without_dicomdirs(infos: list[zipfile.ZipInfo], src: Source) -> Iterator[zipfile.ZipInfo]:
    for info in infos:
        if normalize(re.split(r"[\\/]", info.filename)[-1]) == "dicomdir":
            src.notes.append(f"{info.filename}: DICOMDIR not imported (every entry is scanned)")
            continue
        yield info


def _zip_item(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits) -> Item:
    name = info.filename
    if not name:
        return Item(name, reason="ZIP entry without a name")
    try:
        check_relative(re.split(r"[\\/]", name))
    except Rejected as e:
        return Item(name, reason=f"ZIP entry {e}")
    mode = info.external_attr >> 16
    if mode and stat.S_IFMT(mode) and not stat.S_ISREG(mode):
        return Item(name, reason=f"ZIP entry is a {describe_mode(mode)}")
    if info.flag_bits & 0x1:
        return Item(name, reason="encrypted ZIP entry")
    if info.file_size > limits.max_file_bytes:
        return Item(name, reason=f"file too large ({human_size(info.file_size)})")

    def read() -> bytes:
        try:
            with zf.open(info) as f:
                head = f.read(132)
                if is_zip(head[:4]):
                    raise Rejected(
                        "ZIP archive inside the ZIP (not unpacked; import it separately)"
                    )
                check_head(head)
                data = head + f.read(limits.max_file_bytes + 1 - len(head))
        except Rejected:
            raise
        except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, ValueError) as e:
            raise Rejected(f"corrupt ZIP entry ({e})") from None
        except Exception as e:  # zlib.error and friends on crafted streams
            raise Rejected(f"corrupt ZIP entry ({type(e).__name__}: {e})") from None
        return data

    return Item(name, read=read)


__all__ = ["Item", "Medium", "Source", "normalize", "open_source"]
