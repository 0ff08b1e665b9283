"""A FUSE file system that loses, on command, everything not yet fsynced.

    python -m tests.powercut.volatilefs BACKING MOUNTPOINT --control SOCKET [--torn MODE]

Processes see an ordinary file system at MOUNTPOINT; BACKING holds only what
a power cut would leave (see ``model.py`` for the rules). Every call is
counted by kind (write, fsync, fdatasync, fsyncdir, rename, unlink, ...) and
by the kind of file it touches; the control socket (one JSON object a line)
answers:

- ``{"op": "counts"}``: the counts so far;
- ``{"op": "arm", "kind": K, "n": N, "match": GLOB}``: freeze at the Nth call
  of kind K (counted from now) on a name matching GLOB: that call and every
  later one block (``"mode": "eio"``: fail with EIO), so nothing more can
  become durable;
- ``{"op": "freeze"}``: freeze now; ``{"op": "status"}``: frozen or not, where;
- ``{"op": "drop", "seed": S}``: the power cut: unsynced data and names
  vanish, blocked calls fail with EIO, and so does every later call.

A test tool (tests/powercut), not part of the product. It binds libfuse 3
through mfusepy (ctypes): nothing to compile, and libfuse3-3 is one Debian
package.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import errno
import fnmatch
import json
import os
import resource
import socketserver
import stat
import sys
import threading
import time

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")

import mfusepy as fuse  # noqa: E402 - the library to bind is chosen by the line above

from tests.powercut.model import TORN_MODES, Model, Node  # noqa: E402


def name_class(node_or_name: Node | str) -> str:
    """The kind of file a call touches, as the counts show it (wal, db, part, dcm, dir...)."""
    if isinstance(node_or_name, Node):
        if node_or_name.is_dir:
            return "dir"
        name = node_or_name.name
    else:
        name = node_or_name
    for suffix in ("-wal", "-shm", "-journal"):
        if name.endswith(suffix):
            return suffix[1:]
    _, dot, ext = name.rpartition(".")
    return ext if dot and ext else "other"


class Gate:
    """Counts calls; once armed, freezes every call from the Nth matching one on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()
        self.armed: dict | None = None
        self.frozen_at: dict | None = None
        self.mode = "block"
        self.blocked = 0
        self.released = threading.Event()

    def __call__(self, kind: str, name: str, cls: str) -> None:
        with self.lock:
            self.counts[kind] += 1
            self.counts[f"{kind}:{cls}"] += 1
            armed = self.armed
            if (
                self.frozen_at is None
                and armed is not None
                and armed["kind"] == kind
                and fnmatch.fnmatchcase(name, armed["match"])
            ):
                armed["seen"] += 1
                if armed["seen"] >= armed["n"]:
                    self.frozen_at = {"kind": kind, "name": name, "n": armed["seen"]}
            frozen = self.frozen_at is not None
            if frozen:
                self.blocked += 1
        if frozen:
            if self.mode == "block":
                self.released.wait()
            raise OSError(errno.EIO, "frozen: the power is being cut")

    def arm(self, kind: str, n: int, match: str = "*", mode: str = "block") -> None:
        with self.lock:
            self.mode = mode
            self.armed = {"kind": kind, "n": max(1, int(n)), "match": match, "seen": 0}

    def freeze(self, why: str = "command") -> None:
        with self.lock:
            if self.frozen_at is None:
                self.frozen_at = {"kind": why, "name": "", "n": 0}


class VolatileFS(fuse.Operations):
    """The mfusepy operations: each call passes the gate, then acts on the model."""

    use_ns = True

    def __init__(self, model: Model, gate: Gate) -> None:
        self.model = model
        self.gate = gate
        self.handles: dict[int, Node] = {}
        self._fh = 0
        self._fh_lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------

    def init_with_config(self, conn, config) -> None:
        if config is not None:
            config.hard_remove = 1  # unlink of an open file is an unlink, not a hidden rename
            config.use_ino = 1
            config.nullpath_ok = 1
            config.kernel_cache = 1  # every change passes here, so the page cache stays true

    def _node(self, path: str | None, fh: int | None = None) -> Node:
        if fh:
            node = self.handles.get(fh)
            if node is not None:
                return node
        if path is None:
            raise OSError(errno.EBADF, "no such handle")
        return self.model.lookup(path)

    def _pass(self, kind: str, node_or_path: Node | str) -> None:
        if isinstance(node_or_path, Node):
            self.gate(kind, node_or_path.name, name_class(node_or_path))
        else:
            name = node_or_path.rstrip("/").rpartition("/")[2]
            self.gate(kind, name, name_class(name))

    def _handle(self, node: Node) -> int:
        self.model.opened(node)
        with self._fh_lock:
            self._fh += 1
            self.handles[self._fh] = node
            return self._fh

    @staticmethod
    def _caller() -> tuple[int, int]:
        uid, gid, _ = fuse.fuse_get_context()
        return uid, gid

    # -- metadata ----------------------------------------------------------------------

    def getattr(self, path, fh=None):
        self._pass("getattr", path or "")
        return self._node(path, fh).attrs()

    def access(self, path, amode):
        self._pass("access", path)
        self.model.lookup(path)
        return 0

    def readlink(self, path):
        self._pass("readlink", path)
        return self.model.lookup(path).target

    def statfs(self, path):
        self._pass("statfs", path)
        return self.model.statfs()

    def chmod(self, path, mode):
        node = self._node(path)
        self._pass("chmod", node)
        self.model.setattrs(node, mode=mode)
        return 0

    def chown(self, path, uid, gid):
        node = self._node(path)
        self._pass("chown", node)
        self.model.setattrs(node, uid=uid, gid=gid)
        return 0

    def utimens(self, path, times=None):
        node = self._node(path)
        self._pass("utimens", node)
        now = time.time_ns()
        self.model.setattrs(node, times=times or (now, now))
        return 0

    # -- the namespace ------------------------------------------------------------------

    def mknod(self, path, mode, dev):
        self._pass("create", path)
        if not stat.S_ISREG(mode):
            raise OSError(errno.EPERM, "only regular files here")
        self.model.create(path, mode, *self._caller())
        return 0

    def create(self, path, mode, flags):
        self._pass("create", path)
        return self._handle(self.model.create(path, mode, *self._caller()))

    def mkdir(self, path, mode):
        self._pass("mkdir", path)
        self.model.mkdir(path, mode, *self._caller())
        return 0

    def symlink(self, path, target):
        self._pass("symlink", path)
        self.model.symlink(path, target, *self._caller())
        return 0

    def unlink(self, path):
        self._pass("unlink", path)
        self.model.unlink(path)
        return 0

    def rmdir(self, path):
        self._pass("rmdir", path)
        self.model.rmdir(path)
        return 0

    def rename(self, old, new):
        self._pass("rename", old)
        self.model.rename(old, new)
        return 0

    def link(self, path, existing):
        self._pass("link", path)
        self.model.link(existing, path)
        return 0

    # -- files -----------------------------------------------------------------------------

    def open(self, path, flags):
        node = self.model.lookup(path)
        self._pass("open", node)
        if node.is_dir:
            raise OSError(errno.EISDIR, path)
        return self._handle(node)

    def read(self, path, size, offset, fh):
        node = self._node(path, fh)
        self._pass("read", node)
        return self.model.read(node, offset, size)

    def write(self, path, data, offset, fh):
        node = self._node(path, fh)
        self._pass("write", node)
        return self.model.write(node, offset, data)

    def truncate(self, path, length, fh=None):
        node = self._node(path, fh)
        self._pass("truncate", node)
        self.model.truncate(node, length)
        return 0

    def fallocate(self, path, mode, offset, size, fh):
        node = self._node(path, fh)
        self._pass("fallocate", node)
        if mode != 0:
            raise OSError(errno.EOPNOTSUPP, "only plain allocation")
        if offset + size > node.size:
            self.model.truncate(node, offset + size)
        return 0

    def flush(self, path, fh):
        node = self._node(path, fh)
        self._pass("flush", node)
        return 0

    def fsync(self, path, datasync, fh):
        node = self._node(path, fh)
        self._pass("fdatasync" if datasync else "fsync", node)
        self.model.fsync(node)
        return 0

    def release(self, path, fh):
        node = self.handles.pop(fh, None)
        if node is not None:
            self.model.closed(node)
        return 0

    # -- folders ----------------------------------------------------------------------------

    def opendir(self, path):
        node = self.model.lookup(path)
        self._pass("opendir", node)
        if not node.is_dir:
            raise OSError(errno.ENOTDIR, path)
        return self._handle(node)

    def readdir(self, path, fh):
        node = self._node(path, fh)
        self._pass("readdir", node)
        with self.model.lock:
            # glibc hides entries whose inode number is 0: give each its own.
            entries = [
                (name, {"st_ino": n.ino, "st_mode": n.mode}, 0) for name, n in node.entries.items()
            ]
        up = node.parent or node
        return [
            (".", {"st_ino": node.ino, "st_mode": node.mode}, 0),
            ("..", {"st_ino": up.ino, "st_mode": up.mode}, 0),
            *entries,
        ]

    def releasedir(self, path, fh):
        return self.release(path, fh)

    def fsyncdir(self, path, datasync, fh):
        node = self._node(path, fh)
        self._pass("fsyncdir", node)
        self.model.fsyncdir(node)
        return 0


class _FUSE(fuse.FUSE):
    """mfusepy drops the file handle of a truncate (ftruncate); keep it."""

    def truncate_fuse_3(self, path, length, fip):
        fh = fip.contents.fh if fip else None
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        return self.operations.truncate(decoded, length, fh)


class _Control(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True


def _control_handler(model: Model, gate: Gate):
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:
                if not line.strip():
                    continue
                try:
                    answer = _command(json.loads(line), model, gate)
                except Exception as exc:  # noqa: BLE001 - told to the caller
                    answer = {"error": f"{type(exc).__name__}: {exc}"}
                self.wfile.write(json.dumps(answer).encode() + b"\n")
                self.wfile.flush()

    return Handler


def _command(req: dict, model: Model, gate: Gate) -> dict:
    op = req.get("op")
    if op == "ping":
        return {"ok": True}
    if op == "counts":
        with gate.lock:
            return {"counts": dict(gate.counts)}
    if op == "arm":
        gate.arm(req["kind"], req["n"], req.get("match", "*"), req.get("mode", "block"))
        return {"ok": True}
    if op == "freeze":
        gate.freeze()
        return {"ok": True}
    if op == "status":
        with gate.lock:
            return {
                "frozen": gate.frozen_at,
                "blocked": gate.blocked,
                "armed": gate.armed,
                "dead": model.dead,
            }
    if op == "drop":
        gate.freeze("drop")
        report = model.drop(int(req.get("seed", 0)))
        gate.released.set()
        return {"report": dataclasses.asdict(report)}
    raise ValueError(f"unknown op {op!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("backing")
    ap.add_argument("mountpoint")
    ap.add_argument("--control", required=True, help="Unix socket for the control commands")
    ap.add_argument("--stash", help="where durable bytes without a durable name live")
    ap.add_argument("--torn", choices=TORN_MODES, default="none")
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    backing = os.path.abspath(args.backing)
    model = Model(backing, args.stash or backing.rstrip("/") + ".stash", args.torn)
    gate = Gate()
    if os.path.exists(args.control):
        os.unlink(args.control)
    control = _Control(args.control, _control_handler(model, gate))
    threading.Thread(target=control.serve_forever, name="control", daemon=True).start()
    try:
        _FUSE(
            VolatileFS(model, gate),
            args.mountpoint,
            foreground=True,
            debug=args.debug,
            allow_other=True,
            fsname="volatilefs",
        )
    finally:
        control.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
