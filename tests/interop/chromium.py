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
