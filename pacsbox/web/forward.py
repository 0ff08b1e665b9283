"""The web page's Forward buttons (SCU-3, issue 17 items 1, 2).

A Forward is the CLI's forward: the same checks, the same queue row, the
same journal entry. Its job shows on the job pages (``web/jobs.py``), whose
JSON twin has the fields ``pacsbox queue --json`` prints.
"""

from __future__ import annotations

from typing import Any

import bottle

from pacsbox.errors import UsageError
from pacsbox.outbound import forward
from pacsbox.web.auth import Identity
from pacsbox.web.browse import UID, get_patient, get_series, get_study
from pacsbox.web.core import Ctx, done, form


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

    @ctx.page("/studies/forward", method="POST", privilege="forward")
    def forward_selected(ident):
        """The search results' Forward: the studies ticked, each one the user may see."""
        uids = [u for u in bottle.request.forms.getall("study") if u]
        if not uids:
            raise UsageError("tick the studies to forward first")
        for uid in uids:
            get_study(ctx, ident.principal, uid)  # 404 for what the user may not see
        return submit(ident, forward.Selection(studies=uids))

    @ctx.page("/series/" + UID + "/forward", method="POST", privilege="forward")
    def forward_series(ident, uid):
        get_series(ctx, ident.principal, uid)
        return submit(ident, forward.Selection(series=[uid]))

    @ctx.page("/patients/<pk:int>/forward", method="POST", privilege="forward")
    def forward_patient(ident, pk):
        pt = get_patient(ctx, ident.principal, pk)
        return submit(ident, forward.Selection(patients=[pt.patient_id]))
