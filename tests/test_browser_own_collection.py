"""Your own collection in a real browser, as the README tells a new user to do it: `index_builder DIR --out OUT`,
then `app.py --index OUT`. Search opens OUT; a rebuild while the app runs is found by the next search; a moved
folder gives a message that names it."""
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from tests.conftest import EXAMPLES, ROOT
from tests.launched import launched_app
from tests.browser import CHROMIUM, FLAGS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (.ci/run installs it)"),
]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
CAPTIONS = "#s-results .caption-label, #s-results figcaption"


def _build(photos, out):
    done = subprocess.run([sys.executable, str(ROOT / "index_builder"), str(photos), "--out", str(out),
                           "--model", "mini-clip", "--workers", "1"], capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert done.returncode == 0, done.stderr


def _results(page, previous=None):
    """Click Search and wait for the gallery (and, when `previous` is given, for it to change)."""
    page.locator("#s-run").click()
    page.locator(CAPTIONS).first.wait_for(timeout=60_000)
    if previous is not None:
        page.wait_for_function(f"document.querySelectorAll({CAPTIONS!r}).length !== {previous}", timeout=60_000)
    return page.locator(CAPTIONS).all_inner_texts()


def test_my_index_opens_sees_a_rebuild_and_says_when_the_folder_moved(tmp_path):
    from playwright.sync_api import sync_playwright

    from demo_core.engine import Engine

    photos, out = tmp_path / "photos", tmp_path / "my-index"
    photos.mkdir()
    for p in sorted(EXAMPLES.glob("*.png")):
        shutil.copy(p, photos / p.name)
    _build(photos, out)
    engine = Engine("mini-clip", "cpu", indexes=[str(out)])
    with launched_app(engine) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(url, wait_until="load")
        page.get_by_role("tab", name="Search").click()
        assert page.locator("#s-index input").input_value() == str(out)  # 1. the index named at startup
        page.locator("#s-query textarea").fill("cat")
        first = _results(page)
        assert len(first) == 6, first  # the six photos of the folder, not the bundled gallery
        page.get_by_text("generation").first.wait_for(timeout=30_000)

        for name in sorted(p.name for p in EXAMPLES.glob("*.png"))[:3]:  # 2. new photos, rebuilt while the app runs
            shutil.copy(EXAMPLES / name, photos / f"again-{name}")
        (photos / "turned").mkdir()
        for p_ in sorted(EXAMPLES.glob("*.png"))[:2]:
            Image.open(p_).convert("RGB").rotate(90).save(photos / "turned" / p_.name)
        _build(photos, out)
        second = _results(page, previous=len(first))
        assert len(second) == 11 and any("again-" in c for c in second), second
        page.get_by_text("11 images").first.wait_for(timeout=30_000)  # the summary follows the rebuild

        photos.rename(tmp_path / "photos-moved")  # 3. the folder moved
        page.locator("#s-run").click()
        toast = page.get_by_text("not there any more")
        toast.first.wait_for(timeout=30_000)
        assert str(photos) in page.content() and "Traceback" not in page.content()
        page.screenshot(path=str(tmp_path / "moved.png"), full_page=True)
        browser.close()
