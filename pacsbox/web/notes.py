"""Study and image notes with attachments on the study page (DATA-6, Upload privilege).

Adding a note (and its file) needs Upload; a note is removed by its author
or an administrator. Every note hangs off a study the user may see, and its
file is served only through that check, as an attachment download with the
type found by its content. ``/notes/<id>/dicom`` adds a PDF attachment to the
study as an Encapsulated PDF instance, through ``Archive.store``: the one way
a note enters the study's DICOM, and only when the user asks.
"""

from __future__ import annotations

import urllib.parse

import bottle

from pacsbox import attachments
from pacsbox.db import notes
from pacsbox.db.models import Instance, Series
from pacsbox.db.notes_models import StudyNote
from pacsbox.errors import AccessDenied, NotFound, UsageError
from pacsbox.web.browse import UID, _done, get_study
from pacsbox.web.core import Ctx, error_response, form, secure, wants_json
from pacsbox.web.privileges import Principal


def _note(ctx: Ctx, p: Principal, pk: int) -> StudyNote:
    note = notes.get(pk)
    if note is None:
        raise NotFound(f"no note {pk}")
    get_study(ctx, p, note.study_instance_uid)  # the same answer when it is not visible
    return note


FORM_SLACK = 64 * 1024  # the note's text and the multipart framing around the file


def register(ctx: Ctx) -> None:
    @ctx.app.hook("before_request")
    def refuse_oversize_notes() -> None:
        """A body far past AttachmentMaxMB is refused before bottle spools it to disk."""
        path = bottle.request.path
        if bottle.request.method == "POST" and path.removesuffix(".json").endswith("/notes"):
            if bottle.request.content_length > attachments.limit_bytes(ctx.cfg) + FORM_SLACK:
                too = attachments.too_large(ctx.cfg)
                raise secure(error_response(too.http_status, str(too), wants_json()))

    @ctx.page("/studies/" + UID + "/notes", method="POST", privilege="upload")
    def note_add(ident, uid):
        study = get_study(ctx, ident.principal, uid)
        image = form("image")
        if image and not (
            Instance.select()
            .join(Series)
            .where((Instance.sop_instance_uid == image) & (Series.study == study.id))
            .exists()
        ):
            raise UsageError("that image is not in this study")
        upload = None
        f = bottle.request.files.get("file")
        if f is not None and (f.raw_filename or "") != "":
            upload = (f.raw_filename, attachments.read_limited(ctx.cfg, f.file))
        pk = attachments.add_note(
            ctx.cfg, uid, ident.principal.name, form("text"),
            sop_instance_uid=image, upload=upload,
        )  # fmt: skip
        note = notes.get(pk)
        assert note is not None  # just made
        detail = f"note {pk}" + (f", file {note.size} bytes {note.content_type}" if upload else "")
        ctx.journal("note-add", uid, detail)
        return _done(f"/studies/{uid}", "note added", note=notes.as_dict(note))

    @ctx.page("/notes/<pk:int>/file", json_twin=False)
    def note_file(ident, pk):
        note = _note(ctx, ident.principal, pk)
        if not note.stored:
            raise NotFound(f"note {pk} has no attachment")
        path = attachments.path_of(ctx.cfg, note)
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"note {pk}'s file is missing") from None
        quoted = urllib.parse.quote(note.file_name)
        return bottle.HTTPResponse(
            body=body,
            headers={
                "Content-Type": note.content_type,
                "Content-Disposition": f'attachment; filename="attachment"; '
                f"filename*=UTF-8''{quoted}",
            },
        )

    @ctx.page("/notes/<pk:int>/delete", method="POST")
    def note_delete(ident, pk):
        note = _note(ctx, ident.principal, pk)
        p = ident.principal
        if note.author != p.name and not p.has("admin"):
            raise AccessDenied("only the note's author or an administrator may remove it")
        attachments.delete_note(ctx.cfg, note)
        ctx.journal("note-delete", note.study_instance_uid, f"note {pk} by {note.author}")
        return _done(f"/studies/{note.study_instance_uid}", "note removed")

    @ctx.page("/notes/<pk:int>/dicom", method="POST", privilege="upload")
    def note_to_dicom(ident, pk):
        note = _note(ctx, ident.principal, pk)
        first = (
            Instance.select()
            .join(Series)
            .where(Series.study_id == get_study(ctx, ident.principal, note.study_instance_uid).id)
            .order_by(Instance.id)
            .first()
        )
        if first is None:
            raise NotFound("the study has no images left")
        data = attachments.encapsulated_pdf(ctx.cfg, note, ctx.archive.read_part10(first))
        res = ctx.archive.store(data, source="note")
        ctx.journal("note-dicom", note.study_instance_uid, f"note {pk} as {res.sop_instance_uid}")
        return _done(
            f"/studies/{note.study_instance_uid}",
            "the PDF is in the study as an Encapsulated PDF",
            sop_instance_uid=res.sop_instance_uid,
            series_uid=res.series_instance_uid,
        )
