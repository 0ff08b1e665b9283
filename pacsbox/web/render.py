"""DICOM pixels to JPEG/PNG for the browser (WEB-5, WADO).

The pixels themselves (decoding, modality LUT, window, MONOCHROME1,
palette) are ``pacsbox.pixels``', shared with printing; this module cuts,
scales and encodes them.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from pacsbox.errors import UsageError
from pacsbox.pixels import _CACHE, eight_bit

__all__ = ["_CACHE", "FORMATS", "MAX_SIZE", "render"]

FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}
MAX_SIZE = 4096


def render(
    path: Path,
    *,
    fmt: str = "jpeg",
    frame: int = 1,
    wc: float | None = None,
    ww: float | None = None,
    size: int | None = None,
    native_ts: str | None = None,
    quality: int = 90,
    region: tuple[float, float, float, float] | None = None,
) -> tuple[bytes, str]:
    """(image bytes, MIME type); ``region`` is (left, top, right, bottom) as fractions
    of the frame, cut before scaling. Raises UsageError (bad request) or CannotUnderstand."""
    if fmt not in FORMATS:
        raise UsageError("format: jpeg or png")
    if size is not None and not 16 <= size <= MAX_SIZE:
        raise UsageError(f"size: 16 to {MAX_SIZE} pixels")
    pixels, color = eight_bit(path, frame=frame, wc=wc, ww=ww, native_ts=native_ts)
    img = Image.fromarray(pixels, "RGB" if color else "L")
    if region is not None:
        w, h = img.size
        left, top, right, bottom = region
        img = img.crop((int(left * w), int(top * h), max(int(right * w), int(left * w) + 1),
                        max(int(bottom * h), int(top * h) + 1)))  # fmt: skip
    if size is not None and max(img.size) > size:
        img.thumbnail((size, size))
    out = io.BytesIO()
    pil_fmt, mime = FORMATS[fmt]
    if pil_fmt == "JPEG":
        img.save(out, "JPEG", quality=quality)
    else:
        img.save(out, "PNG", compress_level=1)
    return out.getvalue(), mime
