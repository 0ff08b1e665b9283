"""Upload Part-10 files (or ZIPs of them) from the browser (MEDIA-3, Import privilege).

The upload is written to a private temporary folder and handed to the media
importer, so a browser upload is checked and reported exactly like a CD:
every object goes through ``Archive.store``. (This is the one place web/
reaches into media/; the lead asked for it, the importer has no web
dependency of its own.)
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import bottle

from pacsbox.errors import UsageError
from pacsbox.web.core import Ctx

MAX_FILES = 500


def register(ctx: Ctx) -> None:
    @ctx.page("/upload", template="upload.tpl", privilege="import")
    def upload_form(ident):
        return {"title": "Upload", "report": None}

    @ctx.page("/upload", method="POST", template="upload.tpl", privilege="import")
    def upload(ident):
        from pacsbox.media.importer import run_import_files

        files = bottle.request.files.getall("files")
        if not files:
            raise UsageError("choose one or more DICOM files")
        if len(files) > MAX_FILES:
            raise UsageError(f"at most {MAX_FILES} files per upload")
        with tempfile.TemporaryDirectory(prefix="pacsbox-upload-") as tmp:
            paths = []
            for n, f in enumerate(files):
                # Our own file names: the browser's name is only shown, never used as a path.
                path = Path(tmp) / f"{n:04d}.upload"
                f.save(str(path))
                paths.append(path)
            store = functools.partial(ctx.archive.store, source="upload")
            report = run_import_files(paths, store, source="upload")
        names = {f"{n:04d}.upload": f.raw_filename for n, f in enumerate(files)}
        data = report.to_dict()
        for key in ("imported", "already_present", "rejected"):
            for item in data[key]:
                item["name"] = names.get(item["name"], item["name"])
        ctx.journal("upload", "", report.summary())
        return {"title": "Upload", "report": data}
