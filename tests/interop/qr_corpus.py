"""A small generated corpus for the Q/R tests, with its expected answers.

The expectations are computed from these records, never from the index, so a
query test checks pacsbox against an independent answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

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
