"""A real headless Chromium: log in, find a study sent by DCMTK storescu, see the image, log out.

The daemon receives the study over DICOM; the web page runs in this process
on a free port over the same data folder (the daemon's own web server is
started by the lead's wiring; this test does not depend on it). Screenshots
are saved in the test's tmp folder.
"""

from __future__ import annotations

import urllib.parse

import pytest

from pacsbox.archive import Archive
from pacsbox.web import users
from pacsbox.web.server import start_web
from tests.helpers import dcmtk, poll
from tests.integration.web.conftest import PASSWORD, make_dicom
from tests.interop.chromium import needs_chromium, start_chromium

webdriver = pytest.importorskip("selenium.webdriver")
pytestmark = [pytest.mark.slow, needs_chromium]


@pytest.fixture
def browser(tmp_path):
    driver = start_chromium(tmp_path / "chromium-profile", "--disable-gpu")
    yield driver
    driver.quit()


def arrive(b, path: str, what: str, query: str = "") -> None:
    """Wait until the browser shows a loaded page at ``path``.

    The path, not the whole address: the login page's ``?next=/studies`` holds the
    target's path before the browser has gone there.
    """

    def there() -> bool:
        url = urllib.parse.urlsplit(b.current_url)
        return (
            url.path.startswith(path)
            and query in url.query
            and b.execute_script("return document.readyState") == "complete"
        )

    poll(there, 10, what=what)


def test_login_search_view_logout(server, tmp_path, browser):
    from selenium.webdriver.common.by import By

    # A 512x512 CT sent by DCMTK's storescu to the running daemon.
    dcm = tmp_path / "ct.dcm"
    dcm.write_bytes(
        make_dicom(
            patient_name="BROWSER^TEST",
            patient_id="BT1",
            description="HEAD CT WEB",
            rows=512,
            columns=512,
        )
    )
    r = dcmtk(
        "storescu",
        "-aet",
        "STORESCU",
        "-aec",
        server.ae_title,
        "127.0.0.1",
        str(server.port),
        str(dcm),
    )
    assert r.returncode == 0, r.stderr

    archive = Archive(server.cfg)
    users.set_password("root", PASSWORD)
    handle = start_web(server.cfg, archive, port=0)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        base = f"http://127.0.0.1:{handle.port}"
        b = browser
        b.get(base + "/studies")  # not logged in: sent to the login page
        assert urllib.parse.urlsplit(b.current_url).path == "/login"
        b.find_element(By.ID, "name").send_keys("root")
        b.find_element(By.ID, "password").send_keys(PASSWORD)
        b.save_screenshot(str(shots / "1-login.png"))
        b.find_element(By.ID, "login").click()
        arrive(b, "/studies", "the studies page")

        b.find_element(By.ID, "patient_name").send_keys("BROWSER*")
        b.find_element(By.ID, "search").click()
        arrive(b, "/studies", "search results", query="patient_name=BROWSER")
        rows = b.find_elements(By.CSS_SELECTOR, "#studies tbody tr")
        assert len(rows) == 1 and "BROWSER^TEST" in rows[0].text and "HEAD CT WEB" in rows[0].text
        b.save_screenshot(str(shots / "2-search.png"))

        b.find_element(By.CSS_SELECTOR, "a.study-link").click()
        arrive(b, "/studies/", "the study page")
        b.save_screenshot(str(shots / "3-study.png"))
        b.find_element(By.CSS_SELECTOR, "a.series-link").click()
        arrive(b, "/series/", "the series page")
        b.find_element(By.CSS_SELECTOR, "a.image-link").click()
        arrive(b, "/instances/", "the image page")

        def decoded():
            return b.execute_script(
                "const i = document.getElementById('picture');"
                "return i && i.complete ? [i.naturalWidth, i.naturalHeight] : null;"
            )

        size = poll(decoded, 15, what="the rendered image")
        assert size == [512, 512]
        # The browser really drew pixels: sample the picture through a canvas.
        spread = b.execute_script(
            "const i = document.getElementById('picture');"
            "const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;"
            "const g = c.getContext('2d'); g.drawImage(i, 0, 0);"
            "const d = g.getImageData(0, 0, c.width, c.height).data; let lo = 255, hi = 0;"
            "for (let k = 0; k < d.length; k += 4) { lo = Math.min(lo, d[k]); hi = Math.max(hi, d[k]); }"
            "return hi - lo;"
        )
        assert spread > 100  # a grey ramp, not a blank or broken image
        b.save_screenshot(str(shots / "4-image.png"))

        b.find_element(By.ID, "logout").click()
        arrive(b, "/login", "the login page after logout")
        b.get(base + "/studies")
        assert urllib.parse.urlsplit(b.current_url).path == "/login"  # the session is gone
        b.save_screenshot(str(shots / "5-logged-out.png"))
    finally:
        handle.stop()
        archive.close()
    assert sorted(p.name for p in shots.iterdir()) == [
        "1-login.png",
        "2-search.png",
        "3-study.png",
        "4-image.png",
        "5-logged-out.png",
    ]
