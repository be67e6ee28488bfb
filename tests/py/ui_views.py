"""Opens `scorch ui` as a new user would, in a real headless Chromium (Debian's, through
Playwright) at 1280x800, and reports what it saw as JSON for tests/it/ui.rs: the run page of
the main job's smoke run (its results table above the fold, the whole DAG in view, a node's
charts with a value on hover), a workflow of 40 nodes (every box in view), and two runs side
by side. Saves each screenshot it looked at into OUT_DIR.

usage: ui_views.py URL SMOKE_RUN OTHER_RUN BIG_RUN OUT_DIR
"""
import json
import pathlib
import sys

from playwright.sync_api import sync_playwright

url, smoke, other, big, out = sys.argv[1:6]
out = pathlib.Path(out)
out.mkdir(parents=True, exist_ok=True)
W, H = 1280, 800
seen = {}

BOXES_IN_VIEW = """() => {
  const boxes = [...document.querySelectorAll('#viewport .box')].map((b) => b.getBoundingClientRect());
  const out = boxes.filter((r) => r.left < 0 || r.top < 0 || r.right > innerWidth || r.bottom > innerHeight);
  return {boxes: boxes.length, outside: out.length};
}"""
# Edges that pass through a box other than their two ends: sampled along each path, in the
# graph's own coordinates.
EDGES_THROUGH_BOXES = """() => {
  const boxes = [...document.querySelectorAll('#viewport .box')].map((b) => {
    const [x, y] = b.getAttribute('transform').match(/[-0-9.]+/g).map(Number);
    const r = b.querySelector('rect.frame');
    return {x, y, w: +r.getAttribute('width'), h: +r.getAttribute('height')};
  });
  let hits = 0, paths = 0;
  for (const p of document.querySelectorAll('#viewport path.edge')) {
    paths++;
    const len = p.getTotalLength();
    const inside = (q) => boxes.findIndex((b) => q.x > b.x + 1 && q.x < b.x + b.w - 1 && q.y > b.y + 1 && q.y < b.y + b.h - 1);
    const ends = new Set([inside(p.getPointAtLength(0.5)), inside(p.getPointAtLength(len - 0.5))]);
    for (let k = 1; k < 60; k++) {
      const i = inside(p.getPointAtLength(len * k / 60));
      if (i >= 0 && !ends.has(i)) { hits++; break; }
    }
  }
  return {paths, through_boxes: hits};
}"""
OVERFLOW = """() => ({page: document.documentElement.scrollWidth - innerWidth,
  main: document.getElementById('main').scrollWidth - document.getElementById('main').clientWidth})"""


def wait_drawn(page):
    page.wait_for_selector("#viewport .box", timeout=60_000)
    page.wait_for_timeout(300)


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    )
    page = browser.new_page(viewport={"width": W, "height": H})

    # The main job's run page: results first, the whole DAG beside them.
    page.goto(f"{url}/#run={smoke}")
    page.wait_for_selector("#results-table", timeout=60_000)
    wait_drawn(page)
    table = page.eval_on_selector("#results-table", "t => t.getBoundingClientRect().toJSON()")
    seen["results_in_view"] = table["top"] >= 0 and table["bottom"] <= H
    seen["results_rows"] = page.eval_on_selector_all(
        "#results-table tr[data-node]", "rows => rows.map((r) => [...r.cells].map((c) => c.textContent))")
    seen["dag"] = page.evaluate(BOXES_IN_VIEW)
    seen["edges"] = page.evaluate(EDGES_THROUGH_BOXES)
    seen["groups"] = page.eval_on_selector_all("#viewport .box[data-group]", "g => g.map((x) => x.dataset.group)")
    seen["overflow"] = page.evaluate(OVERFLOW)
    page.screenshot(path=str(out / "run-page.png"))

    # A node: its charts, a value on hover, the log scale.
    page.click('#viewport .box[data-node="warm_sft"]')
    page.wait_for_selector('#charts [data-metric="loss"] svg polyline', timeout=30_000)
    svg = page.query_selector('#charts [data-metric="loss"] svg')
    b = svg.bounding_box()
    svg.hover(position={"x": b["width"] * 0.6, "y": b["height"] * 0.5})
    page.wait_for_timeout(100)
    seen["hover"] = page.inner_text('#charts [data-metric="loss"] .tip')
    linear = page.eval_on_selector_all('#charts [data-metric="loss"] svg text', "t => t.map((x) => x.textContent)")
    page.click('#charts [data-metric="loss"] input[data-o="log"]')
    logged = page.eval_on_selector_all('#charts [data-metric="loss"] svg text', "t => t.map((x) => x.textContent)")
    seen["log_changes_ticks"] = linear != logged
    seen["summary_metrics"] = page.eval_on_selector_all(
        "#summary-metrics tr td", "c => c.map((x) => x.textContent)")
    seen["curves_across_nodes"] = page.eval_on_selector_all(
        "#curve-charts .chart", "c => c.map((x) => [x.dataset.metric, x.querySelectorAll('polyline').length])")
    seen["overflow_after_node"] = page.evaluate(OVERFLOW)
    page.wait_for_selector("#curve-charts .chart", timeout=30_000)
    page.query_selector("#node").scroll_into_view_if_needed()
    page.screenshot(path=str(out / "node-charts.png"))
    # The README's picture: results, the whole DAG, the selected node's curves and the
    # run's losses on one chart.
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(out / "readme.png"), full_page=True)

    # Pan and zoom: a zoom is kept while the view redraws.
    page.evaluate("window.scrollTo(0, 0)")
    page.click("#zin")
    before = page.get_attribute("#viewport", "transform")
    page.click('#viewport .box[data-node="demos"]')
    page.wait_for_timeout(300)
    seen["zoom_kept"] = before == page.get_attribute("#viewport", "transform") and "scale(" in before
    page.click("#fit")

    # A workflow of 40 nodes fits too.
    page.goto(f"{url}/#run={big}")
    page.wait_for_function("document.querySelectorAll('#viewport .box').length >= 40", timeout=60_000)
    page.wait_for_timeout(300)
    seen["big_dag"] = page.evaluate(BOXES_IN_VIEW)
    seen["big_edges"] = page.evaluate(EDGES_THROUGH_BOXES)
    seen["big_overflow"] = page.evaluate(OVERFLOW)
    page.screenshot(path=str(out / "big-dag.png"))

    # Two runs side by side, picked in the list; the link reopens the same view.
    page.goto(f"{url}/")
    page.wait_for_selector(f'[data-pick="{smoke}"]')
    page.check(f'[data-pick="{smoke}"]')
    page.check(f'[data-pick="{other}"]')
    page.click("#compare-sel")
    page.wait_for_selector("#cmp-results", timeout=60_000)
    page.wait_for_selector("#cmp-charts .chart", timeout=60_000)
    read = """() => ({
      results: [...document.querySelectorAll('#cmp-results tr')].slice(1).map((r) => [...r.cells].map((c) => c.textContent)),
      vars: [...document.querySelectorAll('#cmp-vars tr.diff')].map((r) => [...r.cells].map((c) => c.textContent)),
      params: [...document.querySelectorAll('#cmp-params tr.diff')].map((r) => r.cells[0].textContent),
      charts: [...document.querySelectorAll('#cmp-charts .chart')].map((c) => [c.dataset.metric, c.querySelectorAll('polyline').length]),
    })"""
    seen["compare"] = page.evaluate(read)
    seen["compare_overflow"] = page.evaluate(OVERFLOW)
    link = page.get_attribute("#compare-link", "href")
    page.screenshot(path=str(out / "compare.png"), full_page=True)
    fresh = browser.new_page(viewport={"width": W, "height": H})
    fresh.goto(f"{url}/{link}")
    fresh.wait_for_selector("#cmp-charts .chart", timeout=60_000)
    seen["link_reopens"] = fresh.evaluate(read) == seen["compare"]
    browser.close()

print(json.dumps(seen))
