"""Headless Chromium for the console's browser tests: Debian's `chromium` and `chromium-driver`, driven by Selenium.

Selenium is pointed at both binaries explicitly, so its driver manager never tries to download anything. Without
them the tests skip with one line saying what to install (`.ci/run` installs them on CI).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)
DRIVER = shutil.which("chromedriver")
LAPTOP = (1366, 900)
PHONE = (390, 844)
_SHOTS: Path | None = None


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if CHROMIUM is None or DRIVER is None:
        return "no headless browser: apt-get install -y chromium chromium-driver to run the console's browser tests"
    return None


def screenshot_dir() -> Path:
    """One temporary folder per test session for the pages' screenshots (reported at the end of the run)."""
    global _SHOTS
    if _SHOTS is None:
        _SHOTS = Path(os.environ.get("CITEBOT_SCREENSHOTS") or tempfile.mkdtemp(prefix="citebot-screenshots-"))
        _SHOTS.mkdir(parents=True, exist_ok=True)
    return _SHOTS


def screenshots_taken() -> Path | None:
    return _SHOTS


@contextmanager
def chromium(profile: Path) -> Iterator[object]:
    """A fresh headless Chromium with its own profile folder, closed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    reason = missing()
    if reason:
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(DRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def capture(driver: object, name: str, size: tuple[int, int], mobile: bool, focus: str | None = None) -> Path:
    """A PNG of the current page at `size` (phone sizes are emulated as a touch device): the whole page from the
    top, or with `focus` (a CSS selector) the screen a reader sees with that element scrolled to the middle."""
    width, height = size
    execute = driver.execute_cdp_cmd  # type: ignore[attr-defined]
    script = driver.execute_script  # type: ignore[attr-defined]
    execute(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile},
    )
    try:
        if focus:
            script("document.querySelector(arguments[0]).scrollIntoView({block: 'center'})", focus)
            shot = execute("Page.captureScreenshot", {"format": "png"})
        else:
            script("window.scrollTo(0, 0)")
            full = min(int(script("return document.documentElement.scrollHeight")), 6000)
            clip = {"x": 0, "y": 0, "width": width, "height": full, "scale": 1}
            shot = execute("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
    finally:
        execute("Emulation.clearDeviceMetricsOverride", {})
    path = screenshot_dir() / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
