"""Drives `scorch ui` in a real headless Chromium (Debian's, through Playwright): a run in
progress shows its node turn from running to done without a reload. Prints what it saw as
JSON for tests/ui.rs.

usage: ui_check.py URL RUN_ID NODE RELEASE_FILE SCREENSHOT
"""
import json
import pathlib
import sys

from playwright.sync_api import sync_playwright

url, run, node, release, shot = sys.argv[1:6]
# A chart's title and how many points it draws.
CHART = "e => e.dataset.metric + ' (' + e.dataset.points + ' points)'"
seen = {}
with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    )
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{url}/#run={run}")
    box = f'[data-node="{node}"]'
    page.wait_for_selector(f'{box}[data-state="running"]', timeout=60_000)
    seen["running"] = True
    # Marks this page: a reload would lose it.
    page.evaluate("window.__scorch_marker = 42")
    page.click(box)
    page.wait_for_selector('[data-metric="loss"]', timeout=30_000)
    seen["chart_while_running"] = page.eval_on_selector('[data-metric="loss"]', CHART)
    # A view the user zoomed stays zoomed while the run's states change under it.
    page.click("#zin")
    zoomed = page.get_attribute("#viewport", "transform")
    seen["log_while_running"] = page.inner_text("#log")
    pathlib.Path(release).write_text("go")
    page.wait_for_selector(f'{box}[data-state="ran"]', timeout=60_000)
    seen["zoom_kept_live"] = page.get_attribute("#viewport", "transform") == zoomed
    seen["marker_after"] = page.evaluate("window.__scorch_marker")
    page.wait_for_function(
        "document.getElementById('run-status').textContent === 'succeeded'", timeout=30_000)
    seen["run_status"] = page.inner_text("#run-status")
    page.click('[data-node="nums"]')
    page.wait_for_selector('[data-artifact]', timeout=30_000)
    page.click('[data-artifact]')
    page.wait_for_selector("#preview", timeout=30_000)
    seen["columns"] = page.eval_on_selector_all("#preview th", "ths => ths.map(t => t.firstChild.textContent)")
    seen["rows"] = page.eval_on_selector_all("#preview tr", "trs => trs.length - 1")
    page.click(box)
    page.wait_for_selector('[data-metric="loss"]', timeout=30_000)
    seen["chart_after"] = page.eval_on_selector('[data-metric="loss"]', CHART)
    page.screenshot(path=shot, full_page=True)
    browser.close()
print(json.dumps(seen))
