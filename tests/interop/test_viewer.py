"""The OHIF viewer in a real headless Chromium, on a study sent by DCMTK storescu.

An anonymous visit to the viewer's study address goes to the login page and
comes back after it; the viewer then draws the first image (pixels that are
not all one grey) and lists every series of the study. The offline variant
blocks everything but loopback in the browser: the viewer needs nothing from
the internet. Screenshots are saved in the test's tmp folder.
"""

from __future__ import annotations

import io
import time
import urllib.parse

import pydicom
import pytest
from pydicom.uid import RLELossless, generate_uid

from pacsbox.archive import Archive
from pacsbox.config import DEFAULT_VIEWER_DIR
from pacsbox.web import users
from pacsbox.web.server import start_web
from pacsbox.web.viewer_fetch import installed
from tests.helpers import dcmtk, poll
from tests.integration.web.conftest import PASSWORD, make_dicom
from tests.interop.chromium import GREY_LEVELS, WEBGL, needs_chromium, start_chromium

pytest.importorskip("selenium.webdriver")
pytestmark = [
    pytest.mark.slow,
    needs_chromium,
    pytest.mark.skipif(
        not installed(DEFAULT_VIEWER_DIR),
        reason="the OHIF viewer is not installed (make viewer; it needs the npm registry)",
    ),
]

SERIES = ("AXIAL", "CORONAL", "SAGITTAL")


def send_study(server, folder) -> str:
    """Three series of two 256x256 CT images, sent in one storescu association; the
    first (the one the viewer shows first) RLE-compressed, so its decoder runs too."""
    study = generate_uid()
    files = []
    for number, description in enumerate(SERIES, 1):
        series = generate_uid()
        for k in range(2):
            ds = pydicom.dcmread(
                io.BytesIO(
                    make_dicom(
                        patient_name="VIEWER^TEST",
                        patient_id="VT1",
                        description="VIEWER CT",
                        study_uid=study,
                        series_uid=series,
                        rows=256,
                        columns=256,
                    )
                )
            )
            ds.SeriesNumber, ds.SeriesDescription, ds.InstanceNumber = number, description, k + 1
            if number == 1:
                ds.compress(RLELossless)
            path = folder / f"{number}-{k}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(str(path))
    # -xr: propose RLE Lossless (and the uncompressed syntaxes) for every context.
    r = dcmtk("storescu", "-xr", "-aet", "STORESCU", "-aec", server.ae_title, "127.0.0.1",
              str(server.port), *files)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return study


# The viewport's own pixels (a 2D copy of its canvas, overlays and text left out):
# how many grey levels it holds. A blank or one-colour viewport has one.


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_viewer_shows_the_study(server, tmp_path, offline):
    from selenium.webdriver.common.by import By

    study = send_study(server, tmp_path)
    archive = Archive(server.cfg)
    users.set_password("root", PASSWORD)
    handle = start_web(server.cfg, archive, port=0)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    b = start_chromium(tmp_path / "chromium-profile", *WEBGL, offline=offline)
    try:
        base = f"http://127.0.0.1:{handle.port}"
        target = f"/viewer/viewer?StudyInstanceUIDs={study}"
        b.get(base + target)  # not logged in: the login page, which comes back here
        assert urllib.parse.urlsplit(b.current_url).path == "/login"
        b.find_element(By.ID, "name").send_keys("root")
        b.find_element(By.ID, "password").send_keys(PASSWORD)
        started = time.monotonic()
        b.find_element(By.ID, "login").click()

        poll(lambda: b.execute_script(GREY_LEVELS) > 32, 90, interval=0.25, what="the first image")
        first_image = time.monotonic() - started
        assert b.current_url == base + target
        b.save_screenshot(str(shots / "viewer.png"))

        def series_listed() -> list[str]:
            labels = b.find_elements(By.CSS_SELECTOR, "[data-cy=study-browser-thumbnail]")
            return [t.text for t in labels] if len(labels) == len(SERIES) else []

        listed = poll(series_listed, 30, what="every series in the series list")
        for description in SERIES:
            assert any(description in text for text in listed), (description, listed)
        # Everything the viewer loaded came from this box.
        loaded = b.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert loaded and all(u.startswith(base + "/") for u in loaded), [
            u for u in loaded if not u.startswith(base + "/")
        ]
        print(
            f"viewer: first image {first_image:.1f} s after login ({'offline' if offline else 'online'})"
        )
    finally:
        b.quit()
        handle.stop()
        archive.close()
    assert (shots / "viewer.png").stat().st_size > 0
