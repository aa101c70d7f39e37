"""The report opened from disk in headless Chromium: no console errors, a row per method x budget,
sorting on a header click, plots that render."""

import shutil

import pytest

from bench.report.site import build
from bench.results import scan

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_report_in_headless_chromium(report_store, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from PIL import Image, ImageStat

    index = build(scan(report_store / "mini"), "mini", tmp_path / "reports")
    errors = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(index.as_uri())
        page.select_option("select[data-filter=dataset]", "toy/test")
        page.select_option("select[data-filter=table]", "0.5")
        visible = page.locator("#leaderboard tbody tr:visible")
        methods = sorted(
            visible.nth(i).get_attribute("data-method") + " " + visible.nth(i).get_attribute("data-budget")
            for i in range(visible.count())
        )
        assert methods == ["adapter 0.5", "full native", "iaa-l 0.5", "lora 0.5"]  # the budget-0.5 table
        assert page.locator("table.headline").count() == 1  # one headline table per stage
        mean_header = page.locator("#leaderboard thead th", has_text="mean").first
        mean_header.click()
        ascending = [
            page.locator("#leaderboard tbody tr:visible").nth(i).get_attribute("data-method")
            for i in range(visible.count())
        ]
        mean_header.click()
        descending = [
            page.locator("#leaderboard tbody tr:visible").nth(i).get_attribute("data-method")
            for i in range(visible.count())
        ]
        assert descending[0] == "lora" and ascending[-1] == "lora" and descending != ascending
        assert page.locator("svg").count() >= 2
        box = page.locator("svg").first.bounding_box()
        assert box["width"] > 100 and box["height"] > 100
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert not errors, errors
    stats = ImageStat.Stat(Image.open(shot).convert("L"))
    assert stats.stddev[0] > 10  # not blank
