"""The patient, study, series and image pages and their JSON twins (WEB-1, WEB-5).

Every lookup goes through ``browse``'s privacy checks; a private study's
page is journalled when it is shown. The image page links its neighbours in
the series by instance number.
"""

from __future__ import annotations

from pacsbox.db import commitments, mpps, notes
from pacsbox.db.models import Instance, Patient, Series, Study
from pacsbox.errors import UsageError
from pacsbox.web import browse
from pacsbox.web import privileges as pv
from pacsbox.web.browse import (
    UID,
    get_instance,
    get_patient,
    get_series,
    get_study,
    instance_row,
    note_private_view,
    patient_row,
    study_row,
)
from pacsbox.web.core import Ctx, arg, url


def register(ctx: Ctx) -> None:
    @ctx.page("/patients/<pk:int>", template="patient.tpl")
    def patient(ident, pk):
        pt = get_patient(ctx, ident.principal, pk)
        rows = (
            Study.select(Study, Patient)
            .join(Patient)
            .where((Study.patient == pt.id) & pv.study_filter(ident.principal))
            .order_by(Study.study_date.desc(), Study.id.desc())
        )
        return {
            "title": f"Patient {pt.patient_name}",
            "patient": patient_row(pt),
            "studies": [study_row(s) for s in rows],
        }

    @ctx.page("/studies/" + UID, template="study.tpl")
    def study(ident, uid):
        s = get_study(ctx, ident.principal, uid)
        note_private_view(ctx, s)
        series = []
        for se in s.series.order_by(Series.series_number, Series.id):
            first = (
                Instance.select(Instance.sop_instance_uid)
                .where(Instance.series == se.id)
                .order_by(Instance.instance_number, Instance.id)
                .first()
            )
            series.append(
                {
                    "series_uid": se.series_instance_uid,
                    "modality": se.modality,
                    "series_number": se.series_number,
                    "series_date": se.series_date,
                    "series_time": se.series_time,
                    "description": se.series_description,
                    "body_part": se.body_part,
                    "num_instances": se.num_instances,
                    "url": f"/series/{se.series_instance_uid}",
                    "thumb": f"/instances/{first.sop_instance_uid}/image.jpg?size=128"
                    if first
                    else "",
                }
            )
        return {
            "title": "Study",
            "study": study_row(s),
            "series": series,
            "commitments": commitments.of_study(uid),
            "performed_steps": [mpps.summary(p) for p in mpps.of_study(uid)],
            "notes": [notes.as_dict(n) for n in notes.of_study(uid)],
        }

    @ctx.page("/series/" + UID, template="series.tpl")
    def series(ident, uid):
        se = get_series(ctx, ident.principal, uid)
        note_private_view(ctx, se.study)
        try:
            offset = max(0, int(arg("offset", "0")))
        except ValueError:
            raise UsageError("offset: a whole number") from None
        rows = list(
            Instance.select()
            .where(Instance.series == se.id)
            .order_by(Instance.instance_number, Instance.id)
            .limit(browse.PAGE + 1)
            .offset(offset)
        )
        more = len(rows) > browse.PAGE
        return {
            "title": "Series",
            "series_uid": se.series_instance_uid,
            "modality": se.modality,
            "description": se.series_description,
            "study": study_row(se.study),
            "instances": [instance_row(i) for i in rows[: browse.PAGE]],
            "next_url": url(f"/series/{uid}", offset=offset + browse.PAGE) if more else "",
            "prev_url": url(f"/series/{uid}", offset=max(0, offset - browse.PAGE))
            if offset
            else "",
        }

    @ctx.page("/instances/" + UID, template="instance.tpl")
    def instance(ident, uid):
        inst = get_instance(ctx, ident.principal, uid)
        se = inst.series
        note_private_view(ctx, se.study)
        order = Instance.select(Instance.sop_instance_uid).where(Instance.series == se.id)
        num, pk = inst.instance_number if inst.instance_number is not None else -1, inst.id
        key = Instance.instance_number
        prev_i = (
            order.where((key < num) | ((key == num) & (Instance.id < pk)))
            .order_by(key.desc(), Instance.id.desc())
            .first()
        )
        next_i = (
            order.where((key > num) | ((key == num) & (Instance.id > pk)))
            .order_by(key, Instance.id)
            .first()
        )
        frame, wc, ww = arg("frame", "1"), arg("wc"), arg("ww")
        row = instance_row(inst)
        row["image"] = url(f"/instances/{uid}/image.jpg", frame=frame, wc=wc, ww=ww)
        row["png"] = url(f"/instances/{uid}/image.png", frame=frame, wc=wc, ww=ww)
        row["wado"] = url(
            "/wado",
            requestType="WADO",
            studyUID=se.study.study_instance_uid,
            seriesUID=se.series_instance_uid,
            objectUID=uid,
        )
        return {
            "title": "Image",
            "instance": row,
            "series_uid": se.series_instance_uid,
            "study": study_row(se.study),
            "frame": frame,
            "wc": wc,
            "ww": ww,
            "notes": [
                notes.as_dict(n)
                for n in notes.of_study(se.study.study_instance_uid)
                if n.sop_instance_uid == uid
            ],
            "prev": f"/instances/{prev_i.sop_instance_uid}" if prev_i else "",
            "next": f"/instances/{next_i.sop_instance_uid}" if next_i else "",
        }
