"""What the browsing pages share: privacy-checked lookups, row builders, page cursors.

The pages themselves register from their own modules, one job each:
``search`` (study and patient searches), ``pages`` (patient, study, series
and image pages), ``marks`` (read/unread, private/public) and ``edit``
(edit and delete). Lists page by keyset (the last row's sort key is the
cursor), so page 5,000 costs what page 1 costs even at a million instances;
the sort keys are indexed columns (study_date, patient_name_ci). Privacy
filters are SQL conditions from ``privileges``, so a user never receives a
row to hide, and every lookup of one object answers 404 for what the user
may not see.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pacsbox.db.models import Instance, Patient, Series, Study
from pacsbox.errors import NotFound, UsageError
from pacsbox.web import privileges as pv
from pacsbox.web.core import Ctx, done

PAGE = 50  # rows per list page (read at call time: the tests make it small)
UID = "<uid:re:[0-9][0-9.]{0,63}>"


# -- cursors -----------------------------------------------------------------------------


def cursor_out(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def cursor_in(text: str) -> list[Any] | None:
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        values = json.loads(raw)
    except ValueError:
        raise UsageError("bad page cursor") from None
    if not isinstance(values, list) or len(values) != 2 or not isinstance(values[1], int):
        raise UsageError("bad page cursor")
    return values


# -- rows ----------------------------------------------------------------------------------


def study_row(s: Study) -> dict[str, Any]:
    pt = s.patient
    return {
        "study_uid": s.study_instance_uid,
        "patient_pk": pt.id,
        "patient_id": pt.patient_id,
        "patient_name": pt.patient_name,
        "study_date": s.study_date,
        "study_time": s.study_time,
        "accession_number": s.accession_number,
        "study_id": s.study_id,
        "description": s.study_description,
        "modalities": s.modalities.replace("\\", "/"),
        "referring_physician": s.referring_physician,
        "reading_physician": s.reading_physician,
        "institution_name": s.institution_name,
        "num_series": s.num_series,
        "num_instances": s.num_instances,
        "private": s.private,
        "read": s.read,
        "url": f"/studies/{s.study_instance_uid}",
    }


def patient_row(pt: Patient) -> dict[str, Any]:
    return {
        "pk": pt.id,
        "patient_id": pt.patient_id,
        "issuer": pt.issuer,
        "patient_name": pt.patient_name,
        "birth_date": pt.birth_date,
        "sex": pt.sex,
        "num_studies": pt.num_studies,
        "num_instances": pt.num_instances,
        "private": pt.private,
        "url": f"/patients/{pt.id}",
    }


def instance_row(i: Instance) -> dict[str, Any]:
    return {
        "sop_uid": i.sop_instance_uid,
        "sop_class_uid": i.sop_class_uid,
        "instance_number": i.instance_number,
        "rows": i.rows,
        "columns": i.columns,
        "frames": i.number_of_frames or 1,
        "transfer_syntax": i.transfer_syntax_uid,
        "url": f"/instances/{i.sop_instance_uid}",
        "image": f"/instances/{i.sop_instance_uid}/image.jpg",
    }


# -- lookups that enforce privacy --------------------------------------------------------------


def get_study(ctx: Ctx, p: pv.Principal, uid: str) -> Study:
    study = Study.get_or_none(Study.study_instance_uid == uid)
    if study is None or not pv.can_see_study(p, study):
        raise NotFound(f"no study {uid}")  # same answer: existence is not revealed
    return study


def get_series(ctx: Ctx, p: pv.Principal, uid: str) -> Series:
    series = Series.get_or_none(Series.series_instance_uid == uid)
    if series is None or not pv.can_see_study(p, series.study):
        raise NotFound(f"no series {uid}")
    return series


def get_instance(ctx: Ctx, p: pv.Principal, uid: str) -> Instance:
    inst = Instance.get_or_none(Instance.sop_instance_uid == uid)
    if inst is None or not pv.can_see_study(p, inst.series.study):
        raise NotFound(f"no image {uid}")
    return inst


def get_patient(ctx: Ctx, p: pv.Principal, pk: int) -> Patient:
    pt = Patient.get_or_none(Patient.id == pk)
    if pt is None or not pv.can_see_patient(p, pt):
        raise NotFound(f"no patient {pk}")
    return pt


def note_private_view(ctx: Ctx, study: Study) -> None:
    if study.private:
        ctx.journal("view-private", study.study_instance_uid)


_done = done  # the shared post answer (core.done)
