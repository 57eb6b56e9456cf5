"""What the browser tests share: Debian's chromium driven by Playwright, a page per test (its own Gradio
session), the check of what the screen shows, and the clicks a person makes to reach a tab.

The fixtures (app_url, browser, page) reach the test modules through tests/conftest.py. They are module
scoped: each browser test module launches its own app, so two pytest workers can each run one.
"""
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.launched import launched_app

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (.ci/run installs it)"),
]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def app_url():
    with launched_app() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


WIDE, NARROW = {"width": 1400, "height": 1000}, {"width": 390, "height": 844}  # a laptop, a phone


def open_page(browser, url, viewport):
    """A new page in a new browser context (its own Gradio session) that records the console's errors."""
    context = browser.new_context(viewport=viewport)
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.goto(url, wait_until="load")
    pg.wait_for_selector("#status-line", timeout=60_000)
    return pg


SCREEN_PROBLEMS = """() => {
  const out = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > window.innerWidth + 1) out.push(`page scrolls sideways: ${doc.scrollWidth} px in ${window.innerWidth}`);
  for (const img of document.querySelectorAll('.thumbnail-item img, .gallery-item img')) {
    if (!img.offsetParent || !img.naturalWidth) continue;
    const box = img.getBoundingClientRect(), fit = getComputedStyle(img).objectFit;
    const drawn = box.width / box.height, picture = img.naturalWidth / img.naturalHeight;
    if (fit !== 'contain' && fit !== 'scale-down' && Math.abs(drawn / picture - 1) > 0.02)
      out.push(`picture cropped (${fit}): ${img.naturalWidth}x${img.naturalHeight} in a ${Math.round(box.width)}x${Math.round(box.height)} box`);
  }
  for (const wrap of document.querySelectorAll('.grid-wrap')) {  // a gallery too short for its one row
    if (!wrap.offsetParent) continue;
    const items = [...wrap.querySelectorAll('.thumbnail-item')];
    const tops = new Set(items.map(i => Math.round(i.getBoundingClientRect().top)));
    if (items.length && tops.size === 1 && wrap.scrollHeight > wrap.clientHeight + 2)
      out.push(`gallery row cut: ${wrap.clientHeight} of ${wrap.scrollHeight} px shown (${items.length} pictures)`);
  }
  for (const img of document.querySelectorAll('img')) {
    if (img.offsetParent && img.complete && img.getAttribute('src') && img.naturalWidth === 0)
      out.push(`picture not shown: ${img.getAttribute('src').slice(0, 80)}`);
  }
  for (const label of document.querySelectorAll('.role-legend-label text')) {  // a plot's legend, cut at its edge
    const svg = label.closest('svg');
    if (!svg || !label.getClientRects().length) continue;
    const r = label.getBoundingClientRect(), box = svg.getBoundingClientRect();
    if (box.width && (r.right > box.right + 1 || r.left < box.left - 1))
      out.push(`legend label cut: "${label.textContent}"`);
  }
  for (const el of document.querySelectorAll('.caption-label, figcaption')) {
    if (!el.offsetParent) continue;  // not shown (another tab)
    if (el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1)
      out.push(`caption cut: "${el.innerText}"`);
  }
  return out;
}"""


def screen_problems(page) -> list[str]:
    """What a person would see wrong on the page as it stands: console errors, a page wider than the
    window, gallery pictures cropped to their cell, gallery captions cut off."""
    return [f"console: {e}" for e in page.errors] + page.evaluate(SCREEN_PROBLEMS)


@pytest.fixture
def page(browser, app_url):
    """A new page in a new browser context: its own Gradio session, nothing left from other tests. When the
    test is done, the screen it leaves is checked (``screen_problems``)."""
    pg = open_page(browser, app_url, WIDE)
    yield pg
    problems = screen_problems(pg)
    pg.context.close()
    assert not problems, problems


def open_tab(page, name):
    """Click the tab `name`; on a narrow screen Gradio folds the tabs that do not fit into a "More tabs" menu."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    tab = page.get_by_role("tab", name=name)
    menu = page.locator(".overflow-menu").first  # the page's tabs (a tab may hold tabs of its own)
    more = menu.locator("button[aria-label='More tabs']")
    deadline = time.time() + 30
    while True:  # Gradio lays the tabs out after the first paint: look until one way in is shown
        if tab.count() and tab.first.is_visible():
            tab.first.click()
            break
        if more.count() and more.is_visible():
            try:
                more.click(timeout=2_000)
                menu.locator(".overflow-dropdown button", has_text=name).first.click(timeout=2_000)
                break
            except PlaywrightTimeout:  # the layout changed under the click: look again
                pass
        assert time.time() < deadline, f"the tab {name!r} is neither shown nor in the More tabs menu"
        page.wait_for_timeout(100)
    page.wait_for_selector(f"[role=tab][aria-selected=true]:has-text({name!r})", timeout=10_000)


def screenshot(page, name, tmp_path, docs=True):
    # thumbnails load after their captions (lazily, as they scroll into view): bring each into view, then
    # wait until the pictures have arrived; a picture that never does is reported by screen_problems
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.evaluate("() => { for (const i of document.images) if (i.offsetParent) i.loading = 'eager'; }")
    try:
        page.wait_for_function("[...document.images].filter(i => i.offsetParent).every(i => i.complete)",
                               timeout=15_000)
    except PlaywrightTimeout:
        pass
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if docs and os.environ.get("DEMO_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(tmp_path / name, ROOT / "docs" / name)


def wait_text(page, selector, text, timeout):
    page.wait_for_function(f"document.querySelector('{selector}') && "
                           f"document.querySelector('{selector}').innerText.includes({text!r})", timeout=timeout)
    return page.locator(selector).inner_text()
