"""The admin dashboard in headless Chromium (Debian's ``chromium``, driven by
Playwright): mosn serving real traffic, the page loaded once, its tables and charts
following the traffic without a reload and without a console error."""

from __future__ import annotations

import os
import threading
from typing import Any, Iterator

import httpx
import pytest

from conftest import free_port
from test_stats import http_config, http_upstream  # noqa: F401 (a fixture)

CHROMIUM = os.environ.get("MOSN_TEST_CHROMIUM", "/usr/bin/chromium")
"""Debian's chromium; Playwright's own browser download is not used."""
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
REQUEST_INTERVAL = 0.02
"""Seconds between the test client's requests (about 50 per second at most)."""
CHART_POINTS = 8
"""Points on the charts (one a second) before they are looked at: the charts span a
minute, so a few seconds of line are only a few pixels per second wide."""
MIN_SERIES_PIXELS = 20
"""Pixels of a series' colour that show its line is drawn (a 2 px line over the
points above; stray anti-aliased pixels of that colour are far fewer)."""
PAGE_TIMEOUT_MS = 15_000
"""How long the page may take to show a figure (it polls once a second)."""

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no {CHROMIUM}")


@pytest.fixture
def browser_page() -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page and the console errors and page errors it reports."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            yield page, errors
        finally:
            browser.close()


def series_pixels(page: Any, canvas: str, css_color: str) -> int:
    """Pixels of ``canvas`` drawn in (about) the page's CSS colour ``css_color``."""
    return page.evaluate("""([id, name]) => {
        const canvas = document.getElementById(id);
        const probe = document.createElement("canvas").getContext("2d");
        probe.fillStyle = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
        probe.fillRect(0, 0, 1, 1);
        const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 0; i < data.length; i += 4) {
            if (data[i + 3] > 200 && Math.abs(data[i] - r) + Math.abs(data[i + 1] - g)
                + Math.abs(data[i + 2] - b) < 60) n++;
        }
        return n;
    }""", [canvas, css_color])


def test_dashboard_follows_live_traffic(start_mosn, http_upstream, browser_page, tmp_path):  # noqa: F811
    page, errors = browser_page
    port = free_port()
    mosn = start_mosn(http_config(port, http_upstream))
    stop = threading.Event()
    sent = [0]

    def traffic() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            while not stop.is_set():
                client.get("/status/200")
                sent[0] += 1
                stop.wait(REQUEST_INTERVAL)

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        page.goto(mosn.url("/dashboard"))
        page.wait_for_function("Number(document.getElementById('rate').textContent) > 0",
                               timeout=PAGE_TIMEOUT_MS)
        page.wait_for_function(f"series.rate.length >= {CHART_POINTS}", timeout=PAGE_TIMEOUT_MS)
        rate = float(page.text_content("#rate"))
        assert rate > 0
        assert series_pixels(page, "rate-chart", "--rate") > MIN_SERIES_PIXELS
        assert series_pixels(page, "latency-chart", "--mean") > MIN_SERIES_PIXELS
        page.locator("main").screenshot(path=str(tmp_path / "dashboard.png"))
    finally:
        stop.set()
        sender.join()
    # at most one request per REQUEST_INTERVAL was sent; the page's one-second
    # intervals jitter, so allow some slack above that, but not an order of magnitude
    assert 0 < rate < 3 / REQUEST_INTERVAL
    listeners = page.locator("#listeners tbody tr")
    assert listeners.count() == 1
    assert listeners.first.locator("td").nth(0).text_content() == "http"
    assert listeners.first.locator("td").nth(1).text_content() == f"127.0.0.1:{port}"
    clusters = page.locator("#clusters tbody tr")
    assert clusters.first.locator("td").nth(0).text_content() == "backend"
    assert clusters.first.locator("td").nth(3).text_content() == "1 / 1"
    host = page.locator("#hosts tbody tr").first.locator("td")
    assert host.nth(1).text_content() == f"127.0.0.1:{http_upstream}"
    assert host.nth(2).text_content() == "healthy"
    # once the traffic stopped, the page catches up with every request sent
    total = mosn.wait_stat("listener.http.downstream_rq_total", sent[0])[
        "listener.http.downstream_rq_total"]
    assert total == sent[0]
    page.wait_for_function(
        f"document.querySelector('#listeners tbody td:nth-child(5)').textContent === '{total}'",
        timeout=PAGE_TIMEOUT_MS)
    page.wait_for_function("Number(document.getElementById('rate').textContent) === 0",
                           timeout=PAGE_TIMEOUT_MS)
    assert errors == []
