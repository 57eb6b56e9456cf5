"""The bundled mini-CLIP's zero-shot behaviour, and the label/template parsing around it."""
import pytest
from PIL import Image

from demo_core.clip.model import DEFAULT_TEMPLATES, parse_labels, parse_templates
from demo_core.errors import InputError
from tests.conftest import EXAMPLES


def test_held_out_cat_emoji_ranks_cat_above_car(bundled_clip):
    # assets/examples/cat.png is an emoji held out of training (see emoji_data.EXAMPLE_EMOJI).
    res = bundled_clip.zero_shot(Image.open(EXAMPLES / "cat.png"), ["cat", "car"])
    probs = dict(zip(res.labels, res.probs))
    assert probs["cat"] > probs["car"]


@pytest.mark.parametrize("fname,labels,label", [
    ("cat.png", "cat, dog, car, tree, train, bird, flower, house", "cat"),
    ("dog.png", "cat, dog, car, tree, train, bird, flower, house", "dog"),
    ("automobile.png", "car, bus, train, boat, bicycle", "car"),
])
def test_held_out_examples_top_label(bundled_clip, fname, labels, label):
    # The model is tiny (held-out zero-shot top-1 is about 50% over 25 concepts, see the model
    # card): the palm-tree and train examples are wrong in the app too, and that is shown, not hidden.
    res = bundled_clip.zero_shot(Image.open(EXAMPLES / fname), [x.strip() for x in labels.split(",")])
    assert max(zip(res.probs, res.labels))[1] == label


def test_probabilities_are_a_softmax_of_scaled_cosines(bundled_clip):
    import math

    res = bundled_clip.zero_shot(Image.open(EXAMPLES / "dog.png"), ["cat", "dog", "car"])
    assert sum(res.probs) == pytest.approx(1.0, abs=1e-5)
    z = [math.exp(res.logit_scale * c) for c in res.cosines]
    assert res.probs == pytest.approx([v / sum(z) for v in z], rel=1e-4)
    assert 1.0 <= res.logit_scale <= 100.0


def test_ensemble_off_uses_first_template_only(bundled_clip):
    img = Image.open(EXAMPLES / "dog.png")
    single = bundled_clip.zero_shot(img, ["cat", "dog"], DEFAULT_TEMPLATES, ensemble=False)
    assert single.templates == [DEFAULT_TEMPLATES[0]]
    direct = bundled_clip.zero_shot(img, ["cat", "dog"], [DEFAULT_TEMPLATES[0]])
    assert single.probs == pytest.approx(direct.probs)


def test_label_embeddings_are_cached(bundled_clip, monkeypatch):
    labels = ["a label for the cache test", "another one"]
    bundled_clip.label_embeddings(labels, DEFAULT_TEMPLATES)
    calls = []
    real = bundled_clip.model.encode_text
    monkeypatch.setattr(bundled_clip.model, "encode_text", lambda *a, **k: calls.append(1) or real(*a, **k))
    bundled_clip.label_embeddings(labels, DEFAULT_TEMPLATES)
    assert calls == []  # second time: no text encoder call
    bundled_clip.label_embeddings(labels + ["a new label"], DEFAULT_TEMPLATES)
    assert len(calls) == 1  # only the new label's prompts are encoded


def test_parse_labels_commas_newlines_duplicates():
    labels, notes = parse_labels("cat, dog\nCat,, car \n\n dog")
    assert labels == ["cat", "dog", "car"]
    assert any("duplicate" in n for n in notes)


def test_parse_labels_single_label_is_explained():
    labels, notes = parse_labels("cat")
    assert labels == ["cat"] and any("100%" in n for n in notes)


@pytest.mark.parametrize("text", ["", "  ", ", ,\n"])
def test_parse_labels_empty_is_refused(text):
    with pytest.raises(InputError, match="at least one label"):
        parse_labels(text)


def test_parse_templates():
    assert parse_templates("") == ["{}"]
    assert parse_templates("a photo of a {}.\n\nart of {}") == ["a photo of a {}.", "art of {}"]
    with pytest.raises(InputError, match="exactly one"):
        parse_templates("a photo of a")
