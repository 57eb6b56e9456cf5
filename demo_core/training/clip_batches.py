"""What one step of mini-CLIP training sees: B distinct emoji, each drawn in one of its art styles, augmented, with
a random caption (and, for the cross-style lever, a second drawing of each in another style). Every draw comes from
a generator seeded by the step, so a resumed run, or a run on another device, sees the same batches."""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

import torch

from ..clip.mini import normalize
from .emoji_data import EmojiData, augment_batch, sample_caption

if TYPE_CHECKING:
    from .train_clip import TrainConfig


class CachedTokenizer:
    """The tokenizer with each caption's tokens kept: captions repeat across steps (names, aliases and keyword lists
    under a few templates), and BPE on the CPU would otherwise set the pace of a step on a GPU. Same output."""

    def __init__(self, tokenizer):
        self.tokenizer, self.cache = tokenizer, {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if new:
            self.cache.update(zip(new, self.tokenizer(new)))
        return torch.stack([self.cache[t] for t in texts])


def icon_count(data: EmojiData) -> int:
    """How many of the rows are icons (they come last)."""
    return sum(1 for r in data.records if r.get("style", "").startswith("icons:"))


def drawings_by_emoji(data: EmojiData) -> tuple[torch.Tensor, torch.Tensor]:
    """(E, K) rows of each emoji's drawings (padded with its first) and (E,) how many it has."""
    groups: dict[int, list[int]] = {}
    for row, e in enumerate(data.emoji_ids.tolist()):
        groups.setdefault(e, []).append(row)
    rows = list(groups.values())
    k = max(map(len, rows))
    return torch.tensor([r + [r[0]] * (k - len(r)) for r in rows]), torch.tensor([len(r) for r in rows])


def other_drawings(rows: torch.Tensor, counts: torch.Tensor, chosen: torch.Tensor, pick: torch.Tensor,
                   g: torch.Generator) -> torch.Tensor:
    """For each chosen emoji, another of its drawings (another art style) at random where it has more than
    one, else its one drawing: the rows of the cross-style lever's second view."""
    n = counts[chosen]
    other = (pick + 1 + (torch.rand(len(chosen), generator=g) * (n - 1)).long()) % n
    return rows[chosen, other]


def make_batch(data: EmojiData, tokenizer, step: int, cfg: TrainConfig, drawings=None, icons: int = 0):
    """Batch `step` of the run: B distinct emoji, each in one of its art styles at random (so no two
    rows of the B x B matrix are the same emoji), augmented renders and random captions. With `icons`
    (the last `icons` groups are icons) and ``cfg.icon_share``, that share of the batch is icons."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    rows, counts = drawings if drawings is not None else drawings_by_emoji(data)
    if icons and cfg.icon_share:
        n_icons = min(icons, round(cfg.batch_size * cfg.icon_share))
        emoji = len(rows) - icons
        chosen = torch.cat([torch.randperm(emoji, generator=g)[: cfg.batch_size - n_icons],
                            emoji + torch.randperm(icons, generator=g)[:n_icons]])
    else:
        chosen = torch.randperm(len(rows), generator=g)[: cfg.batch_size]
    pick = (torch.rand(len(chosen), generator=g) * counts[chosen]).long()
    idx = rows[chosen, pick]
    images = augment_batch(data.glyphs[idx], cfg.model.image_size, g,
                           strong=cfg.augment == "strong")  # (B, 3, S, S) in [0, 1]
    rng = random.Random(cfg.seed * 1_000_003 + step)
    single = 1 / 3 if cfg.captions == "keywords" else 0.0
    captions = [sample_caption(data.records[i], rng, single) for i in idx.tolist()]
    if not cfg.cross_style:
        return normalize(images), tokenizer(captions)
    # The second view is drawn after every draw above, so the first view's stream is the same with the lever on or off.
    views = augment_batch(data.glyphs[other_drawings(rows, counts, chosen, pick, g)], cfg.model.image_size, g,
                          strong=cfg.augment == "strong")
    return normalize(images), tokenizer(captions), normalize(views)
