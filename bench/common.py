"""Shared bench tools: a pacsbox daemon, an Orthanc, timed DCMTK commands.

The daemon and Orthanc run as real processes on free loopback ports, exactly
as a workstation sees them; every figure is the wall time of a DCMTK tool
(its own start and association included), so pacsbox and Orthanc are
measured the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers import DCMTK_ENV, Server, cli, free_port, poll, write_config  # noqa: E402

WORK = ROOT / "bench" / "work"
SPENT = WORK / "spent"

__all__ = [
    "DCMTK_ENV",
    "WORK",
    "Orthanc",
    "Server",
    "cli",
    "dir_size",
    "free_port",
    "median_ms",
    "poll",
    "retire",
    "timed",
    "write_config",
]


def retire(folder: Path) -> None:
    """Give back a finished run's disk space now, its inodes only when the bench ends.

    On an ext4 without a journal (these VMs) a new file's inode is found by
    scanning past every inode of its block group freed in the last 1-5
    minutes: deleting the 2,000 files of one run made each file the next run
    created cost ~0.2 ms more CPU (7 -> 23 % of a run in ``perf``), whichever
    server ran next. Truncated files keep their inodes until ``clear_spent``.
    """
    if not folder.exists():
        return
    for p in folder.rglob("*"):
        if p.is_file() and not p.is_symlink():
            os.truncate(p, 0)
    SPENT.mkdir(parents=True, exist_ok=True)
    folder.rename(SPENT / f"{folder.name}-{time.time_ns()}")


def clear_spent() -> None:
    shutil.rmtree(SPENT, ignore_errors=True)


def timed(args: list, *, check: bool = True) -> tuple[float, str]:
    """Run a command; (seconds, output)."""
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, env=DCMTK_ENV, timeout=600)
    dt = time.perf_counter() - t0
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {out[-2000:]}")
    return dt, out


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Orthanc:
    """Orthanc with its own configuration in ``folder`` (storage kept between runs)."""

    def __init__(
        self,
        folder: Path,
        modalities: dict[str, tuple[str, int]],
        aet: str = "ORTHANC",
        overrides: dict | None = None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.http = free_port()
        self.dicom = free_port()
        self.aet = aet
        cfg = {
            "Name": "pacsbox-bench",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "HttpPort": self.http,
            "DicomPort": self.dicom,
            "DicomAet": aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomModalities": {k.lower(): [k, h, p] for k, (h, p) in modalities.items()},
            "Plugins": [],
            "StableAge": 1,
            "StorageCompression": False,
            "ConcurrentJobs": 2,
            "DicomThreadsCount": 4,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
            "SyncStorageArea": False,
        }
        cfg.update(overrides or {})
        (folder / "orthanc.json").write_text(json.dumps(cfg, indent=1))
        self.log = open(folder / "orthanc.log", "ab")
        self.proc = subprocess.Popen(
            ["Orthanc", str(folder / "orthanc.json")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=DCMTK_ENV,  # Orthanc speaks DICOM through DCMTK: Nagle off, as for the SCUs
        )
        poll(self._ready, 120, what="Orthanc to answer")

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited; see {self.folder / 'orthanc.log'}")
        try:
            return self.get("/system")
        except OSError:
            return None

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=60) as r:
            return json.loads(r.read())

    def post_file(self, data: bytes) -> None:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http}/instances", data=data, method="POST"
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()

    def count(self) -> int:
        return int(self.get("/statistics")["CountInstances"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default
