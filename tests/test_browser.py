"""The app in a real browser (Debian's chromium driven by Playwright), as a newcomer uses it: the status line,
zero-shot, search, the forward process, How CLIP learns, and every tab on a phone's screen. The generating
tabs (the reverse process, the toy 2-D diffusion, text to image, unCLIP) are in test_browser_generation.py,
so that two pytest workers share the browser tests.

Each test opens its own page (a fresh Gradio session with every widget at its default), so the
tests pass in any order and one's toasts never sit on another's screenshot.
Set DEMO_UPDATE_SCREENSHOTS=1 to refresh the README's screenshots in docs/.
"""
from tests.browser import BROWSER_MARKS, NARROW, open_page, open_tab, screen_problems, screenshot, wait_text
from tests.conftest import EXAMPLES

pytestmark = BROWSER_MARKS  # the fixtures app_url, browser and page come from tests/browser.py via conftest


TABS = ("Zero-shot labels", "Search", "Diffusion step by step", "Text to image", "unCLIP", "How CLIP learns")

def test_every_tab_fits_a_phone_screen(browser, app_url, tmp_path):
    """At 390×844 every tab opens, its quick action runs, and the screen has nothing cut, wide or erroring."""
    page = open_page(browser, app_url, NARROW)
    quick = {"Zero-shot labels": ("#zs-run", "#zs-probs .output-class"), "Search": ("#s-run", "#s-results img"),
             "Diffusion step by step": ("#f-run", "#f-info"), "How CLIP learns": ("#m-run", "#m-cos img")}
    problems = {}
    for i, name in enumerate(TABS):
        open_tab(page, name)
        if name == "Zero-shot labels":
            page.locator("#zs-image input[type=file]").set_input_files(str(EXAMPLES / "cat.png"))
        if name in quick:
            run, shown = quick[name]
            page.locator(run).click()
            page.locator(shown).first.wait_for(timeout=60_000)
            page.wait_for_timeout(500)
        screenshot(page, f"phone-{i}.png", tmp_path, docs=False)
        if found := screen_problems(page):
            problems[name] = found
        page.errors.clear()
    page.context.close()
    assert not problems, problems

def test_status_line_names_the_model(page):
    status = page.locator("#status-line").inner_text()
    assert "mini-clip-3" in status and "device" in status  # the app's CLIP offline

def test_zero_shot_tab_labels_the_cat_example(page, tmp_path):
    page.get_by_role("tab", name="Zero-shot labels").click()
    page.locator("#zs-image input[type=file]").set_input_files(str(EXAMPLES / "cat.png"))
    page.locator("#zs-labels textarea").fill("cat, dog, car, tree, pizza")
    page.locator("#zs-run").click()
    top = page.locator("#zs-probs .output-class")
    top.wait_for(timeout=30_000)
    page.wait_for_function("document.querySelector('#zs-probs .output-class').innerText.trim() === 'cat'",
                           timeout=30_000)
    assert top.inner_text().strip() == "cat"
    screenshot(page, "zero-shot.png", tmp_path)

def test_search_tab_finds_cats_and_more_like_this(page, tmp_path):
    page.get_by_role("tab", name="Search").click()
    page.locator("#s-query textarea").fill("cat")
    page.locator("#s-run").click()
    first = page.locator("#s-results .caption-label, #s-results figcaption").first
    first.wait_for(timeout=30_000)
    page.wait_for_function(
        "[...document.querySelectorAll('#s-results .caption-label, #s-results figcaption')].length >= 3",
        timeout=30_000)
    captions = page.locator("#s-results .caption-label, #s-results figcaption").all_inner_texts()
    assert "cat" in captions[0].lower(), captions[:5]
    screenshot(page, "search.png", tmp_path)
    page.locator("#s-results button.thumbnail-item, #s-results .thumbnail-item").first.click()
    page.get_by_text("more like result #1").first.wait_for(timeout=30_000)
    # the new list opens closed: a large preview would show result #1 of the *new* list under the old click
    page.wait_for_timeout(500)
    previews = page.locator("#s-results .preview")
    assert previews.count() == 0 or not previews.first.is_visible()

def test_diffusion_tab_forward_explorer(page, tmp_path):
    page.get_by_role("tab", name="Diffusion step by step").click()
    page.locator("#f-run").click()
    page.wait_for_function("document.querySelector('#f-info') && "
                           "document.querySelector('#f-info').innerText.includes('ᾱ_t')", timeout=30_000)
    info = page.locator("#f-info").inner_text()
    assert "t = 250" in info and "linear" in info
    page.get_by_text("cosine schedule: x_t across t").first.wait_for(timeout=10_000)
    screenshot(page, "diffusion.png", tmp_path)

def test_how_clip_learns_tab_matrix_shuffle_and_live_training(page, tmp_path):
    import re

    def loss(text):
        return float(re.search(r"loss = \(loss_i \+ loss_t\) / 2\s+([0-9.]+)", text).group(1))

    page.get_by_role("tab", name="How CLIP learns").click()
    page.locator("#m-run").click()
    ordered = wait_text(page, "#m-summary", "in order", 60_000)
    page.locator("#m-shuffle").click()
    shuffled = wait_text(page, "#m-summary", "shuffled", 60_000)
    assert loss(shuffled) > loss(ordered) + 2
    assert page.locator("#m-cos img").count() == 1
    steps = page.locator("#m-steps input[type=number]")
    steps.fill("200")  # enough for the shown pairs' loss to fall below 0.5 (0.21 at seed 0), quicker than 300
    steps.press("Enter")
    page.locator("#m-train").click()
    status = wait_text(page, "#m-status", "step 200/200", 300_000)
    shown_loss = float(re.search(r"shown pairs' loss ([0-9.]+)", status).group(1))
    assert shown_loss < 0.5
    page.locator("#m-live").scroll_into_view_if_needed()
    screenshot(page, "clip-learns.png", tmp_path)

def test_how_clip_learns_tab_with_my_own_images_and_captions(page):
    page.get_by_role("tab", name="How CLIP learns").click()
    page.get_by_text("My images and captions").click()
    page.locator("#m-files input[type=file]").set_input_files(
        [str(EXAMPLES / f) for f in ("cat.png", "dog.png", "automobile.png")])
    page.wait_for_function("document.querySelector('#m-source input[value=\"my images\"]')?.checked", timeout=30_000)
    page.locator("#m-caps textarea").fill("a cat\na dog\na car")
    page.locator("#m-run").click()
    summary = wait_text(page, "#m-summary", "B = 3", 60_000)
    assert "in order" in summary

def test_a_file_that_is_not_an_image_is_taken_off_the_box_with_a_plain_warning(page, tmp_path):
    """It used to stay in the image box as a broken picture; the page check after each test looks for one."""
    bad = tmp_path / "notes.png"
    bad.write_text("this is not a picture")
    page.get_by_role("tab", name="Zero-shot labels").click()
    page.locator("#zs-image input[type=file]").set_input_files(str(bad))
    page.get_by_text("That file is not an image this app can read").first.wait_for(timeout=30_000)
    page.wait_for_function("!document.querySelector('#zs-image img')", timeout=10_000)
    assert "Traceback" not in page.content()


def test_empty_labels_show_a_plain_error(page):
    page.get_by_role("tab", name="Zero-shot labels").click()
    page.locator("#zs-image input[type=file]").set_input_files(str(EXAMPLES / "cat.png"))
    page.locator("#zs-labels textarea").fill("  ")
    page.locator("#zs-run").click()
    toast = page.get_by_text("Type at least one label")
    toast.first.wait_for(timeout=30_000)
    assert toast.first.is_visible()
    assert "Traceback" not in page.content()
