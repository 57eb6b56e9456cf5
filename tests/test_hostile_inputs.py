"""What a hostile script can send the app's handlers, checked in the engine:
a plain InputError or ImageError every time, before any expensive work."""
import math

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import ImageFile

from demo_core.clip import matrix
from demo_core.clip.model import DEFAULT_TEMPLATES, MAX_PROMPTS, ClipModel, parse_labels, parse_templates
from demo_core.diffusion import forward_view, toy2d
from demo_core.errors import ImageError, InputError
from tests.conftest import EXAMPLES
from tests.hostile import png_bytes

NAN, INF = math.nan, math.inf


@pytest.fixture(scope="module")
def engine():
    from demo_core.engine import Engine

    return Engine("mini-clip", "cpu")


@pytest.mark.parametrize("k", [300, 10**8, 10**9, 0, -5, 2.5, NAN, INF])
def test_search_results_are_bounded(engine, k):
    """search_image skips Gradio's checks; k=300 returned the whole gallery, 10⁸ took 23 s and
    3 GB, 0 or -5 gave an empty FAISS assertion."""
    from demo_core.engine import GALLERY

    cat = str(EXAMPLES / "cat.png")
    with pytest.raises(InputError, match="The number of results must be"):
        engine.search.image(cat, GALLERY, k)
    with pytest.raises(InputError, match="The number of results must be"):
        engine.search.text("cat", GALLERY, k)
    with pytest.raises(InputError, match="The number of results must be"):
        engine.search.more_like(GALLERY, 1, k)


def test_search_with_the_largest_k(engine):
    from demo_core.engine import GALLERY, MAX_RESULTS

    assert len(engine.search.image(str(EXAMPLES / "cat.png"), GALLERY, MAX_RESULTS)) == MAX_RESULTS
    with pytest.raises(InputError, match="image id"):
        engine.search.more_like(GALLERY, -100, 12)


def test_a_huge_drawing_is_not_decoded_unless_used(monkeypatch):
    """A 76 KB PNG of 20000×20000 pixels cost 41 s and 5 GB in Gradio's preprocessing, even
    with a named distribution chosen. Now the drawing arrives undecoded and is decoded only when used,
    within toy2d.MAX_DRAWING_PIXELS."""
    from ui.diffusion import toy

    huge = png_bytes(20000, 20000)
    assert len(huge) < 100_000

    def load(self):
        raise AssertionError("the drawing was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    run = toy("two moons", huge, 200, 0)
    _, _, status = next(run)  # the first training frame: the drawing was never looked at
    assert "training" in status
    run.close()
    with pytest.raises(ImageError, match="400 megapixels; the limit is 4 megapixels"):
        next(toy("my drawing", huge, 200, 0))
    with pytest.raises(ImageError, match="2100×2000 \\(4 megapixels\\); the limit is 4"):
        next(toy("my drawing", png_bytes(2100, 2000), 200, 0))


def test_a_drawing_from_the_browser_or_a_script():
    """The pad's value, undecoded: the browser's blob (taken out of the pad either way) or a script's file."""
    from gradio.components.image_editor import EditorDataBlobs

    from ui.diffusion import drawing_source

    pad = gr.Sketchpad()
    pad.blob_storage["abc"] = EditorDataBlobs(background=None, layers=[], composite=b"png bytes")
    assert drawing_source({"id": "abc", "background": None, "layers": [], "composite": None}, pad) == b"png bytes"
    assert "abc" not in pad.blob_storage
    assert drawing_source({"id": "abc"}, pad) is None
    assert drawing_source({"id": None, "composite": {"path": "/tmp/x.png"}}, pad) == "/tmp/x.png"
    assert drawing_source(None, pad) is None and drawing_source("junk", pad) is None


def test_a_drawn_shape_still_trains():
    from ui.diffusion import toy

    canvas = np.full((300, 400, 3), 255, np.uint8)
    canvas[140:160, 50:350] = 0  # a wide dark bar
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    _, _, status = next(toy("my drawing", buf.getvalue(), 200, 0))
    assert "training" in status


def test_pillows_bomb_guard_stays_on_with_the_app_loaded():
    """Pillow's guard was off process-wide."""
    from PIL import Image

    import app  # noqa: F401 - everything the app imports

    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS <= 100_000_000


@pytest.mark.parametrize("text,msg", [
    ("a {} " + "x" * 400_000, "400,005 characters, more than the"),  # 500 labels x a 400 KB template: ~175 MB
    ("a {} " + "x" * 400, "longer than 200 characters"),
    ("\n".join(f"template {i} of {{}}" for i in range(60)), "60 templates is more than this app uses at once"),
])
def test_templates_are_bounded(text, msg):
    """A template or label box far past the limits is refused before any encoding."""
    with pytest.raises(InputError, match=msg):
        parse_templates(text)


def test_prompts_per_request_are_bounded(bundled_clip):
    labels = [f"thing {i}" for i in range(1000)]
    with pytest.raises(InputError, match="1000 labels × 20 templates = 20,000 prompts; at most 6,000"):
        bundled_clip.label_embeddings(labels, [f"t{i} {{}}" for i in range(20)])
    # the most labels with the default templates still work
    assert bundled_clip.label_embeddings(labels, DEFAULT_TEMPLATES).shape == (1000, bundled_clip.embed_dim)
    assert len(labels) * len(DEFAULT_TEMPLATES) <= MAX_PROMPTS


def test_the_text_cache_is_bounded_by_bytes(bundled_clip):
    clip = ClipModel(bundled_clip.model, bundled_clip.preprocess, bundled_clip.tokenizer, bundled_clip.spec,
                     bundled_clip.device, cache_bytes=200_000)
    first = clip.encode_texts(["a cat"])
    texts = [f"prompt number {i} " + "y" * 150 for i in range(600)]  # ~1 KB an entry: 600 KB asked for
    out = clip.encode_texts(texts)
    assert out.shape == (600, clip.embed_dim)
    assert 0 < clip.text_cache_bytes <= 200_000
    # evicted, encoded again, the same (up to float rounding: a batch of 3 and one of 600 sum in other orders)
    assert torch.allclose(clip.encode_texts(["a cat"]), first, atol=1e-6)
    assert torch.allclose(clip.encode_texts(texts[:3]), out[:3], atol=1e-6)


@pytest.mark.parametrize("template", ["a {} {x}", "a {} }", "a { {}", "{0}", "a {:>99999999}", "{!r}", "{}{}"])
def test_templates_that_str_format_would_choke_on(template):
    """'a {} {x}' once gave the user "'x'", 'a {} }' "Single '}' encountered in format string"."""
    with pytest.raises(InputError, match="template"):
        parse_templates(template)


def test_literal_braces_are_allowed_in_templates(bundled_clip):
    """Doubled braces are kept, and the model reads them as single braces in the prompt."""
    templates = parse_templates("a {{photo}} of {}")
    assert templates == ["a {{photo}} of {}"]
    got = bundled_clip.label_embeddings(["cat"], templates)[0]
    assert torch.allclose(got, bundled_clip.encode_texts(["a {photo} of cat"])[0], atol=1e-5)


@pytest.mark.parametrize("value", [5, ["cat"], {"a": 1}])
def test_labels_that_are_not_text(value):
    """A non-string labels value gave "expected string or bytes-like object"."""
    with pytest.raises(InputError, match="The labels must be text"):
        parse_labels(value)
    with pytest.raises(InputError, match="The templates must be text"):
        parse_templates(value)


def test_a_huge_seed_is_refused_plainly(engine):
    """Seed 10³⁰ gave "Overflow when unpacking long long"."""
    with pytest.raises(InputError, match="The seed must be between 0 and 9,223,372,036,854,775,807"):
        next(engine.reverse.sample("emoji-ddpm", "DDIM", ddim_steps=5, seed=10**30, n=1))
    with pytest.raises(InputError, match="The seed must be"):
        next(toy2d.train(toy2d.make_points("two moons", 100), steps=10, seed=10**30))
    with pytest.raises(InputError, match="The seed must be"):
        matrix.pick_pairs(matrix.gallery_pairs(), 4, 10**30)


def test_more_like_with_a_click_outside_the_results():
    """"More like this" with index -100 gave "list index out of range"."""
    import app
    from demo_core.engine import Engine

    engine = Engine("mini-clip", "cpu", background=True)
    demo = app.build_demo(engine)
    more_like = next(dep.fn for dep in demo.fns.values() if getattr(dep.fn, "__wrapped__", dep.fn).__name__ == "more_like")
    try:
        for index in (-100, 3, 10**9, None, "1", True):
            evt = gr.SelectData(None, {"index": index, "value": None})
            with pytest.raises(gr.Error, match="Click one of the results first"):
                more_like([11, 12, 13], "bundled gallery", 12, evt)
    finally:
        engine.close()


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_nan_and_infinities_are_refused_everywhere(engine, bad):
    """η = NaN once reported "✅ done" with all-black images."""
    with pytest.raises(InputError, match="DDIM η must be a finite number"):
        next(engine.reverse.sample("emoji-ddpm", "DDIM", ddim_steps=5, eta=bad, n=1))
    for kw, name in (({"ddim_steps": bad}, "DDIM steps"), ({"n": bad}, "number of images"), ({"seed": bad}, "seed")):
        with pytest.raises(InputError, match=f"{name}.* must be a finite number"):
            next(engine.reverse.sample("emoji-ddpm", "DDIM", **{"ddim_steps": 5, "n": 1, **kw}))
    from PIL import Image

    cat = Image.open(EXAMPLES / "cat.png").convert("RGB")
    for args, name in (((bad, "linear", 1000), "t"), ((5, "linear", bad), "T")):
        with pytest.raises(InputError, match=f"^{name} must be a finite number"):
            forward_view.explore(cat, *args)
    with pytest.raises(InputError, match="seed must be a finite"):
        forward_view.explore(cat, 5, "linear", 1000, bad)
    with pytest.raises(InputError, match="B must be a finite"):
        matrix.pick_pairs(matrix.gallery_pairs(), bad, 0)
    with pytest.raises(InputError, match="temperature τ must be a finite"):
        matrix.logit_scale_for(bad, 30.0)
    with pytest.raises(InputError, match="Training steps must be a finite"):
        next(matrix.train_live(matrix.gallery_pairs()[:2], matrix.gallery_pairs(), steps=bad))
    with pytest.raises(InputError, match="Training steps must be a finite"):
        next(toy2d.train(toy2d.make_points("two moons", 100), steps=bad))
    pairs = matrix.pick_pairs(matrix.gallery_pairs(), 2, 0)
    with pytest.raises(InputError, match="shuffle must be a finite"):
        matrix.view_batch(engine.clip, pairs, bad, 30.0)


def test_the_temperature_choice():
    assert matrix.logit_scale_for(None, 30.0) == 30.0 and matrix.logit_scale_for(0, 30.0) == 30.0
    assert matrix.logit_scale_for(0.5, 30.0) == 2.0
    with pytest.raises(InputError, match="between 0.01 and 1"):
        matrix.logit_scale_for(0.001, 30.0)
