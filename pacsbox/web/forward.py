"""The web page's Forward buttons and the queue page (SCU-3, issue 17 items 1, 2, 9).

A Forward is the CLI's forward: the same checks, the same queue row, the
same journal entry. The queue page shows the durable queue (the jobs a user
started; every job to the administrator) with retry and cancel; its JSON
twin has the fields ``pacsbox queue --json`` prints.
"""

from __future__ import annotations

from typing import Any

from pacsbox.db import queue
from pacsbox.db.models import utcnow
from pacsbox.errors import NotFound
from pacsbox.outbound import forward
from pacsbox.web.auth import Identity
from pacsbox.web.browse import UID, get_patient, get_series, get_study
from pacsbox.web.core import Ctx, done, form


def _sees_all(ident: Identity) -> bool:
    p = ident.principal
    return p.name == "root" or p.has("admin")


def _job(ident: Identity, pk: int) -> queue.JobView:
    job = queue.get(pk)
    if job is None or not (_sees_all(ident) or job.owner == ident.principal.name):
        raise NotFound(f"no job {pk} in the queue")
    return job


def register(ctx: Ctx) -> None:
    def submit(ident: Identity, selection: forward.Selection) -> Any:
        to = form("to")
        commit = form("commit") in ("1", "on", "yes")  # the "request storage commitment" box
        job_id = forward.submit(
            selection, to, owner=ident.principal.name, address=ctx.address(), commit=commit
        )
        return done(f"/queue/{job_id}", f"forward job {job_id} queued", job=job_id)

    @ctx.page("/studies/" + UID + "/forward", method="POST", privilege="forward")
    def forward_study(ident, uid):
        get_study(ctx, ident.principal, uid)  # 404 for what the user may not see
        return submit(ident, forward.Selection(studies=[uid]))

    @ctx.page("/series/" + UID + "/forward", method="POST", privilege="forward")
    def forward_series(ident, uid):
        get_series(ctx, ident.principal, uid)
        return submit(ident, forward.Selection(series=[uid]))

    @ctx.page("/patients/<pk:int>/forward", method="POST", privilege="forward")
    def forward_patient(ident, pk):
        pt = get_patient(ctx, ident.principal, pk)
        return submit(ident, forward.Selection(patients=[pt.patient_id]))

    @ctx.page("/queue", template="queue.tpl", privilege="forward")
    def queue_page(ident):
        rows = queue.jobs()
        if not _sees_all(ident):
            rows = [j for j in rows if j.owner == ident.principal.name]
        return {"title": "Queue", "jobs": [j.as_dict() for j in rows]}

    @ctx.page("/queue/<pk:int>", template="queue.tpl", privilege="forward")
    def queue_job(ident, pk):
        return {"title": f"Queue job {pk}", "jobs": [_job(ident, pk).as_dict()]}

    @ctx.page("/queue/<pk:int>/retry", method="POST", privilege="forward")
    def queue_retry(ident, pk):
        _job(ident, pk)
        if not queue.retry(pk, utcnow()):
            raise NotFound(f"job {pk} is not failed or cancelled")
        ctx.journal("queue-retry", f"job {pk}")
        return done(f"/queue/{pk}", f"job {pk} queued again")

    @ctx.page("/queue/<pk:int>/cancel", method="POST", privilege="forward")
    def queue_cancel(ident, pk):
        _job(ident, pk)
        if not queue.cancel(pk):
            raise NotFound(f"job {pk} has ended already")
        ctx.journal("queue-cancel", f"job {pk}")
        return done(f"/queue/{pk}", f"job {pk} cancelled")
