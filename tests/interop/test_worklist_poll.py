"""Worklist SCU (issue 18 item 4, SCU-6): DCMTK wlmscpfs is the RIS's worklist SCP.

The box polls the AEs marked as worklist SCPs at start-up and every
WorklistPollInterval minutes, and at once on "Get worklist"; what the remote
lists becomes worklist items (a step seen again is updated, one no longer
listed is removed while it is still scheduled), and modalities asking the box
get them. WorklistPollInterval = 0 stops the polls and leaves the button.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import worklist
from pacsbox.web.app import create_app
from tests.helpers import Server, cli, dcmtk, poll, write_config
from tests.integration.web.conftest import Clock, login
from tests.peers import WorklistSCP

TODAY = dt.date.today()


def _entry(n: int, *, name: str = "", day: dt.date = TODAY, station: str = "CT01") -> Dataset:
    """A worklist file as a RIS writes one: table 40's keys, Latin-1 text."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = name or f"RIS^PATIENT{n}"
    ds.PatientID = f"RIS{n}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.AccessionNumber = f"RA{n}"
    ds.ReferringPhysicianName = "WHO^REFERRED"
    ds.RequestedProcedureID = f"RP{n}"
    ds.RequestedProcedureDescription = f"CT CHEST {n}"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.4242.{n}"
    ds.ReferencedStudySequence = []
    step = Dataset()
    step.ScheduledStationAETitle = station
    step.Modality = "CT"
    step.ScheduledProcedureStepStartDate = f"{day:%Y%m%d}"
    step.ScheduledProcedureStepStartTime = "093000"
    step.ScheduledProcedureStepID = f"SPS{n}"
    step.ScheduledProcedureStepDescription = f"chest {n}"
    step.ScheduledPerformingPhysicianName = ""
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "P1", "99RIS", "plain"
    step.ScheduledProtocolCodeSequence = [code]
    ds.ScheduledProcedureStepSequence = [step]
    ds.PatientWeight = "61"
    return ds


def _polled(ini: Path) -> dict[str, worklist.WorklistItem]:
    archive = Archive(load(ini))
    try:
        return {i.accession_number: i for i in worklist.items() if i.remote_ae == "RISWL"}
    finally:
        archive.close()


def _jobs(ini: Path) -> list[dict]:
    return [j for j in json.loads(cli(ini, "queue", "--json").stdout) if j["kind"] == "worklist"]


@pytest.fixture
def ris(tmp_path, ini):
    scp = WorklistSCP(tmp_path / "wl", ini=ini)
    yield scp
    scp.stop()


def test_the_box_brokers_a_remote_worklist_and_follows_its_changes(ris, ini):
    ris.write("one", _entry(1, name="Müller^Anna"))
    ris.write("two", _entry(2))
    ris.write("old", _entry(3, day=TODAY - dt.timedelta(days=5)))  # before the polled dates
    server = Server(ini).start()
    try:
        got = poll(lambda: len(_polled(ini)) == 2 and _polled(ini), 30, what="the first poll")
        one = got["RA1"]
        assert (one.patient_name, one.patient_id, one.station_ae, one.modality) == (
            "Müller^Anna", "RIS1", "CT01", "CT")  # fmt: skip
        assert (one.start_date, one.start_time, one.sps_id, one.requested_procedure_id) == (
            f"{TODAY:%Y%m%d}", "093000", "SPS1", "RP1")  # fmt: skip
        assert one.study_instance_uid == "1.2.826.0.1.3680043.8.498.4242.1"
        assert json.loads(one.protocol_code)[0]["00080100"]["Value"] == ["P1"]
        assert one.weight == "61"
        assert (one.source, one.status) == ("poll:RISWL", "scheduled")
        (job,) = _jobs(ini)
        assert (job["state"], job["owner"]) == ("done", "worklist poll")
        # The box brokers them: a modality asking it by station gets the RIS's steps.
        found = dcmtk("findscu", "-W", "-v", "-aet", "FINDSCU", "-aec", server.ae_title,
                      "127.0.0.1", str(server.port),
                      "-k", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle=CT01",
                      "-k", "PatientName", "-k", "AccessionNumber", check=True)  # fmt: skip
        text = found.stdout + found.stderr
        assert text.count("Find Response: ") == 2 and "[RA1 ]" in text and "[RA2 ]" in text
        assert "2 steps from RISWL: 2 new, 0 updated, 0 no longer listed removed" in (
            job["last_error"])  # fmt: skip
        # The RIS cancels one step and moves the other; the modality began the first.
        archive = Archive(load(ini))
        try:
            worklist.set_status(got["RA2"].id, worklist.IN_PROGRESS)
            ris.remove("one")
            ris.remove("two")
            ris.write("two", _entry(2, station="CT02"))
            ris.write("four", _entry(4))
            root = login(create_app(load(ini), archive, clock=Clock()), "root")
            r = root.post("/aes/RISWL/worklist.json")
            job_id = r.json["job"]
        finally:
            archive.close()
        poll(lambda: any(j["id"] == job_id and j["state"] == "done" for j in _jobs(ini)), 30,
             what="Get worklist")  # fmt: skip
        after = _polled(ini)
        assert sorted(after) == ["RA2", "RA4"]  # RA1 was still scheduled: cancelled there
        assert (after["RA2"].id, after["RA2"].station_ae, after["RA2"].status) == (
            got["RA2"].id, "CT02", "in progress")  # fmt: skip
        assert "worklist poll of RISWL: 2 steps from RISWL: 1 new, 1 updated, 1 no longer" in (
            server.output())  # fmt: skip
    finally:
        server.stop()


def test_interval_zero_stops_the_polls_not_the_button(tmp_path):
    ini = write_config(tmp_path / "box", WorklistPollInterval=0)
    ris = WorklistSCP(tmp_path / "wl", ini=ini)
    ris.write("one", _entry(1))
    server = Server(ini).start()
    try:
        status = load(ini).status_path
        seen = {status.stat().st_mtime_ns}
        # Two turns of the main loop (it writes the status each turn) and no poll.
        poll(lambda: seen.add(status.stat().st_mtime_ns) or len(seen) >= 3, 15,
             what="two turns of the main loop")  # fmt: skip
        assert _jobs(ini) == [] and _polled(ini) == {}
        archive = Archive(load(ini))
        try:
            root = login(create_app(load(ini), archive, clock=Clock()), "root")
            root.post("/aes/RISWL/worklist.json")
        finally:
            archive.close()
        poll(lambda: "RA1" in _polled(ini), 30, what="the asked-for poll")
        ris.write("two", _entry(2))
        out = cli(ini, "worklist", "poll", "--wait").stdout
        assert "worklist poll queued" in out and "1 new" in out
        assert sorted(_polled(ini)) == ["RA1", "RA2"]
    finally:
        server.stop()
        ris.stop()


def test_an_ae_that_is_not_a_worklist_scp_is_not_polled_nor_asked(ini, tmp_path):
    cli(ini, "ae", "add", "PLAINPACS", "--host", "127.0.0.1", "--port", "11112")
    archive = Archive(load(ini))
    try:
        root = login(create_app(load(ini), archive, clock=Clock()), "root")
        r = root.post("/aes/PLAINPACS/worklist.json", status=400)
        assert "not marked as a worklist SCP" in r.json["error"]
        page = root.get("/aes").text
        assert "PLAINPACS" in page and "/aes/PLAINPACS/worklist" not in page
    finally:
        archive.close()
    assert "MWL" in cli(ini, "ae", "list").stdout.splitlines()[0]


def test_a_study_scheduled_event_fetches_that_study_from_the_worklist_scps(tmp_path):
    # Detached Study Management (item 9): the RIS announces a scheduled study and the box
    # asks its worklist SCPs for it at once, the periodic polls being off.
    from tests.interop.test_detached_study import _notify

    ini = write_config(tmp_path / "box", WorklistPollInterval=0)
    cli(ini, "ae", "add", "RIS", "--host", "127.0.0.1")
    ris = WorklistSCP(tmp_path / "wl", ini=ini)
    ris.write("five", _entry(5))
    ris.write("six", _entry(6))
    server = Server(ini).start()
    try:
        info = Dataset()
        info.SpecificCharacterSet = "ISO_IR 100"
        info.ScheduledStudyStartDate = f"{TODAY:%Y%m%d}"
        info.ReferencedPatientSequence = []
        study = "1.2.826.0.1.3680043.8.498.4242.5"
        assert _notify(server, [(2, study, info)]) == [0x0000]
        got = poll(lambda: "RA5" in _polled(ini) and _polled(ini), 30, what="the study's poll")
        assert sorted(got) == ["RA5"]  # that study only: the other step is not fetched
        polls = [j for j in _jobs(ini) if j["destination"] == "RISWL"]
        assert len(polls) == 1 and "study 1.2.826.0.1.3680043.8.498.4242.5" in polls[0]["label"]
    finally:
        server.stop()
        ris.stop()
