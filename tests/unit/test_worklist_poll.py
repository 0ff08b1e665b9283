"""A remote worklist's C-FIND response as a worklist item's columns (SCU-6)."""

from __future__ import annotations

import json

from pydicom.dataset import Dataset

from pacsbox.outbound import worklist_poll


def test_a_response_becomes_columns_and_the_rest_extra():
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.AccessionNumber = "A" * 20  # a remote that sends too long a value is cut, not refused
    ds.StudyInstanceUID = "1.2.3"
    ds.InstitutionName = "Elsewhere"  # no column of ours: kept as DICOM JSON
    step = Dataset()
    step.ScheduledStationAETitle = "MR1"
    step.ScheduledProcedureStepStartDate = "20261204"
    ds.ScheduledProcedureStepSequence = [step]
    row = worklist_poll.row_of(ds)
    assert (row["patient_name"], row["accession_number"], row["station_ae"]) == (
        "Doe^Jane", "A" * 16, "MR1")  # fmt: skip
    assert (row["start_date"], row["protocol_code"], row["modality"]) == ("20261204", "", "")
    assert json.loads(row["extra"]) == {"00080080": {"vr": "LO", "Value": ["Elsewhere"]}}


def test_the_identifier_asks_for_every_key_from_a_start_date():
    ds = worklist_poll.identifier(start="20261203")
    (step,) = ds.ScheduledProcedureStepSequence
    assert step.ScheduledProcedureStepStartDate == "20261203-"
    assert all(kw in ds for kw in worklist_poll.TOP)
    assert all(kw in step for kw in worklist_poll.STEP)
    one = worklist_poll.identifier(study_uid="1.2.3")
    assert one.StudyInstanceUID == "1.2.3"
    assert one.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate == ""
