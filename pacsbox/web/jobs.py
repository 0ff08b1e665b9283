"""The job pages: the durable queue as a user sees it (issue 17 items 1, 2, 9).

One page under two addresses: ``/jobs`` (any user: the jobs they started,
every job to the administrator) and ``/queue`` (the same, behind the Forward
privilege as it always was). Each job's page shows its progress and its
outcome, with Retry and Cancel (the administrator's, or its owner's while
they hold the privilege that started it), and the download of a done export. Every view reads the queue's
rows, so what a restart leaves is what the pages show.
"""

from __future__ import annotations

from typing import Any

import bottle

from pacsbox.db import queue
from pacsbox.db.models import utcnow
from pacsbox.errors import AccessDenied, NotFound
from pacsbox.outbound import media
from pacsbox.web.auth import Identity
from pacsbox.web.core import Ctx, done
from pacsbox.web.privileges import LABELS

# The privilege that starts a kind of job, and so may retry or cancel it.
STARTED_WITH = {"forward": "forward", "export": "export", "burn": "export", "edit": "modify",
                "retrieve": "move", "sync": "move", "print": "print",
                "worklist": "modify"}  # fmt: skip


def _sees_all(ident: Identity) -> bool:
    p = ident.principal
    return p.name == "root" or p.has("admin")


def _job(ident: Identity, pk: int) -> queue.JobView:
    job = queue.get(pk)
    if job is None or not (_sees_all(ident) or job.owner == ident.principal.name):
        raise NotFound(f"no job {pk} in the queue")
    return job


def _may_act(ident: Identity, job: queue.JobView) -> None:
    """The administrator acts on every job (the privilege covers jobs); a user on their
    own while they still hold the privilege that started it."""
    need = STARTED_WITH.get(job.kind, "forward")
    if not (_sees_all(ident) or ident.principal.has(need)):
        raise AccessDenied(f"job {job.id}: this needs the {LABELS.get(need, need)} privilege")


def _shown(job: queue.JobView) -> dict[str, Any]:
    """A row as the page and its JSON twin show it: the queue's fields, the percentage,
    the page of what the job works on, and the download of a done export."""
    d = job.as_dict()
    d["percent"] = round(100 * job.done / job.total) if job.total else None
    d["link"] = job.payload.get("link") or _study_link(job)
    d["download"] = (
        f"/jobs/{job.id}/download" if job.kind == "export" and job.state == "done" else ""
    )
    return d


def _study_link(job: queue.JobView) -> str:
    studies = job.payload.get("studies") or []
    return f"/studies/{studies[0]}" if len(studies) == 1 else ""


def register(ctx: Ctx) -> None:
    def listing(ident: Identity) -> dict[str, Any]:
        rows = queue.jobs()
        if not _sees_all(ident):
            rows = [j for j in rows if j.owner == ident.principal.name]
        return {"title": "Jobs", "jobs": [_shown(j) for j in rows]}

    def one(ident: Identity, pk: int) -> dict[str, Any]:
        return {"title": f"Job {pk}", "jobs": [_shown(_job(ident, pk))]}

    def retry(ident: Identity, pk: int) -> Any:
        _may_act(ident, _job(ident, pk))
        if not queue.retry(pk, utcnow()):
            raise NotFound(f"job {pk} is not failed or cancelled")
        ctx.journal("queue-retry", f"job {pk}")
        return done(f"/jobs/{pk}", f"job {pk} queued again")

    def cancel(ident: Identity, pk: int) -> Any:
        _may_act(ident, _job(ident, pk))
        if not queue.cancel(pk):
            raise NotFound(f"job {pk} has ended already")
        ctx.journal("queue-cancel", f"job {pk}")
        return done(f"/jobs/{pk}", f"job {pk} cancelled")

    for base, privilege in (("/jobs", None), ("/queue", "forward")):
        ctx.page(base, template="queue.tpl", privilege=privilege)(listing)
        ctx.page(base + "/<pk:int>", template="queue.tpl", privilege=privilege)(one)
        ctx.page(base + "/<pk:int>/retry", method="POST", privilege=privilege)(retry)
        ctx.page(base + "/<pk:int>/cancel", method="POST", privilege=privilege)(cancel)

    @ctx.page("/jobs/<pk:int>/download", json_twin=False, privilege="export")
    def download(ident, pk):
        job = _job(ident, pk)
        path = media.product(ctx.cfg, job)
        if path is None:
            raise NotFound(f"job {pk} has no export to download (not done, or removed)")
        ctx.journal("export-download", f"job {pk}", f"{path.stat().st_size} bytes")
        resp = bottle.static_file(path.name, root=str(path.parent), download=path.name,
                                  mimetype="application/zip")  # fmt: skip
        resp.set_header("Cache-Control", "private, no-store")
        return resp
