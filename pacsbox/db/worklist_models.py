"""Modality worklist items and performed procedure steps (NET-6, NET-8, SCU-6, INT-1).

One row per Scheduled Procedure Step: that is what a worklist C-FIND returns,
one response per step, so every matching key of PS3.4 K.6 (the statement's
table 40) is a column and a query never decodes a data set. What a remote
worklist SCP sends beyond these columns is kept as DICOM JSON in ``extra`` and
returned as it came. Made by migration 19, not by 0001's CORE_MODELS.
"""

from __future__ import annotations

from peewee import AutoField, CharField, DateTimeField, IntegerField, TextField

from pacsbox.db.models import BaseModel, utcnow

# Item states (the DICOM Scheduled Procedure Step Status is derived from them).
SCHEDULED, IN_PROGRESS, COMPLETED, DISCONTINUED = (
    "scheduled",
    "in progress",
    "completed",
    "discontinued",
)
STATES = (SCHEDULED, IN_PROGRESS, COMPLETED, DISCONTINUED)


class WorklistItem(BaseModel):
    """One scheduled procedure step, with its request, order, visit and patient."""

    id: AutoField[int]
    status = CharField(max_length=16, default=SCHEDULED, index=True)
    # Who made it: "cli", "web:USER", "hl7:SENDINGAPP", "poll:AE".
    source = CharField(max_length=80, default="")
    created = DateTimeField(default=utcnow)
    updated = DateTimeField(default=utcnow)
    # Order numbers an HL7 cancel or status change finds the item by.
    placer_order = CharField(max_length=64, default="", index=True)  # ORC-2 / (0040,2016)
    filler_order = CharField(max_length=64, default="", index=True)  # ORC-3 / (0040,2017)
    # Patient Identification / Demographic
    patient_id = CharField(max_length=64, default="", index=True)  # (0010,0020)
    issuer = CharField(max_length=64, default="")  # (0010,0021)
    patient_name = CharField(max_length=324, default="")  # (0010,0010)
    patient_name_ci = CharField(max_length=324, default="")  # upper-cased (0010,0010)
    birth_date = CharField(max_length=8, default="")  # (0010,0030)
    sex = CharField(max_length=16, default="")  # (0010,0040)
    weight = CharField(max_length=16, default="")  # (0010,1030)
    size = CharField(max_length=16, default="")  # (0010,1020)
    medical_alerts = CharField(max_length=64, default="")  # (0010,2000)
    allergies = CharField(max_length=64, default="")  # (0010,2110)
    pregnancy_status = CharField(max_length=8, default="")  # (0010,21C0) US as text
    # Visit
    admission_id = CharField(max_length=64, default="")  # (0038,0010)
    patient_location = CharField(max_length=64, default="")  # (0038,0300)
    # Imaging Service Request
    accession_number = CharField(max_length=16, default="", index=True)  # (0008,0050)
    referring_physician = CharField(max_length=324, default="")  # (0008,0090)
    requesting_physician = CharField(max_length=324, default="")  # (0032,1032)
    requesting_service = CharField(max_length=64, default="")  # (0032,1033)
    # Requested Procedure
    requested_procedure_id = CharField(max_length=16, default="")  # (0040,1001)
    requested_procedure_description = CharField(max_length=64, default="")  # (0032,1060)
    requested_procedure_priority = CharField(max_length=16, default="")  # (0040,1003)
    requested_procedure_code = TextField(default="")  # (0032,1064) DICOM JSON items
    study_instance_uid = CharField(max_length=64, default="", index=True)  # (0020,000D)
    reason_for_procedure = CharField(max_length=64, default="")  # (0040,1002)
    # Scheduled Procedure Step (the one item of (0040,0100))
    sps_id = CharField(max_length=16, default="")  # (0040,0009)
    sps_description = CharField(max_length=64, default="")  # (0040,0007)
    station_ae = CharField(max_length=16, default="", index=True)  # (0040,0001)
    station_name = CharField(max_length=16, default="")  # (0040,0010)
    sps_location = CharField(max_length=16, default="")  # (0040,0011)
    modality = CharField(max_length=16, default="", index=True)  # (0008,0060)
    start_date = CharField(max_length=8, default="", index=True)  # (0040,0002)
    start_time = CharField(max_length=16, default="")  # (0040,0003)
    performing_physician = CharField(max_length=324, default="")  # (0040,0006)
    protocol_code = TextField(default="")  # (0040,0008) DICOM JSON items
    premedication = CharField(max_length=64, default="")  # (0040,0012)
    contrast_agent = CharField(max_length=64, default="")  # (0032,1070)
    # Anything else a remote worklist SCP returned: a DICOM JSON object.
    extra = TextField(default="")
    # The AE whose worklist this item was polled from ("" for local items).
    remote_ae = CharField(max_length=16, default="", index=True)

    class Meta:
        indexes = ((("station_ae", "start_date"), False),)


class PerformedStep(BaseModel):
    """One Modality Performed Procedure Step (NET-8), keyed by its SOP Instance UID."""

    id: AutoField[int]
    sop_instance_uid = CharField(max_length=64, unique=True)  # (0000,1000) Affected SOP
    status = CharField(max_length=16, default="IN PROGRESS")  # (0040,0252) as DICOM spells it
    calling_ae = CharField(max_length=16, default="")
    worklist_item = IntegerField(default=0, index=True)  # WorklistItem.id, 0 when none
    study_instance_uid = CharField(max_length=64, default="", index=True)  # (0020,000D)
    accession_number = CharField(max_length=16, default="")  # (0008,0050)
    patient_id = CharField(max_length=64, default="")  # (0010,0020)
    patient_name = CharField(max_length=324, default="")  # (0010,0010)
    pps_id = CharField(max_length=16, default="")  # (0040,0253)
    pps_description = CharField(max_length=64, default="")  # (0040,0254)
    modality = CharField(max_length=16, default="")  # (0008,0060)
    station_ae = CharField(max_length=16, default="")  # (0040,0241) Performed Station AE
    start_date = CharField(max_length=8, default="")  # (0040,0244)
    start_time = CharField(max_length=16, default="")  # (0040,0245)
    end_date = CharField(max_length=8, default="")  # (0040,0250)
    end_time = CharField(max_length=16, default="")  # (0040,0251)
    # The whole N-CREATE data set with every N-SET applied, as DICOM JSON.
    dataset = TextField(default="")
    created = DateTimeField(default=utcnow)
    updated = DateTimeField(default=utcnow)


WORKLIST_MODELS = [WorklistItem, PerformedStep]
