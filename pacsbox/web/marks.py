"""Read/unread marks and private/public settings of studies and patients (DATA-6).

The propagation rules between a patient and its studies are ``privileges``'
(PacsOne's); every change is journalled.
"""

from __future__ import annotations

from pacsbox.db.index import write_transaction
from pacsbox.db.models import Study
from pacsbox.web import privileges as pv
from pacsbox.web.browse import UID, _done, get_patient, get_study
from pacsbox.web.core import Ctx, form


def register(ctx: Ctx) -> None:
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
