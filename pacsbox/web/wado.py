"""Rendered images, file downloads and WADO-URI (WEB-5, WEB-6, INT-3).

WADO-URI follows the conformance statement: ``requestType=WADO`` and the
three UIDs are required, ``contentType`` is image/jpeg by default,
image/png or application/dicom on request. With application/dicom,
``transferSyntax`` is the stored one or Explicit VR Little Endian from a
compressed one (406 otherwise), and ``anonymize=yes`` is refused (501): the
standard lets a server refuse, and it must not answer with the identified
object. imageQuality (JPEG) and region (a crop) are honoured; presentationUID
is refused (501: no presentation states are applied); charset changes
nothing, as an image carries no text and a DICOM object goes in its own
character set. Authentication is the web
session, else HTTP Basic (also the dedicated WADO-only account the
administrator creates with ``--wado``) or an API token (Bearer). Credentials in the URL, which the
statement also allows, are not accepted: URLs end up in proxy and browser
logs. Files are only ever found through the index (a UID is never part of a
path), so a traversal attempt is a malformed UID (400) or unknown (404).
A private study the user may not see answers 404, like an unknown one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import bottle
from pydicom.uid import UID as UidValue
from pydicom.uid import ExplicitVRLittleEndian

from pacsbox.db.lookup import instance_path
from pacsbox.db.models import Instance
from pacsbox.errors import NotAcceptable, NotFound, NotOffered, PacsboxError, UsageError
from pacsbox.scu import decompressed
from pacsbox.web import render
from pacsbox.web.auth import Identity
from pacsbox.web.browse import UID, get_instance
from pacsbox.web.core import PUBLIC, Ctx, arg, error_response
from pacsbox.web.privileges import can_see_study

if TYPE_CHECKING:
    from pacsbox.archive import Archive

# PS3.5 9.1: components of digits, no leading zero (except "0"), at most 64 chars.
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
CONTENT_TYPES = ("image/jpeg", "image/png", "application/dicom")
WADO_PARAMS = {
    "requestType", "studyUID", "seriesUID", "objectUID", "contentType", "aetitle",
    "frameNumber", "windowCenter", "windowWidth", "rows", "columns", "charset",
    "transferSyntax", "anonymize", "imageQuality", "region", "presentationUID",
    "presentationSeriesUID",
}  # fmt: skip


def valid_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and bool(UID_RE.fullmatch(value))


@overload
def _number(
    name: str, value: str, *, integer: Literal[True], lo: float | None = None
) -> int | None: ...
@overload
def _number(
    name: str, value: str, *, integer: Literal[False] = False, lo: float | None = None
) -> float | None: ...
def _number(
    name: str, value: str, *, integer: bool = False, lo: float | None = None
) -> float | None:
    if not value:
        return None
    try:
        n = int(value) if integer else float(value)
    except ValueError:
        raise UsageError(f"{name} must be a number") from None
    if lo is not None and n < lo:
        raise UsageError(f"{name} must be at least {lo}")
    return n


def image_response(
    inst: Instance,
    fmt: str,
    frame: int | None,
    wc: float | None,
    ww: float | None,
    size: int | None,
    **extra: Any,
) -> bottle.HTTPResponse:
    """A rendered frame; ``extra`` passes render's quality and region."""
    path: Path = instance_path(inst)
    native_ts = inst.transfer_syntax_uid if inst.native else None
    try:
        body, mime = render.render(
            path, fmt=fmt, frame=frame or 1, wc=wc, ww=ww, size=size, native_ts=native_ts, **extra
        )
    except FileNotFoundError:
        raise NotFound("the stored file is missing") from None
    return bottle.HTTPResponse(
        body=body,
        headers={"Content-Type": mime, "Cache-Control": "private, max-age=300"},
    )


def dicom_response(
    archive: Archive, inst: Instance, transfer_syntax: str = ""
) -> bottle.HTTPResponse:
    """The object as a Part-10 file: ``read_part10`` gives Native-stored ones their header.

    ``transfer_syntax`` (WADO-URI's parameter) is honoured or refused, never
    ignored: the stored one, or Explicit VR Little Endian from a compressed one.
    """
    stored = UidValue(inst.transfer_syntax_uid)
    if transfer_syntax and transfer_syntax != stored:
        if transfer_syntax != ExplicitVRLittleEndian or not stored.is_compressed:
            raise NotAcceptable(
                f"transferSyntax {transfer_syntax} is not offered for this object: it is stored "
                f"as {stored} ({stored.name}); {ExplicitVRLittleEndian} is offered for "
                "compressed objects"
            )
    try:
        data = archive.read_part10(inst)
    except FileNotFoundError:
        raise NotFound("the stored file is missing") from None
    if transfer_syntax and transfer_syntax != stored:
        data = decompressed(data)
    return bottle.HTTPResponse(
        body=data,
        headers={
            "Content-Type": "application/dicom",
            "Content-Disposition": f'attachment; filename="{inst.sop_instance_uid}.dcm"',
            "Cache-Control": "private, no-store",
        },
    )


def register(ctx: Ctx) -> None:
    def image(ident: Identity, uid: str, fmt: str) -> bottle.HTTPResponse:
        inst = get_instance(ctx, ident.principal, uid)
        frame = _number("frame", arg("frame"), integer=True, lo=1)
        wc = _number("wc", arg("wc"))
        ww = _number("ww", arg("ww"), lo=1)
        size = _number("size", arg("size"), integer=True)
        return image_response(inst, fmt, frame, wc, ww, size)

    @ctx.page("/instances/" + UID + "/image.jpg", json_twin=False)
    def image_jpg(ident, uid):
        return image(ident, uid, "jpeg")

    @ctx.page("/instances/" + UID + "/image.png", json_twin=False)
    def image_png(ident, uid):
        return image(ident, uid, "png")

    @ctx.page("/instances/" + UID + "/file", json_twin=False, privilege="download")
    def download(ident, uid):
        inst = get_instance(ctx, ident.principal, uid)
        ctx.journal("download", uid)
        return dicom_response(ctx.archive, inst)

    @ctx.page("/wado", json_twin=False, privilege=PUBLIC,
              note="session, Basic, API token or WADO account")  # fmt: skip
    def wado(_ident):
        address = ctx.address()
        try:
            ident = ctx.identity()
            if ident is not None and ident.expired:
                ident = None
            if ident is None:
                ident = ctx.auth.from_header(bottle.request.get_header("Authorization"), address)
            if ident is None:
                return error_response(401, "log in, or send HTTP Basic credentials or a token",
                                      False)  # fmt: skip
            return _wado(ctx, ident)
        except PacsboxError as exc:
            return error_response(exc.http_status, str(exc), False)


def _wado(ctx: Ctx, ident: Identity) -> bottle.HTTPResponse:
    q = bottle.request.query
    unknown = sorted(set(q.keys()) - WADO_PARAMS)
    if unknown:
        raise UsageError("unknown parameter " + ", ".join(unknown))
    if q.get("requestType") != "WADO":
        raise UsageError("requestType must be WADO")
    uids = {}
    for name in ("studyUID", "seriesUID", "objectUID"):
        value = q.get(name, "")
        if not value:
            raise UsageError(f"{name} is required")
        if not valid_uid(value):
            raise UsageError(f"{name} is not a valid UID")
        uids[name] = value
    content = (q.get("contentType") or "image/jpeg").split(",")[0].strip().lower()
    if content not in CONTENT_TYPES:
        raise UsageError("contentType must be image/jpeg, image/png or application/dicom")
    aetitle = q.get("aetitle")
    if aetitle and aetitle.strip() != ctx.cfg.ApplicationEntityTitle:
        raise NotFound(f"this server is {ctx.cfg.ApplicationEntityTitle}, not {aetitle}")
    inst = Instance.get_or_none(Instance.sop_instance_uid == uids["objectUID"])
    if inst is None:
        raise NotFound("no such object")
    series = inst.series
    study = series.study
    if (
        series.series_instance_uid != uids["seriesUID"]
        or study.study_instance_uid != uids["studyUID"]
        or not can_see_study(ident.principal, study)
    ):
        raise NotFound("no such object")
    if study.private:
        ctx.auth.journal(
            "wado-private", ident.principal.name, ident.address, target=uids["objectUID"]
        )
    anonymize, transfer_syntax = q.get("anonymize", ""), q.get("transferSyntax", "").strip()
    if anonymize and anonymize != "yes":
        raise UsageError("anonymize must be yes")
    if transfer_syntax and not valid_uid(transfer_syntax):
        raise UsageError("transferSyntax is not a valid UID")
    if q.get("presentationUID") or q.get("presentationSeriesUID"):
        raise NotOffered(
            "presentationUID is not offered: pacsbox does not apply presentation states"
        )
    if content != "application/dicom" and (anonymize or transfer_syntax):
        raise UsageError("anonymize and transferSyntax go with contentType=application/dicom")
    if content == "application/dicom":
        if not ident.principal.has("download"):
            return error_response(403, "application/dicom needs the Download privilege", False)
        if anonymize:  # PS3.18 lets a server refuse; sending identified data is not an option
            raise NotOffered("anonymize=yes is not offered: pacsbox does not de-identify objects")
        return dicom_response(ctx.archive, inst, transfer_syntax)
    frame = _number("frameNumber", q.get("frameNumber", ""), integer=True, lo=1)
    wc = _number("windowCenter", q.get("windowCenter", ""))
    ww = _number("windowWidth", q.get("windowWidth", ""), lo=1)
    rows = _number("rows", q.get("rows", ""), integer=True, lo=16)
    cols = _number("columns", q.get("columns", ""), integer=True, lo=16)
    if (wc is None) != (ww is None):
        raise UsageError("windowCenter and windowWidth go together")
    size = max(rows or 0, cols or 0) or None
    fmt = "png" if content == "image/png" else "jpeg"
    extra: dict[str, Any] = {"region": _region(q.get("region", ""))}
    quality = _number("imageQuality", q.get("imageQuality", ""), integer=True, lo=1)
    if quality is not None:
        if quality > 100 or fmt != "jpeg":
            raise UsageError("imageQuality is 1 to 100, for image/jpeg")
        extra["quality"] = quality
    return image_response(inst, fmt, frame, wc, ww, size, **extra)


def _region(value: str) -> tuple[float, float, float, float] | None:
    """WADO's region: left, top, right, bottom as fractions of the image (0.0 to 1.0)."""
    if not value:
        return None
    try:
        left, top, right, bottom = (float(v) for v in value.split(","))
    except ValueError:
        raise UsageError("region is four numbers: left,top,right,bottom from 0.0 to 1.0") from None
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise UsageError("region is four numbers: left,top,right,bottom from 0.0 to 1.0")
    return left, top, right, bottom
