"""The app's generating tabs in a real browser, as a newcomer uses them: the reverse process streamed and
stopped, the toy 2-D diffusion trained live (on the built-in shape and on a drawing), text to image with its
sweep and attention maps, and unCLIP. The other tabs are in test_browser.py; this module launches its own
app, so a second pytest worker can run it beside that one.

Set DEMO_UPDATE_SCREENSHOTS=1 to refresh the README's screenshots in docs/.
"""
from tests.browser import BROWSER_MARKS, open_tab, screenshot, wait_text
from tests.conftest import EXAMPLES

pytestmark = BROWSER_MARKS  # the fixtures app_url, browser and page come from tests/browser.py via conftest


def test_diffusion_tab_reverse_process_denoises_toward_a_prompt(page, tmp_path):
    """The default model is the text-conditional one: the prompt and guidance scale are live; an
    unconditional model greys them out."""
    page.get_by_role("tab", name="Diffusion step by step").click()
    assert page.locator("#r-prompt textarea").is_editable()
    page.locator("#r-model input").click()
    page.get_by_role("option", name="emoji-ddpm", exact=True).click()
    page.wait_for_function("document.querySelector('#r-prompt textarea').disabled", timeout=10_000)
    page.locator("#r-model input").click()
    page.get_by_role("option", name="text-conditional emoji DDPM (your prompt)").click()
    page.wait_for_function("!document.querySelector('#r-prompt textarea').disabled", timeout=10_000)
    # the chosen model's whole name is on screen, not cut off by a narrow box
    assert page.evaluate("(() => { const i = document.querySelector('#r-model input');"
                         " return i.scrollWidth <= i.clientWidth; })()")
    page.locator("#r-prompt textarea").fill("a clock")
    page.locator("#r-run").click()  # the text-conditional DDPM guided toward "a clock", DDIM 50 steps, 4 images
    wait_text(page, "#r-status", "DDIM", 30_000)  # the first frames stream in before the end
    status = wait_text(page, "#r-status", "done", 120_000)
    assert "step 50 of 50" in status, status
    assert page.locator("#r-xt img").count() == 1
    assert page.locator("#r-strip img").count() >= 10  # the timeline to scrub
    page.locator("#r-strip").scroll_into_view_if_needed()
    screenshot(page, "reverse.png", tmp_path)

def test_diffusion_tab_toy_2d_trains_and_samples(page, tmp_path):
    import numpy as np
    from PIL import Image

    page.get_by_role("tab", name="Diffusion step by step").click()
    page.locator("#d-run").click()
    wait_text(page, "#d-status", "training", 60_000)
    status = wait_text(page, "#d-status", "done", 240_000)
    assert "800 samples" in status
    page.locator("#d-plot").scroll_into_view_if_needed()
    page.wait_for_timeout(500)  # the plot's last frame is drawn
    shot = tmp_path / "toy.png"
    page.locator("#d-plot").screenshot(path=str(shot))
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    near = lambda rgb: int((np.abs(pixels - rgb).sum(1) < 40).sum())  # noqa: E731
    # both series are drawn, in their own colours (the samples were missing: issue of the plot's first frame)
    assert near((0xE4, 0x57, 0x2E)) > 300 and near((0x9A, 0xA5, 0xB1)) > 300, (near((0xE4, 0x57, 0x2E)),
                                                                                near((0x9A, 0xA5, 0xB1)))

def test_diffusion_tab_toy_2d_learns_my_drawing(page):
    """The drawing reaches the handler undecoded (the event skips Gradio's preprocessing) and is used."""
    page.get_by_role("tab", name="Diffusion step by step").click()
    page.get_by_label("my drawing").check()
    canvas = page.locator("canvas").last
    canvas.scroll_into_view_if_needed()
    page.get_by_role("button", name="Brush").first.click()
    box = canvas.bounding_box()
    x0, y0, w, h = box["x"] + 0.35 * box["width"], box["y"] + 0.1 * box["height"], 0.3 * box["width"], box["height"]
    page.mouse.move(x0 + 0.2 * w, y0 + 0.4 * h)
    page.mouse.down()
    for i in range(30):  # a slanted stroke
        page.mouse.move(x0 + (0.2 + 0.02 * i) * w, y0 + (0.4 + 0.005 * i) * h)
    page.mouse.up()
    steps = page.locator("#d-steps input[type=number]")
    steps.fill("200")  # what is checked is that the drawing is used, not how well it is learned
    steps.press("Enter")
    page.locator("#d-run").click()
    status = wait_text(page, "#d-status", "done", 240_000)
    assert "800 samples" in status and "200 steps" in status

def test_reverse_process_stop_keeps_the_frames_and_algorithm_2_as_written_runs(page):
    from ui.diffusion import LITERAL

    page.get_by_role("tab", name="Diffusion step by step").click()
    page.locator("#r-rule").get_by_text(LITERAL).click()
    page.get_by_role("radio", name="DDPM", exact=True).click()  # 1000 steps: plenty of time to stop it
    page.locator("#r-run").click()
    wait_text(page, "#r-status", "DDPM", 60_000)
    page.locator("#r-stop").click()
    status = wait_text(page, "#r-status", "stopped", 60_000)
    assert "step 1000 of 1000" not in status
    assert page.locator("#r-strip img").count() >= 1

def test_text_to_image_streams_images_pieces_and_a_sweep(page, tmp_path):
    page.get_by_role("tab", name="Text to image").click()
    page.locator("#t2i-prompt textarea").fill("a red heart")
    page.locator("#t2i-run").click()
    wait_text(page, "#t2i-status", "done", 240_000)
    assert "upsampling to 64×64" in page.locator("#t2i-status").inner_text()  # the cascade ran last
    assert page.locator("#t2i-images img").count() == 8  # each base sample beside its upsampled one
    assert "64×64 upsampled" in page.locator("#t2i-images").inner_text()
    assert page.locator("#t2i-pieces img").count() >= 5  # x_t, ε̂(∅), ε̂(c), difference, guided ε̂, x̂₀
    page.locator("#t2i-sweep").click()
    wait_text(page, "#t2i-status", "Sweep: ✅ done", 180_000)
    assert page.locator("#t2i-swept img").count() == 6
    screenshot(page, "text-to-image.png", tmp_path)

def test_text_to_image_shows_which_word_looked_where(page, tmp_path):
    """GLIDE's second way: the model that cross-attends to the prompt's tokens draws one map per token at the
    inspected step, and moving the inspect slider redraws them."""
    open_tab(page, "Text to image")
    page.locator("#t2i-model").get_by_text("cross-attention").click()
    page.locator("#t2i-prompt textarea").fill("a red heart")
    page.locator("#t2i-run").click()
    wait_text(page, "#t2i-status", "done", 240_000)
    maps = page.locator("#t2i-attention")
    assert maps.locator("img").count() == 5  # ⟨start⟩ a red heart ⟨end⟩
    words = maps.inner_text()
    assert all(f"“{w}”" in words for w in ("a", "red", "heart")), words
    screenshot(page, "text-to-image-attention.png", tmp_path)

def test_a_failed_run_says_so_in_its_status_line(page):
    """The status line kept what it said before (the previous run's "✅ done") when a run failed; now it says
    the run failed."""
    from ui.common import FAILED

    open_tab(page, "Text to image")
    page.locator("#t2i-prompt textarea").fill("   ")
    page.locator("#t2i-run").click()
    wait_text(page, "#t2i-status", FAILED[:30], 60_000)
    page.errors.clear()  # the failed request is logged by the browser, as it should be

def test_unclip_prompt_variations_and_interpolation(page, tmp_path):
    """The bundled prior and decoder: prompt → prior → nearest real images → decoded images; an uploaded
    picture's variations; two pictures interpolated."""
    page.get_by_role("tab", name="unCLIP").click()
    page.locator("#u-prompt textarea").fill("a red heart")
    page.locator("#u-run").click()
    wait_text(page, "#u-status", "done", 180_000)
    assert page.locator("#u-nearest img").count() == 6  # what the prior imagines, as real gallery pictures
    assert page.locator("#u-images img").count() == 4
    wait_text(page, "#u-gap-legend", "text–text", 30_000)  # the legend names each curve
    screenshot(page, "unclip.png", tmp_path)
    page.get_by_role("tab", name="Image variations").click()
    page.locator("#u-picture input[type=file]").set_input_files(str(EXAMPLES / "cat.png"))
    page.locator("#u-run-var").click()
    wait_text(page, "#u-var-status", "done", 180_000)
    assert page.locator("#u-variations img").count() == 4
    page.get_by_role("tab", name="Interpolation").click()
    page.locator("#u-pic-a input[type=file]").set_input_files(str(EXAMPLES / "cat.png"))
    page.locator("#u-pic-b input[type=file]").set_input_files(str(EXAMPLES / "dog.png"))
    page.locator("#u-run-int").click()
    wait_text(page, "#u-int-status", "done", 180_000)
    assert page.locator("#u-strip img").count() == 7
