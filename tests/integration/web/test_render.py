"""Rendering: window/level, photometric interpretations, multi-frame, compressed syntaxes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from pacsbox.errors import UsageError
from pacsbox.web import render
from tests.integration.web.conftest import make_dicom


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def write(tmp_path: Path, data: bytes, name="x.dcm") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_window_level_changes_the_picture(tmp_path):
    p = write(tmp_path, make_dicom(rows=64, columns=64))
    default, mime = render.render(p, fmt="png")
    assert mime == "image/png"
    narrow, _ = render.render(p, fmt="png", wc=100, ww=50)
    a, b = pixels(default), pixels(narrow)
    assert a.shape == (64, 64) and a.min() < 10 and a.max() > 240  # full 0..4095 ramp
    assert (b == 255).mean() > 0.9  # almost everything is above a window at 75..125


def test_monochrome1_is_inverted(tmp_path):
    m2 = pixels(render.render(write(tmp_path, make_dicom(), "a.dcm"), fmt="png")[0])
    m1 = pixels(
        render.render(write(tmp_path, make_dicom(photometric="MONOCHROME1"), "b.dcm"), fmt="png")[0]
    )
    assert np.abs(m1.astype(int) - (255 - m2.astype(int))).max() <= 1


def test_rgb_and_multiframe(tmp_path):
    rgb = pixels(
        render.render(write(tmp_path, make_dicom(photometric="RGB"), "c.dcm"), fmt="png")[0]
    )
    assert rgb.shape == (64, 64, 3) and rgb[0, 0, 0] == 200 and rgb[0, 0, 1] == 0
    p = write(tmp_path, make_dicom(frames=3), "d.dcm")
    assert pixels(render.render(p, fmt="png", frame=3)[0]).shape == (64, 64)
    with pytest.raises(UsageError):
        render.render(p, frame=4)


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR
        "JPGExtended.dcm",  # JPEG extended 12-bit
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "JPEG2000.dcm",
        "MR_small_RLE.dcm",
        "SC_rgb_rle.dcm",
    ],
)
def test_compressed_syntaxes(name):
    path = Path(get_testdata_file(name, download=False))
    data, mime = render.render(path, fmt="jpeg", size=128)
    img = Image.open(io.BytesIO(data))
    assert mime == "image/jpeg" and max(img.size) <= 128
    assert np.asarray(img).std() > 1  # a picture, not a flat field
