"""STOW-RS (PS3.18 10.5): each part of a multipart/related upload through ``Archive.store``.

The body is read from the socket part by part (``multipart``), so a large
upload never sits in memory whole. Each instance is stored on its own: the
response lists what was stored (Referenced SOP Sequence) and what was not,
with the DIMSE status of the store's error as Failure Reason (Failed SOP
Sequence). 200 all stored, 202 some failed, 409 none stored; 400 for a body
that is not multipart, 415 for another content type, 413 over ``StowMaxMB``.
"""

from __future__ import annotations

import logging
from typing import Any

import bottle

from pacsbox import meta
from pacsbox.errors import PacsboxError
from pacsbox.web.auth import Identity
from pacsbox.web.core import Ctx
from pacsbox.web.dicomweb.common import STUDY, base_url, journal_study, json_answer, store_route
from pacsbox.web.dicomweb.multipart import Malformed, body_chunks, header_params, read_parts

log = logging.getLogger("pacsbox.web")

CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110


def _elem(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def _reference(cls: str, uid: str, url: str = "", reason: int | None = None) -> dict[str, Any]:
    item = {"00081150": _elem("UI", *([cls] if cls else [])),
            "00081155": _elem("UI", *([uid] if uid else []))}  # fmt: skip
    if url:
        item["00081190"] = _elem("UR", url)
    if reason is not None:
        item["00081197"] = _elem("US", reason)
    return item


class _Outcome:
    """The response being built: stored and failed instances, in the order received."""

    def __init__(self, study_uid: str) -> None:
        self.study_uid = study_uid
        self.stored: list[dict[str, Any]] = []
        self.failed: list[dict[str, Any]] = []
        self.studies: set[str] = set()

    def answer(self, status: int | None = None, reason: str = "") -> bottle.HTTPResponse:
        body: dict[str, Any] = {}
        if self.study_uid:
            body["00081190"] = _elem("UR", f"{base_url()}/studies/{self.study_uid}")
        if self.stored:
            body["00081199"] = {"vr": "SQ", "Value": self.stored}
        if self.failed:
            body["00081198"] = {"vr": "SQ", "Value": self.failed}
        if status is None:
            status = 200 if not self.failed else 202 if self.stored else 409
        if not reason:
            return json_answer(body, status)
        if not self.stored and not self.failed:
            return json_answer({"error": reason, "status": status}, status)
        # Some parts were handled before the body turned out bad: they are listed.
        host = bottle.request.urlparts.netloc
        return json_answer(body, status, headers={"Warning": f'299 {host}: "{reason}"'})


def _uids(data: bytes) -> tuple[str, str]:
    """SOP Class and Instance UID of a refused part, for its Failed SOP Sequence item."""
    try:
        attrs = meta.parse(data).attrs
    except PacsboxError:
        return "", ""
    return attrs.sop_class_uid, attrs.sop_instance_uid


def _store_part(ctx: Ctx, data: bytes, out: _Outcome) -> None:
    try:
        res = ctx.archive.store(data, source="stow", expect_study_instance=out.study_uid or None)
    except PacsboxError as exc:
        cls, uid = _uids(data)
        log.info("STOW-RS instance %s refused: %s", uid or "(unreadable)", exc)
        out.failed.append(_reference(cls, uid, reason=exc.dimse_status or PROCESSING_FAILURE))
        return
    url = (
        f"{base_url()}/studies/{res.study_instance_uid}/series/{res.series_instance_uid}"
        f"/instances/{res.sop_instance_uid}"
    )
    out.stored.append(_reference(res.sop_class_uid, res.sop_instance_uid, url))
    out.studies.add(res.study_instance_uid)


def stow(ctx: Ctx, ident: Identity, study_uid: str = "") -> bottle.HTTPResponse:
    ctype, params = header_params(bottle.request.get_header("Content-Type", "") or "")
    part_type = params.get("type", "application/dicom").lower()
    if ctype != "multipart/related" or part_type != "application/dicom":
        return json_answer(
            {"error": 'send multipart/related; type="application/dicom"', "status": 415}, 415
        )
    env = bottle.request.environ
    chunked = "chunked" in env.get("HTTP_TRANSFER_ENCODING", "").lower()
    try:
        length = None if chunked else int(env.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return json_answer({"error": "a bad Content-Length", "status": 400}, 400)
    limit = int(ctx.cfg.StowMaxMB * 1024 * 1024)
    out = _Outcome(study_uid)
    try:
        chunks = body_chunks(env["wsgi.input"], length, chunked, limit)
        for part in read_parts(chunks, params.get("boundary", "")):
            if part.content_type != "application/dicom":
                out.failed.append(_reference("", "", reason=CANNOT_UNDERSTAND))
                continue
            _store_part(ctx, part.data, out)
    except Malformed as exc:
        return out.answer(400, str(exc))
    except PacsboxError as exc:  # TooLarge
        return out.answer(exc.http_status, str(exc))
    finally:
        for uid in sorted(out.studies):
            journal_study(ctx, uid, "store")
    if not out.stored and not out.failed:
        return out.answer(400, "the multipart body has no parts")
    log.info("STOW-RS by %s: %d stored, %d failed", ident.principal.name,
             len(out.stored), len(out.failed))  # fmt: skip
    return out.answer()


def register(ctx: Ctx) -> None:
    @store_route(ctx, "/studies")
    def stow_any(ident):
        return stow(ctx, ident)

    @store_route(ctx, STUDY)
    def stow_study(ident, study):
        return stow(ctx, ident, study)
