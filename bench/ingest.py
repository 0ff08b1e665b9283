"""Ingest benchmark (issue 2): DCMTK storescu into pacsbox, storescp-to-disk and Orthanc.

Corpus (made once with pydicom, cached in bench/work/corpus): 2,000 CT images
of 512x512x16 bit (~0.5 MB) and 2,000 small 64x64 images. Each target gets
a fresh storage folder per run; storescu runs over 1 association and over 4
in parallel. pacsbox runs with durable writes (fsync + index commit before
each response). Figures are medians over BENCH_REPS runs (default 3).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench.common import (
    DCMTK_ENV,
    WORK,
    Orthanc,
    Server,
    cli,
    env_int,
    free_port,
    poll,
    retire,
    write_config,
)
from tests.synth import make_instance

CORPUS = WORK / "corpus"
N_CT = env_int("BENCH_INGEST_CT", 2000)
N_SMALL = env_int("BENCH_INGEST_SMALL", 2000)
REPS = env_int("BENCH_REPS", 3)


def corpus(kind: str, n: int, rows: int) -> list[Path]:
    folder = CORPUS / f"{kind}-{n}"
    files = sorted(folder.glob("*.dcm")) if folder.is_dir() else []
    if len(files) == n:
        return files
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    per_series = 500
    code = {"ct": 1, "small": 2}.get(kind, 3)
    study = f"1.2.826.0.1.3680043.10.1395.8.{code}.{n}"
    for i in range(n):
        data = make_instance(
            patient_id=f"BENCH-{kind}",
            study_uid=study,
            series_uid=f"{study}.{i // per_series}",
            instance_number=i + 1,
            rows=rows,
            columns=rows,
            modality="CT",
            pixel_seed=i + 1,
        )
        (folder / f"{i:06d}.dcm").write_bytes(data)
    return sorted(folder.glob("*.dcm"))


def big_corpus(copies: int) -> list[Path]:
    """``copies`` x the CT corpus (5 x 2,000 x 0.5 MB = 5 GB), each copy with new
    SOP Instance UIDs, made by patching the bytes (seconds, not pydicom minutes)."""
    import pydicom

    base = corpus("ct", N_CT, 512)
    folder = CORPUS / f"ct-x{copies}-{len(base)}"
    files = sorted(folder.glob("*.dcm")) if folder.is_dir() else []
    if len(files) == copies * len(base):
        return files
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in base:
        data = path.read_bytes()
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID).encode()
        for c in range(copies):
            new = uid[:-1] + str((int(uid[-1:]) + c + 1) % 10).encode()  # same length
            (folder / f"{c}-{path.name}").write_bytes(data.replace(uid, new))
    return sorted(folder.glob("*.dcm"))


def _proc_figures(pid: int) -> tuple[float, int]:
    """(CPU seconds of the process and its children, peak RSS in bytes)."""
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
        cpu = 0.0
        for q in procs:
            t = q.cpu_times()
            cpu += t.user + t.system + t.children_user + t.children_system
        hwm = 0
        for q in procs:
            with open(f"/proc/{q.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        hwm += int(line.split()[1]) * 1024
        return cpu, hwm
    except (psutil.Error, OSError):
        return 0.0, 0


def send(port: int, aec: str, files: list[Path], parallel: int) -> float:
    groups = [files[i::parallel] for i in range(parallel)]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["storescu", "-aet", "BENCH", "-aec", aec, "127.0.0.1", str(port), *map(str, g)],
            env=DCMTK_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for g in groups
    ]
    for p in procs:
        out, _ = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(
                f"storescu exited {p.returncode}: {out.decode(errors='replace')[-500:]}"
            )
    return time.perf_counter() - t0


class PacsboxTarget:
    name = "pacsbox"

    def __init__(self, **settings) -> None:
        self.settings = settings

    def start(self, folder: Path) -> tuple[int, str, int]:
        ini = write_config(folder, **self.settings)
        cli(ini, "ae", "add", "BENCH")
        self.server = Server(ini).start()
        return self.server.port, self.server.ae_title, self.server.proc.pid

    def stop(self) -> None:
        self.server.stop()


class StorescpTarget:
    name = "storescp-disk"

    def start(self, folder: Path) -> tuple[int, str, int]:
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.proc = subprocess.Popen(
            ["storescp", "--fork", "-od", str(folder), "-aet", "STORESCP", str(port)],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        poll(
            lambda: (
                subprocess.run(
                    ["echoscu", "-aec", "STORESCP", "127.0.0.1", str(port)],
                    capture_output=True,
                    env=DCMTK_ENV,
                ).returncode
                == 0
            ),
            what="storescp",
        )
        return port, "STORESCP", self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class OrthancTarget:
    """Orthanc as shipped: SyncStorageArea (fsync of every file) is its default."""

    name = "orthanc"

    def __init__(self, sync: bool = True) -> None:
        self.sync = sync
        if not sync:
            self.name = "orthanc-nosync"

    def start(self, folder: Path) -> tuple[int, str, int]:
        self.orthanc = Orthanc(folder, {}, overrides={"SyncStorageArea": self.sync})
        return self.orthanc.dicom, self.orthanc.aet, self.orthanc.proc.pid

    def stop(self) -> None:
        self.orthanc.stop()


def measure(target, files: list[Path], parallel: int, reps: int = REPS) -> dict:
    rates, cpus, rss = [], [], []
    size = sum(f.stat().st_size for f in files)
    for rep in range(reps):
        folder = WORK / "ingest" / f"{target.name}-{parallel}-{rep}"
        shutil.rmtree(folder, ignore_errors=True)
        port, aec, pid = target.start(folder)
        try:
            cpu0, _ = _proc_figures(pid)
            secs = send(port, aec, files, parallel)
            cpu1, hwm = _proc_figures(pid)
        finally:
            target.stop()
            retire(folder)
        rates.append(len(files) / secs)
        cpus.append(cpu1 - cpu0)
        rss.append(hwm)
    med = statistics.median(rates)
    return {
        "instances_per_s": round(med, 1),
        "MB_per_s": round(med * size / len(files) / 1e6, 1),
        "server_cpu_s": round(statistics.median(cpus), 2),
        "peak_rss_MB": round(max(rss) / 1e6, 1),
        "runs": [round(r, 1) for r in rates],
    }


def main() -> dict:
    sets = {
        "ct_512x512": corpus("ct", N_CT, 512),
        "small_64x64": corpus("small", N_SMALL, 64),
    }
    targets = [PacsboxTarget(), StorescpTarget(), OrthancTarget(), OrthancTarget(sync=False)]
    out: dict = {
        "corpus": {
            k: {"files": len(v), "MB": round(sum(f.stat().st_size for f in v) / 1e6, 1)}
            for k, v in sets.items()
        }
    }
    for set_name, files in sets.items():
        res: dict = {}
        for parallel in (1, 4):
            for t in targets:
                res[f"{t.name}_{parallel}assoc"] = measure(t, files, parallel)
            ours = res[f"pacsbox_{parallel}assoc"]["instances_per_s"]
            for ref in ("storescp-disk", "orthanc", "orthanc-nosync"):
                theirs = res[f"{ref}_{parallel}assoc"]["instances_per_s"]
                res[f"ratio_vs_{ref}_{parallel}assoc"] = round(ours / theirs, 2) if theirs else None
        out[set_name] = res
    copies = env_int("BENCH_INGEST_BIG_COPIES", 5)
    if copies:
        big = big_corpus(copies)
        res = measure(PacsboxTarget(), big, 4, reps=1)
        res["GB"] = round(sum(f.stat().st_size for f in big) / 1e9, 2)
        out["pacsbox_5GB_4assoc"] = res
        print(f"  pacsbox, {res['GB']} GB over 4 associations: {res['instances_per_s']} images/s, "
              f"peak RSS {res['peak_rss_MB']} MB", flush=True)  # fmt: skip
    out["cpu_count"] = os.cpu_count()
    return out
