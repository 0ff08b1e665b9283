"""ADT patient updates (A01/A04/A08) and merges (A40), carried into the stored files.

An update or merge of a patient the archive holds is planned by ``edit``
and queued as the same edit job the web page queues (``outbound.edits``), so
the files are rewritten and C-MOVE, WADO, exports and a rebuild carry it;
the journal gets the old and new values. The patient's open worklist items
take the values at once, whether or not the archive holds images of them.
"""

from __future__ import annotations

from pacsbox import edit
from pacsbox.db import journal
from pacsbox.db.models import Patient
from pacsbox.errors import UsageError
from pacsbox.outbound import edits


def update(pid: str, issuer: str, changes: dict[str, str], source: str, address: str) -> str:
    """An ADT A01/A04/A08: the patient's new name, birth date and sex; returns what was
    done. Raises UsageError (a bad value, several patients with the ID)."""
    row = _patient(pid, issuer)
    plan = edit.patient_edit(row.id, changes) if row is not None else None  # checks values
    done = f"{edit.update_worklist(pid, changes)} worklist items updated"
    if plan is None:
        return f"patient {pid}: not in the archive; {done}"
    if not plan.changes:
        return f"patient {pid}: nothing to change; {done}"
    return f"patient {pid}: {_queue(plan, source, address)}; {done}"


def merge(
    new_id: str, issuer: str, old_id: str, old_issuer: str, values: dict[str, str],
    source: str, address: str,
) -> str:  # fmt: skip
    """An ADT A40: the studies and worklist items of ``old_id`` go under ``new_id``.
    Raises UsageError (a bad value, several patients with one ID)."""
    if old_id == new_id:
        raise UsageError("MRG-1 and PID-3 name the same patient")
    old, new = _patient(old_id, old_issuer), _patient(new_id, issuer)
    plan = extra = None
    if old is not None and new is None:  # nobody has the new ID yet: the old patient takes it
        plan = edit.patient_edit(old.id, {"patient_id": new_id, **values})
    elif old is not None and new is not None:
        plan = edit.patient_merge(old.id, new.id, values)
        extra = edit.patient_edit(new.id, values)  # the survivor's own files take the values
    done = f"{edit.update_worklist(old_id, {'patient_id': new_id, **values})} worklist items moved"
    if plan is None:
        return f"patient {old_id}: not in the archive; {done}"
    if extra is not None and extra.changes:
        _queue(extra, source, address)
    return f"patient {old_id} into {new_id}: {_queue(plan, source, address)}; {done}"


def _queue(plan: edit.Edit, source: str, address: str) -> str:
    before = edit.describe(plan)
    job = edits.submit(plan, owner=source)
    journal.record("edit", source, address, target=plan.label, detail=f"{before} (job {job})")
    return f"edit job {job} queued"


def _patient(pid: str, issuer: str) -> Patient | None:
    """The archive's patient with this ID: the one of the issuer when several have it."""
    rows = list(Patient.select().where(Patient.patient_id == pid))
    if len(rows) > 1 and issuer:
        rows = [r for r in rows if r.issuer == issuer] or rows
    if len(rows) > 1:
        raise UsageError(f"{len(rows)} patients have the ID {pid}; say which issuer (PID-3.4)")
    return rows[0] if rows else None
