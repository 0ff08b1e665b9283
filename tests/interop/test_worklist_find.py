"""Modality Worklist C-FIND against a running pacsbox: DCMTK ``findscu -W`` as the modality.

The items are written into the index before the box starts; every expected
answer is computed from the items listed here, never from the index. The
cancel case uses pynetdicom (findscu cannot cancel).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.charset import convert_encodings, encode_string
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from tests.helpers import Server, cli, write_config
from tests.interop.test_find import extracted

SPS = "ScheduledProcedureStepSequence"


@dataclass(frozen=True)
class Item:
    pid: str
    name: str
    modality: str
    station: str
    date: str
    time: str
    status: str = "scheduled"


ITEMS = [
    Item("P001", "SMITH^JOHN", "CT", "CT1", "20261201", "0800"),
    Item("P002", "SMITH^ANNA", "MR", "MR1", "20261202", "0930"),
    Item("P003", "JONES^BOB", "CT", "CT1", "20261203", "1400"),
    Item("P004", "MÜLLER^JÜRGEN", "US", "US1", "20261202", "1000"),
    Item("P005", "山田^太郎", "CT", "CT2", "20261205", "1100"),
    Item("P006", "DONE^ALREADY", "CT", "CT1", "20261202", "0800", "completed"),
    Item("P007", "BUSY^NOW", "CT", "CT1", "20261202", "0900", "in progress"),
    Item("P008", "Yamada^Tarou=山田^太郎", "MR", "MR2", "20261206", "0800"),
]
SCHEDULED = [i for i in ITEMS if i.status == "scheduled"]
BULK = 3000  # steps in progress on station BULK: enough that a cancel lands mid-answer

# PS3.4 K.6 return keys (the statement's table 40 and the rest of K.6-1): type 1 and 2,
# in every response, empty when unknown.
TOP_KEYS = [
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientWeight",
    "MedicalAlerts", "Allergies", "PregnancyStatus", "AdmissionID", "CurrentPatientLocation",
    "ReferencedPatientSequence", "AccessionNumber", "ReferringPhysicianName",
    "RequestingPhysician", "RequestedProcedureID", "RequestedProcedureDescription",
    "RequestedProcedureCodeSequence", "RequestedProcedurePriority", "StudyInstanceUID",
    "ReferencedStudySequence", SPS,
]  # fmt: skip
STEP_KEYS = [
    "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime", "Modality", "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription", "ScheduledStationName",
    "ScheduledProcedureStepLocation", "ScheduledProtocolCodeSequence", "PreMedication",
    "ScheduledProcedureStepID", "RequestedContrastAgent", "ScheduledProcedureStepStatus",
]  # fmt: skip


@dataclass
class Box:
    server: Server
    tmp: Path
    runs: int = 0


def _fill_worklist(ini: Path) -> None:
    from pacsbox import config
    from pacsbox.db import close_database, open_database, worklist
    from pacsbox.db.worklist_models import WorklistItem

    open_database(config.load(ini).database_url)
    try:
        for n, i in enumerate(ITEMS):
            item_id = worklist.add(
                {"patient_id": i.pid, "patient_name": i.name, "modality": i.modality,
                 "station_ae": i.station, "start_date": i.date, "start_time": i.time,
                 "accession_number": f"A{n:03d}", "sps_description": f"{i.modality} exam"},
                source="test",
            )  # fmt: skip
            if i.status != "scheduled":
                worklist.set_status(item_id, i.status)
        rows = [
            {"patient_id": f"B{n:05d}", "patient_name": f"BULK^{n}", "modality": "OT",
             "station_ae": "BULK", "start_date": "20250101", "status": "in progress",
             "study_instance_uid": worklist.new_uid()}
            for n in range(BULK)
        ]  # fmt: skip
        WorklistItem.insert_many(rows).execute()
    finally:
        close_database()


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mwl")
    ini = write_config(tmp / "box", SyncWrites="no")
    for title in ("FINDSCU", "PYNETSCU"):
        cli(ini, "ae", "add", title, "--host", "127.0.0.1")
    _fill_worklist(ini)
    srv = Server(ini).start()
    try:
        yield Box(srv, tmp)
    finally:
        srv.stop()


def findscu(box: Box, *keys: str | bytes) -> tuple[str, list[Dataset]]:
    """``findscu -W`` with ``-k`` keys; returns (final status text, response data sets)."""
    box.runs += 1
    out = box.tmp / f"rsp{box.runs}"
    out.mkdir()
    args: list = ["findscu", "-v", "-W", "-aet", "FINDSCU", "-aec", box.server.ae_title]
    args += ["-X", "-od", str(out), "127.0.0.1", str(box.server.port)]
    for k in keys:
        args += ["-k", k]
    return extracted(args, out)


def pids(responses: list[Dataset]) -> list[str]:
    return sorted(str(r.PatientID) for r in responses)


def want(pred) -> list[str]:  # noqa: ANN001 - a predicate on Item
    return sorted(i.pid for i in SCHEDULED if pred(i))


CASES = [
    (f"{SPS}[0].ScheduledStationAETitle=CT1", lambda i: i.station == "CT1"),
    (f"{SPS}[0].ScheduledStationAETitle=CT*", lambda i: i.station.startswith("CT")),
    (f"{SPS}[0].Modality=CT", lambda i: i.modality == "CT"),
    (
        f"{SPS}[0].ScheduledProcedureStepStartDate=20261202-20261203",
        lambda i: "20261202" <= i.date <= "20261203",
    ),
    (f"{SPS}[0].ScheduledProcedureStepStartDate=-20261202", lambda i: i.date <= "20261202"),
    (f"{SPS}[0].ScheduledProcedureStepStartDate=20261205", lambda i: i.date == "20261205"),
    ("PatientName=SMITH*", lambda i: i.name.startswith("SMITH")),
    ("PatientName=smith^j*", lambda i: i.name == "SMITH^JOHN"),  # PN ignores case (default)
    ("PatientName=?ONES^BOB", lambda i: i.name == "JONES^BOB"),
    ("PatientID=P003", lambda i: i.pid == "P003"),
    ("PatientName", lambda i: True),  # universal matching
]


@pytest.mark.parametrize(("key", "pred"), CASES, ids=[c[0] for c in CASES])
def test_matching(box, key, pred):
    status, rsps = findscu(box, key)  # every key comes back whatever was asked
    assert status == "Success"
    assert pids(rsps) == want(pred)


def test_date_and_time_inside_the_step(box):
    status, rsps = findscu(
        box,
        f"{SPS}[0].ScheduledProcedureStepStartDate=20261202",
        f"{SPS}[0].ScheduledProcedureStepStartTime=0900-0959",
    )
    assert status == "Success" and pids(rsps) == ["P002"]
    status, rsps = findscu(
        box,
        f"{SPS}[0].ScheduledStationAETitle=CT1",
        f"{SPS}[0].ScheduledProcedureStepStartDate=20261201-20261203",
        f"{SPS}[0].Modality=CT",
    )
    assert status == "Success" and pids(rsps) == ["P001", "P003"]


def test_every_table_40_key_in_every_response(box):
    status, rsps = findscu(box, "PatientName")
    assert status == "Success" and len(rsps) == len(SCHEDULED)
    for r in rsps:
        missing = [k for k in TOP_KEYS if k not in r]
        assert missing == [], (r.PatientID, missing)
        (step,) = r[SPS].value
        missing = [k for k in STEP_KEYS if k not in step]
        assert missing == [], (r.PatientID, missing)
        assert step.ScheduledProcedureStepStatus == "SCHEDULED"
        assert r.StudyInstanceUID and step.ScheduledProcedureStepID == r.AccessionNumber
        assert list(r.ReferencedStudySequence) == []
        assert list(step.ScheduledProtocolCodeSequence) == []
    by_pid = {str(r.PatientID): r for r in rsps}
    step = by_pid["P002"][SPS][0]
    assert (step.Modality, step.ScheduledStationAETitle) == ("MR", "MR1")
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == (
        "20261202",
        "0930",
    )


def test_step_status_only_when_asked(box):
    """SCHEDULED steps by default; a step status in the query selects others."""
    status, rsps = findscu(
        box, f"{SPS}[0].Modality=CT", f"{SPS}[0].ScheduledProcedureStepStatus=STARTED"
    )
    assert status == "Success" and pids(rsps) == ["P007"]
    assert rsps[0][SPS][0].ScheduledProcedureStepStatus == "STARTED"
    status, rsps = findscu(
        box,
        f"{SPS}[0].ScheduledStationAETitle=CT1",
        f"{SPS}[0].ScheduledProcedureStepStatus=SCHEDULED\\COMPLETED",
    )
    assert status == "Success" and pids(rsps) == ["P001", "P003", "P006"]


def test_character_sets(box):
    # A Latin-1 query, as a Western European modality sends it.
    status, rsps = findscu(box, "SpecificCharacterSet=ISO_IR 100", b"PatientName=M\xdcLLER*")
    assert status == "Success"
    assert [str(r.PatientName) for r in rsps] == ["MÜLLER^JÜRGEN"]
    assert rsps[0].SpecificCharacterSet == "ISO_IR 192"
    status, rsps = findscu(box, "SpecificCharacterSet=ISO_IR 192", "PatientName=山田^太郎")
    assert status == "Success" and [str(r.PatientName) for r in rsps] == ["山田^太郎"]
    # ISO 2022 Japanese (JIS X 0208 in escape sequences), as a Japanese modality sends it.
    jis = convert_encodings(["", "ISO 2022 IR 87"])
    status, rsps = findscu(
        box, "SpecificCharacterSet=\\ISO 2022 IR 87", b"PatientName=" + encode_string("*山田*", jis)
    )
    assert status == "Success"
    assert sorted(str(r.PatientName) for r in rsps) == ["Yamada^Tarou=山田^太郎", "山田^太郎"]
    # An answer that is plain ASCII echoes the query's character set.
    status, rsps = findscu(box, "SpecificCharacterSet=ISO_IR 100", "PatientName=JONES*")
    assert status == "Success" and [r.SpecificCharacterSet for r in rsps] == ["ISO_IR 100"]


def _pynetdicom_find(box: Box, ident: Dataset) -> list[tuple[Dataset, Dataset | None]]:
    ae = AE(ae_title="PYNETSCU")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", box.server.port, ae_title=box.server.ae_title)
    assert assoc.is_established
    try:
        return list(assoc.send_c_find(ident, ModalityWorklistInformationFind))
    finally:
        assoc.release()


def test_garbled_date_is_unable_to_process(box):
    status, rsps = findscu(box, f"{SPS}[0].ScheduledProcedureStepStartDate=2026XX01")
    assert status == "Failed: UnableToProcess" and rsps == []
    # The final response says why (Error Comment).
    ident = Dataset()
    step = Dataset()
    step.ScheduledProcedureStepStartDate = "2026XX01"
    ident.ScheduledProcedureStepSequence = [step]
    ((final, _),) = _pynetdicom_find(box, ident)
    assert final.Status == 0xC000
    assert "2026XX01" in final.ErrorComment and "not a date" in final.ErrorComment


def test_two_step_items_do_not_match_the_sop_class(box):
    ident = Dataset()
    ident.ScheduledProcedureStepSequence = [Dataset(), Dataset()]
    ident.ScheduledProcedureStepSequence[0].Modality = "CT"
    ident.ScheduledProcedureStepSequence[1].Modality = "MR"
    ((final, _),) = _pynetdicom_find(box, ident)
    assert final.Status == 0xA900 and "one item" in final.ErrorComment


def test_cancel(box):
    ae = AE(ae_title="PYNETSCU")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", box.server.port, ae_title=box.server.ae_title)
    assert assoc.is_established
    try:
        ident = Dataset()
        ident.PatientName = ""
        step = Dataset()
        step.ScheduledStationAETitle = "BULK"
        step.ScheduledProcedureStepStatus = "STARTED"
        ident.ScheduledProcedureStepSequence = [step]
        cx_id = assoc.accepted_contexts[0].context_id
        statuses = []
        for status, _ in assoc.send_c_find(ident, ModalityWorklistInformationFind, msg_id=7):
            statuses.append(int(status.Status))
            if len(statuses) == 1:
                assoc.send_c_cancel(7, cx_id)
    finally:
        assoc.release()
    assert statuses[0] == 0xFF00
    assert statuses[-1] == 0xFE00 and len(statuses) < BULK + 1


def test_one_log_line_per_query_without_names(box):
    findscu(box, "PatientName=JONES*")
    lines = [x for x in box.server.output().splitlines() if "model worklist" in x]
    assert any("C-FIND from FINDSCU" in x and "1 matches" in x and "ms)" in x for x in lines)
    assert all("JONES" not in x for x in lines)
