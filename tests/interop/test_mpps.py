"""MPPS SCP against pynetdicom as the modality (issue 18 item 3, NET-8).

No MPPS client is packaged for Debian 12, so pynetdicom (an implementation
nobody here wrote) plays the scanner: it opens a step on a worklist item with
N-CREATE, stores the images, and completes the step with N-SET; the worklist
item follows, and the study page lists the step. Every refusal of PS3.4 F.7
is asked for and its status checked.
"""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    ModalityPerformedProcedureStep,
)

from pacsbox.archive import Archive
from pacsbox.config import load
from pacsbox.db import worklist
from pacsbox.db.auth_models import Journal
from pacsbox.web.app import create_app
from tests.integration.web.conftest import Clock, login
from tests.synth import make_instance

MPPS = ModalityPerformedProcedureStep


@pytest.fixture
def box(ini, server):
    """The running daemon and an in-process handle on its index."""
    archive = Archive(load(ini))
    yield server, archive
    archive.close()


def _scheduled_item() -> worklist.WorklistItem:
    item_id = worklist.add(
        {"patient_id": "MP1", "patient_name": "STEP^ONE", "accession_number": "ACC77",
         "modality": "CT", "station_ae": "STORESCU", "start_date": "20261204",
         "start_time": "0800", "requested_procedure_description": "CT HEAD"},
        source="cli",
    )  # fmt: skip
    return worklist.get(item_id)


def _create_ds(item: worklist.WorklistItem, status: str = "IN PROGRESS") -> Dataset:
    ds = Dataset()
    ref = Dataset()
    ref.StudyInstanceUID = item.study_instance_uid
    ref.AccessionNumber = item.accession_number
    ref.ScheduledProcedureStepID = item.sps_id
    ref.RequestedProcedureID = item.requested_procedure_id
    ref.ReferencedStudySequence = []
    ds.ScheduledStepAttributesSequence = [ref]
    ds.PatientName = item.patient_name
    ds.PatientID = item.patient_id
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "STORESCU"
    ds.PerformedProcedureStepStartDate = "20261204"
    ds.PerformedProcedureStepStartTime = "081500"
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepDescription = "CT HEAD plain"
    ds.Modality = "CT"
    ds.PerformedSeriesSequence = []
    return ds


def _final(status: str, series_uid: str | None = None) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20261204"
    ds.PerformedProcedureStepEndTime = "083000"
    if series_uid:
        s = Dataset()
        s.SeriesInstanceUID = series_uid
        s.PerformingPhysicianName = ""
        s.ProtocolName = "HEAD"
        s.OperatorsName = ""
        s.SeriesDescription = "axial"
        s.RetrieveAETitle = ""
        s.ReferencedImageSequence = []
        s.ReferencedNonImageCompositeSOPInstanceSequence = []
        ds.PerformedSeriesSequence = [s]
    return ds


def _assoc(server, received: list | None = None):
    """An association of the scanner; ``received`` collects the responses' command sets."""
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(MPPS)
    ae.add_requested_context(CTImageStorage)
    handlers = []
    if received is not None:
        handlers = [(evt.EVT_DIMSE_RECV, lambda e: received.append(e.message.command_set))]
    assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title, evt_handlers=handlers)
    assert assoc.is_established
    return assoc


def test_a_scanner_performs_a_worklist_item_and_the_study_page_shows_it(box, ini):
    server, archive = box
    item = _scheduled_item()
    received: list[Dataset] = []
    assoc = _assoc(server, received)
    try:
        # No instance UID from the scanner: the SCP makes one and names it (PS3.7 10.1.5).
        status, _ = assoc.send_n_create(_create_ds(item), MPPS, None)
        assert status.Status == 0x0000
        uid = str(received[-1].AffectedSOPInstanceUID)
        assert uid.startswith("2.25.")
        assert worklist.get(item.id).status == worklist.IN_PROGRESS
        # The scanner stores its images under the worklist item's study UID.
        data = make_instance(study_uid=item.study_instance_uid, patient_id="MP1",
                             patient_name="STEP^ONE", accession="ACC77")  # fmt: skip
        image = dcmread(io.BytesIO(data))
        assert assoc.send_c_store(image).Status == 0x0000
        # Ending without the performed series is refused; with it, the step completes.
        status, _ = assoc.send_n_set(_final("COMPLETED"), MPPS, uid)
        assert status.Status == 0x0110
        assert "PerformedSeriesSequence" in status.ErrorComment
        status, _ = assoc.send_n_set(_final("COMPLETED", image.SeriesInstanceUID), MPPS, uid)
        assert status.Status == 0x0000
        assert worklist.get(item.id).status == worklist.COMPLETED
        # A completed step may no longer be updated (PS3.4 F.7.2.2.4.2).
        status, _ = assoc.send_n_set(_final("DISCONTINUED"), MPPS, uid)
        assert status.Status == 0x0110
        assert "no longer be updated" in status.ErrorComment
        assert worklist.get(item.id).status == worklist.COMPLETED
    finally:
        assoc.release()
    cfg = load(ini)
    root = login(create_app(cfg, archive, clock=Clock()), "root")
    steps = root.get(f"/studies/{item.study_instance_uid}.json").json["performed_steps"]
    assert [(s["status"], s["pps_id"], s["station_ae"], s["worklist_item"]) for s in steps] == [
        ("COMPLETED", "PPS1", "STORESCU", item.id)]  # fmt: skip
    page = root.get(f"/studies/{item.study_instance_uid}").text
    assert "Performed procedure steps" in page and "CT HEAD plain" in page
    actions = [e.action for e in Journal.select().where(Journal.target == uid)]
    assert actions == ["mpps-created", "mpps-set"]
    assert f"MPPS {uid} from STORESCU: COMPLETED, 1 series" in server.output()


def test_a_discontinued_step_discontinues_its_item(box):
    server, _ = box
    item = _scheduled_item()
    assoc = _assoc(server)
    try:
        uid = "1.2.826.0.1.3680043.8.498.9911"
        status, _ = assoc.send_n_create(_create_ds(item), MPPS, uid)
        assert status.Status == 0x0000
        status, _ = assoc.send_n_set(_final("DISCONTINUED"), MPPS, uid)
        assert status.Status == 0x0000
    finally:
        assoc.release()
    assert worklist.get(item.id).status == worklist.DISCONTINUED


def test_what_ps34_refuses_gets_its_status(box):
    server, _ = box
    item = _scheduled_item()
    assoc = _assoc(server)
    try:
        uid = "1.2.826.0.1.3680043.8.498.9912"
        # A new step must be IN PROGRESS: 0106 invalid attribute value.
        status, _ = assoc.send_n_create(_create_ds(item, "COMPLETED"), MPPS, uid)
        assert status.Status == 0x0106
        # A type 1 attribute missing: 0120, naming it.
        ds = _create_ds(item)
        del ds.PerformedStationAETitle
        status, _ = assoc.send_n_create(ds, MPPS, uid)
        assert (status.Status, status.ErrorComment) == (0x0120, "PerformedStationAETitle missing")
        assert worklist.get(item.id).status == worklist.SCHEDULED
        # Created once; the same instance again is a duplicate (0111).
        assert assoc.send_n_create(_create_ds(item), MPPS, uid)[0].Status == 0x0000
        assert assoc.send_n_create(_create_ds(item), MPPS, uid)[0].Status == 0x0111
        # A status that is none of the three: 0106; the step stays open.
        status, _ = assoc.send_n_set(_final("FINISHED"), MPPS, uid)
        assert status.Status == 0x0106
        # What identifies the step cannot change by N-SET.
        change = Dataset()
        change.PerformedStationAETitle = "OTHER"
        assert assoc.send_n_set(change, MPPS, uid)[0].Status == 0x0106
        # An unknown step (issue 18 names 0119).
        status, _ = assoc.send_n_set(_final("COMPLETED"), MPPS, "1.2.3.999")
        assert status.Status == 0x0119
        # The step is still IN PROGRESS and can be discontinued.
        assert assoc.send_n_set(_final("DISCONTINUED"), MPPS, uid)[0].Status == 0x0000
    finally:
        assoc.release()
    assert "MPPS N-CREATE from STORESCU refused: PerformedStationAETitle missing" in (
        server.output()
    )
