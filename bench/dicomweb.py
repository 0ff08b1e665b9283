"""DICOMweb benchmark: pacsbox against Orthanc + its DICOMweb plugin, same data, same run.

Both servers run as real processes on loopback and are asked the same HTTP
requests (a new connection each, HTTP Basic for pacsbox, nothing for Orthanc):

- WADO-RS retrieval of a 500-image study of 0.5 MB images (multipart, every
  byte read by the client); target at least 1.5x Orthanc;
- ``/metadata`` of that 500-image series: pacsbox cold (its per-series cache
  removed before each request, as a first viewer after ingest would find it
  without the warmer) and warm; target warm under 300 ms and at least 5x
  Orthanc;
- STOW-RS of 500 small images in one request, fresh UIDs each run; target at
  least 1.0x Orthanc;
- QIDO-RS study searches on both over the 500-image study, and on pacsbox over
  the 1,000,000-instance index of ``bench/web.py`` (the filler rows are made
  with bulk SQL; Orthanc cannot be filled that way); target p95 under 50 ms;
- the OHIF viewer's time from opening the study URL in headless Chromium
  (software WebGL) to the first rendered image of the 500-image series, with
  an empty browser cache and with the viewer's files cached; target under 3 s.

Writes ``bench/results/dicomweb.json`` through ``bench.run``.
"""

from __future__ import annotations

import http.client
import shutil
import statistics
import sys
import time
import uuid
from base64 import b64encode
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import WORK, Orthanc, Server, cli, env_int, free_port, poll, write_config  # noqa: E402
from bench.retrieve import IMAGES, SERIES_UID, STUDY_UID, make_files, storescu  # noqa: E402

ORTHANC_DICOMWEB = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
PASSWORD = "bench password 1"
USER = "bench"
STOW_IMAGES = 500
DICOM_PARTS = 'multipart/related; type="application/dicom"'
QIDO = {
    "patient_name_wildcard": "/studies?PatientName=PATIENT123*",
    "patient_id": "/studies?PatientID=P0001234",
    "date_range_first_100": "/studies?StudyDate=20100101-20101231&limit=100",
    "all_first_100": "/studies?limit=100",
}
QIDO_SMALL = {
    "study_by_uid": f"/studies?StudyInstanceUID={STUDY_UID}",
    "patient_name_wildcard": "/studies?PatientName=RETRIEVE*",
    "instances_of_series": f"/studies/{STUDY_UID}/series/{SERIES_UID}/instances",
}


def _stats(times: list[float]) -> dict:
    times = sorted(times)
    p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
    return {
        "median_ms": round(statistics.median(times) * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
        "runs": len(times),
    }


class Http:
    """One server's DICOMweb root; every request on a new connection, as a viewer's first."""

    def __init__(self, port: int, root: str, auth: tuple[str, str] | None = None) -> None:
        self.port, self.root = port, root.rstrip("/")
        self.headers = {}
        if auth:
            self.headers["Authorization"] = "Basic " + b64encode(":".join(auth).encode()).decode()

    def request(self, method: str, path: str, body: bytes | None = None, **headers: str):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        conn.request(method, self.root + path, body, {**self.headers, **headers})
        r = conn.getresponse()
        size = 0
        while chunk := r.read(1 << 20):
            size += len(chunk)
        conn.close()
        if r.status not in (200, 202):
            raise RuntimeError(f"{method} {path}: HTTP {r.status}")
        return r.status, size

    def timed(self, path: str, runs: int, before=None, **headers: str) -> dict:
        self.request("GET", path, **headers)  # warm-up
        out, size = [], 0
        for _ in range(runs):
            if before is not None:
                before()
            t0 = time.perf_counter()
            _, size = self.request("GET", path, **headers)
            out.append(time.perf_counter() - t0)
        return {**_stats(out), "bytes": size}


def stow_body(run: int, count: int = STOW_IMAGES) -> tuple[bytes, str]:
    """``count`` small CT images with UIDs of their own, as one multipart body."""
    from tests.synth import ROOT as UID_ROOT
    from tests.synth import make_instance

    boundary = uuid.uuid4().hex
    study = f"{UID_ROOT}88.{run}.{time.time_ns() % 10**9}"
    parts = []
    for k in range(count):
        data = make_instance(study_uid=study, series_uid=study + ".1",
                             sop_uid=f"{study}.2.{k}", instance_number=k + 1)  # fmt: skip
        parts.append(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"{DICOM_PARTS}; boundary={boundary}"


def stow(server: Http, runs: int, key: int) -> dict:
    out = []
    for run in range(runs):
        body, ctype = stow_body(key * 100 + run)
        t0 = time.perf_counter()
        server.request("POST", "/studies", body, **{"Content-Type": ctype,
                                                     "Accept": "application/dicom+json"})  # fmt: skip
        out.append(time.perf_counter() - t0)
    figures = _stats(out)
    figures["images_per_s"] = round(STOW_IMAGES / (figures["median_ms"] / 1000), 1)
    return figures


def measure(server: Http, runs: int, *, cold=None) -> dict:
    study = f"/studies/{STUDY_UID}"
    series = f"{study}/series/{SERIES_UID}"
    out: dict = {}
    wado = server.timed(study, max(3, runs // 3), Accept=DICOM_PARTS)
    wado["images_per_s"] = round(IMAGES / (wado["median_ms"] / 1000), 1)
    out["wado_rs_study"] = wado
    if cold is not None:
        out["metadata_series_cold"] = server.timed(series + "/metadata", runs, before=cold)
    out["metadata_series"] = server.timed(series + "/metadata", runs)
    out["qido_small"] = {k: server.timed(q, runs) for k, q in QIDO_SMALL.items()}
    return out


def qido_million(runs: int) -> dict:
    """pacsbox alone: study searches over bench/web.py's 1,000,000-instance index."""
    from bench import web as webbench
    from pacsbox.archive import Archive
    from pacsbox.db.models import Instance
    from pacsbox.web import users
    from pacsbox.web.server import start_web

    cfg = webbench.ensure_index()
    archive = Archive(cfg)
    users.set_password("root", PASSWORD)
    handle = start_web(cfg, archive, port=0)
    try:
        client = Http(handle.port, "/dicom-web", ("root", PASSWORD))
        figures: dict = {"instances": Instance.select().count()}
        figures.update({k: client.timed(q, runs) for k, q in QIDO.items()})
    finally:
        handle.stop()
        archive.close()
    return figures


def viewer_first_image(base: str, study: str, profile: Path) -> dict:
    """Seconds from opening the viewer's study URL (logged in) to its first drawn image,
    with an empty browser cache and again with the viewer's files cached."""
    from pacsbox.config import DEFAULT_VIEWER_DIR
    from pacsbox.web.viewer_fetch import installed
    from tests.helpers import poll as wait
    from tests.interop.chromium import GREY_LEVELS, WEBGL, start_chromium

    if not installed(DEFAULT_VIEWER_DIR):
        return {"skipped": "the viewer is not installed (make viewer)"}
    from selenium.webdriver.common.by import By

    shutil.rmtree(profile, ignore_errors=True)
    b = start_chromium(profile, *WEBGL)
    out: dict = {}
    try:
        b.get(base + "/login")
        b.find_element(By.ID, "name").send_keys(USER)
        b.find_element(By.ID, "password").send_keys(PASSWORD)
        b.find_element(By.ID, "login").click()
        wait(lambda: "/login" not in b.current_url, 30, what="the login")
        for run in ("cold_s", "warm_s"):
            b.get("about:blank")
            t0 = time.perf_counter()
            b.get(f"{base}/viewer/viewer?StudyInstanceUIDs={study}")
            wait(lambda: b.execute_script(GREY_LEVELS) > 32, 120, interval=0.05,
                 what="the viewer's first image")  # fmt: skip
            out[run] = round(time.perf_counter() - t0, 2)
    finally:
        b.quit()
    return out


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else 0.0


def main() -> dict:
    runs = env_int("DICOMWEB_RUNS", 21)
    work = WORK / "dicomweb"
    files = make_files(WORK / "retrieve" / "files")
    result: dict = {"images": IMAGES, "image_bytes": files[0].stat().st_size, "runs": runs}
    box = work / "box"
    marker = box / "stored.ok"
    web_port = free_port()
    if not marker.exists():
        shutil.rmtree(box, ignore_errors=True)
    ini = write_config(box, SyncWrites="no", WebPort=web_port)
    cli(ini, "ae", "add", "STORESCU", "--host", "127.0.0.1")
    cli(ini, "user", "add", USER, "--privilege=view", "--privilege=import", check=False)
    cli(ini, "user", "passwd", USER, input=PASSWORD + "\n")
    srv = Server(ini).start()
    try:
        if not marker.exists():
            storescu(srv.port, srv.ae_title, WORK / "retrieve" / "files")
            marker.write_text("ok\n")
        pacsbox = Http(web_port, "/dicom-web", (USER, PASSWORD))
        cache = box / "dicomweb-metadata"
        print("dicomweb bench: pacsbox, one study of 500 images of 0.5 MB", flush=True)
        result["pacsbox"] = measure(
            pacsbox, runs, cold=lambda: [p.unlink() for p in cache.glob("*.json")]
        )
        result["pacsbox"]["stow_500_small"] = stow(pacsbox, 3, 1)
        print("dicomweb bench: the viewer's first image of the 500-image series", flush=True)
        result["viewer_first_image"] = viewer_first_image(
            f"http://127.0.0.1:{web_port}", STUDY_UID, work / "chromium-profile"
        )
    finally:
        srv.stop()
    orthanc = Orthanc(
        work / "orthanc",
        {"STORESCU": ("127.0.0.1", 104)},
        overrides={"Plugins": [ORTHANC_DICOMWEB],
                   "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}},
    )  # fmt: skip
    try:
        if orthanc.count() < IMAGES:
            storescu(orthanc.dicom, orthanc.aet, WORK / "retrieve" / "files")
            poll(lambda: orthanc.count() >= IMAGES, 120, what="Orthanc to hold the study")
        peer = Http(orthanc.http, "/dicom-web")
        print("dicomweb bench: Orthanc + DICOMweb plugin, the same study", flush=True)
        result["orthanc"] = measure(peer, runs)
        result["orthanc"]["stow_500_small"] = stow(peer, 3, 2)
    finally:
        orthanc.stop()
    print("dicomweb bench: QIDO-RS over 1,000,000 instances (pacsbox)", flush=True)
    result["pacsbox_qido_1m"] = qido_million(runs * 3)
    ours, theirs = result["pacsbox"], result["orthanc"]
    result["wado_rs_vs_orthanc"] = _ratio(
        ours["wado_rs_study"]["images_per_s"], theirs["wado_rs_study"]["images_per_s"]
    )
    result["metadata_vs_orthanc"] = _ratio(
        theirs["metadata_series"]["median_ms"], ours["metadata_series"]["median_ms"]
    )
    result["metadata_cold_vs_orthanc"] = _ratio(
        theirs["metadata_series"]["median_ms"], ours["metadata_series_cold"]["median_ms"]
    )
    result["stow_vs_orthanc"] = _ratio(
        ours["stow_500_small"]["images_per_s"], theirs["stow_500_small"]["images_per_s"]
    )
    result["targets"] = {
        "wado_rs_vs_orthanc": 1.5, "metadata_ms": 300, "metadata_vs_orthanc": 5,
        "stow_vs_orthanc": 1.0, "qido_1m_p95_ms": 50, "viewer_first_image_s": 3,
    }  # fmt: skip
    for k in ("wado_rs_vs_orthanc", "metadata_vs_orthanc", "metadata_cold_vs_orthanc",
              "stow_vs_orthanc"):  # fmt: skip
        print(f"  {k}: {result[k]}x")
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=1))
