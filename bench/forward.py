"""Forward of one 500-image study (0.5 MB images) to DCMTK storescp, in one run:

- pacsbox: ``pacsbox forward --study UID --to STORESCP --wait`` against the
  running daemon, from the command to the job's end (the last response);
- pacsbox's own C-MOVE of the same study to the same storescp (movescu);
- Orthanc: its REST ``/modalities/storescp/store`` of the same study, as a
  job, from the request to the job's success.

Targets (issue 17): pacsbox forward at least 0.9x its own C-MOVE, and at
least 1.5x Orthanc's forward. ``pacsbox_forward_job_only`` is the job's own
run in the daemon (the queue row's started to finished): the same sending
without the command's interpreter start. Uses the retrieve bench's study and box.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
import urllib.request

from bench.common import WORK, Orthanc, env_int, median_ms, timed
from bench.retrieve import IMAGES, STUDY_UID, StoreSCP, _commands, make_files, storescu, study_box
from tests.helpers import PACSBOX, free_port, poll


def _pacsbox_forward(ini, runs: int) -> tuple[list[float], list[float]]:
    """(command to last response, the job's own run in the daemon) per run, seconds."""
    out, jobs = [], []
    for _ in range(runs):
        seconds, text = timed([PACSBOX, "forward", "--study", STUDY_UID, "--to", "STORESCP",
                               "--wait", "--config", str(ini)])  # fmt: skip
        if ": done: " not in text:
            raise RuntimeError(f"pacsbox forward did not end done:\n{text[-1500:]}")
        out.append(seconds)
        job_id = int(text.split("job ", 1)[1].split(":", 1)[0])
        listed = subprocess.run([PACSBOX, "queue", "--json", "--config", str(ini)],
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
        job = next(j for j in json.loads(listed) if j["id"] == job_id)
        ran = dt.datetime.fromisoformat(job["finished"]) - dt.datetime.fromisoformat(job["started"])
        jobs.append(ran.total_seconds())
    return out, jobs


def _orthanc_forward(orthanc: Orthanc, runs: int) -> list[float]:
    ids = _orthanc_study_id(orthanc)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        job = _post(orthanc, "/modalities/storescp/store",
                    {"Resources": [ids], "Synchronous": False})  # fmt: skip
        poll(lambda job=job: orthanc.get(f"/jobs/{job['ID']}")["State"] in ("Success", "Failure"),
             600, interval=0.01, what="Orthanc's store job")  # fmt: skip
        state = orthanc.get(f"/jobs/{job['ID']}")["State"]
        if state != "Success":
            raise RuntimeError(f"Orthanc's forward ended {state}")
        out.append(time.perf_counter() - t0)
    return out


def _orthanc_study_id(orthanc: Orthanc) -> str:
    found = _post(
        orthanc, "/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": STUDY_UID}}
    )
    return found[0]


def _post(orthanc: Orthanc, path: str, body: dict):
    req = urllib.request.Request(f"http://127.0.0.1:{orthanc.http}{path}",
                                 data=json.dumps(body).encode(), method="POST")  # fmt: skip
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def _rate(samples: list[float]) -> dict:
    ms = median_ms(samples)
    return {"median_ms": ms, "images_per_s": round(IMAGES / (ms / 1000), 1)}


def main() -> dict:
    runs = env_int("FORWARD_RUNS", 5)
    work = WORK / "retrieve"  # the retrieve bench's study, stored once
    make_files(work / "files")
    scp_port = free_port()
    scp = StoreSCP(scp_port)
    result: dict = {"images": IMAGES, "runs": runs}
    ini, srv = study_box(work, scp_port)
    try:
        command, job = _pacsbox_forward(ini, runs)
        result["pacsbox_forward"] = _rate(command)
        result["pacsbox_forward_job_only"] = _rate(job)
        move = _commands(srv.port, srv.ae_title)["c_move"]
        result["pacsbox_c_move"] = _rate([timed(move)[0] for _ in range(runs)])
    finally:
        srv.stop()
    orthanc = Orthanc(work / "orthanc", {"STORESCP": ("127.0.0.1", scp_port)})
    try:
        if orthanc.count() < IMAGES:
            storescu(orthanc.dicom, orthanc.aet, work / "files")
            poll(lambda: orthanc.count() >= IMAGES, 120, what="Orthanc to hold the study")
        result["orthanc_forward"] = _rate(_orthanc_forward(orthanc, runs))
    finally:
        orthanc.stop()
        scp.stop()
    fwd = result["pacsbox_forward"]["images_per_s"]
    result["forward_vs_own_c_move"] = round(fwd / result["pacsbox_c_move"]["images_per_s"], 2)
    result["forward_vs_orthanc"] = round(fwd / result["orthanc_forward"]["images_per_s"], 2)
    result["forward_job_vs_own_c_move"] = round(
        result["pacsbox_forward_job_only"]["images_per_s"]
        / result["pacsbox_c_move"]["images_per_s"],
        2,
    )
    for k in ("pacsbox_forward", "pacsbox_forward_job_only", "pacsbox_c_move", "orthanc_forward"):
        print(
            f"  {k:24} {result[k]['median_ms']:8.1f} ms  {result[k]['images_per_s']:7.1f} images/s"
        )
    print(f"  forward / own C-MOVE = {result['forward_vs_own_c_move']}x (target 0.9x); "
          f"forward / Orthanc = {result['forward_vs_orthanc']}x (target 1.5x); the job alone "
          f"(no CLI start) / own C-MOVE = {result['forward_job_vs_own_c_move']}x")  # fmt: skip
    return result
