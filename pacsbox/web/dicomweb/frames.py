"""Frames as bytes (PS3.18 8.7.3): stored compressed frames as they are, native frames cut
from Pixel Data, and Explicit VR Little Endian versions of a stored object.

Conversion reuses ``scu.decompressed``, the same decompression a peer gets
when it cannot take the stored syntax.
"""

from __future__ import annotations

import io

from pydicom import dcmread
from pydicom.encaps import generate_frames
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pacsbox.errors import CannotUnderstand, NotAcceptable, NotFound
from pacsbox.scu import decompressed

# PS3.18 table 8.7.3-2: the media type of each compressed frame syntax.
MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
OCTET = "application/octet-stream"


def stored_media_type(transfer_syntax: str) -> str:
    """The frames' media type in the stored syntax (octet-stream when uncompressed)."""
    return MEDIA_TYPES.get(transfer_syntax, OCTET) if UID(transfer_syntax).is_compressed else OCTET


def convertible(stored: str) -> bool:
    """Whether ``explicit_le`` can convert objects stored in this syntax."""
    return stored in (ExplicitVRLittleEndian, ImplicitVRLittleEndian) or UID(stored).is_compressed


def explicit_le(data: bytes, stored: str) -> bytes:
    """A Part-10 object in Explicit VR Little Endian; raises NotAcceptable when it cannot be."""
    if stored == ExplicitVRLittleEndian:
        return data
    if UID(stored).is_compressed:
        return decompressed(data)
    if stored != ImplicitVRLittleEndian:
        raise NotAcceptable(f"{stored} cannot be converted to {ExplicitVRLittleEndian}")
    ds = dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def frame_bytes(data: bytes, numbers: list[int] | None, *, native: bool) -> list[bytes]:
    """The frames ``numbers`` (1-based; None: all) of a Part-10 object.

    ``native``: uncompressed pixels even for a compressed object (decompressed
    first). Raises NotFound for a frame the object does not have, and
    CannotUnderstand when it has no pixel data.
    """
    ds = dcmread(io.BytesIO(data))
    stored = str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))
    if native and UID(stored).is_compressed:
        ds = dcmread(io.BytesIO(decompressed(data)))
        stored = ExplicitVRLittleEndian
    if "PixelData" not in ds:
        raise CannotUnderstand("this object has no pixel data")
    count = int(ds.get("NumberOfFrames", 1) or 1)
    wanted = numbers or list(range(1, count + 1))
    missing = [n for n in wanted if not 1 <= n <= count]
    if missing:
        raise NotFound(f"frame {missing[0]}: the object has {count} frame(s)")
    pixels: bytes = ds.PixelData
    if UID(stored).is_compressed:
        frames = list(generate_frames(pixels, number_of_frames=count))
        return [frames[n - 1] for n in wanted]
    bits = int(ds.BitsAllocated)
    cells = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
    if bits == 1:  # packed bits: frames need not start on a byte
        if count == 1:
            return [pixels]
        raise NotAcceptable("frames of multi-frame 1-bit pixel data are not cut")
    size = cells * bits // 8
    return [pixels[(n - 1) * size : n * size] for n in wanted]
