"""The emoji dataset: a fixed held-out split of whole emoji, and augmentation that varies renders."""
import os

import pytest
import torch

from demo_core.training import emoji_data
from demo_core.training.emoji_data import augment_batch, concept_of, make_split, sample_caption

needs_font = pytest.mark.skipif(not any(os.path.exists(p) for p in emoji_data.FONT_PATHS),
                                reason="fonts-noto-color-emoji is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import json

    out = tmp_path_factory.mktemp("emoji")
    stats = emoji_data.build(out)
    return stats, json.loads((out / "meta.json").read_text())


@needs_font
@pytest.mark.slow
def test_split_holds_out_whole_emoji_and_every_concept(built):
    stats, records = built
    assert stats["emoji"] > 1500
    assert stats["heldout"] >= 0.10 * stats["emoji"]
    for c in emoji_data.EVAL_CONCEPTS:
        splits = {r["split"] for r in records if concept_of(r) == c}
        assert splits == {"train", "heldout"}, c  # trained on the concept, tested on unseen emoji
    from demo_core.training.emoji_examples import EXAMPLE_EMOJI

    for name in EXAMPLE_EMOJI.values():
        assert next(r for r in records if r["name"] == name)["split"] == "heldout"


def test_split_is_fixed_by_names_not_by_order():
    recs = [{"name": f"thing {i}", "aliases": [], "keywords": []} for i in range(300)]
    make_split(recs)
    first = {r["name"]: r["split"] for r in recs}
    shuffled = [dict(r) for r in reversed(recs)]
    make_split(shuffled)
    assert {r["name"]: r["split"] for r in shuffled} == first


def test_augmentation_varies_background_pose_and_stays_in_range():
    glyph = torch.zeros(1, 4, 32, 32)
    glyph[:, :, 8:24, 8:24] = 1.0  # a white opaque square
    g = torch.Generator().manual_seed(0)
    out = augment_batch(glyph.expand(8, -1, -1, -1), 48, g)
    assert out.shape == (8, 3, 48, 48)
    assert out.min() >= 0 and out.max() <= 1
    assert (out[0] - out[1]).abs().mean() > 0.01  # two renders of one glyph differ


def test_captions_use_name_aliases_and_keywords():
    import random

    rec = {"name": "cat face", "aliases": ["cat"], "keywords": ["pet", "face"]}
    caps = {sample_caption(rec, random.Random(i)) for i in range(200)}
    assert any("cat face" in c for c in caps) and any("pet" in c for c in caps)


def test_strong_augmentation_puts_black_line_art_on_a_light_background():
    """Fluent high-contrast emoji are black line art: on a random dark background they vanish. The strong
    augmentation lever lightens the background behind dark drawings; the basic one (what the evaluation
    renders use) does not."""
    glyph = torch.zeros(1, 4, 32, 32)
    glyph[:, 3, 12:20, 4:28] = 1.0  # an opaque black bar
    corner = lambda out: out[:, :, :3, :3].mean((1, 2, 3))  # noqa: E731  background (the bar never reaches it)
    basic = augment_batch(glyph.expand(64, -1, -1, -1), 32, torch.Generator().manual_seed(0), scale_range=(0.5, 0.5))
    strong = augment_batch(glyph.expand(64, -1, -1, -1), 32, torch.Generator().manual_seed(0), scale_range=(0.5, 0.5),
                           strong=True)
    assert corner(basic).min() < 0.3 and corner(strong).min() >= 0.55
    assert strong.min() >= 0 and strong.max() <= 1


def test_the_keywords_caption_lever_adds_single_words():
    import random

    rec = {"name": "grinning cat", "aliases": [], "keywords": ["cat", "face", "grinning cat"]}
    one_word = lambda c: "grinning cat" not in c and "," not in c  # noqa: E731
    plain = sum(one_word(sample_caption(rec, random.Random(i))) for i in range(600)) / 600
    single = sum(one_word(sample_caption(rec, random.Random(i), single_word=1 / 3)) for i in range(600)) / 600
    assert single > plain + 0.2  # a third of captions more are one word: "cat", "a drawing of a face", …
