"""A stored instance as a data set a peer accepts, when it does not take the stored syntax.

Compressed pixel data is decompressed with pylibjpeg/GDCM (pydicom picks the
plugin); Big Endian binary values are byte-swapped; Explicit/Implicit VR LE
and Deflated are re-encoded on sending.
"""

from __future__ import annotations

import array
import io
import logging
from collections.abc import Callable

from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID

from pacsbox.archive import read_stored
from pacsbox.db.query import StoredInstance

log = logging.getLogger("pacsbox.scu")

# Part-10 bytes in, the same object decompressed as Part-10 bytes out: how a
# process without the pixel libraries (a DICOM worker) has the daemon decompress.
Decompress = Callable[[bytes], bytes]


def stored_dataset(item: StoredInstance) -> Dataset:
    """The stored instance decoded as stored (its file meta says the transfer syntax)."""
    return dcmread(io.BytesIO(read_stored(item)))


def convert(
    item: StoredInstance, offered: list[str], decompress: Decompress | None = None
) -> Dataset | None:
    """The instance decoded into an uncompressed syntax the peer accepted, or None.

    ``decompress`` does the decompressing where this process has no numpy.
    """
    targets = [UID(t) for t in offered if not UID(t).is_compressed and UID(t).is_little_endian]
    if not targets:
        return None
    data = read_stored(item)
    ds = dcmread(io.BytesIO(data))
    ts = ds.file_meta.TransferSyntaxUID
    if not ts.is_little_endian:
        _swap_words(ds, ds.get("BitsAllocated"))
        return ds
    if ts.is_compressed:
        try:
            if decompress is not None and not pydicom_config.have_numpy:
                return dcmread(io.BytesIO(decompress(data)))
            ds.decompress(generate_instance_uid=False)
        except Exception as exc:  # noqa: BLE001 - no plugin or a corrupt stream: a failed sub-op
            log.warning("cannot decompress %s (%s): %s", item.sop_instance_uid, ts.name, exc)
            return None
    return ds


def decompressed(data: bytes) -> bytes:
    """A compressed Part-10 object decompressed (Explicit VR Little Endian), as Part-10 bytes."""
    ds = dcmread(io.BytesIO(data))
    ds.decompress(generate_instance_uid=False)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# Bytes per word of the raw binary VRs whose order depends on the transfer syntax.
_WORD = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}
_ARRAY_CODE = {2: "H", 4: "I", 8: "Q"}


def _swap_words(ds: Dataset, bits_allocated: int | None) -> None:
    """Byte-swap a Big Endian data set's raw binary values in place (PS3.5 7.3).

    pydicom decodes numbers (US, SS, FL...) by themselves, so they re-encode
    in any byte order; OW/OL/OF/OD/OV stay the bytes read and must be turned
    word by word. Pixel Data of more than 8 bits is swapped per pixel cell;
    8-bit (OB) data has no byte order.
    """
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_words(item, bits_allocated)
            continue
        width = _WORD.get(elem.VR)
        if elem.tag == 0x7FE00010:
            width = 2 if not bits_allocated or bits_allocated <= 16 else bits_allocated // 8
            if bits_allocated == 8 or elem.VR == "OB":
                width = None
        if (
            width not in _ARRAY_CODE
            or not isinstance(elem.value, (bytes, bytearray))
            or len(elem.value) % width
        ):
            continue
        words = array.array(_ARRAY_CODE[width], elem.value)
        words.byteswap()
        elem.value = words.tobytes()
