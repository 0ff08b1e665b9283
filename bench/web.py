"""Web benchmark: the study search page and a rendered 512x512 image at 1,000,000 instances.

``main() -> dict`` fills (or reuses) an index of 1,000,000 instances under
``bench/work/web/`` with bulk SQL (10,000 patients x 2 studies x 2 series x
25 instances; the filler rows have no files), stores one real 512x512 CT
through the archive, serves the web page on a free port with the threaded
server the daemon uses, and times real HTTP requests with a logged-in
session. Writes ``bench/results/web.json`` and prints the figures.

Targets (issue 5): search page p95 < 150 ms, rendered image p95 < 100 ms.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import statistics
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pacsbox import config  # noqa: E402
from pacsbox.archive import Archive  # noqa: E402
from pacsbox.db.models import Instance, Patient, Series, Study  # noqa: E402
from pacsbox.web import render, users  # noqa: E402
from pacsbox.web.server import start_web  # noqa: E402

WORK = ROOT / "bench" / "work" / "web"
RESULTS = ROOT / "bench" / "results" / "web.json"
PATIENTS, STUDIES_PER, SERIES_PER, INSTANCES_PER = 10_000, 2, 2, 25
TOTAL = PATIENTS * STUDIES_PER * SERIES_PER * INSTANCES_PER
PASSWORD = "bench password 1"
RUNS = 60


def _template(db: sqlite3.Connection, table: str, pk: int) -> tuple[list[str], list]:
    db.row_factory = None
    cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
    row = list(db.execute(f"SELECT * FROM {table} WHERE id = ?", (pk,)).fetchone())
    return cols, row


def fill(cfg: config.Config) -> None:
    """Bulk-insert the filler rows by copying one template row per table (every column set)."""
    from tests.integration.web.conftest import make_dicom

    archive = Archive(cfg)
    res = archive.store(make_dicom(patient_name="TEMPLATE^ROW", rows=8, columns=8))
    st = Study.get(Study.study_instance_uid == res.study_instance_uid)
    ids = (st.patient_id, st.id, Series.get(Series.study == st.id).id,
           Instance.get(Instance.sop_instance_uid == res.sop_instance_uid).id)  # fmt: skip
    archive.close()
    db = sqlite3.connect(cfg.database_url[len("sqlite:///") :])
    db.execute("PRAGMA synchronous=OFF")
    tpl = {
        t: _template(db, t, pk)
        for t, pk in zip(("patient", "study", "series", "instance"), ids, strict=True)
    }
    db.execute("DELETE FROM instance")
    db.execute("DELETE FROM series")
    db.execute("DELETE FROM study")
    db.execute("DELETE FROM patient")

    def put(table: str, rows: list[dict]) -> None:
        cols, base = tpl[table]
        idx = {c: i for i, c in enumerate(cols)}
        out = []
        for r in rows:
            v = list(base)
            for k, val in r.items():
                v[idx[k]] = val
            out.append(v)
        marks = ",".join("?" * len(cols))
        db.executemany(f"INSERT INTO {table} ({','.join(cols)}) VALUES ({marks})", out)

    t0 = time.monotonic()
    study_pk = series_pk = inst_pk = 0
    for chunk in range(0, PATIENTS, 1000):
        pats, studies, series, insts = [], [], [], []
        for p in range(chunk + 1, chunk + 1001):
            name = f"PATIENT{p % 997:03d}^GIVEN{p:06d}"
            pats.append({"id": p, "patient_id": f"P{p:07d}", "patient_name": name,
                         "patient_name_ci": name.upper(), "num_studies": STUDIES_PER,
                         "num_series": STUDIES_PER * SERIES_PER,
                         "num_instances": STUDIES_PER * SERIES_PER * INSTANCES_PER,
                         "private": 1})  # fmt: skip
            for _s in range(STUDIES_PER):
                study_pk += 1
                year = 2000 + study_pk % 25
                date = f"{year}{1 + study_pk % 12:02d}{1 + study_pk % 28:02d}"
                studies.append({"id": study_pk, "patient_id": p,
                                "study_instance_uid": f"1.2.826.0.1.99.1.{study_pk}",
                                "study_date": date, "accession_number": f"A{study_pk:08d}",
                                "study_id": str(study_pk), "study_description": "BENCH STUDY",
                                "folder": f"bench/{study_pk}", "num_series": SERIES_PER,
                                "num_instances": SERIES_PER * INSTANCES_PER, "private": 1,
                                "referring_physician": f"DOC{study_pk % 50}^REF"})  # fmt: skip
                for _e in range(SERIES_PER):
                    series_pk += 1
                    series.append({"id": series_pk, "study_id": study_pk,
                                   "series_instance_uid": f"1.2.826.0.1.99.2.{series_pk}",
                                   "series_date": date, "num_instances": INSTANCES_PER})  # fmt: skip
                    for n in range(INSTANCES_PER):
                        inst_pk += 1
                        insts.append({"id": inst_pk, "series_id": series_pk,
                                      "sop_instance_uid": f"1.2.826.0.1.99.3.{inst_pk}",
                                      "instance_number": n + 1,
                                      "file_name": f"{inst_pk}.dcm"})  # fmt: skip
        put("patient", pats)
        put("study", studies)
        put("series", series)
        put("instance", insts)
        db.commit()
        print(f"  filled {inst_pk:,} instances ({time.monotonic() - t0:.0f} s)", flush=True)
    db.execute("ANALYZE")
    db.commit()
    db.close()


def _stats(times: list[float]) -> dict:
    times = sorted(times)
    p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
    return {"median_ms": round(statistics.median(times) * 1000, 2), "p95_ms": round(p95 * 1000, 2),
            "runs": len(times)}  # fmt: skip


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie = ""

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Cookie": self.cookie} if self.cookie else {}
        data = None
        if body is not None:
            data = urllib.parse.urlencode(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, data, headers)
        r = conn.getresponse()
        payload = r.read()
        hdrs = dict(r.getheaders())
        conn.close()
        return r.status, payload, hdrs

    def login(self, name: str) -> None:
        status, _, hdrs = self.request("POST", "/login", {"name": name, "password": PASSWORD})
        assert status == 303, status
        self.cookie = hdrs["Set-Cookie"].split(";")[0]

    def time(self, path: str, runs: int = RUNS, before=None) -> dict:
        self.request("GET", path)  # warm-up
        out = []
        for _ in range(runs):
            if before:
                before()
            t = time.perf_counter()
            status, payload, _ = self.request("GET", path)
            out.append(time.perf_counter() - t)
            assert status == 200, (path, status, payload[:200])
        return _stats(out)


def ensure_index() -> config.Config:
    """The bench's configuration, its index filled with the 1,000,000 rows (kept between runs)."""
    WORK.mkdir(parents=True, exist_ok=True)
    cfg = config.load(None).replace(DataDirectory=str(WORK), SyncWrites=False, WebPort=0)
    cfg = cfg.replace(ArchiveDirectory=str(WORK / "archive"))
    marker = WORK / "filled.json"
    if not (marker.exists() and json.loads(marker.read_text()).get("instances") == TOTAL):
        for f in WORK.glob("pacsbox.db*"):
            f.unlink()
        print(f"filling an index of {TOTAL:,} instances in {WORK} ...", flush=True)
        fill(cfg)
        marker.write_text(json.dumps({"instances": TOTAL}))
    return cfg


def main() -> dict:
    cfg = ensure_index()
    from tests.integration.web.conftest import make_dicom

    archive = Archive(cfg)
    real = archive.store(
        make_dicom(patient_name="BENCH^IMAGE", rows=512, columns=512, study_date="20991231")
    )
    users.set_password("root", PASSWORD)
    try:
        users.add_user("physician", [], PASSWORD, first_name="REF", last_name="DOC7")
    except Exception:  # noqa: BLE001 - already there from an earlier run
        users.set_password("physician", PASSWORD)
    instances = Instance.select().count()
    handle = start_web(cfg, archive, port=0)
    try:
        root = Client(handle.port)
        root.login("root")
        doc = Client(handle.port)
        doc.login("physician")
        _, page, _ = root.request("GET", "/studies.json")
        cursor = json.loads(page)["next"]
        img = f"/instances/{real.sop_instance_uid}/image.jpg"
        results = {
            "instances": instances,
            "studies": Study.select().count(),
            "patients": Patient.select().count(),
            "study_search_page": root.time("/studies"),
            "study_search_page_json": root.time("/studies.json"),
            "study_search_name_wildcard": root.time("/studies?patient_name=PATIENT123*"),
            "study_search_date_range": root.time("/studies?study_date=20100101-20101231"),
            "study_search_next_page": root.time(f"/studies?after={cursor}"),
            "study_search_private_rules_user": doc.time("/studies"),
            "rendered_512_jpeg_cold": root.time(img, before=render._CACHE.clear),
            "rendered_512_jpeg_warm": root.time(img + "?wc=1000&ww=2000"),
            "wado_512_jpeg": root.time(
                "/wado?requestType=WADO&studyUID=" + real.study_instance_uid
                + "&seriesUID=" + real.series_instance_uid
                + "&objectUID=" + real.sop_instance_uid, before=render._CACHE.clear),
            "targets_ms": {"study_search_page_p95": 150, "rendered_image_p95": 100},
        }  # fmt: skip
    finally:
        handle.stop()
        archive.close()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
