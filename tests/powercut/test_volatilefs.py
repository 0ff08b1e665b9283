"""The volatile file system itself: what a drop keeps is exactly what was synced.

Through a real mount (real syscalls from this process and from sqlite3),
then a drop, then a look at the backing folder, which must hold what a power
cut would leave under POSIX's strict rules.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.powercut.mount import VolatileMount


@pytest.fixture
def vfs(tmp_path):
    m = VolatileMount(tmp_path / "backing", tmp_path / "mnt", tmp_path / "work").start()
    yield m
    m.unmount()


def _make(m: VolatileMount, torn: str) -> VolatileMount:
    return VolatileMount(m.backing, m.mountpoint, m.workdir, torn=torn).start()


def write(path: Path, data: bytes, *, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root``: file bytes, or None for a folder."""
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = None if p.is_dir() else p.read_bytes()
    return out


def test_data_is_durable_only_after_the_files_fsync(vfs):
    mnt = vfs.mountpoint
    write(mnt / "unsynced", b"lost", sync=False)
    write(mnt / "synced", b"kept", sync=True)
    # Live: both are there with their bytes.
    assert (mnt / "unsynced").read_bytes() == b"lost"
    assert (mnt / "synced").read_bytes() == b"kept"
    fsync_dir(mnt)  # both names durable
    vfs.drop()
    assert tree(vfs.backing) == {"synced": b"kept", "unsynced": b""}


def test_a_files_fsync_does_not_make_its_name_durable(vfs):
    write(vfs.mountpoint / "new", b"data", sync=True)
    vfs.drop()
    assert tree(vfs.backing) == {}


def test_an_overwrite_without_fsync_leaves_the_old_bytes(vfs):
    mnt = vfs.mountpoint
    write(mnt / "f", b"old bytes", sync=True)
    fsync_dir(mnt)
    with open(mnt / "f", "r+b") as fh:
        fh.write(b"NEW")
        fh.flush()
        assert (mnt / "f").read_bytes() == b"NEW bytes"
    vfs.drop()
    assert tree(vfs.backing) == {"f": b"old bytes"}


def test_a_rename_is_lost_without_the_folders_fsync(vfs):
    mnt = vfs.mountpoint
    write(mnt / "a.part", b"x" * 5000, sync=True)
    fsync_dir(mnt)
    os.rename(mnt / "a.part", mnt / "a.dcm")
    assert sorted(os.listdir(mnt)) == ["a.dcm"]
    vfs.drop()
    assert tree(vfs.backing) == {"a.part": b"x" * 5000}


def test_a_rename_and_an_unlink_are_kept_after_the_folders_fsync(vfs):
    mnt = vfs.mountpoint
    write(mnt / "a.part", b"image", sync=True)
    write(mnt / "gone", b"bye", sync=True)
    fsync_dir(mnt)
    os.rename(mnt / "a.part", mnt / "a.dcm")
    os.unlink(mnt / "gone")
    fsync_dir(mnt)
    vfs.drop()
    assert tree(vfs.backing) == {"a.dcm": b"image"}


def test_nested_folders_need_every_parent_synced(vfs):
    mnt = vfs.mountpoint
    (mnt / "cd" / "cdef").mkdir(parents=True)
    write(mnt / "cd" / "cdef" / "g.dcm", b"all synced", sync=True)
    fsync_dir(mnt / "cd" / "cdef")
    fsync_dir(mnt / "cd")
    fsync_dir(mnt)
    (mnt / "ab" / "abcdef").mkdir(parents=True)
    write(mnt / "ab" / "abcdef" / "f.dcm", b"deep", sync=True)
    fsync_dir(mnt / "ab" / "abcdef")
    fsync_dir(mnt / "ab")  # ab/abcdef durable in ab, but ab itself not in the root
    (mnt / "cd" / "cdef" / "h.dcm").write_bytes(b"name never synced")
    vfs.drop()
    assert tree(vfs.backing) == {"cd": None, "cd/cdef": None, "cd/cdef/g.dcm": b"all synced"}


def test_a_hard_link_into_another_folder_and_a_move_between_folders(vfs):
    mnt = vfs.mountpoint
    for d in ("study", "holding", "other"):
        (mnt / d).mkdir()
    fsync_dir(mnt)
    write(mnt / "study" / "f", b"first", sync=True)
    fsync_dir(mnt / "study")
    os.link(mnt / "study" / "f", mnt / "holding" / "f-held")
    fsync_dir(mnt / "holding")
    # A move between folders is one change: the fsync of either folder keeps it whole.
    os.rename(mnt / "study" / "f", mnt / "other" / "f")
    fsync_dir(mnt / "other")
    vfs.drop()
    assert tree(vfs.backing) == {
        "holding": None,
        "holding/f-held": b"first",
        "other": None,
        "other/f": b"first",
        "study": None,
    }


def test_truncate_and_extend_read_zeros_and_sync_what_was_seen(vfs):
    mnt = vfs.mountpoint
    body = bytes(range(256)) * 32  # 8 KB
    write(mnt / "f", body, sync=True)
    fsync_dir(mnt)
    fd = os.open(mnt / "f", os.O_RDWR)
    try:
        os.ftruncate(fd, 100)
        os.pwrite(fd, b"tail", 6000)
        live = (mnt / "f").read_bytes()
        assert live == body[:100] + bytes(5900) + b"tail"
        os.fsync(fd)
    finally:
        os.close(fd)
    vfs.drop()
    assert (vfs.backing / "f").read_bytes() == live


def test_the_nth_write_freezes_every_later_call_until_the_drop(vfs):
    mnt = vfs.mountpoint
    write(mnt / "f", b"", sync=True)
    fsync_dir(mnt)
    vfs.arm("write", 3, match="f")
    fd = os.open(mnt / "f", os.O_WRONLY)
    os.write(fd, b"one ")
    os.write(fd, b"two ")
    outcome: list = []

    def third():
        try:
            os.write(fd, b"three")
            os.fsync(fd)
            outcome.append("written")
        except OSError as exc:
            outcome.append(exc.errno)

    t = threading.Thread(target=third)
    t.start()
    t.join(1.0)
    assert t.is_alive(), "the third write did not block"
    assert vfs.frozen() == {"kind": "write", "name": "f", "n": 3}
    assert vfs.counts()["write:other"] >= 3
    report = vfs.drop()
    t.join(10)
    with contextlib.suppress(OSError):
        os.close(fd)  # its flush fails too: the power is off
    assert outcome == [errno.EIO]
    assert report["files_with_unsynced_data"] == 1
    assert tree(vfs.backing) == {"f": b""}


def test_a_torn_drop_keeps_a_prefix_of_the_unsynced_writes(vfs):
    vfs.unmount()
    m = _make(vfs, "prefix")
    try:
        write(m.mountpoint / "f", b"", sync=True)
        fsync_dir(m.mountpoint)
        full = b"".join(bytes([65 + i]) * 1000 for i in range(20))
        fd = os.open(m.mountpoint / "f", os.O_WRONLY)
        for i in range(20):
            os.write(fd, full[i * 1000 : (i + 1) * 1000])
        os.close(fd)
        report = m.drop(seed=7)
    finally:
        m.unmount()
    kept = (m.backing / "f").read_bytes()
    assert kept == full[: len(kept)]
    assert 0 < len(kept) < len(full) and len(kept) % 1000, (len(kept), report)
    assert report["writes_torn"] == 1


def test_sqlite_in_wal_mode_keeps_exactly_the_synced_commits(vfs):
    """Two processes share the database (the -shm is mmapped); a FULL commit
    survives the drop, a NORMAL one after it may not, and the file is whole."""
    db = vfs.mountpoint / "t.db"
    script = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('PRAGMA journal_mode=wal'); c.execute('PRAGMA mmap_size=1000000')\n"
        "c.execute('CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)')\n"
        "c.execute('PRAGMA synchronous=' + sys.argv[2])\n"
        "for i in range(int(sys.argv[3]), int(sys.argv[4])):\n"
        "    c.execute('INSERT INTO t (k, v) VALUES (?, ?)', (i, 'x' * 500))\n"
        "print(c.execute('SELECT COUNT(*) FROM t').fetchone()[0])\n"
    )
    held = sqlite3.connect(db)  # keeps the WAL from being checkpointed away on close
    held.execute("PRAGMA journal_mode=wal")
    for sync, lo, hi in (("FULL", 0, 200), ("NORMAL", 200, 400)):
        out = subprocess.run(
            [sys.executable, "-c", script, str(db), sync, str(lo), str(hi)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == str(hi)
    assert held.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 400
    vfs.drop()
    held.close()
    after = sqlite3.connect(vfs.backing / "t.db")
    try:
        assert after.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n = after.execute("SELECT COUNT(*) FROM t").fetchone()[0]
    finally:
        after.close()
    assert 200 <= n <= 400
