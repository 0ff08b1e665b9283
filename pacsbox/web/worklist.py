"""The worklist page and the order-entry form (issue 18): what the modalities will be given.

Clinics without a RIS schedule procedures here; the items are the same rows
HL7 orders and ``pacsbox worklist add`` make (``db/worklist``), so a modality's
worklist C-FIND returns them at once. Everyone logged in may see the list (as
the studies page); scheduling, discontinuing and removing change what a
modality will do, so they need Modify. The filter matches through the same
matcher as the worklist C-FIND.
"""

from __future__ import annotations

import re

import bottle

from pacsbox.db import aes, worklist, worklist_query
from pacsbox.db.models import Patient
from pacsbox.errors import PacsboxError, UsageError
from pacsbox.web import privileges as pv
from pacsbox.web.core import Ctx, arg, done, form, wants_json

MODALITIES = ("CT", "MR", "US", "CR", "DX", "MG", "NM", "PT", "XA", "RF", "IO", "ES", "OT")
PK = "<pk:int>"
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
# Form field -> worklist column.
FORM_FIELDS = {
    "patient_id": "patient_id",
    "patient_name": "patient_name",
    "birth_date": "birth_date",
    "sex": "sex",
    "accession": "accession_number",
    "modality": "modality",
    "station_ae": "station_ae",
    "date": "start_date",
    "time": "start_time",
    "referring": "referring_physician",
}


def _dicom_date(value: str) -> str:
    """An ISO date (a date input's value) as YYYYMMDD; anything else as typed."""
    m = _ISO_DATE.match(value)
    return "".join(m.groups()) if m else value


def _known_patient(p: pv.Principal, patient_id: str) -> Patient | None:
    """The index's patient of that ID, when this user may see it."""
    if not patient_id:
        return None
    found: Patient | None = (
        Patient.select().where((Patient.patient_id == patient_id) & pv.patient_filter(p)).first()
    )
    return found


def order_from_form(p: pv.Principal) -> dict[str, str]:
    """The worklist item of the form; an ID of a patient in the index fills what is left
    empty (picking an existing patient). Raises UsageError naming what is wrong."""
    values = {col: form(name) for name, col in FORM_FIELDS.items()}
    values["start_date"] = _dicom_date(values["start_date"])
    values["birth_date"] = _dicom_date(values["birth_date"])
    values["start_time"] = worklist_query.full_time(values["start_time"])
    values["modality"] = values["modality"].upper()
    procedure = form("procedure")
    values["requested_procedure_description"] = values["sps_description"] = procedure
    known = _known_patient(p, values["patient_id"])
    if known is not None:
        for col in ("patient_name", "birth_date", "sex"):
            values[col] = values[col] or getattr(known, col)
    if not values["start_date"]:
        raise UsageError("date: when the procedure is scheduled")
    if not values["station_ae"]:
        raise UsageError("station AE: the modality that performs it")
    return values


def _filters() -> tuple[dict[str, str], dict[str, str], tuple[str, ...]]:
    """The list's filter fields, their DICOM keys and the states shown."""
    shown = {k: arg(k) for k in ("date", "modality", "station", "status")}
    sps = worklist_query.SPS
    keys = {}
    if shown["date"]:
        keys[f"{sps}.ScheduledProcedureStepStartDate"] = _dicom_date(shown["date"])
    if shown["modality"]:
        keys[f"{sps}.Modality"] = shown["modality"].upper()
    if shown["station"]:
        keys[f"{sps}.ScheduledStationAETitle"] = shown["station"]
    status = shown["status"]
    if status and status not in worklist.STATES:
        raise UsageError(f"status: one of {', '.join(worklist.STATES)}")
    return shown, keys, (status,) if status else worklist.STATES


def register(ctx: Ctx) -> None:
    @ctx.page("/worklist", template="worklist.tpl")
    def worklist_page(ident):
        shown, keys, states = _filters()
        rows = [
            worklist.summary(item) | {"delete": f"/worklist/{item.id}/delete"}
            for item in worklist_query.search(keys, states)
        ]
        return {
            "title": "Worklist",
            "items": rows,
            "filters": shown,
            "states": worklist.STATES,
            "modalities": MODALITIES,
        }

    def form_page(p: pv.Principal, error: str = "", values: dict | None = None) -> dict:
        typed = dict(values or {})
        pk = arg("patient")
        if pk.isdigit() and not typed:
            pt = Patient.select().where((Patient.id == int(pk)) & pv.patient_filter(p)).first()
            if pt is not None:
                typed = {"patient_id": pt.patient_id, "patient_name": pt.patient_name,
                         "birth_date": pt.birth_date, "sex": pt.sex}  # fmt: skip
        patients = (
            Patient.select(Patient.patient_id, Patient.patient_name)
            .where(pv.patient_filter(p) & (Patient.patient_id != ""))
            .order_by(Patient.id.desc())
            .limit(200)
        )
        return {
            "title": "Schedule a procedure",
            "error": error,
            "values": typed,
            "stations": [ae.title for ae in aes.ae_list()],
            "modalities": MODALITIES,
            "patients": [(pt.patient_id, pt.patient_name) for pt in patients],
        }

    @ctx.page("/worklist/new", template="worklistform.tpl", privilege="modify")
    def order_form(ident):
        return form_page(ident.principal)

    @ctx.page("/worklist", method="POST", template="worklistform.tpl", privilege="modify")
    def order_save(ident):
        user = ident.principal.name
        try:
            values = order_from_form(ident.principal)
            item_id = worklist.add(values, source=f"web:{user}")
        except PacsboxError as exc:
            if wants_json():
                raise
            bottle.response.status = exc.http_status
            typed = {name: form(name) for name in (*FORM_FIELDS, "procedure")}
            return form_page(ident.principal, str(exc), typed)
        detail = f"{values['modality']} on {values['station_ae']} {values['start_date']}"
        ctx.journal("worklist-add", target=str(item_id), detail=detail)
        return done("/worklist", f"worklist item {item_id} scheduled", id=item_id)

    @ctx.page(f"/worklist/{PK}/discontinue", method="POST", privilege="modify")
    def order_discontinue(ident, pk):
        worklist.set_status(pk, worklist.DISCONTINUED)
        ctx.journal("worklist-discontinue", target=str(pk))
        return done("/worklist", f"worklist item {pk} discontinued")

    @ctx.page(f"/worklist/{PK}/delete", method="POST", privilege="modify")
    def order_remove(ident, pk):
        worklist.remove(pk)
        ctx.journal("worklist-remove", target=str(pk))
        return done("/worklist", f"worklist item {pk} removed")


__all__ = ["MODALITIES", "order_from_form", "register"]
