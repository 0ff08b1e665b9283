"""The system's headless Chromium under Selenium, as the browser tests drive it.

Selenium drives Debian's chromedriver; it never downloads a browser or a
driver. ``offline=True`` adds what makes the browser reach nothing but
loopback: every host name fails to resolve and every other address goes to a
proxy on a closed port, so a page that needs the internet shows it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

needs_chromium = pytest.mark.skipif(
    not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
    reason="Debian chromium and chromium-driver are needed (make test installs them)",
)

# WebGL2 (the OHIF viewer's cornerstone3D) in a headless browser with no GPU:
# ANGLE over SwiftShader, the software Vulkan that Chromium ships.
WEBGL = ("--use-angle=swiftshader", "--enable-unsafe-swiftshader")
OFFLINE = (
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1",
)

# The number of grey levels in the viewer's first viewport (0 before it has
# drawn): an image is drawn once there are more than a handful.
GREY_LEVELS = """
const c = document.querySelector('canvas.cornerstone-canvas');
if (!c || !c.width || !c.height) return 0;
const copy = document.createElement('canvas'); copy.width = c.width; copy.height = c.height;
const g = copy.getContext('2d'); g.drawImage(c, 0, 0);
const d = g.getImageData(0, 0, copy.width, copy.height).data; const seen = new Set();
for (let k = 0; k < d.length; k += 4) seen.add(d[k]);
return seen.size;
"""


def start_chromium(profile: Path, *extra: str, offline: bool = False) -> Any:
    """A headless Chromium with its own profile folder; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless", "--no-sandbox", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,900",
        *extra, *(OFFLINE if offline else ()),
    ):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    return driver
