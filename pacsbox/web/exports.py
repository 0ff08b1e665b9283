"""Export and burn from the web page (MEDIA-4/5, Export privilege).

Both are queue jobs (``outbound.media``) the daemon's runner carries out, so
a restart forgets neither: the POST answers with the job's page, where the
progress and the outcome show and, for an export, the link that downloads
its DICOMDIR ZIP (kept in the data directory, so the link outlives a
restart). Like upload/media, this is a documented edge from web/ into a
feature module: the web page is how a clinic uses it.
"""

from __future__ import annotations

from pacsbox.db.models import Study
from pacsbox.outbound import media
from pacsbox.web.browse import UID, _done, get_study
from pacsbox.web.core import Ctx, form


def register(ctx: Ctx) -> None:
    def label_of(study: Study) -> str:
        # The status snapshot (the public front panel) shows it: no patient names.
        text = f"{study.study_date} {study.study_description}".strip()[:40]
        return text or study.study_instance_uid

    @ctx.page("/studies/" + UID + "/export", method="POST", privilege="export")
    def export_study(ident, uid):
        study = get_study(ctx, ident.principal, uid)  # privacy rules first
        job = media.submit_export(study.study_instance_uid, label_of(study), ident.principal.name)
        ctx.journal("export", uid, f"job {job}: study as a DICOMDIR ZIP")
        return _done(f"/jobs/{job}", f"export job {job} queued", job=job)

    @ctx.page("/studies/" + UID + "/burn", method="POST", privilege="export")
    def burn_study(ident, uid):
        study = get_study(ctx, ident.principal, uid)
        device = ctx.cfg.BurnerDevice
        job = media.submit_burn(
            study.study_instance_uid, form("media") or "cd", device, label_of(study),
            ident.principal.name,
        )  # fmt: skip
        ctx.journal("burn", uid, f"job {job} to {device}")
        return _done(f"/jobs/{job}", f"burn job {job} queued", job=job)
