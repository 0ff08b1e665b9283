"""The dumb file store: server-made names, durable writes, one folder per study.

A file is written to a ``.part`` name, fsynced, renamed, and its folder
fsynced, so after a crash a file either is complete under its final name or
is a ``.part`` leftover the start-up check removes. Names are made here
(random, 16 hex digits); no path is ever built from a UID that came over the
network. A study's folder name is a hash of its UID: stable (two senders of
one new study agree on it without a lock) and safe (only hex digits).
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pacsbox.errors import OutOfResources

PART_SUFFIX = ".part"
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    size: int
    digest: str
    # With ``settle_later``: makes the rename durable (fsyncs the folder unless
    # an fsync that started after the rename already did); raises OutOfResources.
    settle: Callable[[], None] | None = field(default=None, compare=False)


def study_folder(study_instance_uid: str) -> str:
    """Server-made folder for a study: ``ab/abcdef...`` (hex only)."""
    h = hashlib.sha256(study_instance_uid.encode("ascii", "replace")).hexdigest()[:24]
    return f"{h[:2]}/{h}"


DIGEST_PREFIX = "crc32:"


def digest(chunks: Iterable[bytes | memoryview]) -> str:
    """A cheap filter for duplicate checks, never proof on its own.

    Every stored image is hashed, so the hash must be cheap: blake2b cost
    0.6 ms of CPU per 0.5 MB image, CRC-32 costs 0.08 ms. Equal digests are
    confirmed byte for byte (``same_content``), so a CRC collision can never
    make a different object pass for a resend.
    """
    crc = 0
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
    return _crc_digest(crc)


def _crc_digest(crc: int) -> str:
    return f"{DIGEST_PREFIX}{crc:08x}"


def same_content(
    stored_digest: str, stored: Path, new_digest: str, new: Path | Iterable[bytes | memoryview]
) -> bool:
    """True when the stored file holds exactly the new bytes (a file or chunks).

    Digests in another form (indexes made before CRC-32) say nothing either
    way, so those are compared byte for byte too.
    """
    if stored_digest.startswith(DIGEST_PREFIX) and stored_digest != new_digest:
        return False
    try:
        with open(stored, "rb") as fh:
            if isinstance(new, Path):
                with open(new, "rb") as other:
                    return _same_stream(fh, iter(lambda: other.read(1 << 20), b""))
            return _same_stream(fh, new)
    except OSError:
        return False


def _same_stream(fh, chunks: Iterable[bytes | memoryview]) -> bool:
    for chunk in chunks:
        if chunk and fh.read(len(chunk)) != chunk:
            return False
    return fh.read(1) == b""


def new_file_name() -> str:
    return secrets.token_hex(8) + ".dcm"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FolderSync:
    """Group fsyncs of one folder: every rename done before an fsync started is covered by it.

    Parallel associations writing into the same study folder each need the
    folder synced after their rename; one fsync that starts after all of
    their renames serves them all. A rename takes a ticket when it is done;
    ``settle`` fsyncs only if no fsync begun since has covered that ticket.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # one fsync of this folder at a time
        self.count_lock = threading.Lock()
        self.renamed = 0  # renames announced
        self.synced = 0  # renames covered by a finished fsync

    def announce(self) -> int:
        with self.count_lock:
            self.renamed += 1
            return self.renamed

    def settle(self, folder: Path, ticket: int) -> None:
        with self.lock:
            if self.synced >= ticket:
                return
            with self.count_lock:
                target = self.renamed
            try:
                fsync_dir(folder)
            except OSError as exc:
                raise _out_of_resources(exc, folder) from None
            self.synced = target


_folder_syncs: dict[str, _FolderSync] = {}
_folder_syncs_lock = threading.Lock()


def _folder_sync(folder: Path) -> _FolderSync:
    key = str(folder)
    with _folder_syncs_lock:
        fs = _folder_syncs.get(key)
        if fs is None:
            if len(_folder_syncs) > 1024:
                _folder_syncs.clear()  # forget idle folders; a new syncer is always safe
            fs = _folder_syncs[key] = _FolderSync()
    return fs


def ensure_dir(path: Path, sync: bool) -> None:
    """Create ``path`` and make each newly created level durable in its parent."""
    if path.is_dir():
        return
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        if sync:
            fsync_dir(d.parent)


def write_file(
    folder: Path, chunks: list[bytes | memoryview], *, sync: bool = True, settle_later: bool = False
) -> WrittenFile:
    """Write ``chunks`` durably as a new server-named file in ``folder``.

    With ``settle_later`` the folder fsync that makes the rename durable is
    left to ``WrittenFile.settle``, which runs while the index records the file.
    Raises OutOfResources (A700) when the disk is full or the folder cannot be
    written; nothing is left behind in that case.
    """
    settle = None
    name = new_file_name()
    final = folder / name
    tmp = folder / (name + PART_SUFFIX)
    crc = 0
    size = 0
    try:
        ensure_dir(folder, sync)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                crc = zlib.crc32(view, crc)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                    size += n
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        if sync:
            settle = settle_rename(folder)
            if not settle_later:
                settle()
                settle = None
    except (OSError, OutOfResources) as exc:
        _unlink_quietly(tmp)
        _unlink_quietly(final)
        if isinstance(exc, OutOfResources):
            raise
        raise _out_of_resources(exc, folder) from None
    return WrittenFile(path=final, size=size, digest=_crc_digest(crc), settle=settle)


def settle_rename(folder: Path) -> Callable[[], None]:
    """What makes a rename into ``folder``, done before this call (by any
    process), durable: a folder fsync, unless one begun since has covered it.
    Raises OutOfResources (A700) when the fsync fails."""
    fs = _folder_sync(folder)
    return partial(fs.settle, folder, fs.announce())


def _out_of_resources(exc: OSError, folder: Path) -> OutOfResources:
    """A700 for a write the disk refused, saying whether it was full."""
    if exc.errno in DISK_FULL_ERRNOS:
        return OutOfResources(f"disk full writing to {folder}")
    return OutOfResources(f"cannot write file in {folder}: {exc.strerror}")


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def remove_file(path: Path, *, sync: bool = True) -> None:
    _unlink_quietly(path)
    if sync:
        try:
            fsync_dir(path.parent)
        except OSError:
            pass


def hold(path: Path, holding_dir: Path, *, sync: bool = True) -> Path:
    """Keep a copy of ``path`` in the holding area (hard link, else copy); returns the copy.

    A hard link makes the replaced file reachable from two names at once, so
    there is no instant in which it exists nowhere.
    """
    ensure_dir(holding_dir, sync)
    target = holding_dir / (secrets.token_hex(4) + "-" + path.name)
    try:
        os.link(path, target)
    except OSError:
        shutil.copy2(path, target)
        if sync:
            with open(target, "rb") as fh:
                os.fsync(fh.fileno())
    if sync:
        fsync_dir(holding_dir)
    return target


def leftover_parts(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name.endswith(PART_SUFFIX)]


def stored_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.is_file() and not p.name.endswith(PART_SUFFIX)]


def iter_study_folders(root: Path):
    """Every study folder under an archive root (two levels of hex)."""
    if not root.is_dir():
        return
    for prefix in sorted(root.iterdir()):
        if len(prefix.name) != 2 or not prefix.is_dir():
            continue
        for study in sorted(prefix.iterdir()):
            if study.is_dir():
                yield study
