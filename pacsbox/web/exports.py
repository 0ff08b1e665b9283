"""Export and burn from the web page (MEDIA-4/5, Export privilege).

A study downloads as a DICOMDIR ZIP, or is burned to the configured burner
as a background job whose progress shows on /jobs and in the status
snapshot (front panel).

The same File-set code as `pacsbox export` builds the volume (with its
DICOMDIR, ISO level-1 names and the STD-GEN profile) in a private temporary
folder; the browser gets the ZIP. Like upload/media, this is a documented
edge from web/ into a feature module: the web page is how a clinic uses it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import bottle

from pacsbox import jobs
from pacsbox.errors import NotFound, UsageError
from pacsbox.web.browse import UID, _done, get_study
from pacsbox.web.core import Ctx, form


def register(ctx: Ctx) -> None:
    @ctx.page("/studies/" + UID + "/export", method="POST", json_twin=False, privilege="export")
    def export_study(ident, uid):
        from pacsbox.export.selection import export_selection

        study = get_study(ctx, ident.principal, uid)  # privacy rules first
        tmp = tempfile.TemporaryDirectory(prefix="pacsbox-webexport-")
        # DVD-DL size: one volume (one ZIP) for any study a browser download can hold.
        volumes = export_selection(
            ctx.archive,
            Path(tmp.name) / "out",
            studies=[study.study_instance_uid],
            media="dvd-dl",
            zip_volumes=True,
            label="PACSBOX",
        )
        zip_path = volumes[0].zip_path
        assert zip_path is not None  # zip_volumes=True
        ctx.journal("export", uid, f"study, {sum(v.instances for v in volumes)} images")
        fh = open(zip_path, "rb")  # noqa: SIM115 - closed by the WSGI server after sending
        body = _Closing(fh, tmp)
        return bottle.HTTPResponse(
            body=body,
            headers={
                "Content-Type": "application/zip",
                "Content-Length": str(zip_path.stat().st_size),
                "Content-Disposition": 'attachment; filename="study-dicomdir.zip"',
                "Cache-Control": "private, no-store",
            },
        )

    @ctx.page("/studies/" + UID + "/burn", method="POST", privilege="export")
    def burn_study(ident, uid):
        from pacsbox.export import burn_path
        from pacsbox.export.selection import export_selection

        study = get_study(ctx, ident.principal, uid)
        media = form("media") or "cd"
        if media not in ("cd", "dvd", "dvd-dl"):
            raise UsageError("media is cd, dvd or dvd-dl")
        device = ctx.cfg.BurnerDevice
        work_root = ctx.cfg.data_dir / "burn"
        label = f"{study.study_date} {study.study_description}".strip()[:40] or uid

        def work(job: jobs.Job) -> str:
            work_dir = work_root / f"job{job.id}"
            shutil.rmtree(work_dir, ignore_errors=True)
            try:
                # Exporting is the first tenth of the bar, burning and checking the rest.
                volumes = export_selection(
                    ctx.archive,
                    work_dir / "volumes",
                    studies=[uid],
                    media=media,
                    label="PACSBOX",
                    progress=lambda d, t: job.progress(d * 100 // max(t, 1), 1000),
                )
                share = 900 // len(volumes)
                for n, v in enumerate(volumes):
                    base = 100 + n * share

                    def progress(d: int, t: int, b: int = base) -> None:
                        job.progress(b + d * share // max(t, 1), 1000)

                    burn_path(v.directory, device, work_dir=work_dir, progress=progress)
                job.progress(1000, 1000)
                return f"{len(volumes)} volume(s) burned to {device} and verified"
            finally:
                shutil.rmtree(work_dir, ignore_errors=True)

        job = jobs.registry.start("burn", label, work, owner=ident.principal.name)
        ctx.journal("burn", uid, f"job {job.id} to {device}")
        return _done(f"/jobs/{job.id}", f"burn job {job.id} started", job=job.id)

    @ctx.page("/jobs", template="jobs.tpl")
    def job_list(ident):
        p = ident.principal
        mine = [j for j in jobs.registry.all() if p.name == "root" or j.owner == p.name]
        return {"title": "Jobs", "jobs": [j.as_dict() for j in mine]}

    @ctx.page("/jobs/<pk:int>", template="jobs.tpl")
    def job_page(ident, pk):
        job = jobs.registry.get(pk)
        if job is None or (ident.principal.name not in ("root", job.owner)):
            raise NotFound(f"no job {pk}")
        return {"title": f"Job {pk}", "jobs": [job.as_dict()]}


class _Closing:
    """Stream a file, then remove the temporary export folder."""

    def __init__(self, fh: BinaryIO, tmp: tempfile.TemporaryDirectory) -> None:
        self.fh = fh
        self.tmp = tmp

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.fh.read(1 << 20):
            yield chunk

    def close(self) -> None:
        self.fh.close()
        self.tmp.cleanup()
