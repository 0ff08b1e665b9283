"""What a power cut acts on: the tree processes see, and the tree the disk holds.

The backing folder always holds exactly the durable state. A file's bytes
reach it at an fsync (or fdatasync) of that file; a name (create, rename,
unlink, link, mkdir, rmdir) at an fsync of the folder holding it. That is
POSIX's strict rule: ext4 in practice also makes a new file's name durable
when the file is fsynced, but nothing promises it, so nothing here does it.
A rename between two folders is one change: an fsync of either folder makes
both halves durable, as a journalling file system commits it.

Everything not yet durable lives in memory: a file's unsynced pages over its
durable bytes, a folder's live entries beside its durable ones. ``drop``
forgets them, as a power cut would, and may first let part of the unsynced
writes reach the disk (``torn``): "subset" keeps each unsynced write whole
or not at all, "prefix" keeps the writes in order up to a point and the next
one cut short (a partly written page).

Durable bytes live in one stash file per inode, hard-linked into the backing
folder at each durable name, so a file can be durable before any name of it
is, and keeps its bytes while its names change. The stash is removed by
``drop``: what is left in the backing folder is what the disk would hold.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field

PAGE = 4096
NEVER = 1 << 62  # "no truncate since the last sync"
TORN_MODES = ("none", "subset", "prefix")


def _err(code: int, what: str = "") -> OSError:
    return OSError(code, os.strerror(code), what)


class Node:
    """One inode: a file, a folder or a symbolic link."""

    def __init__(self, ino: int, mode: int, uid: int = 0, gid: int = 0, name: str = "") -> None:
        now = time.time_ns()
        self.ino = ino
        self.mode = mode
        self.uid, self.gid = uid, gid
        self.atime = self.mtime = self.ctime = now
        self.name = name  # its latest live name, for matching calls to names
        self.nlink = 0  # live names
        self.dlinks = 0  # durable names
        self.opens = 0
        # folders
        self.entries: dict[str, Node] = {}  # what processes see
        self.durable: dict[str, Node] = {}  # what the disk holds
        self.bpath: str | None = None  # where the folder is in the backing tree, if reachable
        self.parent: Node | None = None
        # files: live bytes = body (durable, below ``floor``) + pages over it, ``size`` long
        self.size = 0
        self.pages: dict[int, bytearray] = {}
        self.floor = NEVER
        self.body: str | None = None
        self.body_size = 0
        self.fd = -1
        self.log: list[tuple[int, bytes | None]] | None = None  # unsynced writes, for torn drops
        # symbolic links
        self.target = ""

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    def attrs(self) -> dict:
        if self.is_dir:
            nlink = 2 + sum(1 for c in self.entries.values() if c.is_dir)
            size = 4096
        else:
            nlink, size = self.nlink, self.size if self.is_file else len(self.target)
        return {
            "st_ino": self.ino,
            "st_mode": self.mode,
            "st_nlink": nlink,
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_atime": self.atime,
            "st_mtime": self.mtime,
            "st_ctime": self.ctime,
        }


@dataclass
class _Rename:
    """A rename between two folders not yet durable in either."""

    src: Node
    src_name: str
    dst: Node
    dst_name: str
    node: Node


@dataclass
class DropReport:
    files_with_unsynced_data: int = 0
    writes_lost: int = 0
    writes_kept: int = 0
    writes_torn: int = 0
    pages_unsynced: int = 0  # 4 KiB pages written and not synced when the power went
    names_pending: int = 0
    details: list[str] = field(default_factory=list)


class Model:
    """The live and the durable tree over a backing folder (see the module docstring)."""

    def __init__(self, backing: str, stash: str, torn: str = "none") -> None:
        if torn not in TORN_MODES:
            raise ValueError(f"torn must be one of {TORN_MODES}")
        self.backing = os.path.abspath(backing)
        self.stash = os.path.abspath(stash)
        self.torn = torn
        self.lock = threading.RLock()
        self.dead = False
        self.nodes: dict[int, Node] = {}
        self._next_ino = 1
        self.renames: list[_Rename] = []
        shutil.rmtree(self.stash, ignore_errors=True)
        os.makedirs(self.stash)
        self.root = self._load()

    # -- loading what the disk holds -----------------------------------------------

    def _new(self, mode: int, uid: int = 0, gid: int = 0, name: str = "") -> Node:
        node = Node(self._next_ino, mode, uid, gid, name)
        self._next_ino += 1
        self.nodes[node.ino] = node
        if node.is_file and self.torn != "none":
            node.log = []
        return node

    def _load(self) -> Node:
        st = os.stat(self.backing)
        root = self._new(st.st_mode, st.st_uid, st.st_gid, "/")
        root.bpath = self.backing
        root.nlink = root.dlinks = 1
        seen: dict[tuple[int, int], Node] = {}
        self._load_dir(root, self.backing, seen)
        return root

    def _load_dir(self, folder: Node, path: str, seen: dict) -> None:
        with os.scandir(path) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                key = (st.st_dev, st.st_ino)
                if stat.S_ISDIR(st.st_mode):
                    node = self._new(st.st_mode, st.st_uid, st.st_gid, entry.name)
                    node.bpath, node.parent = entry.path, folder
                    self._load_dir(node, entry.path, seen)
                elif stat.S_ISREG(st.st_mode):
                    node = seen.get(key)
                    if node is None:
                        node = seen[key] = self._new(st.st_mode, st.st_uid, st.st_gid, entry.name)
                        node.body = os.path.join(self.stash, f"f{node.ino}")
                        os.link(entry.path, node.body)
                        node.size = node.body_size = st.st_size
                elif stat.S_ISLNK(st.st_mode):
                    node = self._new(st.st_mode, st.st_uid, st.st_gid, entry.name)
                    node.target = os.readlink(entry.path)
                else:
                    continue  # sockets, fifos: nothing of ours
                node.mtime, node.ctime = st.st_mtime_ns, st.st_ctime_ns
                node.nlink += 1
                node.dlinks += 1
                folder.entries[entry.name] = folder.durable[entry.name] = node

    # -- looking things up -------------------------------------------------------------

    def _alive(self) -> None:
        if self.dead:
            raise _err(errno.EIO, "the power is off")

    def lookup(self, path: str) -> Node:
        with self.lock:
            self._alive()
            node = self.root
            for part in path.split("/"):
                if not part:
                    continue
                if not node.is_dir:
                    raise _err(errno.ENOTDIR, path)
                node = node.entries.get(part)
                if node is None:
                    raise _err(errno.ENOENT, path)
            return node

    def _parent(self, path: str) -> tuple[Node, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        folder = self.lookup(head or "/")
        if not folder.is_dir:
            raise _err(errno.ENOTDIR, path)
        if not name or name in (".", ".."):
            raise _err(errno.EINVAL, path)
        return folder, name

    # -- the namespace (live until the folder's fsync) -------------------------------------

    def create(self, path: str, mode: int, uid: int, gid: int) -> Node:
        return self._add(path, stat.S_IFREG | (mode & 0o7777), uid, gid)

    def mkdir(self, path: str, mode: int, uid: int, gid: int) -> Node:
        return self._add(path, stat.S_IFDIR | (mode & 0o7777), uid, gid)

    def symlink(self, path: str, target: str, uid: int, gid: int) -> Node:
        with self.lock:
            node = self._add(path, stat.S_IFLNK | 0o777, uid, gid)
            node.target = target
            return node

    def _add(self, path: str, mode: int, uid: int, gid: int) -> Node:
        with self.lock:
            folder, name = self._parent(path)
            if name in folder.entries:
                raise _err(errno.EEXIST, path)
            node = self._new(mode, uid, gid, name)
            node.nlink = 1
            if node.is_dir:
                node.parent = folder
            folder.entries[name] = node
            folder.mtime = folder.ctime = time.time_ns()
            return node

    def unlink(self, path: str) -> None:
        with self.lock:
            folder, name = self._parent(path)
            node = folder.entries.get(name)
            if node is None:
                raise _err(errno.ENOENT, path)
            if node.is_dir:
                raise _err(errno.EISDIR, path)
            del folder.entries[name]
            node.nlink -= 1
            folder.mtime = node.ctime = time.time_ns()
            self._forget_if_unused(node)

    def rmdir(self, path: str) -> None:
        with self.lock:
            folder, name = self._parent(path)
            node = folder.entries.get(name)
            if node is None:
                raise _err(errno.ENOENT, path)
            if not node.is_dir:
                raise _err(errno.ENOTDIR, path)
            if node.entries:
                raise _err(errno.ENOTEMPTY, path)
            del folder.entries[name]
            node.nlink = 0
            folder.mtime = time.time_ns()

    def link(self, old: str, new: str) -> Node:
        with self.lock:
            node = self.lookup(old)
            if node.is_dir:
                raise _err(errno.EPERM, old)
            folder, name = self._parent(new)
            if name in folder.entries:
                raise _err(errno.EEXIST, new)
            folder.entries[name] = node
            node.nlink += 1
            folder.mtime = node.ctime = time.time_ns()
            return node

    def rename(self, old: str, new: str) -> None:
        with self.lock:
            src, src_name = self._parent(old)
            dst, dst_name = self._parent(new)
            node = src.entries.get(src_name)
            if node is None:
                raise _err(errno.ENOENT, old)
            target = dst.entries.get(dst_name)
            if target is node:
                return
            if node.is_dir:
                up: Node | None = dst
                while up is not None:
                    if up is node:
                        raise _err(errno.EINVAL, new)  # into its own subtree
                    up = up.parent
            if target is not None:
                if target.is_dir and not node.is_dir:
                    raise _err(errno.EISDIR, new)
                if node.is_dir and not target.is_dir:
                    raise _err(errno.ENOTDIR, new)
                if target.is_dir and target.entries:
                    raise _err(errno.ENOTEMPTY, new)
            del src.entries[src_name]
            dst.entries[dst_name] = node
            node.name = dst_name
            now = time.time_ns()
            src.mtime = dst.mtime = node.ctime = now
            if node.is_dir:
                node.parent = dst
            if src is not dst:
                self.renames.append(_Rename(src, src_name, dst, dst_name, node))
            if target is not None:
                target.nlink = 0 if target.is_dir else target.nlink - 1
                self._forget_if_unused(target)

    def opened(self, node: Node) -> None:
        with self.lock:
            node.opens += 1

    def closed(self, node: Node) -> None:
        with self.lock:
            node.opens -= 1
            self._forget_if_unused(node)

    def _forget_if_unused(self, node: Node) -> None:
        """An inode with no name (live or durable) and no opener is gone for good."""
        if node.is_dir or node.nlink > 0 or node.dlinks > 0 or node.opens > 0:
            return
        if any(r.node is node for r in self.renames):
            return  # a durable name may still come from the rename's other half
        self.nodes.pop(node.ino, None)
        if node.fd >= 0:
            os.close(node.fd)
            node.fd = -1
        if node.body is not None:
            try:
                os.unlink(node.body)
            except FileNotFoundError:
                pass
            node.body = None
        node.pages = {}

    def setattrs(self, node: Node, mode=None, uid=None, gid=None, times=None) -> None:
        with self.lock:
            self._alive()
            if mode is not None:
                node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
            if uid is not None and uid >= 0:
                node.uid = uid
            if gid is not None and gid >= 0:
                node.gid = gid
            if times is not None:
                node.atime, node.mtime = times
            node.ctime = time.time_ns()

    # -- file data (live until the file's fsync) -----------------------------------------

    def _body_fd(self, node: Node) -> int:
        if node.fd < 0:
            node.fd = os.open(node.body, os.O_RDWR)
        return node.fd

    def _base(self, node: Node, off: int, n: int) -> bytes:
        """The durable bytes still visible at [off, off+n), zeros past them."""
        valid = min(node.body_size, node.floor)
        out = b""
        if node.body is not None and off < valid:
            out = os.pread(self._body_fd(node), min(n, valid - off), off)
        if len(out) < n:
            out += bytes(n - len(out))
        return out

    def read(self, node: Node, off: int, n: int) -> bytes:
        with self.lock:
            self._alive()
            end = min(off + n, node.size)
            if off >= end:
                return b""
            if not node.pages:
                return self._base(node, off, end - off)
            parts = []
            pos = off
            while pos < end:
                pg = pos // PAGE
                page = node.pages.get(pg)
                if page is not None:
                    stop = min((pg + 1) * PAGE, end)
                    parts.append(bytes(page[pos - pg * PAGE : stop - pg * PAGE]))
                else:
                    nxt = pg + 1
                    while nxt * PAGE < end and nxt not in node.pages:
                        nxt += 1
                    stop = min(nxt * PAGE, end)
                    parts.append(self._base(node, pos, stop - pos))
                pos = stop
            return b"".join(parts)

    def write(self, node: Node, off: int, data: bytes) -> int:
        with self.lock:
            self._alive()
            if node.log is not None:
                node.log.append((off, bytes(data)))
            end = off + len(data)
            pos, i = off, 0
            while pos < end:
                pg = pos // PAGE
                start = pg * PAGE
                stop = min(start + PAGE, end)
                page = node.pages.get(pg)
                if page is None:
                    whole = pos == start and stop == start + PAGE
                    page = bytearray(PAGE) if whole else bytearray(self._base(node, start, PAGE))
                    node.pages[pg] = page
                page[pos - start : stop - start] = data[i : i + stop - pos]
                i += stop - pos
                pos = stop
            node.size = max(node.size, end)
            node.mtime = node.ctime = time.time_ns()
            return len(data)

    def truncate(self, node: Node, size: int) -> None:
        with self.lock:
            self._alive()
            if not node.is_file:
                raise _err(errno.EISDIR if node.is_dir else errno.EINVAL)
            if node.log is not None:
                node.log.append((size, None))
            if size < node.size:
                for pg in [p for p in node.pages if p * PAGE >= size]:
                    del node.pages[pg]
                tail = size % PAGE
                if tail:
                    pg = size // PAGE
                    page = node.pages.get(pg)
                    if page is None and pg * PAGE < min(node.body_size, node.floor):
                        page = node.pages[pg] = bytearray(self._base(node, pg * PAGE, PAGE))
                    if page is not None:
                        page[tail:] = bytes(PAGE - tail)
                node.floor = min(node.floor, size)
            node.size = size
            node.mtime = node.ctime = time.time_ns()

    def _ensure_body(self, node: Node) -> None:
        if node.body is None:
            node.body = os.path.join(self.stash, f"f{node.ino}")
            node.fd = os.open(node.body, os.O_RDWR | os.O_CREAT | os.O_EXCL, node.mode & 0o7777)
            node.body_size = 0

    def fsync(self, node: Node) -> None:
        """The file's bytes (and its mode) become durable; none of its names does."""
        with self.lock:
            self._alive()
            if not node.is_file:
                return
            self._ensure_body(node)
            fd = self._body_fd(node)
            if node.floor < node.body_size:
                os.ftruncate(fd, node.floor)
            run_start, run = -1, []
            for pg in sorted(node.pages):
                if run and pg != run_start + len(run):
                    self._put(fd, node, run_start, run)
                    run = []
                if not run:
                    run_start = pg
                run.append(node.pages[pg])
            if run:
                self._put(fd, node, run_start, run)
            os.ftruncate(fd, node.size)
            os.fchmod(fd, node.mode & 0o7777)
            node.body_size = node.size
            node.floor = NEVER
            node.pages = {}
            if node.log is not None:
                node.log = []

    @staticmethod
    def _put(fd: int, node: Node, first: int, pages: list[bytearray]) -> None:
        off = first * PAGE
        data = b"".join(pages)[: max(0, node.size - off)]
        if data:
            os.pwrite(fd, data, off)

    # -- folder entries become durable ------------------------------------------------------

    def fsyncdir(self, folder: Node) -> None:
        """The folder's entries become durable (with both halves of a rename in or out of it)."""
        with self.lock:
            self._alive()
            changes: list[tuple[Node, str, Node | None, Node | None]] = []
            self._diff(folder, dict(folder.entries), changes)
            for r in list(self.renames):
                if r.src is not folder and r.dst is not folder:
                    continue
                self.renames.remove(r)
                other = r.dst if r.src is folder else r.src
                entries = dict(other.durable)
                if other is r.dst:
                    entries[r.dst_name] = r.node
                elif entries.get(r.src_name) is r.node:
                    del entries[r.src_name]
                self._diff(other, entries, changes)
            for _, _, old, new in changes:
                if old is not None:
                    old.dlinks -= 1
                if new is not None:
                    new.dlinks += 1
            for where, name, old, _ in changes:
                if old is not None and where.bpath is not None:
                    self._unplace(old, os.path.join(where.bpath, name))
            for where, name, _, new in changes:
                if new is not None and where.bpath is not None:
                    self._place(new, os.path.join(where.bpath, name))
            for _, _, old, _ in changes:
                if old is not None:
                    self._forget_if_unused(old)

    @staticmethod
    def _diff(folder: Node, entries: dict, changes: list) -> None:
        for name in folder.durable.keys() | entries.keys():
            old, new = folder.durable.get(name), entries.get(name)
            if old is not new:
                changes.append((folder, name, old, new))
        folder.durable = entries

    def _place(self, node: Node, path: str) -> None:
        """Make a durable entry appear in the backing tree (its folder is reachable)."""
        if os.path.lexists(path):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        if node.is_dir:
            if node.bpath is not None and os.path.isdir(node.bpath):
                shutil.rmtree(node.bpath)
                self._unreach(node)
            os.mkdir(path, node.mode & 0o7777)
            os.chown(path, node.uid, node.gid)
            node.bpath = path
            for name, child in node.durable.items():
                self._place(child, os.path.join(path, name))
        elif node.is_file:
            self._ensure_body(node)
            os.link(node.body, path)
        else:
            os.symlink(node.target, path)

    def _unplace(self, node: Node, path: str) -> None:
        if node.is_dir:
            if node.bpath == path:
                shutil.rmtree(path, ignore_errors=True)
                self._unreach(node)
        elif os.path.lexists(path):
            os.unlink(path)

    def _unreach(self, node: Node) -> None:
        node.bpath = None
        for child in node.durable.values():
            if child.is_dir:
                self._unreach(child)

    # -- the power cut ----------------------------------------------------------------------

    def drop(self, seed: int = 0) -> DropReport:
        """Everything unsynced vanishes (some of it first reaches the disk, per ``torn``);
        the backing folder is left as the disk would be. Every later call fails (EIO)."""
        rng = random.Random(seed)
        report = DropReport()
        with self.lock:
            self.dead = True
            for node in list(self.nodes.values()):
                if node.is_file and (node.pages or node.floor != NEVER or node.log):
                    report.files_with_unsynced_data += 1
                    report.pages_unsynced += len(node.pages)
                    if node.log and node.dlinks > 0:
                        self._land_some(node, rng, report)
                    else:
                        report.writes_lost += len(node.log or ())
            report.names_pending = sum(
                1 for n in self.nodes.values() if n.is_dir and n.entries != n.durable
            )
            for node in self.nodes.values():
                if node.fd >= 0:
                    os.close(node.fd)
                    node.fd = -1
            shutil.rmtree(self.stash, ignore_errors=True)
        return report

    def _land_some(self, node: Node, rng: random.Random, report: DropReport) -> None:
        """Unsynced writes that reach the disk anyway, onto the file's durable bytes."""
        self._ensure_body(node)
        fd = self._body_fd(node)
        log = node.log or []
        if self.torn == "subset":
            kept = [op for op in log if rng.random() < 0.5]
            cut = None
        else:
            k = rng.randint(0, len(log))
            kept, cut = log[:k], (log[k] if k < len(log) else None)
        for off, data in kept:
            if data is None:
                os.ftruncate(fd, off)
            else:
                os.pwrite(fd, data, off)
        report.writes_kept += len(kept)
        report.writes_lost += len(log) - len(kept)
        if cut is not None and cut[1]:
            off, data = cut
            part = data[: rng.randint(0, len(data) - 1)]
            if part:
                os.pwrite(fd, part, off)
                report.writes_torn += 1
                report.details.append(f"{node.name}: {len(part)} of {len(data)} bytes at {off}")

    def statfs(self) -> dict:
        sv = os.statvfs(self.backing)
        return {k: getattr(sv, k) for k in dir(sv) if k.startswith("f_")}
