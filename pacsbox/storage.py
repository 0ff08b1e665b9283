"""The dumb file store: server-made names, durable writes, one folder per study.

A file is written to a ``.part`` name and renamed to its final name, and
both it and its folder are fsynced before its store is acknowledged: for a
store, the fsyncs run while the index records it. A crash may so leave a
``.part`` leftover or a final name on torn bytes; the final name carries the
CRC-32 of the bytes it must hold, and the start-up check removes both.
Names are made here (16 random hex digits, then the CRC); no path is ever
built from a UID that came over the network. A study's folder name is a
hash of its UID: stable (two senders of one new study agree on it without a
lock) and safe (only hex digits).
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO

from pacsbox.errors import OutOfResources

PART_SUFFIX = ".part"
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    size: int
    digest: str
    # With ``settle_later``: makes the file and its name durable (see
    # ``write_file``); raises OutOfResources.
    settle: Settle | None = field(default=None, compare=False)

    def release(self) -> None:
        """Let go of a file that will never be settled (it is being removed)."""
        if self.settle is not None:
            self.settle.release()


class Settle:
    """What makes a file written with ``settle_later`` durable: an fsync of its
    data, then of its folder (unless one begun since its rename covered it).
    Runs once; later calls return at once (or raise what the first raised)."""

    def __init__(self, fd: int, folder: Path, folder_settle: Callable[[], None]) -> None:
        self._fd = fd
        self._folder = folder
        self._folder_settle = folder_settle
        self._lock = threading.Lock()
        self._done = False
        self._failed: OutOfResources | None = None

    def __call__(self) -> None:
        with self._lock:
            if self._failed is not None:
                raise self._failed
            if self._done:
                return
            try:
                fd, self._fd = self._fd, -1
                if fd >= 0:
                    try:
                        os.fsync(fd)
                    except OSError as exc:
                        raise _out_of_resources(exc, self._folder) from None
                    finally:
                        os.close(fd)
                self._folder_settle()
            except OutOfResources as exc:
                self._failed = exc
                raise
            self._done = True

    def release(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def study_folder(study_instance_uid: str) -> str:
    """Server-made folder for a study: ``ab/abcdef...`` (hex only)."""
    h = hashlib.sha256(study_instance_uid.encode("ascii", "replace")).hexdigest()[:24]
    return f"{h[:2]}/{h}"


DIGEST_PREFIX = "crc32:"


def digest(chunks: Iterable[bytes | memoryview]) -> str:
    """A cheap filter for duplicate checks, never proof on its own.

    Every stored image is hashed, so the hash must be cheap: CRC-32, a
    fraction of a cryptographic hash's CPU time. Equal digests are
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


def _same_stream(fh: BinaryIO, chunks: Iterable[bytes | memoryview]) -> bool:
    for chunk in chunks:
        if chunk and fh.read(len(chunk)) != chunk:
            return False
    return fh.read(1) == b""


def stored_name(stem: str, crc: int) -> str:
    """A stored file's name: a random stem and the CRC-32 of its bytes.

    The name says what the file must hold, so the start-up check can tell a
    file a crash cut short even when no index row names it: a store's file
    gets its final name before its fsync (which runs while the index records
    it), and a crash in between may leave that name on torn bytes.
    """
    return f"{stem}-{crc:08x}.dcm"


def stem_of(name: str) -> str:
    """The random part of a stored or temporary file's name (``ab12...``)."""
    return name.split(".", 1)[0].split("-", 1)[0]


def named_digest(name: str) -> str | None:
    """The digest a stored file's name carries; None for names made before they did."""
    _, sep, crc = name.split(".", 1)[0].partition("-")
    if not sep or len(crc) != 8 or not all(c in "0123456789abcdef" for c in crc):
        return None
    return DIGEST_PREFIX + crc


def is_whole(path: Path) -> bool:
    """False when the file's bytes are not those its name's digest says (torn by a crash)."""
    expected = named_digest(path.name)
    if expected is None:
        return True  # written before names carried digests: fsynced before its rename
    with open(path, "rb") as fh:
        return digest(iter(lambda: fh.read(1 << 20), b"")) == expected


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


# Folders this process has made durably reachable (every level's entry fsynced in its parent).
_reachable: set[str] = set()


def ensure_dir(path: Path, sync: bool) -> None:
    """Create ``path`` and make it durably reachable, once per process.

    A folder that already exists may not be durable yet: another process (or
    thread) made it and has not fsynced its parent, or a run that crashed
    made it. So the first time this process uses a folder it fsyncs the
    parent of each level up to one it has already made durable (or to the
    mount point of the file system).
    """
    key = str(path)
    if key in _reachable:
        return
    path.mkdir(parents=True, exist_ok=True)
    if not sync:
        return
    walked = [key]
    level = path
    dev = os.stat(level).st_dev
    while True:
        parent = level.parent
        if parent == level or os.stat(parent).st_dev != dev:
            break  # the mount point's own name is the mount's business
        fsync_dir(parent)
        if str(parent) in _reachable:
            break
        walked.append(str(parent))
        level = parent
    if len(_reachable) > 4096:
        _reachable.clear()  # forget idle folders; syncing again is always safe
    _reachable.update(walked)


def write_file(
    folder: Path,
    chunks: Sequence[bytes | memoryview],
    *,
    sync: bool = True,
    settle_later: bool = False,
) -> WrittenFile:
    """Write ``chunks`` as a new server-named file in ``folder``, durably.

    With ``settle_later`` the file is under its final name on return but not
    yet durable: ``WrittenFile.settle`` fsyncs it and its folder while the
    index records it (and must run before the store is acknowledged). The
    name carries the file's CRC-32, which tells the start-up check whether a
    crash left it whole (``is_whole``). Without it: fsync, rename, folder
    fsync, all done on return.
    Raises OutOfResources (A700) when the disk is full or the folder cannot be
    written; nothing is left behind in that case.
    """
    stem = secrets.token_hex(8)
    tmp = folder / (stem + PART_SUFFIX)
    final: Path | None = None
    fd = -1
    try:
        ensure_dir(folder, sync)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        crc = 0
        size = 0
        for chunk in chunks:
            view = memoryview(chunk)
            crc = zlib.crc32(view, crc)
            while view:
                n = os.write(fd, view)
                view = view[n:]
                size += n
        final = folder / stored_name(stem, crc)
        if sync and not settle_later:
            os.fsync(fd)
        if not (sync and settle_later):
            os.close(fd)
            fd = -1
        os.rename(tmp, final)
        settle = None
        if sync:
            settle = Settle(fd, folder, settle_rename(folder))
            fd = -1  # the Settle closes it
            if not settle_later:
                settle()
                settle = None
    except (OSError, OutOfResources) as exc:
        if fd >= 0:
            os.close(fd)
        _unlink_quietly(tmp)
        if final is not None:
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


def iter_study_folders(root: Path) -> Iterator[Path]:
    """Every study folder under an archive root (two levels of hex)."""
    if not root.is_dir():
        return
    for prefix in sorted(root.iterdir()):
        if len(prefix.name) != 2 or not prefix.is_dir():
            continue
        for study in sorted(prefix.iterdir()):
            if study.is_dir():
                yield study
