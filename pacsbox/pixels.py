"""A stored frame as 8-bit pixels: what the browser (WEB-5, WADO) and a printer (SCU-7) show.

pydicom decodes (compressed syntaxes through the pylibjpeg plugins: JPEG
baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE), then: the modality LUT
(rescale slope/intercept), the window (explicit, else the data set's first
Window Center/Width, else the frame's min/max), MONOCHROME1 inverted,
PALETTE COLOR through its LUT, YBR converted to RGB by pydicom. Only the
requested frame of a multi-frame object is decoded.

Decoded frames are kept in a small LRU cache because a user adjusting the
window asks for the same frame again and again. Below web/ and scu/ (layer 1)
so the web page's images and the printed film are the same pixels.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import UID

from pacsbox.errors import CannotUnderstand, UsageError

_CACHE: OrderedDict[tuple[str, int], tuple[np.ndarray, dict]] = OrderedDict()
_CACHE_ITEMS = 16
_LOCK = threading.Lock()


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(
            value[0] if hasattr(value, "__len__") and not isinstance(value, str) else value
        )
    except (TypeError, ValueError, IndexError):
        return None


def _load_frame(path: Path, frame: int, native_ts: str | None) -> tuple[np.ndarray, dict]:
    key = (str(path), frame)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    try:
        ds = dcmread(path, force=native_ts is not None)
        if native_ts and "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta.TransferSyntaxUID = UID(native_ts)
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            raise CannotUnderstand("this object has no pixel data to show")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if not 1 <= frame <= frames:
            raise UsageError(f"frame {frame}: this image has {frames} frame(s)")
        index = frame - 1 if frames > 1 else None
        arr = ds.pixel_array if index is None else _frame(ds, index)
    except (
        InvalidDicomError,
        AttributeError,
        ValueError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise CannotUnderstand(f"cannot decode the pixel data: {exc}") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        if arr.dtype != np.uint8:
            arr = (arr >> 8).astype(np.uint8) if arr.max() > 255 else arr.astype(np.uint8)
        photometric = "RGB"
    elif arr.ndim == 2 or (arr.ndim == 3 and ds.get("SamplesPerPixel", 1) == 1):
        arr = apply_modality_lut(arr, ds)
    info = {
        "photometric": photometric,
        "wc": _first(ds.get("WindowCenter")),
        "ww": _first(ds.get("WindowWidth")),
        "color": photometric not in ("MONOCHROME1", "MONOCHROME2"),
    }
    with _LOCK:
        _CACHE[key] = (arr, info)
        while len(_CACHE) > _CACHE_ITEMS:
            _CACHE.popitem(last=False)
    return arr, info


def _frame(ds: Dataset, index: int) -> np.ndarray:
    """One frame of a multi-frame object without decoding the others."""
    try:
        from pydicom.pixels import pixel_array

        return pixel_array(ds, index=index)
    except (ImportError, TypeError):
        frame: np.ndarray = ds.pixel_array[index]
        return frame


def window(arr: np.ndarray, wc: float | None, ww: float | None) -> np.ndarray:
    """Linear VOI window (PS3.3 C.11.2.1.2) to 8 bits; min/max when no window is known."""
    a = arr.astype(np.float32, copy=False)
    if wc is None or ww is None or ww <= 0:
        lo, hi = float(a.min()), float(a.max())
    else:
        lo, hi = wc - 0.5 - (ww - 1) / 2, wc - 0.5 + (ww - 1) / 2
    if hi <= lo:
        hi = lo + 1
    out = (a - lo) * (255.0 / (hi - lo))
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def eight_bit(
    path: Path,
    *,
    frame: int = 1,
    wc: float | None = None,
    ww: float | None = None,
    native_ts: str | None = None,
) -> tuple[np.ndarray, bool]:
    """(pixels, is colour): rows x columns uint8 (grey, windowed, MONOCHROME1 turned
    to MONOCHROME2) or rows x columns x 3 (RGB). The window is ``wc``/``ww``, else the
    object's own, else its min/max. Raises UsageError or CannotUnderstand."""
    arr, info = _load_frame(path, frame, native_ts)
    if info["color"]:
        rgb = arr if arr.dtype == np.uint8 else window(arr, None, None)
        return rgb, rgb.ndim == 3
    if wc is None or ww is None:
        wc, ww = info["wc"], info["ww"]
    g = window(arr, wc, ww)
    if info["photometric"] == "MONOCHROME1":
        g = 255 - g
    return g, False
