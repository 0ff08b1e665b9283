"""Edit and delete patients, studies, series and images (DATA-3), with a confirmation page.

Edits rewrite the stored files through ``pacsbox.edit`` (the originals are
kept in holding/), so what leaves the box carries them; each is a queue job
(``outbound.edits``) the daemon's runner carries out. A deletion
removes the rows first and the files after, so counters stay exact and no
row ever names a missing file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pacsbox import attachments, storage
from pacsbox import edit as file_edit
from pacsbox.db import index as idx
from pacsbox.db.models import Instance, Series, Study
from pacsbox.errors import UsageError
from pacsbox.outbound import edits
from pacsbox.web.browse import UID, _done, get_instance, get_patient, get_series, get_study
from pacsbox.web.core import Ctx, form

log = logging.getLogger("pacsbox.web")

_DATE = re.compile(r"^\d{8}$")


# -- deleting: files go after their rows, counters stay exact -----------------------------------


def delete_instances(ctx: Ctx, instances: Iterable[Instance]) -> int:
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
    attachments.sweep(ctx.cfg)  # the notes of a study that went with its last image
    return n


def register(ctx: Ctx) -> None:
    # -- edit ----------------------------------------------------------------------------------

    PATIENT_FIELDS = file_edit.PATIENT_FIELDS
    STUDY_FIELDS = file_edit.STUDY_FIELDS

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
        plan = file_edit.patient_edit(pt.id, _edited(PATIENT_FIELDS))
        if not plan.changes:
            return _done(f"/patients/{pk}", "nothing changed", changed=[])
        before = file_edit.describe(plan)
        job = edits.submit(plan, owner=ident.principal.name)
        changed = sorted(plan.changes)
        ctx.journal("edit", f"patient {pt.patient_id}", f"{before} (job {job})")
        return _done(f"/jobs/{job}", f"edit job {job} queued", changed=changed, job=job)

    @ctx.page("/studies/" + UID + "/edit", template="edit.tpl", privilege="modify")
    def study_edit_form(ident, uid):
        s = get_study(ctx, ident.principal, uid)
        values = {k: getattr(s, k) for k in STUDY_FIELDS}
        return {"title": "Edit study", "action": f"/studies/{uid}/edit", "values": values}

    @ctx.page("/studies/" + UID + "/edit", method="POST", privilege="modify")
    def study_edit(ident, uid):
        s = get_study(ctx, ident.principal, uid)
        plan = file_edit.study_edit(s.study_instance_uid, _edited(STUDY_FIELDS))
        if not plan.changes:
            return _done(f"/studies/{uid}", "nothing changed", changed=[])
        before = file_edit.describe(plan)
        job = edits.submit(plan, owner=ident.principal.name)
        changed = sorted(plan.changes)
        ctx.journal("edit", uid, f"{before} (job {job})")
        return _done(f"/jobs/{job}", f"edit job {job} queued", changed=changed, job=job)

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
