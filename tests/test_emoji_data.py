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
