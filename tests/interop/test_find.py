"""C-FIND against a running pacsbox with DCMTK findscu, every model, level and matching method.

A small corpus is generated here (Latin-1 and UTF-8 names included), stored
with storescu, and every expected answer is computed from the generated
records, never from the index. The corpus helpers are also used by
test_move_get.py.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.helpers import DCMTK_ENV, Server, cli, dcmtk, write_config
from tests.postgres import DATABASES, index_settings

# -- the corpus -------------------------------------------------------------

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
US = "1.2.840.10008.5.1.4.1.1.6.1"
PRIVATE = "1.3.6.1.4.1.99999.1.1"  # a private storage class storescp refuses
CLASS_OF = {"CT": CT, "MR": MR, "OT": SC, "US": US, "XX": PRIVATE}
ROOT = "1.2.826.0.1.3680043.10.1234."


@dataclass
class Inst:
    uid: str
    number: int
    sop_class: str
    rows: int
    cols: int
    path: Path | None = None


@dataclass
class Ser:
    uid: str
    number: int
    modality: str
    date: str
    time: str
    instances: list[Inst] = field(default_factory=list)


@dataclass
class Stu:
    uid: str
    date: str
    time: str
    accession: str
    study_id: str
    description: str
    series: list[Ser] = field(default_factory=list)

    @property
    def modalities(self) -> set[str]:
        return {s.modality for s in self.series}

    @property
    def n_instances(self) -> int:
        return sum(len(s.instances) for s in self.series)


@dataclass
class Pat:
    pid: str
    name: str
    birth: str
    sex: str
    charset: str = ""
    studies: list[Stu] = field(default_factory=list)


# (pid, name, birth date, sex, charset, [(date, time, accession, [(modality, n_instances)])])
SPEC = [
    (
        "PID001",
        "SMITH^JOHN",
        "19600101",
        "M",
        "",
        [
            ("20240105", "083000", "ACC1001", [("CT", 3), ("CT", 2)]),
            ("20240210", "141500", "ACC1002", [("MR", 2)]),
        ],
    ),
    (
        "PID002",
        "SMITHERS^ANNA",
        "19751231",
        "F",
        "",
        [
            ("20240131", "235900", "ACC2001", [("US", 1), ("OT", 1)]),
        ],
    ),
    (
        "PID003",
        "JONES^BOB",
        "19800615",
        "M",
        "",
        [
            ("20231220", "101010", "ACC3001", [("MR", 2), ("CT", 1)]),
            ("20240201", "000100", "X-3002", [("CT", 2)]),
        ],
    ),
    (
        "PID004",
        "MÜLLER^JÜRGEN",
        "19551105",
        "M",
        "ISO_IR 100",
        [
            ("20240115", "120000", "ACC4001", [("CT", 2)]),
        ],
    ),
    (
        "PID005",
        "山田^太郎",
        "19900303",
        "F",
        "ISO_IR 192",
        [
            ("20240120", "093000", "ACC5001", [("MR", 1)]),
        ],
    ),
    (
        "PID006",
        "smith^lowercase",
        "20010101",
        "O",
        "",
        [
            ("20240301", "170000", "ACC6001", [("OT", 1)]),
        ],
    ),
]


def build(folder: Path, spec=SPEC, rows: int = 8, cols: int = 8) -> list[Pat]:
    """Write the corpus as Part-10 files (Explicit VR LE) and return its records."""
    folder.mkdir(parents=True, exist_ok=True)
    patients = []
    n = 0
    for pid, name, birth, sex, charset, studies in spec:
        pat = Pat(pid, name, birth, sex, charset)
        for k, (date, time, acc, series) in enumerate(studies, 1):
            stu = Stu(generate_uid(ROOT), date, time, acc, f"S{k}", f"Study {acc}")
            for s_no, (mod, count) in enumerate(series, 1):
                ser = Ser(generate_uid(ROOT), s_no, mod, date, time)
                for i_no in range(1, count + 1):
                    inst = Inst(generate_uid(ROOT), i_no, CLASS_OF[mod], rows, cols)
                    n += 1
                    inst.path = folder / f"f{n:05d}.dcm"
                    _write(inst, ser, stu, pat)
                    ser.instances.append(inst)
                stu.series.append(ser)
            pat.studies.append(stu)
        patients.append(pat)
    return patients


def _write(inst: Inst, ser: Ser, stu: Stu, pat: Pat) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = inst.sop_class
    meta.MediaStorageSOPInstanceUID = inst.uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    if pat.charset:
        ds.SpecificCharacterSet = pat.charset
    ds.SOPClassUID = inst.sop_class
    ds.SOPInstanceUID = inst.uid
    ds.StudyDate = stu.date
    ds.StudyTime = stu.time
    ds.SeriesDate = ser.date
    ds.SeriesTime = ser.time
    ds.AccessionNumber = stu.accession
    ds.Modality = ser.modality
    ds.ReferringPhysicianName = "REF^DOC"
    ds.StudyDescription = stu.description
    ds.PatientName = pat.name
    ds.PatientID = pat.pid
    ds.PatientBirthDate = pat.birth
    ds.PatientSex = pat.sex
    ds.StudyInstanceUID = stu.uid
    ds.SeriesInstanceUID = ser.uid
    ds.StudyID = stu.study_id
    ds.SeriesNumber = ser.number
    ds.InstanceNumber = inst.number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = inst.rows
    ds.Columns = inst.cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    seed = int(inst.uid.rsplit(".", 1)[-1][-6:])
    rng = np.random.default_rng(seed)
    ds.PixelData = rng.integers(0, 4096, (inst.rows, inst.cols), dtype=np.uint16).tobytes()
    ds.save_as(inst.path, enforce_file_format=True)


def studies(patients: list[Pat]):
    for p in patients:
        for s in p.studies:
            yield p, s


def series(patients: list[Pat]):
    for p, st in studies(patients):
        for se in st.series:
            yield p, st, se


def instances(patients: list[Pat]):
    for p, st, se in series(patients):
        for i in se.instances:
            yield p, st, se, i


# -- running pacsbox and findscu ---------------------------------------------------


@dataclass
class Box:
    server: Server
    ini: Path
    patients: list[Pat]
    tmp: Path
    runs: int = 0


def start_box(tmp: Path, **settings) -> tuple[Path, Server]:
    """A pacsbox with STORESCU and FINDSCU allowed (SyncWrites off: test data only)."""
    ini = write_config(tmp / "box", SyncWrites="no", **settings)
    cli(ini, "ae", "add", "STORESCU", "--host", "127.0.0.1")
    cli(ini, "ae", "add", "FINDSCU", "--host", "127.0.0.1")
    return ini, Server(ini).start()


def store_folder(srv: Server, folder: Path) -> None:
    dcmtk(
        "storescu",
        "-aet",
        "STORESCU",
        "-aec",
        srv.ae_title,
        "127.0.0.1",
        str(srv.port),
        "+sd",
        "+r",
        str(folder),
        check=True,
    )


@pytest.fixture(scope="module", params=DATABASES)
def box(request, tmp_path_factory):
    """Every query runs against the index in SQLite and in a real PostgreSQL."""
    tmp = tmp_path_factory.mktemp("find")
    patients = build(tmp / "corpus")
    ini, srv = start_box(tmp, **index_settings(request, request.param))
    try:
        store_folder(srv, tmp / "corpus")
        yield Box(srv, ini, patients, tmp)
    finally:
        srv.stop()


def final_status(output: str) -> str:
    for line in output.splitlines():
        if "Received Final" in line and "Response" in line:
            return line.split("(", 1)[1].rsplit(")", 1)[0]
    raise AssertionError(f"no final response in:\n{output}")


def findscu(box: Box, model: str, level: str, *keys, extra: tuple = ()):
    """Run findscu; returns (final status text, response data sets)."""
    box.runs += 1
    out = box.tmp / f"rsp{box.runs}"
    out.mkdir()
    args: list = ["findscu", "-v", f"-{model}", "-aet", "FINDSCU", "-aec", box.server.ae_title]
    args += ["-X", "-od", str(out), *extra, "127.0.0.1", str(box.server.port)]
    args += ["-k", f"QueryRetrieveLevel={level}"] if level else []
    given = [k.split(b"=" if isinstance(k, bytes) else "=")[0] for k in keys]
    for n, k in enumerate(keys):
        if isinstance(k, str) and "=" not in k and k in given[:n] + given[n + 1 :]:
            continue  # a return key that is also matched: findscu would blank it
        args += ["-k", k]
    return extracted(args, out)


def extracted(args: list, out: Path) -> tuple[str, list]:
    """Run findscu ``args`` that extract to ``out`` (-X -od); (final status, responses)."""
    proc = subprocess.run(args, capture_output=True, timeout=60, env=DCMTK_ENV)
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    responses = [pydicom.dcmread(p, force=True) for p in sorted(out.glob("rsp*.dcm"))]
    shutil.rmtree(out)
    return final_status(text), responses


def values(responses, keyword: str) -> set:
    return {str(r.get(keyword, "")) for r in responses}


# -- patient level ---------------------------------------------------------------------

PATIENT_CASES = [
    ("PatientID=PID003", lambda p: p.pid == "PID003"),
    ("PatientID=PID00?", lambda p: True),
    ("PatientName=SMITH*", lambda p: p.name.upper().startswith("SMITH")),  # PN ignores case
    ("PatientName=?ONES^BOB", lambda p: p.name == "JONES^BOB"),
    ("PatientName=*", lambda p: True),
    ("PatientName=", lambda p: True),
    ("PatientBirthDate=19700101-", lambda p: p.birth >= "19700101"),
    ("PatientBirthDate=-19701231", lambda p: p.birth <= "19701231"),
    ("PatientBirthDate=19600101-19800615", lambda p: "19600101" <= p.birth <= "19800615"),
    ("PatientBirthDate=19751231", lambda p: p.birth == "19751231"),
    ("PatientSex=F", lambda p: p.sex == "F"),
]


@pytest.mark.parametrize("model", ["P", "O"])
@pytest.mark.parametrize(("key", "want"), PATIENT_CASES, ids=[c[0] for c in PATIENT_CASES])
def test_patient_level(box, model, key, want):
    status, rsps = findscu(
        box,
        model,
        "PATIENT",
        key,
        "PatientID",
        "PatientName",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    )
    assert status == "Success"
    expected = {p.pid: p for p in box.patients if want(p)}
    assert values(rsps, "PatientID") == set(expected)
    for r in rsps:
        p = expected[r.PatientID]
        assert str(r.PatientName) == p.name
        assert int(r.NumberOfPatientRelatedStudies) == len(p.studies)
        assert int(r.NumberOfPatientRelatedSeries) == sum(len(s.series) for s in p.studies)
        assert int(r.NumberOfPatientRelatedInstances) == sum(s.n_instances for s in p.studies)


# -- study level ----------------------------------------------------------------------------


def _dt(st: Stu) -> str:
    return st.date + st.time


STUDY_CASES = [
    (["StudyDate=20240101-20240131"], lambda p, s: "20240101" <= s.date <= "20240131"),
    (["StudyDate=20240201-"], lambda p, s: s.date >= "20240201"),
    (["StudyDate=-20231231"], lambda p, s: s.date <= "20231231"),
    (["StudyDate=20240115"], lambda p, s: s.date == "20240115"),
    (["StudyTime=0800-1200"], lambda p, s: "0800" <= s.time <= "120059.999999"),
    (["StudyTime=-1000"], lambda p, s: s.time <= "100059.999999"),
    # Combined date-time range (PS3.4 C.2.2.2.5.1): 20 Jan 09:30 is inside, 5 Jan 08:30 is not.
    (
        ["StudyDate=20240105-20240131", "StudyTime=1200-2359"],
        lambda p, s: "20240105120000" <= _dt(s) <= "20240131235959.999999",
    ),
    (["AccessionNumber=ACC1002"], lambda p, s: s.accession == "ACC1002"),
    (["AccessionNumber=X-*"], lambda p, s: s.accession.startswith("X-")),
    (
        ["AccessionNumber=ACC?00?"],
        lambda p, s: s.accession.startswith("ACC") and len(s.accession) == 7,
    ),
    (["ModalitiesInStudy=MR"], lambda p, s: "MR" in s.modalities),
    (["ModalitiesInStudy=US\\MR"], lambda p, s: bool({"US", "MR"} & s.modalities)),
    (["ModalitiesInStudy=O*"], lambda p, s: "OT" in s.modalities),
    (["PatientName=SMITH*"], lambda p, s: p.name.upper().startswith("SMITH")),
    (["PatientID=PID001", "StudyID=S2"], lambda p, s: p.pid == "PID001" and s.study_id == "S2"),
    (["PatientName=J*", "ModalitiesInStudy=CT", "StudyDate=2024-"], None),  # malformed date
]


@pytest.mark.parametrize("model", ["S", "P"])
@pytest.mark.parametrize(("keys", "want"), STUDY_CASES, ids=["&".join(c[0]) for c in STUDY_CASES])
def test_study_level(box, model, keys, want):
    status, rsps = findscu(
        box,
        model,
        "STUDY",
        *keys,
        "StudyInstanceUID",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "StudyDate",
        "AccessionNumber",
    )
    if want is None:
        assert status == "Failed: UnableToProcess"
        return
    assert status == "Success"
    expected = {s.uid: s for p, s in studies(box.patients) if want(p, s)}
    assert expected, "a case that matches nothing proves little"
    assert values(rsps, "StudyInstanceUID") == set(expected)
    for r in rsps:
        s = expected[r.StudyInstanceUID]
        assert (
            set(r.ModalitiesInStudy if r["ModalitiesInStudy"].VM > 1 else [r.ModalitiesInStudy])
            == s.modalities
        )
        assert int(r.NumberOfStudyRelatedSeries) == len(s.series)
        assert int(r.NumberOfStudyRelatedInstances) == s.n_instances
        assert r.StudyDate == s.date and r.AccessionNumber == s.accession


def test_study_uid_list(box):
    """List of UID matching (LU), the Study Root's unique key."""
    chosen = [s.uid for _, s in studies(box.patients)][1:4]
    status, rsps = findscu(box, "S", "STUDY", "StudyInstanceUID=" + "\\".join(chosen))
    assert status == "Success"
    assert values(rsps, "StudyInstanceUID") == set(chosen)


# -- series and image levels -----------------------------------------------------------------


SERIES_CASES = [
    (["Modality=CT"], lambda p, st, se: se.modality == "CT"),
    (["Modality=?R"], lambda p, st, se: se.modality == "MR"),
    (["SeriesNumber=2"], lambda p, st, se: se.number == 2),
    (["SeriesDate=20240201-20240229"], lambda p, st, se: "20240201" <= se.date <= "20240229"),
    (
        ["PatientID=PID003", "Modality=CT"],
        lambda p, st, se: p.pid == "PID003" and se.modality == "CT",
    ),
]


@pytest.mark.parametrize("model", ["S", "P"])
@pytest.mark.parametrize(("keys", "want"), SERIES_CASES, ids=["&".join(c[0]) for c in SERIES_CASES])
def test_series_level(box, model, keys, want):
    status, rsps = findscu(
        box,
        model,
        "SERIES",
        *keys,
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
    )
    assert status == "Success"
    expected = {se.uid: se for p, st, se in series(box.patients) if want(p, st, se)}
    assert expected
    assert values(rsps, "SeriesInstanceUID") == set(expected)
    for r in rsps:
        se = expected[r.SeriesInstanceUID]
        assert r.Modality == se.modality and int(r.SeriesNumber) == se.number
        assert int(r.NumberOfSeriesRelatedInstances) == len(se.instances)


def test_series_of_one_study_hierarchical(box):
    p, st = next((p, s) for p, s in studies(box.patients) if len(s.series) > 1)
    status, rsps = findscu(
        box, "P", "SERIES", f"PatientID={p.pid}", f"StudyInstanceUID={st.uid}", "SeriesInstanceUID"
    )
    assert status == "Success"
    assert values(rsps, "SeriesInstanceUID") == {se.uid for se in st.series}


@pytest.mark.parametrize("model", ["S", "P"])
def test_image_level_lists_one_series(box, model):
    p, st, se = next(x for x in series(box.patients) if len(x[2].instances) >= 3)
    status, rsps = findscu(
        box,
        model,
        "IMAGE",
        f"StudyInstanceUID={st.uid}",
        f"SeriesInstanceUID={se.uid}",
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsStored",
    )
    assert status == "Success"
    by_uid = {i.uid: i for i in se.instances}
    assert values(rsps, "SOPInstanceUID") == set(by_uid)
    for r in rsps:
        i = by_uid[r.SOPInstanceUID]
        assert int(r.InstanceNumber) == i.number and r.SOPClassUID == i.sop_class
        assert (r.Rows, r.Columns, r.BitsStored) == (i.rows, i.cols, 12)


def test_image_level_matching(box):
    insts = [x for x in instances(box.patients)]
    chosen = [insts[0][3].uid, insts[-1][3].uid]
    status, rsps = findscu(box, "S", "IMAGE", "SOPInstanceUID=" + "\\".join(chosen))
    assert status == "Success" and values(rsps, "SOPInstanceUID") == set(chosen)
    status, rsps = findscu(
        box, "S", "IMAGE", f"SOPClassUID={MR}", "InstanceNumber=2", "SOPInstanceUID"
    )
    want = {i.uid for _, _, _, i in insts if i.sop_class == MR and i.number == 2}
    assert status == "Success" and values(rsps, "SOPInstanceUID") == want


# -- models, statuses, character sets, cancel ----------------------------------------------


def test_patient_study_only_model(box):
    status, rsps = findscu(box, "O", "STUDY", "PatientName=JONES*", "StudyInstanceUID")
    assert status == "Success"
    assert values(rsps, "StudyInstanceUID") == {
        s.uid for p, s in studies(box.patients) if p.name.startswith("JONES")
    }
    status, _ = findscu(box, "O", "SERIES", "Modality")
    assert status == "Error: DataSetDoesNotMatchSOPClass"  # A900: no series level here


def test_status_codes(box):
    status, rsps = findscu(box, "S", "", "PatientID=PID001")  # no Query/Retrieve Level
    assert status == "Error: DataSetDoesNotMatchSOPClass" and rsps == []
    status, _ = findscu(box, "S", "PATIENT", "PatientID")  # no patient level in Study Root
    assert status == "Error: DataSetDoesNotMatchSOPClass"
    status, _ = findscu(box, "S", "SERIES", "SeriesNumber=two")
    assert status == "Failed: UnableToProcess"


def test_latin1_and_utf8_names(box):
    # Latin-1 query bytes, as a Western European workstation sends them.
    status, rsps = findscu(
        box,
        "P",
        "PATIENT",
        "SpecificCharacterSet=ISO_IR 100",
        b"PatientName=M\xdcLLER*",
        "PatientID",
    )
    assert status == "Success"
    assert [str(r.PatientName) for r in rsps] == ["MÜLLER^JÜRGEN"]
    assert rsps[0].SpecificCharacterSet == "ISO_IR 192"
    status, rsps = findscu(
        box,
        "S",
        "STUDY",
        "SpecificCharacterSet=ISO_IR 192",
        "PatientName=山田^太郎",
        "StudyInstanceUID",
    )
    assert status == "Success" and [str(r.PatientName) for r in rsps] == ["山田^太郎"]
    # An ASCII query gets every name back correctly decoded.
    status, rsps = findscu(box, "P", "PATIENT", "PatientName", "PatientID")
    assert {str(r.PatientName) for r in rsps} == {p.name for p in box.patients}
    ascii_only = [r for r in rsps if str(r.PatientName).isascii()]
    assert all("SpecificCharacterSet" not in r for r in ascii_only)


def test_case_insensitive_name_option(box):
    """The PersonNameCaseInsensitive option (default on) matches through patient_name_ci."""
    from pacsbox import config
    from pacsbox.db import close_database, open_database, query

    cfg = config.load(box.ini)
    open_database(cfg.database_url, run_migrations=False)
    try:
        ident = Dataset()
        ident.QueryRetrieveLevel = "PATIENT"
        ident.PatientName = "smith*"
        ident.PatientID = ""
        q = query.parse(ident, query.PATIENT_ROOT, pn_case_insensitive=False)
        assert {r.PatientID for r in query.find(q)} == {"PID006"}
        q = query.parse(ident, query.PATIENT_ROOT, pn_case_insensitive=True)
        want = {p.pid for p in box.patients if p.name.upper().startswith("SMITH")}
        assert {r.PatientID for r in query.find(q)} == want == {"PID001", "PID002", "PID006"}
    finally:
        close_database()


def test_find_is_logged_without_names(box):
    findscu(box, "S", "STUDY", "PatientName=SMITH*", "StudyInstanceUID")
    log = box.server.output()
    line = [x for x in log.splitlines() if "C-FIND from FINDSCU model study level STUDY" in x][-1]
    assert "1 keys" in line and "matches" in line
    assert "SMITH" not in log
