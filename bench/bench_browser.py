"""Click-to-first-frame in a real browser: the reverse process's Sample button until the first
streamed x_t image is on screen (Debian chromium via Playwright, app launched in-process).

    python bench/bench_browser.py [--repeats 5] [--out bench/browser.json]

Each repeat reloads the page and clicks Sample (bundled emoji DDPM, DDIM 50, 4 images); the clock
runs in the page, from the button's click event to the first x_t <img> loaded (Playwright's own
click overhead, about a second here, is not counted). Also timed: the whole DDIM-50 run to its
"done" status, and the How CLIP learns tab's "Show the matrix" click to its loss table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


WATCH = """() => {
  delete window.__firstFrameMs;
  const button = document.querySelector('#r-run'), box = document.querySelector('#r-xt');
  button.addEventListener('click', () => {
    const t0 = performance.now();
    const done = () => { if (window.__firstFrameMs === undefined) window.__firstFrameMs = performance.now() - t0; };
    new MutationObserver((_, obs) => {
      const img = box.querySelector('img');
      if (img) { obs.disconnect(); img.complete ? done() : img.addEventListener('load', done, {once: true}); }
    }).observe(box, {childList: true, subtree: true});
  }, {once: true});
}"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import socket

    from playwright.sync_api import sync_playwright

    import app
    from _report import report
    from demo_core.engine import Engine

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.build_demo(Engine("mini-clip", "cpu"))
    demo.queue(default_concurrency_limit=2).launch(server_name="127.0.0.1", server_port=port, css=app.PAGE_CSS,
                                                   prevent_thread_lock=True, quiet=True)
    first, whole, matrix = [], [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for _ in range(args.repeats):
                page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
                page.wait_for_selector("#status-line", timeout=60_000)
                page.get_by_role("tab", name="Diffusion step by step").click()
                page.locator("#r-run").wait_for(state="visible")
                page.evaluate(WATCH)  # browser-side clock: the click event to the first x_t <img> loaded
                t = time.perf_counter()
                page.locator("#r-run").click()
                page.wait_for_function("window.__firstFrameMs !== undefined", timeout=60_000)
                first.append(page.evaluate("window.__firstFrameMs"))
                page.wait_for_function("document.querySelector('#r-status').innerText.includes('done')",
                                       timeout=120_000)
                whole.append(time.perf_counter() - t)
                page.get_by_role("tab", name="How CLIP learns").click()
                page.locator("#m-run").wait_for(state="visible")
                t = time.perf_counter()
                page.locator("#m-run").click()
                page.wait_for_function("document.querySelector('#m-summary') && "
                                       "document.querySelector('#m-summary').innerText.includes('loss_i')",
                                       timeout=60_000)
                matrix.append((time.perf_counter() - t) * 1000)
            browser.close()
    finally:
        demo.close()
    rows = {"reverse_click_to_first_frame_ms": {"first": round(first[0], 1), "median": round(statistics.median(first), 1),
                                                "max": round(max(first), 1)},
            "reverse_ddim50_click_to_done_s": {"median": round(statistics.median(whole), 2)},
            "clip_matrix_click_to_table_ms": {"first": round(matrix[0], 1), "median": round(statistics.median(matrix), 1)}}
    report(rows, args.out, repeats=args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
