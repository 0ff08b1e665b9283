"""The tests' hand on a volatile mount: start it, arm it, cut the power, take it away."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers import poll

REPO = Path(__file__).resolve().parents[2]


def fuse_missing() -> str | None:
    """Why no volatile mount can be made here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if os.geteuid() != 0:
        return "a FUSE mount with allow_other needs root here"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy cannot load libfuse3 ({exc}): make test-deps installs libfuse3-3"
    return None


class VolatileMount:
    """``volatilefs`` over ``backing`` at ``mountpoint``, run as a child process."""

    def __init__(self, backing: Path, mountpoint: Path, workdir: Path, torn: str = "none") -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.workdir = workdir
        self.torn = torn
        self.control = workdir / "volatilefs.sock"
        self.log_path = workdir / "volatilefs.log"
        self.proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._buf = b""

    def start(self, timeout: float = 30.0) -> VolatileMount:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.control.exists():
            self.control.unlink()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.powercut.volatilefs",
                str(self.backing),
                str(self.mountpoint),
                "--control",
                str(self.control),
                "--stash",
                str(self.workdir / "stash"),
                "--torn",
                self.torn,
            ],
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

        def mounted():
            if self.proc.poll() is not None:
                raise AssertionError(f"volatilefs exited {self.proc.returncode}: {self.log()}")
            return os.path.ismount(self.mountpoint) and self.control.exists()

        poll(mounted, timeout, what=f"volatilefs mounted on {self.mountpoint}")
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    # -- the control socket ---------------------------------------------------------------

    def call(self, timeout: float = 60.0, **req) -> dict:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX)
            self._sock.connect(str(self.control))
            self._buf = b""
        self._sock.settimeout(timeout)
        self._sock.sendall(json.dumps(req).encode() + b"\n")
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise AssertionError("volatilefs closed its control socket")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        answer = json.loads(line)
        if "error" in answer:
            raise AssertionError(f"volatilefs {req}: {answer['error']}")
        return answer

    def counts(self) -> dict[str, int]:
        return self.call(op="counts")["counts"]

    def arm(self, kind: str, n: int, match: str = "*", mode: str = "block") -> None:
        self.call(op="arm", kind=kind, n=n, match=match, mode=mode)

    def freeze(self) -> None:
        self.call(op="freeze")

    def status(self) -> dict:
        return self.call(op="status")

    def frozen(self) -> dict | None:
        return self.status()["frozen"]

    def drop(self, seed: int = 0) -> dict:
        """The power cut: what was not synced is gone from the backing folder."""
        return self.call(op="drop", seed=seed)["report"]

    # -- taking it away ---------------------------------------------------------------------

    def unmount(self, timeout: float = 30.0) -> None:
        """Switch off and unmount (what was not synced is lost, as by ``drop``) and
        wait for the process; a hung one is aborted through fusectl."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.call(op="drop", seed=0, timeout=10)  # releases any blocked caller
            except (OSError, AssertionError):
                pass
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        if self.is_mounted():
            # Not os.path.ismount: once dropped, every call (its lstat too) fails.
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._abort()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()
        self.proc = None

    def is_mounted(self) -> bool:
        where = str(self.mountpoint.resolve())
        with open("/proc/self/mounts", encoding="utf-8") as fh:
            return any(line.split()[1] == where for line in fh if len(line.split()) > 1)

    def _abort(self) -> None:
        """Cut a connection whose daemon does not answer (fusectl's abort file)."""
        where = str(self.mountpoint.resolve())
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 4 and fields[4] == where:
                    abort = Path(f"/sys/fs/fuse/connections/{fields[2].split(':')[1]}/abort")
                    if abort.exists():
                        abort.write_text("1")
