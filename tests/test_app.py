"""The app's `classify` endpoint, called the way a script would: gradio_client on a launched app."""
import pytest

from tests.conftest import EXAMPLES
from tests.launched import app_client
from tests.test_images import bomb_png

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    with app_client() as c:
        yield c


def _classify(client, image, labels="cat, dog, car", templates="a photo of a {}", ensemble=True):
    from gradio_client import handle_file

    return client.predict(handle_file(str(image)) if image else None, labels, templates, ensemble,
                          api_name="/classify")


def test_classify_endpoint_answers(client):
    label, table, details = _classify(client, EXAMPLES / "cat.png")
    assert label["label"] == "cat"
    assert {c["label"] for c in label["confidences"]} == {"cat", "dog", "car"}
    rows = table["data"]
    assert [r[0] for r in rows][0] == "cat" and len(rows) == 3
    assert "logit scale" in details


def _error_text(excinfo) -> str:
    return str(excinfo.value)


@pytest.mark.parametrize("labels,msg", [("", "at least one label"), (" , ,", "at least one label")])
def test_empty_labels_give_a_plain_message(client, labels, msg):
    with pytest.raises(Exception) as e:
        _classify(client, EXAMPLES / "cat.png", labels=labels)
    assert msg in _error_text(e)


def test_no_image_gives_a_plain_message(client):
    with pytest.raises(Exception) as e:
        _classify(client, None)
    assert "No image" in _error_text(e)


def test_non_image_file_gives_a_plain_message(client, tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("not a picture")
    with pytest.raises(Exception) as e:
        _classify(client, p)
    assert "not an image" in _error_text(e)


def test_decompression_bomb_gives_a_plain_message(client, tmp_path):
    with pytest.raises(Exception) as e:
        _classify(client, bomb_png(tmp_path / "bomb.png"))
    assert "1600 megapixels" in _error_text(e)


def test_one_label_duplicates_and_500_labels_answer(client):
    label, _, details = _classify(client, EXAMPLES / "cat.png", labels="cat")
    assert label["label"] == "cat" and "always 100%" in details
    label, table, details = _classify(client, EXAMPLES / "cat.png", labels="cat, dog, cat, CAT")
    assert len(table["data"]) == 2 and "duplicate" in details
    many = ", ".join(["cat"] + [f"thing number {i}" for i in range(499)])
    label, table, _ = _classify(client, EXAMPLES / "cat.png", labels=many)
    assert len(table["data"]) == 500
    assert sum(c["confidence"] for c in label["confidences"]) <= 1.0 + 1e-6


def _forward(client, image, t=250, schedule="linear", T=1000):
    from gradio_client import handle_file

    return client.predict(handle_file(str(image)) if image else None, t, schedule, T, api_name="/forward")


def test_forward_endpoint_noises_the_image_by_the_closed_form(client):
    import numpy as np
    from PIL import Image

    xt, info, lin, cos, *_ = _forward(client, EXAMPLES / "cat.png", t=0)
    x0 = np.asarray(Image.open(xt), dtype=np.float32)
    assert "ᾱ_t = 1.0000" in info
    xt, info, lin, cos, *_ = _forward(client, EXAMPLES / "cat.png", t=1000)
    noise = np.asarray(Image.open(xt), dtype=np.float32)
    assert np.abs(noise - x0).mean() > 40  # at t = T almost nothing of the image is left
    assert len(lin) == len(cos) == 7
    _, info, *_ = _forward(client, EXAMPLES / "cat.png", t=500, schedule="cosine")
    assert "cosine" in info and "signal √ᾱ_t = 0.7" in info  # cosine keeps more signal at T/2 than linear


def test_a_linear_schedule_too_short_to_reach_noise_says_why(client):
    """At T = 100 the linear schedule ends at √ᾱ_T = 0.60 (x_T still shows the cat): the explorer says so and
    why; at T = 1000, or with the cosine schedule, it does not."""
    _, info, *_ = _forward(client, EXAMPLES / "cat.png", t=100, T=100)
    assert "ends at √ᾱ_T = 0.60" in info and "1000/T" in info
    _, info, *_ = _forward(client, EXAMPLES / "cat.png", t=1000, T=1000)
    assert "ends at" not in info
    _, info, *_ = _forward(client, EXAMPLES / "cat.png", t=100, T=100, schedule="cosine")
    assert "ends at" not in info


def test_forward_endpoint_bad_and_huge_images_give_plain_messages(client, tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("not a picture")
    with pytest.raises(Exception) as e:
        _forward(client, p)
    assert "not an image" in str(e.value)
    with pytest.raises(Exception) as e:
        _forward(client, bomb_png(tmp_path / "bomb.png"))
    assert "1600 megapixels" in str(e.value)


def test_bundled_gallery_follows_the_active_model(tiny_clip_folder, tmp_path, monkeypatch):
    """With another CLIP active (e.g. ViT-B-32 on a Space), the gallery is embedded with it instead
    of failing every search with a model-mismatch error."""
    from demo_core.engine import BUNDLED_INDEX, GALLERY, Engine

    monkeypatch.setenv("DEMO_CACHE", str(tmp_path))
    engine = Engine(f"local-dir:{tiny_clip_folder}", "cpu")
    folder = engine.search.index(GALLERY).folder
    assert folder != BUNDLED_INDEX and tmp_path in folder.parents
    terms, found = engine.search.text("cat", GALLERY, 5)
    assert len(found) == 5 and all(f.thumbnail.is_file() for f in found)


def test_clip_matrix_endpoint_shows_the_loss_rising_when_captions_are_shuffled(client):
    import re

    def loss(shuffle):
        *_, summary = client.predict("gallery", 8, 0, [], "", 0.03, shuffle, api_name="/clip_matrix")
        return float(re.search(r"\*\*loss = \(loss_i \+ loss_t\) / 2\*\* \| \*\*([0-9.]+)\*\*", summary).group(1))

    assert loss(1) > loss(0) + 2


def test_clip_matrix_with_mismatched_captions_gives_a_plain_message(client):
    from gradio_client import handle_file

    files = [handle_file(str(EXAMPLES / "cat.png")), handle_file(str(EXAMPLES / "dog.png"))]
    with pytest.raises(Exception) as e:
        client.predict("my images", 8, 0, files, "a cat", 0.05, 0, api_name="/clip_matrix")
    assert "2 images but 1 captions" in _error_text(e)


def test_sample_endpoint_takes_the_prompt_first_and_defaults_the_rest(client):
    """Diffusion step by step's default: the text-conditional model, guided toward the prompt."""
    x_t, *_, status, strip, gif = client.predict("a cat face", api_name="/sample")
    assert "done" in status and "step 50 of 50" in status and str(x_t).endswith((".jpeg", ".jpg"))
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/sample"]["parameters"]
    assert params[0]["parameter_name"] == "prompt" and all(p["parameter_has_default"] for p in params[1:])


def test_sample_endpoint_streams_algorithm_2_as_written_to_a_gif(client):
    from ui.diffusion import LITERAL

    *_, status, strip, gif = client.predict("", "emoji-ddpm", "DDIM", 10, 0.0, 0, 1, LITERAL, api_name="/sample")
    assert "done" in status and "step 10 of 10" in status
    assert len(strip) >= 10 and str(gif).endswith(".gif")


def test_cached_example_outputs_are_kept_per_model(tiny_clip_folder, tmp_path):
    """Gradio reuses cached example outputs across restarts: they live in a folder keyed by the CLIP, so
    a restart with another model (or retrained weights under the same name) never shows stale answers."""
    import shutil
    from types import SimpleNamespace

    import app
    from demo_core.registry import parse_clip_spec

    def folder_for(spec):
        return app.examples_cache(SimpleNamespace(resolution=SimpleNamespace(spec=parse_clip_spec(spec))))

    copy = tmp_path / "clip"
    shutil.copytree(tiny_clip_folder, copy)
    before = folder_for(f"local-dir:{copy}")
    assert folder_for(f"local-dir:{copy}") == before  # the same model finds its cache again
    assert folder_for("mini-clip") != before
    weights = next(copy.glob("open_clip_model*"))
    weights.write_bytes(weights.read_bytes() + b"\0" * 16)  # retrained: same name, other weights
    assert folder_for(f"local-dir:{copy}") != before
