"""
Interop: the dashboard in a real browser (Debian's chromium, headless, driven
by selenium through chromedriver).

The page must list the published stream, play it in the page with mpegts.js
over HTTP-FLV (the video element's time advances) and log no console errors.
A screenshot is kept under ``test-artifacts/`` (git-ignored) and its path printed.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .interop_kit import ROOT, FlashstreamServer, require_tool, start, stop_process
from .monitoring_interop import monitored_server, publish_args

pytestmark = pytest.mark.interop

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless chromium with a fresh profile, its console log captured."""
    chromium = require_tool("chromium")
    chromedriver = require_tool("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="flashstream-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(check: Any, timeout: float, what: str) -> Any:
    """Poll the page until ``check()`` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(0.25)


def test_dashboard_lists_and_plays_a_live_stream(browser: Any, tmp_path: Path) -> None:
    """
    The dashboard lists the stream ffmpeg publishes, its Play button starts
    the in-page mpegts.js player, the video's currentTime advances past 2 s,
    the server counts the browser as an HTTP-FLV viewer, and the console has
    no errors.
    """
    from selenium.webdriver.common.by import By

    require_tool("ffmpeg")
    server: FlashstreamServer
    with monitored_server(tmp_path) as (server, base):
        mark = server.mark()
        publisher = start(publish_args(server.url("live", "browser"), 40, 400))
        try:
            server.wait_for(r"Publishing live/browser\b", timeout=15, start=mark)
            browser.get(f"{base}/")
            row = wait_for(
                lambda: browser.find_elements(By.CSS_SELECTOR, 'tr[data-stream="live/browser"]'),
                20,
                "the stream is not listed",
            )[0]
            wait_for(lambda: "H.264" in row.text, 10, "the stream's codec is not shown")
            browser.find_element(By.CSS_SELECTOR, 'button.play[data-stream="live/browser"]').click()
            script = "return document.getElementById('player').currentTime"
            wait_for(lambda: browser.execute_script(script) > 2.0, 30, "the video did not advance")
            server.wait_for(r"plays live/browser over HTTP-FLV", timeout=5, start=mark)
            wait_for(
                lambda: "http-flv 1" in row.text, 10, "the dashboard does not show the viewer"
            )
            events = browser.find_element(By.ID, "events").text
            assert "publish" in events and "play" in events, events
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "dashboard.png"
            browser.save_screenshot(str(shot))
            print(f"dashboard screenshot: {shot}")
            errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == [], errors
        finally:
            stop_process(publisher)
