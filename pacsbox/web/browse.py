"""Browse, search, mark, edit and delete patients/studies/series/images (WEB-1, DATA-3, DATA-6).

Lists page by keyset (the last row's sort key is the cursor), so page 5,000
costs what page 1 costs even at a million instances; the sort keys are
indexed columns (study_date, patient_name_ci). Privacy filters are SQL
conditions from ``privileges``, so a user never receives a row to hide.
Edits rewrite the stored files through ``pacsbox.edit`` (the originals are
kept in holding/), so what leaves the box carries them.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path
from typing import Any

from pacsbox import edit, storage
from pacsbox.db import index as idx
from pacsbox.db import webquery as wq
from pacsbox.db.index import write_transaction
from pacsbox.db.models import Instance, Patient, Series, Study
from pacsbox.errors import NotFound, UsageError
from pacsbox.web import privileges as pv
from pacsbox.web.core import Ctx, arg, done, form, url

log = logging.getLogger("pacsbox.web")

PAGE = 50
UID = "<uid:re:[0-9][0-9.]{0,63}>"
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^[0-9*?.:]{1,16}$")


# -- cursors and filters -----------------------------------------------------------------


def _cursor_out(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _cursor_in(text: str) -> list[Any] | None:
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


def _date(text: str) -> str:
    d = text.replace("-", "") if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else text
    if not _DATE.match(d):
        raise UsageError(f"date {text!r}: use YYYYMMDD or YYYY-MM-DD")
    return d


def date_condition(col, value: str, date_from: str = "", date_to: str = ""):
    """A DICOM date or range (PS3.4 C.2.2.2.5: ``A``, ``A-B``, ``-B``, ``A-``) or from/to."""
    lo = hi = ""
    if value:
        if "-" in value and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            a, _, b = value.partition("-")
            lo, hi = (_date(a) if a else ""), (_date(b) if b else "")
        else:
            lo = hi = _date(value)
    if date_from:
        lo = _date(date_from)
    if date_to:
        hi = _date(date_to)
    cond = None
    if lo:
        cond = col >= lo
    if hi:
        c2 = col <= hi
        cond = c2 if cond is None else (cond & c2)
    return cond


def _text_filter(value: str, max_len: int = 64) -> str:
    if len(value) > max_len:
        raise UsageError(f"search value longer than {max_len} characters")
    return value


def study_query(p: pv.Principal, params: dict[str, str]):
    """Studies visible to ``p`` matching the search form; raises UsageError on bad input."""
    q = Study.select(Study, Patient).join(Patient).where(pv.study_filter(p))
    conds = []
    if params.get("patient_id"):
        conds.append(wq.wildcard(Patient.patient_id, _text_filter(params["patient_id"])))
    if params.get("patient_name"):
        name = _text_filter(params["patient_name"], 324)
        conds.append(wq.wildcard(Patient.patient_name_ci, name.upper()))
    if params.get("study_id"):
        conds.append(wq.wildcard(Study.study_id, _text_filter(params["study_id"], 16)))
    if params.get("accession"):
        conds.append(wq.wildcard(Study.accession_number, _text_filter(params["accession"], 16)))
    if params.get("study_time"):
        t = params["study_time"]
        if not _TIME.match(t):
            raise UsageError("study time: digits with * and ?")
        conds.append(wq.wildcard(Study.study_time, t))
    dc = date_condition(
        Study.study_date,
        params.get("study_date", ""),
        params.get("date_from", ""),
        params.get("date_to", ""),
    )
    if dc is not None:
        conds.append(dc)
    series_conds = []
    if params.get("modality"):
        mod = _text_filter(params["modality"], 16).upper()
        series_conds.append(wq.wildcard(Series.modality, mod))
    sdc = date_condition(Series.series_date, params.get("series_date", ""))
    if sdc is not None:
        series_conds.append(sdc)
    if params.get("series_time"):
        t = params["series_time"]
        if not _TIME.match(t):
            raise UsageError("series time: digits with * and ?")
        series_conds.append(wq.wildcard(Series.series_time, t))
    if series_conds:
        sub = Series.select(Series.study)
        for c in series_conds:
            sub = sub.where(c)
        conds.append(Study.id.in_(sub))
    read = params.get("read", "")
    if read in ("yes", "no"):
        conds.append(Study.read == (read == "yes"))
    elif read:
        raise UsageError("read: yes, no or empty")
    for c in conds:
        q = q.where(c)
    return q


def page_studies(
    p: pv.Principal, params: dict[str, str], limit: int | None = None
) -> dict[str, Any]:
    limit = limit or PAGE
    desc = params.get("sort", "date_desc") != "date_asc"
    q = study_query(p, params)
    cur = _cursor_in(params.get("after", ""))
    if cur is not None:
        d, i = str(cur[0]), cur[1]
        if desc:
            q = q.where((Study.study_date < d) | ((Study.study_date == d) & (Study.id < i)))
        else:
            q = q.where((Study.study_date > d) | ((Study.study_date == d) & (Study.id > i)))
    order = (Study.study_date.desc(), Study.id.desc()) if desc else (Study.study_date, Study.id)
    rows = list(q.order_by(*order).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = _cursor_out([rows[-1].study_date, rows[-1].id]) if more and rows else ""
    return {"studies": [study_row(s) for s in rows], "next": nxt}


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


def _note_private_view(ctx: Ctx, study: Study) -> None:
    if study.private:
        ctx.journal("view-private", study.study_instance_uid)


# -- deleting: files go after their rows, counters stay exact -----------------------------------


def delete_instances(ctx: Ctx, instances) -> int:
    n = 0
    folders: set[Path] = set()
    for inst in list(instances):
        path = idx.delete_instance(inst)
        folders.add(path.parent)
        try:
            storage.remove_file(path, sync=ctx.archive.sync)
        except OSError as exc:
            log.warning(
                "deleted %s from the index but not its file: %s", inst.sop_instance_uid, exc
            )
        n += 1
    for folder in folders:
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass
    return n


def register(ctx: Ctx) -> None:
    def params_from_query() -> dict[str, str]:
        keys = (
            "patient_id patient_name study_id accession study_date study_time date_from date_to "
            "modality series_date series_time read sort after"
        ).split()
        return {k: arg(k) for k in keys if arg(k)}

    @ctx.page("/studies", template="studies.tpl")
    def studies(ident):
        params = params_from_query()
        data = page_studies(ident.principal, params)
        data.update(title="Studies", params=params)
        data["next_url"] = (
            url("/studies", **{**params, "after": data["next"]}) if data["next"] else ""
        )
        return data

    @ctx.page("/patients", template="patients.tpl")
    def patients(ident):
        p = ident.principal
        q = Patient.select().where(pv.patient_filter(p))
        pid, name = arg("patient_id"), arg("patient_name")
        if pid:
            q = q.where(wq.wildcard(Patient.patient_id, _text_filter(pid)))
        if name:
            q = q.where(wq.wildcard(Patient.patient_name_ci, _text_filter(name, 324).upper()))
        cur = _cursor_in(arg("after"))
        if cur is not None:
            n, i = str(cur[0]), cur[1]
            q = q.where(
                (Patient.patient_name_ci > n) | ((Patient.patient_name_ci == n) & (Patient.id > i))
            )
        rows = list(q.order_by(Patient.patient_name_ci, Patient.id).limit(PAGE + 1))
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        nxt = _cursor_out([rows[-1].patient_name_ci, rows[-1].id]) if more else ""
        return {
            "title": "Patients",
            "patients": [patient_row(r) for r in rows],
            "next": nxt,
            "next_url": url("/patients", patient_id=pid, patient_name=name, after=nxt)
            if nxt
            else "",
        }

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
        _note_private_view(ctx, s)
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
        return {"title": "Study", "study": study_row(s), "series": series}

    @ctx.page("/series/" + UID, template="series.tpl")
    def series(ident, uid):
        se = get_series(ctx, ident.principal, uid)
        _note_private_view(ctx, se.study)
        try:
            offset = max(0, int(arg("offset", "0")))
        except ValueError:
            raise UsageError("offset: a whole number") from None
        rows = list(
            Instance.select()
            .where(Instance.series == se.id)
            .order_by(Instance.instance_number, Instance.id)
            .limit(PAGE + 1)
            .offset(offset)
        )
        more = len(rows) > PAGE
        return {
            "title": "Series",
            "series_uid": se.series_instance_uid,
            "modality": se.modality,
            "description": se.series_description,
            "study": study_row(se.study),
            "instances": [instance_row(i) for i in rows[:PAGE]],
            "next_url": url(f"/series/{uid}", offset=offset + PAGE) if more else "",
            "prev_url": url(f"/series/{uid}", offset=max(0, offset - PAGE)) if offset else "",
        }

    @ctx.page("/instances/" + UID, template="instance.tpl")
    def instance(ident, uid):
        inst = get_instance(ctx, ident.principal, uid)
        se = inst.series
        _note_private_view(ctx, se.study)
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
            "prev": f"/instances/{prev_i.sop_instance_uid}" if prev_i else "",
            "next": f"/instances/{next_i.sop_instance_uid}" if next_i else "",
        }

    # -- read/unread, private/public ----------------------------------------------------------

    @ctx.page("/studies/" + UID + "/read", method="POST", privilege="mark")
    def mark(ident, uid):
        s = get_study(ctx, ident.principal, uid)
        value = form("read", "yes") == "yes"
        with write_transaction():
            Study.update(read=value).where(Study.id == s.id).execute()
        ctx.journal("mark-read" if value else "mark-unread", uid)
        return _done(f"/studies/{uid}", "marked read" if value else "marked unread", read=value)

    @ctx.page("/studies/" + UID + "/private", method="POST", privilege="modify")
    def study_private(ident, uid):
        s = get_study(ctx, ident.principal, uid)
        value = form("private", "yes") == "yes"
        patient_too = pv.set_study_private(s.id, value)
        ctx.journal("private" if value else "public", uid, "patient too" if patient_too else "")
        word = "private" if value else "public"
        return _done(f"/studies/{uid}", f"study is {word}", private=value, patient=patient_too)

    @ctx.page("/patients/<pk:int>/private", method="POST", privilege="modify")
    def patient_private(ident, pk):
        pt = get_patient(ctx, ident.principal, pk)
        value = form("private", "yes") == "yes"
        n = pv.set_patient_private(pt.id, value)
        ctx.journal("private" if value else "public", f"patient {pt.patient_id}", f"{n} studies")
        word = "private" if value else "public"
        return _done(f"/patients/{pk}", f"patient and {n} studies are {word}", private=value)

    # -- edit ----------------------------------------------------------------------------------

    PATIENT_FIELDS = edit.PATIENT_FIELDS
    STUDY_FIELDS = edit.STUDY_FIELDS

    def _edited(fields: dict[str, int]) -> dict[str, str]:
        out = {}
        for name, size in fields.items():
            value = form(name, None)  # type: ignore[arg-type]
            if value is None:
                continue
            if len(value) > size or "\\" in value and name not in ("reading_physician",):
                raise UsageError(f"{name}: at most {size} characters, no backslash")
            if name.endswith("_date") and value and not _DATE.match(value):
                raise UsageError(f"{name}: YYYYMMDD")
            out[name] = value
        return out

    @ctx.page("/patients/<pk:int>/edit", template="edit.tpl", privilege="modify")
    def patient_edit_form(ident, pk):
        pt = get_patient(ctx, ident.principal, pk)
        values = {k: getattr(pt, k) for k in PATIENT_FIELDS}
        return {"title": "Edit patient", "action": f"/patients/{pk}/edit", "values": values}

    @ctx.page("/patients/<pk:int>/edit", method="POST", privilege="modify")
    def patient_edit(ident, pk):
        pt = get_patient(ctx, ident.principal, pk)
        plan = edit.patient_edit(pt.id, _edited(PATIENT_FIELDS))
        if not plan.changes:
            return _done(f"/patients/{pk}", "nothing changed", changed=[])
        job = edit.start(ctx.archive, plan, owner=ident.principal.name)
        changed = sorted(plan.changes)
        ctx.journal("edit", f"patient {pt.patient_id}", f"{', '.join(changed)} (job {job.id})")
        return _done(f"/jobs/{job.id}", f"edit job {job.id} started", changed=changed, job=job.id)

    @ctx.page("/studies/" + UID + "/edit", template="edit.tpl", privilege="modify")
    def study_edit_form(ident, uid):
        s = get_study(ctx, ident.principal, uid)
        values = {k: getattr(s, k) for k in STUDY_FIELDS}
        return {"title": "Edit study", "action": f"/studies/{uid}/edit", "values": values}

    @ctx.page("/studies/" + UID + "/edit", method="POST", privilege="modify")
    def study_edit(ident, uid):
        s = get_study(ctx, ident.principal, uid)
        plan = edit.study_edit(s.study_instance_uid, _edited(STUDY_FIELDS))
        if not plan.changes:
            return _done(f"/studies/{uid}", "nothing changed", changed=[])
        job = edit.start(ctx.archive, plan, owner=ident.principal.name)
        changed = sorted(plan.changes)
        ctx.journal("edit", uid, f"{', '.join(changed)} (job {job.id})")
        return _done(f"/jobs/{job.id}", f"edit job {job.id} started", changed=changed, job=job.id)

    # -- delete: a confirmation page (GET), then the POST ------------------------------------

    def _confirm(kind: str, action: str, label: str, count: int) -> dict[str, Any]:
        return {
            "title": f"Delete {kind}",
            "kind": kind,
            "action": action,
            "label": label,
            "count": count,
        }

    @ctx.page("/patients/<pk:int>/delete", template="confirm.tpl", privilege="modify")
    def patient_delete_form(ident, pk):
        pt = get_patient(ctx, ident.principal, pk)
        return _confirm("patient", f"/patients/{pk}/delete", pt.patient_name, pt.num_instances)

    @ctx.page("/patients/<pk:int>/delete", method="POST", privilege="modify")
    def patient_delete(ident, pk):
        pt = get_patient(ctx, ident.principal, pk)
        if form("confirm") != "yes":
            raise UsageError("deletion not confirmed")
        q = Instance.select().join(Series).join(Study).where(Study.patient == pt.id)
        uids = [
            u
            for (u,) in Study.select(Study.study_instance_uid)
            .where(Study.patient == pt.id)
            .tuples()
        ]
        n = delete_instances(ctx, q)
        for u in uids:
            ctx.archive.forget_location(u)
        ctx.journal("delete", f"patient {pt.patient_id}", f"{n} images")
        return _done("/patients", f"patient deleted ({n} images)", deleted=n)

    @ctx.page("/studies/" + UID + "/delete", template="confirm.tpl", privilege="modify")
    def study_delete_form(ident, uid):
        s = get_study(ctx, ident.principal, uid)
        label = f"{s.patient.patient_name} {s.study_date} {s.study_description}"
        return _confirm("study", f"/studies/{uid}/delete", label, s.num_instances)

    @ctx.page("/studies/" + UID + "/delete", method="POST", privilege="modify")
    def study_delete(ident, uid):
        s = get_study(ctx, ident.principal, uid)
        if form("confirm") != "yes":
            raise UsageError("deletion not confirmed")
        q = Instance.select().join(Series).where(Series.study == s.id)
        n = delete_instances(ctx, q)
        ctx.archive.forget_location(uid)
        ctx.journal("delete", uid, f"study, {n} images")
        return _done("/studies", f"study deleted ({n} images)", deleted=n)

    @ctx.page("/series/" + UID + "/delete", template="confirm.tpl", privilege="modify")
    def series_delete_form(ident, uid):
        se = get_series(ctx, ident.principal, uid)
        label = f"{se.modality} {se.series_description}"
        return _confirm("series", f"/series/{uid}/delete", label, se.num_instances)

    @ctx.page("/series/" + UID + "/delete", method="POST", privilege="modify")
    def series_delete(ident, uid):
        se = get_series(ctx, ident.principal, uid)
        if form("confirm") != "yes":
            raise UsageError("deletion not confirmed")
        study_uid = se.study.study_instance_uid
        n = delete_instances(ctx, Instance.select().where(Instance.series == se.id))
        ctx.journal("delete", uid, f"series, {n} images")
        return _done(f"/studies/{study_uid}", f"series deleted ({n} images)", deleted=n)

    @ctx.page("/instances/" + UID + "/delete", template="confirm.tpl", privilege="modify")
    def instance_delete_form(ident, uid):
        inst = get_instance(ctx, ident.principal, uid)
        return _confirm("image", f"/instances/{uid}/delete", f"image {inst.instance_number}", 1)

    @ctx.page("/instances/" + UID + "/delete", method="POST", privilege="modify")
    def instance_delete(ident, uid):
        inst = get_instance(ctx, ident.principal, uid)
        if form("confirm") != "yes":
            raise UsageError("deletion not confirmed")
        series_uid = inst.series.series_instance_uid
        n = delete_instances(ctx, [inst])
        ctx.journal("delete", uid, "image")
        return _done(f"/series/{series_uid}", "image deleted", deleted=n)


_done = done  # the shared post answer (core.done)
