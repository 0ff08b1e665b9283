"""Query benchmark (issue 3): findscu against 1,000,000 instances, and against Orthanc.

``main() -> dict`` fills (or reuses, from ``bench/work/query/``) an index of
1,000,000 instances: 50,000 patients x 2 studies x 2 series x 5 instances.
The first studies are stored as real files through the archive; the rest are
synthetic rows bulk-inserted with executemany in big transactions
(synchronous=OFF while filling), every column copied from a real row. Then a
real ``pacsbox serve`` answers DCMTK ``findscu`` (median of 20 runs, findscu
start and association included). Orthanc is filled with the same first
studies for a few minutes (``QUERY_ORTHANC_SECONDS``, default 150) and asked
the same queries.

Special studies sit at the start of the generator so both servers hold them:
20 SMITH patients (40 studies), 45 studies in March 1985 (a sparse month),
40 studies with a PT series. Sizes: ``QUERY_STUDIES`` (default 100,000).
"""

from __future__ import annotations

import io
import random
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    WORK,
    Orthanc,
    Server,
    cli,
    dir_size,
    env_int,
    median_ms,
    timed,
    write_config,
)

SERIES_PER, INSTANCES_PER = 2, 5
SAMPLE_STUDIES = 40  # stored as real files through the archive
RUNS = 20
UID_ROOT = "1.2.826.0.1.3680043.10.4242"
CT, MR, SC = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.7"
CLASS = {"CT": CT, "MR": MR, "CR": SC, "US": SC, "PT": SC}
SMITH_PATIENTS = 20
SPARSE = range(40, 85)  # studies dated March 1985
PT = range(85, 125)  # studies with a PT series

_SYL = ["KA", "LO", "MER", "BRO", "WIL", "SON", "DA", "VIS", "TAY", "LOR", "AN", "DER", "MAR",
        "TIN", "GAR", "CIA", "RO", "BIN", "HAR", "RIS", "LEE", "WAL", "KER", "HAL", "YOUNG"]  # fmt: skip
_GIVEN = ["JOHN", "MARY", "ANNA", "PETER", "LUCY", "OMAR", "IRIS", "TOM", "EVA", "NOAH"]


def _surnames() -> list[str]:
    rng = random.Random(7)
    names = set()
    while len(names) < 5000:
        n = "".join(rng.choice(_SYL) for _ in range(rng.randint(2, 3)))
        if not n.startswith("SMITH"):
            names.add(n)
    return sorted(names)


SURNAMES = _surnames()


def patient(j: int) -> dict:
    rng = random.Random(j * 7919)
    if j < SMITH_PATIENTS:
        name = f"SMITH^{_GIVEN[j % len(_GIVEN)]}{j:02d}"
    else:
        name = f"{rng.choice(SURNAMES)}^{rng.choice(_GIVEN)}"
    return {
        "patient_id": f"BP{j:07d}",
        "patient_name": name,
        "birth_date": f"{rng.randint(1930, 2020)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        "sex": rng.choice("MF"),
    }


def study(i: int) -> dict:
    rng = random.Random(i * 104729 + 1)
    if i in SPARSE:
        date = f"198503{1 + (i - SPARSE.start) % 28:02d}"
    else:
        date = f"{rng.randint(1990, 2024)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    mods = (
        ["PT", "CT"] if i in PT else [rng.choice("CT MR CR US".split()) for _ in range(SERIES_PER)]
    )
    return {
        "uid": f"{UID_ROOT}.1.{i}",
        "patient": i // 2,
        "date": date,
        "time": f"{rng.randint(7, 19):02d}{rng.randint(0, 59):02d}{rng.randint(0, 59):02d}",
        "accession": f"BA{i:08d}",
        "series": [
            {"uid": f"{UID_ROOT}.2.{i}.{s}", "modality": m, "number": s + 1}
            for s, m in enumerate(mods)
        ],
    }


def instance_uid(i: int, s: int, k: int) -> str:
    return f"{UID_ROOT}.3.{i}.{s}.{k}"


def dicom_files(i: int):
    """Real Part-10 files of study ``i`` (8x8 pixels): for the sample and for Orthanc."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    st = study(i)
    pt = patient(st["patient"])
    for s, se in enumerate(st["series"]):
        for k in range(INSTANCES_PER):
            cls = CLASS[se["modality"]]
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = cls
            meta.MediaStorageSOPInstanceUID = instance_uid(i, s, k)
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID = cls
            ds.SOPInstanceUID = instance_uid(i, s, k)
            ds.PatientName = pt["patient_name"]
            ds.PatientID = pt["patient_id"]
            ds.PatientBirthDate = pt["birth_date"]
            ds.PatientSex = pt["sex"]
            ds.StudyInstanceUID = st["uid"]
            ds.StudyDate = ds.SeriesDate = st["date"]
            ds.StudyTime = ds.SeriesTime = st["time"]
            ds.AccessionNumber = st["accession"]
            ds.StudyID = str(i)
            ds.ReferringPhysicianName = "REF^DOC"
            ds.SeriesInstanceUID = se["uid"]
            ds.Modality = se["modality"]
            ds.SeriesNumber = se["number"]
            ds.InstanceNumber = k + 1
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = ds.Columns = 8
            ds.BitsAllocated = 16
            ds.BitsStored = 12
            ds.HighBit = 11
            ds.PixelRepresentation = 0
            ds.PixelData = bytes(128)
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            yield buf.getvalue()


# -- filling the pacsbox index ---------------------------------------------------------


def _template(db: sqlite3.Connection, table: str) -> tuple[list[str], list]:
    cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
    row = list(db.execute(f"SELECT * FROM {table} ORDER BY id LIMIT 1").fetchone())
    return cols, row


def fill_pacsbox(ini: Path, n_studies: int) -> float:
    """Sample through the archive, the rest by bulk SQL; returns the seconds it took."""
    from pacsbox import config
    from pacsbox.archive import Archive

    t0 = time.perf_counter()
    cfg = config.load(ini)
    archive = Archive(cfg)
    for i in range(min(SAMPLE_STUDIES, n_studies)):
        for data in dicom_files(i):
            archive.store(data, source="bench")
    archive.close()
    db = sqlite3.connect(cfg.database_url[len("sqlite:///") :], isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-400000")
    tpl = {t: _template(db, t) for t in ("patient", "study", "series", "instance")}
    root = db.execute("SELECT storage_root FROM study LIMIT 1").fetchone()[0]
    folder = "synthetic/rows-without-files"

    def rows(table: str, values: list[dict]) -> list[list]:
        cols, base = tpl[table]
        pos = {c: n for n, c in enumerate(cols)}
        out = []
        for v in values:
            r = list(base)
            for k, x in v.items():
                r[pos[k]] = x
            out.append(r)
        return out

    def insert(table: str, values: list[dict]) -> None:
        cols = tpl[table][0]
        marks = ",".join("?" * len(cols))
        db.executemany(
            f"INSERT INTO {table} ({','.join(cols)}) VALUES ({marks})", rows(table, values)
        )

    chunk = 5000
    first = SAMPLE_STUDIES
    for start in range(first, n_studies, chunk):
        stop = min(start + chunk, n_studies)
        pats, studies, series, insts = [], [], [], []
        for i in range(start, stop):
            st = study(i)
            j = st["patient"]
            if i % 2 == 0:
                p = patient(j)
                pats.append(
                    p | {"id": j + 1_000_000, "patient_name_ci": p["patient_name"].upper(),
                         "issuer": "", "num_studies": 2, "num_series": 2 * SERIES_PER,
                         "num_instances": 2 * SERIES_PER * INSTANCES_PER, "charset": ""}
                )  # fmt: skip
            sid = i + 1_000_000
            mods = sorted({s["modality"] for s in st["series"]})
            studies.append({
                "id": sid, "study_instance_uid": st["uid"], "patient_id": j + 1_000_000,
                "study_date": st["date"], "study_time": st["time"],
                "accession_number": st["accession"], "study_id": str(i),
                "modalities": "\\".join(mods), "num_series": SERIES_PER,
                "num_instances": SERIES_PER * INSTANCES_PER, "storage_root": root,
                "folder": folder, "study_description": "", "charset": "",
            })  # fmt: skip
            for s, se in enumerate(st["series"]):
                series_id = i * SERIES_PER + s + 1_000_000
                series.append({
                    "id": series_id, "series_instance_uid": se["uid"], "study_id": sid,
                    "modality": se["modality"], "series_number": se["number"],
                    "series_date": st["date"], "series_time": st["time"],
                    "num_instances": INSTANCES_PER,
                })  # fmt: skip
                for k in range(INSTANCES_PER):
                    insts.append({
                        "id": (i * SERIES_PER + s) * INSTANCES_PER + k + 1_000_000,
                        "sop_instance_uid": instance_uid(i, s, k), "series_id": series_id,
                        "sop_class_uid": CLASS[se["modality"]], "instance_number": k + 1,
                        "file_name": f"synthetic-{i}-{s}-{k}.dcm",
                    })  # fmt: skip
        db.execute("BEGIN")
        insert("patient", pats)
        insert("study", studies)
        insert("series", series)
        insert("instance", insts)
        db.execute("COMMIT")
        if (stop // chunk) % 4 == 0 or stop == n_studies:
            print(f"  filled {stop:,} studies ({time.perf_counter() - t0:.0f} s)", flush=True)
    # The sample's files are all indexed and the synthetic rows have no files:
    # nothing for the start-up check to look at.
    db.execute("DELETE FROM dirty_folder")
    db.execute("ANALYZE")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - t0


# -- filling Orthanc -----------------------------------------------------------------------


def fill_orthanc(orthanc: Orthanc, budget_s: float, max_studies: int) -> int:
    """POST the same studies, in order, until the time budget runs out; returns studies held."""
    done_marker = orthanc.folder / "studies.txt"
    have = int(done_marker.read_text()) if done_marker.exists() else 0
    if orthanc.count() < have * SERIES_PER * INSTANCES_PER:
        have = 0
    t0 = time.perf_counter()
    i = have
    with ThreadPoolExecutor(4) as pool:
        while i < max_studies and time.perf_counter() - t0 < budget_s:
            batch = list(range(i, min(i + 50, max_studies)))
            blobs = [d for n in batch for d in dicom_files(n)]
            list(pool.map(orthanc.post_file, blobs))
            i = batch[-1] + 1
            done_marker.write_text(str(i))
    return i


# -- queries -------------------------------------------------------------------------------

STUDY_KEYS = ["StudyInstanceUID", "PatientName", "PatientID", "StudyDate", "AccessionNumber",
              "ModalitiesInStudy", "NumberOfStudyRelatedInstances"]  # fmt: skip


def queries() -> list[tuple[str, str, list[str]]]:
    st3 = study(3)
    return [
        ("study: PatientID exact", "STUDY", ["PatientID=BP0000010"]),
        ("study: PatientName SMITH*", "STUDY", ["PatientName=SMITH*"]),
        ("study: StudyDate one month (sparse: March 1985)", "STUDY", ["StudyDate=19850301-19850331"]),
        ("study: StudyDate one month (dense: March 2015)", "STUDY", ["StudyDate=20150301-20150331"]),
        ("study: AccessionNumber", "STUDY", ["AccessionNumber=BA00000007"]),
        ("study: ModalitiesInStudy PT", "STUDY", ["ModalitiesInStudy=PT"]),
        ("image: one series", "IMAGE",
         [f"StudyInstanceUID={st3['uid']}", f"SeriesInstanceUID={st3['series'][0]['uid']}"]),
    ]  # fmt: skip


def run_queries(port: int, aec: str, aet: str = "FINDSCU") -> dict:
    out = {}
    for label, level, keys in queries():
        args = ["findscu", "-S", "-aet", aet, "-aec", aec, "127.0.0.1", str(port)]
        args += ["-k", f"QueryRetrieveLevel={level}"]
        returned = STUDY_KEYS if level == "STUDY" else ["SOPInstanceUID", "InstanceNumber"]
        given = {k.split("=")[0] for k in keys}
        for k in keys + [k for k in returned if k not in given]:
            args += ["-k", k]
        _, text = timed(args + ["-v"])
        matches = text.count("Find Response:")
        samples = [timed(args)[0] for _ in range(RUNS)]
        out[label] = {"median_ms": median_ms(samples), "matches": matches}
        print(f"  {label:52} {out[label]['median_ms']:7.1f} ms  ({matches} matches)", flush=True)
    return out


def main() -> dict:
    n_studies = env_int("QUERY_STUDIES", 100_000)
    n_instances = n_studies * SERIES_PER * INSTANCES_PER
    work = WORK / "query"
    box = work / f"box-{n_studies}"
    marker = box / "filled.ok"
    result: dict = {"instances": n_instances, "studies": n_studies}
    if not marker.exists():
        import shutil

        shutil.rmtree(box, ignore_errors=True)
        ini = write_config(box, SyncWrites="no")
        print(f"query bench: filling pacsbox with {n_instances:,} instances ...", flush=True)
        result["fill_seconds"] = round(fill_pacsbox(ini, n_studies), 1)
        cli(ini, "ae", "add", "FINDSCU", "--host", "127.0.0.1")
        marker.write_text("ok\n")
    ini = box / "pacsbox.ini"
    db_size = sum(dir_size(p) for p in box.glob("pacsbox.db*"))
    result["database_bytes"] = db_size
    print(f"query bench: pacsbox index {n_instances:,} instances, database {db_size / 1e6:.0f} MB")
    srv = Server(ini).start()
    try:
        result["pacsbox"] = run_queries(srv.port, srv.ae_title)
    finally:
        srv.stop()
    budget = env_int("QUERY_ORTHANC_SECONDS", 150)
    orthanc = Orthanc(work / "orthanc", {"FINDSCU": ("127.0.0.1", 104)})
    try:
        t0 = time.perf_counter()
        held = fill_orthanc(orthanc, budget, n_studies)
        count = orthanc.count()
        print(
            f"query bench: Orthanc holds {held:,} studies / {count:,} instances "
            f"(filled for {time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        result["orthanc_instances"] = count
        result["orthanc"] = run_queries(orthanc.dicom, orthanc.aet)
    finally:
        orthanc.stop()
    result["note"] = (
        "findscu wall time, median of 20, start and association included. "
        "QUERY_STUDIES=1000000 runs the 10,000,000-instance size (fill ~3 min, ~4 GB)."
    )
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=1))
