"""The web page's Print forms (SCU-7, Print privilege): images of a series or a study on films.

A print from the web page is the CLI's ``pacsbox print``: the same checks,
the same queue job, the same journal entry; the POST answers with the job's
page, where its progress and outcome show. The images are those ticked on
the series page, else the whole series or study.
"""

from __future__ import annotations

from typing import Any

import bottle

from pacsbox.db.models import Instance
from pacsbox.errors import UsageError
from pacsbox.outbound import printing
from pacsbox.web.auth import Identity
from pacsbox.web.browse import UID, get_series, get_study
from pacsbox.web.core import Ctx, done, form


def register(ctx: Ctx) -> None:
    def submit(ident: Identity, **selection: list[str]) -> Any:
        try:
            copies = int(form("copies", "1"))
        except ValueError:
            raise UsageError("copies: a whole number") from None
        job_id = printing.submit(
            form("to"), **selection, layout=form("layout", "1x1"),
            film_size=form("film_size", "14INX17IN"), orientation=form("orientation", "PORTRAIT"),
            copies=copies, owner=ident.principal.name, address=ctx.address(),
        )  # fmt: skip
        return done(f"/jobs/{job_id}", f"print job {job_id} queued", job=job_id)

    @ctx.page("/series/" + UID + "/print", method="POST", privilege="print")
    def print_series(ident, uid):
        se = get_series(ctx, ident.principal, uid)  # 404 for what the user may not see
        ticked = [u for u in bottle.request.forms.getall("image") if u]
        if not ticked:
            return submit(ident, series=[uid])
        inside = {
            u
            for (u,) in Instance.select(Instance.sop_instance_uid)
            .where((Instance.series == se.id) & Instance.sop_instance_uid.in_(ticked))
            .tuples()
        }
        if len(inside) != len(set(ticked)):
            raise UsageError("a ticked image is not in this series")
        return submit(ident, instances=ticked)

    @ctx.page("/studies/" + UID + "/print", method="POST", privilege="print")
    def print_study(ident, uid):
        get_study(ctx, ident.principal, uid)
        return submit(ident, studies=[uid])
