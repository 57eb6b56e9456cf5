"""The app's bundled mini-CLIP's zero-shot behaviour, and the label/template parsing around it."""
import pytest
from PIL import Image

from demo_core.clip.model import DEFAULT_TEMPLATES, parse_labels, parse_templates
from demo_core.errors import InputError
from tests.conftest import EXAMPLES


def test_held_out_cat_emoji_ranks_cat_above_car(bundled_clip):
    # assets/examples/cat.png is an emoji held out of training (see emoji_examples.EXAMPLE_EMOJI).
    res = bundled_clip.zero_shot(Image.open(EXAMPLES / "cat.png"), ["cat", "car"])
    probs = dict(zip(res.labels, res.probs))
    assert probs["cat"] > probs["car"]


@pytest.mark.parametrize("fname,labels,label", [
    ("cat.png", "cat, dog, car, tree, pizza", "cat"),
    ("dog.png", "cat, dog, bird, fish", "dog"),
    ("automobile.png", "car, bus, train, boat, bicycle", "car"),
    ("palm_tree.png", "tree, flower, house, sun", "tree"),
    ("train.png", "train, car, airplane, boat", "train"),
    ("bird.png", "bird, cat, fish, monkey", "bird"),
])
def test_the_apps_zero_shot_examples_get_the_right_label(bundled_clip, fname, labels, label):
    """Every example the Zero-shot tab offers, with its own labels, gets the right top label."""
    from ui.zero_shot import EXAMPLE_LABELS

    assert (fname, labels) in EXAMPLE_LABELS
    res = bundled_clip.zero_shot(Image.open(EXAMPLES / fname), [x.strip() for x in labels.split(",")])
    assert max(zip(res.probs, res.labels))[1] == label


@pytest.mark.parametrize("name,figures", [("mini-clip-3", "eval_mini_clip_3.json"), ("mini-clip-2", "eval_mini_clip_2.json"),
                                          ("mini-clip", "eval_mini_clip.json")])
def test_the_model_cards_sample_figures_are_reproduced_by_the_evaluation_command(name, figures):
    """bench/eval_mini_clip*.json record each bundled model on tests/data/emoji-sample (its card quotes them);
    the same command gives the same figures here."""
    import json

    from demo_core.clip.model import ClipModel
    from demo_core.training.eval_clip import evaluate_styles
    from tests.conftest import ROOT

    recorded = json.loads((ROOT / "bench" / figures).read_text())["shipped_model_sample"]
    assert recorded["command"].split("--model ")[1].split()[0] == name
    got = evaluate_styles(ClipModel.load(name, "cpu"), str(ROOT / "tests" / "data" / "emoji-sample"), renders=2,
                          size=64)
    for regime in ("seen_styles", "unseen_style"):
        for key in ("zero_shot_top1_ensemble", "t2i_R@1", "t2i_R@5"):
            assert got[regime][key] == pytest.approx(recorded[regime][key], abs=0.011), (regime, key)
            low, high = got[regime][key + "_ci95"]
            assert low <= got[regime][key] <= high, (regime, key)
    # each style lists the emoji it missed, with what it called them: they account for every wrong answer
    for style, part in got["per_style"].items():
        missed = part["zero_shot_missed"]
        wrong = sum((1 - m["right"]) * 2 for m in missed)  # 2 renders each
        assert wrong == pytest.approx((1 - part["zero_shot_top1_ensemble"]) * part["zero_shot_images"], abs=0.05)
        assert all(m["called"] != m["concept"] for m in missed), style


def test_the_figures_interval_resamples_whole_emoji_not_renders():
    """A figure's 95% interval counts emoji, not images: four renders of each emoji give the interval of one
    render each (an emoji's renders are not independent), ten times the emoji narrow it, and it holds the figure."""
    import torch

    from demo_core.training.eval_clip import bootstrap_ci

    names = [f"emoji {i}" for i in range(56)]  # the size of the held-out zero-shot set in one style
    right = torch.tensor([i % 10 < 7 for i in range(56)])  # 0.7 right
    one = bootstrap_ci(names, right)
    assert one[0] < 0.7 < one[1]
    assert one[1] - one[0] > 0.15  # 56 emoji cannot tell 0.70 from 0.75
    assert bootstrap_ci(names * 4, right.repeat(4)) == pytest.approx(one, abs=0.01)
    wider_set = bootstrap_ci([f"emoji {i}" for i in range(560)], right.repeat(10))
    assert wider_set[1] - wider_set[0] < 0.5 * (one[1] - one[0])


def test_a_paired_comparison_sees_a_real_difference_and_no_difference_with_itself():
    """bench/paired_eval.py scores models on the same images: a model against itself differs by exactly 0, and the
    Noto-only first mini-CLIP falls below mini-clip-2 with an interval that stays below 0."""
    import sys

    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT / "bench"))
    from paired_eval import compare, table

    rows = compare(["mini-clip-2", "mini-clip-2", "mini-clip-v1"], str(ROOT / "tests" / "data" / "emoji-sample"),
                   renders=2)
    assert rows[1]["seen_styles_minus_first"] == 0 and rows[1]["seen_styles_minus_first_ci95"] == [0, 0]
    assert rows[2]["seen_styles_minus_first"] < 0 and rows[2]["seen_styles_minus_first_ci95"][1] < 0
    assert "| mini-clip-v1 |" in table(rows)


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
