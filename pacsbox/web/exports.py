"""Export from the web page (MEDIA-4, Export privilege): a study as a DICOMDIR ZIP download.

The same File-set code as `pacsbox export` builds the volume (with its
DICOMDIR, ISO level-1 names and the STD-GEN profile) in a private temporary
folder; the browser gets the ZIP. Like upload/media, this is a documented
edge from web/ into a feature module: the web page is how a clinic uses it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import bottle

from pacsbox.web.browse import UID, get_study
from pacsbox.web.core import Ctx


def register(ctx: Ctx) -> None:
    @ctx.page("/studies/" + UID + "/export", method="POST", json_twin=False, privilege="export")
    def export_study(ident, uid):
        from pacsbox.export.selection import export_selection

        study = get_study(ctx, ident.principal, uid)  # privacy rules first
        tmp = tempfile.TemporaryDirectory(prefix="pacsbox-webexport-")
        # DVD-DL size: one volume (one ZIP) for any study a browser download can hold.
        volumes = export_selection(
            ctx.archive, Path(tmp.name) / "out", studies=[study.study_instance_uid],
            media="dvd-dl", zip_volumes=True, label="PACSBOX",
        )
        zip_path = volumes[0].zip_path
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


class _Closing:
    """Stream a file, then remove the temporary export folder."""

    def __init__(self, fh, tmp: tempfile.TemporaryDirectory) -> None:
        self.fh = fh
        self.tmp = tmp

    def __iter__(self):
        while chunk := self.fh.read(1 << 20):
            yield chunk

    def close(self) -> None:
        self.fh.close()
        self.tmp.cleanup()
