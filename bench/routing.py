"""Ingest while routing, and ingest beside a big queue (issue 17's benchmark).

2,000 small images (64x64) in 40 studies of 50, sent by storescu over 4
associations into a fresh pacsbox, three ways, interleaved rep by rep:

- plain: no route;
- routed: a route sends every study to DCMTK storescp (writing to disk) as
  soon as it is stable (StableStudySeconds = 1), so deliveries run during
  the ingest; the figure is the ingest rate, and the bench checks that every
  image reached storescp;
- big queue: the queue holds 100,000 finished and 10,000 pending jobs
  (waiting for tomorrow) before the ingest starts.

Targets: routed at least 0.8x plain; big queue within noise of plain.
"""

from __future__ import annotations

import datetime as dt
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench.common import (
    DCMTK_ENV,
    WORK,
    Server,
    cli,
    env_int,
    free_port,
    poll,
    retire,
    write_config,
)
from bench.ingest import send
from tests.synth import make_instance

N_STUDIES = env_int("BENCH_ROUTING_STUDIES", 40)
PER_STUDY = 50
REPS = env_int("BENCH_REPS", 3)
FINISHED = env_int("BENCH_QUEUE_FINISHED", 100_000)
PENDING = env_int("BENCH_QUEUE_PENDING", 10_000)
CORPUS = WORK / "corpus" / f"routed-{N_STUDIES}x{PER_STUDY}"


def corpus() -> list[Path]:
    files = sorted(CORPUS.glob("*.dcm")) if CORPUS.is_dir() else []
    if len(files) == N_STUDIES * PER_STUDY:
        return files
    shutil.rmtree(CORPUS, ignore_errors=True)
    CORPUS.mkdir(parents=True)
    for s in range(N_STUDIES):
        study = f"1.2.826.0.1.3680043.10.1395.8.7.{s + 1}"
        for i in range(PER_STUDY):
            data = make_instance(patient_id=f"ROUTE-{s}", study_uid=study,
                                 series_uid=f"{study}.1", instance_number=i + 1,
                                 rows=64, columns=64, pixel_seed=s * PER_STUDY + i + 1)  # fmt: skip
            (CORPUS / f"{s:03d}-{i:03d}.dcm").write_bytes(data)
    return sorted(CORPUS.glob("*.dcm"))


def _fill_queue(ini: Path) -> None:
    """100,000 finished and 10,000 pending jobs, written straight into the index."""
    from pacsbox.archive import Archive
    from pacsbox.config import load
    from pacsbox.db.commit import write_transaction
    from pacsbox.db.models import QueueJob, utcnow

    archive = Archive(load(ini))
    try:
        now = utcnow()
        later = now + dt.timedelta(days=1)
        common = {"destination": "FARAWAY", "payload": '{"studies": ["1.2.3"]}', "created": now,
                  "since": now, "label": "bench"}  # fmt: skip
        rows = [{**common, "kind": "forward", "state": "done", "finished": now}] * FINISHED
        rows += [{**common, "kind": "route", "state": "waiting", "next_attempt": later}] * PENDING
        with write_transaction():
            for start in range(0, len(rows), 2000):
                QueueJob.insert_many(rows[start : start + 2000]).execute()
    finally:
        archive.close()


class StoreSCP:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["storescp", "--fork", "-od", str(folder), "-aet", "STORESCP", str(self.port)],
            env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.3)

    def count(self) -> int:
        return sum(1 for p in self.folder.iterdir() if p.is_file())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _one(way: str, files: list[Path], rep: int) -> float:
    folder = WORK / "routing" / f"{way}-{rep}"
    shutil.rmtree(folder, ignore_errors=True)
    ini = write_config(folder / "box", StableStudySeconds=1)
    cli(ini, "ae", "add", "BENCH")
    scp = None
    if way == "routed":
        scp = StoreSCP(folder / "scp")
        cli(ini, "ae", "add", "STORESCP", "--host", "127.0.0.1", "--port", str(scp.port))
        cli(ini, "route", "add", "ALL", "--to", "STORESCP")
    if way == "big_queue":
        _fill_queue(ini)
    server = Server(ini).start()
    try:
        seconds = send(server.port, server.ae_title, files, 4)
        if scp is not None:
            poll(lambda: scp.count() >= len(files), 600, what="every routed image at storescp")
    finally:
        server.stop()
        if scp is not None:
            scp.stop()
        retire(folder)
    return len(files) / seconds


def main() -> dict:
    files = corpus()
    ways = ("plain", "routed", "big_queue")
    rates: dict[str, list[float]] = {w: [] for w in ways}
    for rep in range(REPS):
        for way in ways:
            rates[way].append(_one(way, files, rep))
    out: dict = {"images": len(files), "studies": N_STUDIES, "associations": 4, "reps": REPS}
    for way in ways:
        out[way] = {"instances_per_s": round(statistics.median(rates[way]), 1),
                    "runs": [round(r, 1) for r in rates[way]]}  # fmt: skip
    plain = out["plain"]["instances_per_s"]
    out["routed_vs_plain"] = round(out["routed"]["instances_per_s"] / plain, 2)
    out["big_queue_vs_plain"] = round(out["big_queue"]["instances_per_s"] / plain, 2)
    print(f"  routed / plain = {out['routed_vs_plain']}x (target 0.8x); "
          f"big queue / plain = {out['big_queue_vs_plain']}x (target: within noise)")  # fmt: skip
    return out
