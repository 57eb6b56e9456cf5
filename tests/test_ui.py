"""The UI's shared wrappers: user errors become messages in one place, and every handler that runs
a model is decorated for ZeroGPU exactly once, wherever it is wired."""
import inspect

import gradio as gr
import pytest

from demo_core.errors import InputError
from ui import common

MODEL_RUNNING = {"classify", "classify_example", "search", "search_image", "sample", "toy_run", "clip_matrix",
                 "clip_train", "text2img", "sweep", "unclip", "compare", "variations", "interpolate", "gap_plot"}
NO_ENGINE_CALL = {"refresh", "<lambda>", "stop", "load_example", "load_example_input", "load_example_output"}


def test_a_user_error_becomes_a_plain_message_and_a_bug_stays_a_bug():
    def refuse():
        raise InputError("Type at least one label.")

    def bug():
        raise ValueError("an index out of range, say")

    with pytest.raises(gr.Error, match="Type at least one label.") as e:
        common.handler(refuse)()
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no traceback chained for the user
    with pytest.raises(ValueError):
        common.handler(bug)()


def test_a_streaming_handler_stays_a_generator_and_maps_errors_mid_stream():
    def stream(n: int, request: gr.Request = None):
        yield n
        raise InputError("stopped making sense")

    wrapped = common.handler(stream)
    assert inspect.isgeneratorfunction(wrapped)  # Gradio streams only generator functions
    assert list(inspect.signature(wrapped).parameters) == ["n", "request"]  # gr.Request still injected
    out = wrapped(1)
    assert next(out) == 1
    with pytest.raises(gr.Error, match="stopped making sense"):
        next(out)


def test_every_model_running_handler_is_on_the_gpu_and_every_engine_call_maps_errors(monkeypatch):
    """Including the ones easy to forget: the query box's Enter, the temperature slider, the
    shuffle and order buttons, and the lazily cached Examples."""
    import app
    from demo_core.engine import Engine

    on_gpu = []

    def fake_gpu(fn=None, **_kwargs):
        on_gpu.append(fn.__wrapped__.__name__)
        fn.on_gpu = True
        return fn

    monkeypatch.setattr(common, "_gpu", fake_gpu)
    engine = Engine("mini-clip", "cpu", background=True)
    demo = app.build_demo(engine)
    engine.close()  # only the wiring is checked: stop the background loader
    assert set(on_gpu) == MODEL_RUNNING
    for dep in demo.fns.values():
        name = getattr(dep.fn, "__wrapped__", dep.fn).__name__
        assert getattr(dep.fn, "on_gpu", False) == (name in MODEL_RUNNING), name
        if name not in NO_ENGINE_CALL:
            assert hasattr(dep.fn, "__wrapped__"), f"{name} is wired without ui.common.handler"
    wired = [getattr(dep.fn, "__wrapped__", dep.fn).__name__ for dep in demo.fns.values()]
    assert wired.count("clip_matrix") == 4 and wired.count("search") == 2  # button + slider/shuffle/order; click + Enter


def test_text_to_image_keeps_clip_guidance_on_a_model_that_has_a_noised_clip():
    """Choosing CLIP guidance with a model whose CLIP has no noised CLIP switches to one that has; choosing such a
    model while CLIP guidance is on switches to classifier-free guidance (either way the run can go)."""
    from ui.text_to_image import _pairing

    class TwoModels:  # what the tab asks the engine
        text2img_models = [("tokens: pooled + tokens", "tokens"), ("pooled: pooled embedding", "pooled")]

        def text2img_model_guides_with_clip(self, name):
            return name == "pooled"

    on_method, on_model = _pairing(TwoModels())
    assert on_method("CLIP guidance (noised CLIP)", "tokens") == "pooled"
    assert on_method("CLIP guidance (noised CLIP)", "pooled") == gr.skip()  # left as it is
    assert on_method("classifier-free guidance", "tokens") == gr.skip()
    assert on_model("tokens", "CLIP guidance (noised CLIP)") == "classifier-free guidance"
    assert on_model("pooled", "CLIP guidance (noised CLIP)") == gr.skip()


def test_a_streamed_picture_is_written_once_and_never_rewritten_while_served(tmp_path):
    """Gradio names a cached image by a hash of its bytes but rewrote the file on every update, so a picture that
    a stream showed twice could be truncated while the browser fetched it (a broken image). With the app's
    writer, the same picture gives the same file, written once (same inode, same bytes)."""
    import os

    from gradio import processing_utils
    from PIL import Image

    import app  # noqa: F401  (build_demo installs the writer; installing it here is the same call)
    from ui.common import write_images_once

    write_images_once()
    img = Image.new("RGB", (8, 8), (200, 30, 30))
    first = processing_utils.save_img_array_to_cache(__import__("numpy").asarray(img), str(tmp_path))
    assert os.path.getsize(first) > 0
    assert not [p for p in os.listdir(os.path.dirname(first)) if p.startswith(".")]  # no staging file left
    with open(first, "wb") as f:  # stands for "the browser is reading this file": any rewrite would show
        f.write(b"being served")
    again = processing_utils.save_pil_to_cache(img, str(tmp_path))
    assert again == first
    with open(again, "rb") as f:
        assert f.read() == b"being served"  # not truncated and written again
