"""WADO-RS retrieval (PS3.18 10.4): instances, frames, bulk data, rendered images, thumbnails.

Instances are sent as stored, byte for byte, one multipart part each, read
one file at a time while the client receives; ``transfer-syntax=`` in the
Accept header asks for Explicit VR Little Endian (converted) or the stored
syntax. Rendered images and thumbnails are the web page's renderer
(``wado.image_response``), so a DICOMweb viewer and the page show the same pixels.
"""

from __future__ import annotations

from collections.abc import Iterator

import bottle
from pydicom.uid import UID, ExplicitVRLittleEndian

from pacsbox.archive import read_stored
from pacsbox.db import lookup
from pacsbox.db.models import Instance
from pacsbox.errors import NotAcceptable, NotFound, UsageError
from pacsbox.web.auth import Identity
from pacsbox.web.core import Ctx, arg
from pacsbox.web.dicomweb import frames as fr
from pacsbox.web.dicomweb.common import (
    FRAMES,
    INSTANCE,
    SERIES,
    STUDY,
    accept_ranges,
    instances,
    journal_study,
    negotiate,
    read_route,
    visible_study,
)
from pacsbox.web.dicomweb.multipart import content_type, new_boundary, write_parts
from pacsbox.web.wado import image_response

DICOM = "application/dicom"
THUMBNAIL_SIZE = 128


def _wanted_syntax(stored: set[str]) -> str:
    """The syntax to convert to: "" (send as stored) or Explicit VR Little Endian.

    Raises NotAcceptable (406) when the Accept header takes neither.
    """
    ranges = accept_ranges()
    if not ranges:
        return ""
    for r in ranges:
        if r.media_type in ("*/*", "multipart/*") or (
            r.media_type == "multipart/related" and r.inner in ("", DICOM, "application/*")
        ):
            ts = r.transfer_syntax
            if ts in ("", "*") or stored == {ts}:
                return ""
            if ts == ExplicitVRLittleEndian:
                return ts
    raise NotAcceptable(
        'offered: multipart/related; type="application/dicom" with the stored transfer '
        f"syntax or transfer-syntax={ExplicitVRLittleEndian}"
    )


def _multipart(parts: Iterator[tuple[str, bytes]], part_type: str) -> bottle.HTTPResponse:
    boundary = new_boundary()
    return bottle.HTTPResponse(
        body=write_parts(boundary, parts),
        headers={"Content-Type": content_type(boundary, part_type)},
    )


def retrieve(
    ctx: Ctx, ident: Identity, study: str, series: str = "", instance: str = ""
) -> bottle.HTTPResponse:
    rows = lookup.stored_in_study(visible_study(ident.principal, study).id, series, instance)
    if not rows:
        what = f"instance {instance}" if instance else f"series {series}"
        raise NotFound(f"no {what} in this study" if series else "an empty study")
    convert = _wanted_syntax({i.transfer_syntax_uid for i in rows})
    if convert:  # refuse before the first byte rather than break the stream
        for ts in {i.transfer_syntax_uid for i in rows}:
            if not fr.convertible(ts):
                raise NotAcceptable(f"objects stored as {ts} are not converted")
    journal_study(ctx, study, "retrieve")

    def parts() -> Iterator[tuple[str, bytes]]:
        for inst in rows:
            try:
                data = read_stored(inst)
            except FileNotFoundError:
                continue  # a missing file is reported by the check, not in mid-stream
            if convert:
                data = fr.explicit_le(data, inst.transfer_syntax_uid)
            yield f"{DICOM}; transfer-syntax={convert or inst.transfer_syntax_uid}", data

    return _multipart(parts(), DICOM)


def _frame_form(stored: str) -> tuple[bool, str]:
    """(decompress?, part media type) for frames of an object stored in ``stored``."""
    compressed = UID(stored).is_compressed
    mine = fr.stored_media_type(stored)
    ranges = accept_ranges()
    if not ranges:
        return False, mine
    for r in ranges:
        inner = r.inner if r.media_type == "multipart/related" else r.media_type
        ts = r.transfer_syntax
        if r.media_type in ("*/*", "multipart/*") or inner in ("", "*/*"):
            return False, mine
        if inner == fr.OCTET:
            if ts == "*" or (ts == stored and not compressed):
                return False, f"{fr.OCTET}; transfer-syntax={stored}"
            if ts in ("", ExplicitVRLittleEndian):
                return compressed, fr.OCTET
        elif compressed and (inner == mine or inner == "image/*") and ts in ("", "*", stored):
            return False, f"{mine}; transfer-syntax={stored}"
    raise NotAcceptable(
        f"frames of this object are offered as {mine} (transfer syntax {stored})"
        + (f" or {fr.OCTET} (decompressed)" if compressed else "")
    )


def send_frames(
    ctx: Ctx, ident: Identity, study: str, series: str, instance: str, numbers: list[int] | None
) -> bottle.HTTPResponse:
    """Frames ``numbers`` (None: the whole Pixel Data, the bulk data URI's answer)."""
    (inst,) = instances(ident.principal, study, series, instance)
    native, part_type = _frame_form(inst.transfer_syntax_uid)
    try:
        data = ctx.archive.read_part10(inst)
    except FileNotFoundError:
        raise NotFound("the stored file is missing") from None
    found = fr.frame_bytes(data, numbers, native=native)
    if numbers is None and part_type.startswith(fr.OCTET):
        found = [b"".join(found)]  # bulk data: native Pixel Data is one value, not frames
    journal_study(ctx, study, "frames" if numbers else "bulkdata")
    return _multipart(((part_type, b) for b in found), part_type.split(";")[0])


def _frame_numbers(text: str) -> list[int]:
    numbers = [int(n) for n in text.split(",")]
    if any(n < 1 for n in numbers):
        raise UsageError("frame numbers start at 1")
    return numbers


def _render_params() -> tuple[float | None, float | None, int | None, int | None]:
    """PS3.18 8.3.5: window=center,width[,function], viewport=w,h and quality."""
    wc = ww = None
    window = arg("window")
    if window:
        parts = window.split(",")
        try:
            wc, ww = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            raise UsageError("window is center,width[,function]") from None
        if len(parts) > 2 and parts[2].strip().upper() not in ("LINEAR", ""):
            raise UsageError("window function: only LINEAR is offered")
        if ww < 1:
            raise UsageError("window width must be at least 1")
    size = None
    viewport = arg("viewport")
    if viewport:
        try:
            dims = [int(v) for v in viewport.split(",")]
        except ValueError:
            raise UsageError("viewport is width,height") from None
        if len(dims) != 2:
            raise UsageError("viewport is width,height (no source region is offered)")
        size = max(dims)
    quality = None
    if arg("quality"):
        try:
            quality = int(arg("quality"))
        except ValueError:
            raise UsageError("quality is 1 to 100") from None
        if not 1 <= quality <= 100:
            raise UsageError("quality is 1 to 100")
    return wc, ww, size, quality


def rendered(
    ctx: Ctx, ident: Identity, inst: Instance, frame: int | None, *, thumbnail: bool = False
) -> bottle.HTTPResponse:
    mime = negotiate(("image/jpeg", "image/png"))
    wc, ww, size, quality = _render_params()
    if thumbnail and size is None:
        size = THUMBNAIL_SIZE
    extra = {"quality": quality} if quality is not None and mime == "image/jpeg" else {}
    resp = image_response(inst, mime.split("/")[1], frame, wc, ww, size, **extra)
    journal_study(
        ctx, inst.series.study.study_instance_uid, "thumbnail" if thumbnail else "rendered"
    )
    return resp


def _representative(rows: list[Instance]) -> Instance:
    images = [i for i in rows if i.rows] or rows
    return images[len(images) // 2]


def register(ctx: Ctx) -> None:
    i_path = STUDY + SERIES + INSTANCE

    @read_route(ctx, STUDY)
    def get_study(ident, study):
        return retrieve(ctx, ident, study)

    @read_route(ctx, STUDY + SERIES)
    def get_series(ident, study, series):
        return retrieve(ctx, ident, study, series)

    @read_route(ctx, i_path)
    def get_instance(ident, study, series, instance):
        return retrieve(ctx, ident, study, series, instance)

    @read_route(ctx, i_path + FRAMES)
    def get_frames(ident, study, series, instance, frames):
        return send_frames(ctx, ident, study, series, instance, _frame_numbers(frames))

    @read_route(ctx, i_path + "/bulkdata/7fe00010")
    def get_pixel_data(ident, study, series, instance):
        return send_frames(ctx, ident, study, series, instance, None)

    @read_route(ctx, i_path + "/rendered")
    def get_rendered(ident, study, series, instance):
        (inst,) = instances(ident.principal, study, series, instance)
        return rendered(ctx, ident, inst, None)

    @read_route(ctx, i_path + FRAMES + "/rendered")
    def get_frame_rendered(ident, study, series, instance, frames):
        numbers = _frame_numbers(frames)
        if len(numbers) != 1:
            raise UsageError("a rendered frame is one frame")
        (inst,) = instances(ident.principal, study, series, instance)
        return rendered(ctx, ident, inst, numbers[0])

    @read_route(ctx, i_path + "/thumbnail")
    def instance_thumbnail(ident, study, series, instance):
        (inst,) = instances(ident.principal, study, series, instance)
        return rendered(ctx, ident, inst, None, thumbnail=True)

    @read_route(ctx, STUDY + SERIES + "/thumbnail")
    def series_thumbnail(ident, study, series):
        inst = _representative(instances(ident.principal, study, series))
        return rendered(ctx, ident, inst, None, thumbnail=True)

    @read_route(ctx, STUDY + "/thumbnail")
    def study_thumbnail(ident, study):
        inst = _representative(instances(ident.principal, study))
        return rendered(ctx, ident, inst, None, thumbnail=True)
