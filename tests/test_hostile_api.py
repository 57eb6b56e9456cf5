"""The app's endpoints called the way a hostile script can (raw JSON with NaN and infinities, private
events by number, values of the wrong type), through a launched app: every answer is a plain message,
never a Python error's text."""
import math

import pytest

from demo_core.diffusion.prompted import TEXT_DDPM

from tests.conftest import EXAMPLES
from tests.hostile import png_bytes
from tests.raw_api import call, fn_index, upload
from tests.launched import launched_app
from ui.diffusion import CLIPPED as CL

pytestmark = pytest.mark.slow
NAN, INF = math.nan, math.inf
GALLERY = "bundled gallery"
RAW = ("Could not preprocess", "cannot convert", "Traceback", "Overflow", "expected string", "index out of range",
       "object has no attribute", "Error(")


@pytest.fixture(scope="module")
def base():
    with launched_app() as url:
        yield url


@pytest.fixture(scope="module")
def cat(base):
    return upload(base, EXAMPLES / "cat.png")


def refused(base, message: str, **kw) -> str:
    ok, answer = call(base, **kw)
    assert not ok, f"expected a refusal, got {str(answer)[:200]}"
    assert message in str(answer), answer
    assert not any(raw in str(answer) for raw in RAW), answer
    return answer


@pytest.mark.parametrize("k", [300, 10**8, 0, -5, NAN, INF])
def test_search_image_checks_k(base, cat, k):
    """search_image skips Gradio's checks: k and the index are checked by the handler."""
    refused(base, "The number of results must be", api_name="search_image", data=[cat, GALLERY, k])


def test_search_checks_k_too(base):
    refused(base, "The number of results must be a finite number", api_name="search", data=["cat", GALLERY, NAN])
    ok, out = call(base, api_name="search", data=["cat", GALLERY, 48])
    assert ok and len(out[0]) == 48


def test_a_huge_drawing_costs_nothing_unless_used(base, tmp_path):
    """A 76 KB 20000×20000 PNG as the toy drawing cost 41 s and +5 GB, even when not used."""
    path = tmp_path / "huge.png"
    path.write_bytes(png_bytes(20000, 20000))
    drawing = {"background": None, "layers": [], "composite": upload(base, path), "id": None}
    ok, out = call(base, api_name="toy2d", data=["two moons", drawing, 200, 0])
    assert ok and "done" in out[2], out
    refused(base, "400 megapixels; the limit is 4 megapixels", api_name="toy2d", data=["my drawing", drawing, 200, 0])


@pytest.mark.parametrize("labels,templates,message", [
    ("cat, dog", "a {} " + "x" * 400_000, "more than the"),  # one 400 KB template
    (", ".join(f"thing {i}" for i in range(1000)), "\n".join(f"t{i} {{}}" for i in range(60)), "60 templates"),
    ("cat, dog", "a {} {x}", "exactly one {}"),
    ("cat, dog", "a {} }", "lone { or }"),
    (5, "a {}", "The labels must be text"),
    (["cat", "dog"], "a {}", "The labels must be text"),
    ("cat, dog", 5, "The templates must be text"),
])
def test_classify_refuses_bad_labels_and_templates(base, cat, labels, templates, message):
    refused(base, message, api_name="classify", data=[cat, labels, templates, True])


def test_classify_refuses_an_ensemble_that_is_not_a_tick(base, cat):
    refused(base, "Ensemble must be true or false", api_name="classify", data=[cat, "cat, dog", "a {}", "yes"])


def test_more_like_with_a_click_outside_the_results(base):
    """"More like this" at index -100 gave "list index out of range"."""
    session = "more-like-test"
    ok, out = call(base, api_name="search", data=["cat", GALLERY, 12], session=session)
    assert ok and len(out[0]) == 12
    select = fn_index(base, trigger="select")
    refused(base, "Click one of the results first", index=select, data=[None, GALLERY, 12], session=session,
            event_data={"index": -100, "value": None})
    ok, out = call(base, index=select, data=[None, GALLERY, 12], session=session, event_data={"index": 2, "value": None})
    assert ok and "more like result #3" in out[1]


@pytest.mark.parametrize("endpoint,data,message", [
    ("sample", ["", "emoji-ddpm", "DDIM", 5, NAN, 0, 1, CL, 3.0], "DDIM η must be a finite number"),
    ("sample", ["", "emoji-ddpm", "DDIM", 5, 0.0, 1e30, 1, CL, 3.0], "The seed must be between 0 and"),
    ("sample", ["", "emoji-ddpm", "DDIM", 5, 0.0, 10**30, 1, CL, 3.0], "The seed must be between 0 and"),
    ("sample", ["", "emoji-ddpm", "DDIM", 5, 0.0, NAN, 1, CL, 3.0], "The seed must be a finite number"),
    ("sample", ["", "emoji-ddpm", "DDIM", 5, 0.0, INF, 1, CL, 3.0], "The seed must be a finite number"),
    ("sample", ["", "emoji-ddpm", "DDIM", NAN, 0.0, 0, 1, CL, 3.0], "DDIM steps for"),
    ("sample", ["", "emoji-ddpm", "DDIM", 5, 0.0, 0, NAN, CL, 3.0], "The number of images must be a finite number"),
    ("sample", ["  ", TEXT_DDPM, "DDIM", 5, 0.0, 0, 1, CL, 3.0], "Type a prompt"),
    ("sample", ["a cat face", TEXT_DDPM, "DDIM", 5, 0.0, 0, 1, CL, NAN], "The guidance scale must be a finite number"),
    ("forward", ["CAT", NAN, "linear", 1000], "t must be a finite number"),
    ("forward", ["CAT", 5, "linear", NAN], "T must be a finite number"),
    ("clip_matrix", ["gallery", NAN, 0, [], "", 0.03, 0], "B must be a finite number"),
    ("clip_matrix", ["gallery", 8, NAN, [], "", 0.03, 0], "The seed must be a finite number"),
    ("clip_matrix", ["gallery", 8, 0, [], "", NAN, 0], "The temperature τ must be a finite number"),
    ("clip_matrix", ["gallery", 8, 0, [], "", 0.03, NAN], "The shuffle must be a finite number"),
    ("clip_train", ["gallery", 4, 0, [], "", NAN], "Training steps must be a finite number"),
    ("clip_train", ["gallery", 4, 1e30, [], "", 50], "The seed must be between"),
    ("toy2d", ["two moons", None, NAN, 0], "Training steps must be a finite number"),
    ("toy2d", ["two moons", None, 200, NAN], "The seed must be a finite number"),
    ("toy2d", ["two moons", None, 200, 1e30], "The seed must be between"),
    ("unclip", ["a heart", NAN, 0, 3, 1, 50, True], "The number of images must be a finite number"),
    ("unclip", ["a heart", 4, 0, NAN, 1, 50, True], "The decoder's guidance scale must be a finite number"),
    ("unclip", ["a heart", 4, 1e30, 3, 1, 50, True], "The seed must be between"),
    ("unclip", ["a heart", 4, 0, 3, NAN, 50, True], "The prior's guidance scale must be a finite number"),
    ("unclip_compare", ["a heart", NAN, 3, 50, True], "The seed must be a finite number"),
    ("variations", ["CAT", 4, 0, 3, NAN, True], "DDIM steps must be a finite number"),
    ("variations", ["CAT", 10**9, 0, 3, 50, True], "The number of variations must be between 1 and 8"),
    ("interpolate", ["CAT", "CAT", "", NAN, 0, 3, 50, True], "The number of points must be a finite number"),
])
def test_numbers_are_checked_at_every_endpoint(base, cat, endpoint, data, message):
    """NaN must not pass the number checks (η = NaN: "✅ done" with black images)."""
    data = [cat if d == "CAT" else d for d in data]
    refused(base, message, api_name=endpoint, data=data)
