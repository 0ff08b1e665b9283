"""The worklist C-FIND's identifier reading and answers, in process on a real SQLite index:
what a remote SCP sent beyond the columns comes back, coded items come back, a bad
sequence is A900, and the person-name case setting is honoured."""

from __future__ import annotations

import json

import pytest
from pydicom.dataset import Dataset

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import worklist
from pacsbox.db import worklist_query as wq
from pacsbox.errors import IdentifierMismatch, UnableToProcess

CODE = [{"00080100": {"vr": "SH", "Value": ["CTHEAD"]},
         "00080102": {"vr": "SH", "Value": ["LOCAL"]},
         "00080104": {"vr": "LO", "Value": ["CT of the head"]}}]  # fmt: skip


@pytest.fixture
def index(ini):
    archive = Archive(load(ini))
    yield
    archive.close()


def _ident(name: str = "", **step: str) -> Dataset:
    ds = Dataset()
    ds.PatientName = name
    item = Dataset()
    for k, v in step.items():
        setattr(item, k, v)
    ds.ScheduledProcedureStepSequence = [item]
    return ds


def _add(name: str, **more: str) -> int:
    return worklist.add({"patient_name": name, "modality": "CT", "station_ae": "CT1",
                         "start_date": "20261204", **more})  # fmt: skip


def test_codes_and_what_a_remote_scp_sent_come_back(index):
    extra = Dataset()
    extra.PatientComments = "from the RIS"
    step = Dataset()
    step.ScheduledStationGeographicLocationCodeSequence = []
    step.CommentsOnTheScheduledProcedureStep = "fasting"
    extra.ScheduledProcedureStepSequence = [step]
    _add("SMITH^JOHN", requested_procedure_code=json.dumps(CODE), protocol_code=json.dumps(CODE),
         extra=json.dumps(extra.to_json_dict()), pregnancy_status="4")  # fmt: skip
    ident = _ident("SMITH*")
    ident.PatientComments = ""
    ident.EthnicGroup = ""
    ident.ScheduledProcedureStepSequence[0].CommentsOnTheScheduledProcedureStep = ""
    (rsp,) = wq.find(wq.parse(ident))
    assert rsp.RequestedProcedureCodeSequence[0].CodeValue == "CTHEAD"
    sps = rsp.ScheduledProcedureStepSequence[0]
    assert sps.ScheduledProtocolCodeSequence[0].CodeMeaning == "CT of the head"
    assert (
        rsp.PatientComments == "from the RIS"
        and sps.CommentsOnTheScheduledProcedureStep == "fasting"
    )
    assert "EthnicGroup" in rsp and rsp.EthnicGroup in (None, "")  # asked, unknown: empty
    assert rsp.PregnancyStatus == 4


def test_bad_identifiers(index):
    two = _ident()
    two.ScheduledProcedureStepSequence.append(Dataset())
    with pytest.raises(IdentifierMismatch):
        wq.parse(two)
    with pytest.raises(UnableToProcess):
        wq.parse(_ident(ScheduledProcedureStepStartDate="20261304-x"))
    with pytest.raises(UnableToProcess):
        wq.parse(_ident(ScheduledProcedureStepStartTime="9 o'clock"))


def test_name_case_and_status_keys(index):
    a = _add("Smith^Anna")
    b = _add("SMITH^BOB")
    worklist.set_status(b, worklist.COMPLETED)
    ids = lambda ident, ci=True: [  # noqa: E731
        str(r.PatientName) for r in wq.find(wq.parse(ident, pn_case_insensitive=ci))
    ]
    assert ids(_ident("smith*")) == ["Smith^Anna"]
    assert ids(_ident("smith*"), ci=False) == []
    assert ids(_ident("SMITH*", ScheduledProcedureStepStatus="*")) == ["Smith^Anna", "SMITH^BOB"]
    assert ids(_ident(ScheduledProcedureStepStatus="COMPLETED")) == ["SMITH^BOB"]
    assert ids(_ident(ScheduledProcedureStepStatus="NONSENSE")) == []
    assert a


def test_typed_times_are_stored_to_the_second_so_ranges_compare(index):
    assert [wq.full_time(t) for t in ("09:30", "0930", "09", "093015", "")] == [
        "093000", "093000", "090000", "093015", ""
    ]  # fmt: skip
    _add("TIME^ONE", start_time=wq.full_time("09:30"))
    found = wq.find(wq.parse(_ident(ScheduledProcedureStepStartTime="093000-100000")))
    assert [str(r.PatientName) for r in found] == ["TIME^ONE"]
