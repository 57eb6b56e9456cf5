"""What the conditional models are trained against: each emoji's captions and renders, embedded once by mini-CLIP.

``caption_bank``: K captions per emoji (its name, aliases or CLDR keywords in mini-CLIP's training
templates, plus colour and shape words such as "a red heart"), as unit text embeddings.
``token_bank``: the same captions' last-layer token features, for the cross-attention path.
``image_bank``: R renders per emoji on white (the pictures the DDPMs draw), as unit image embeddings.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from ..clip.mini import OPENAI_MEAN, OPENAI_STD
from ..clip.model import ClipModel
from ..clip.tokens import encode_tokens
from .emoji_data import EmojiData, article, augment_batch, sample_caption
from .emoji_groups import glyph_colour, group_of


def captions_for(record: dict, colour: str | None, group: str | None, k: int, rng: random.Random) -> list[str]:
    """k captions for one emoji: two thirds as mini-CLIP was trained, a third with colour/shape words."""
    caps = [sample_caption(record, rng) for _ in range(k - k // 3)]
    extra = []
    if colour:
        extra.append(article(f"{colour} {record['name']}"))
    if group:
        extra.append(f"a {group}")
        if colour:
            extra.append(f"a {colour} {group}")
    for i in range(k - len(caps)):
        caps.append(extra[i] if i < len(extra) else sample_caption(record, rng))
    return caps


def caption_bank(data: EmojiData, clip_spec: str, per_emoji: int = 12, seed: int = 0, cache: Path | None = None
                 ) -> tuple[torch.Tensor, list[list[str]]]:
    """(N, K, D) unit text embeddings of K = `per_emoji` captions per emoji, and the captions; cached in `cache`."""
    if cache is not None and cache.exists():
        state = torch.load(cache, map_location="cpu", weights_only=False)
        return state["emb"], state["captions"]
    rng = random.Random(seed)
    captions = [captions_for(r, glyph_colour(g), group_of(r), per_emoji, rng)
                for r, g in zip(data.records, data.glyphs)]
    clip = ClipModel.load(clip_spec, device="cpu")
    flat = [c for caps in captions for c in caps]
    emb = clip.encode_texts(flat).view(len(captions), per_emoji, -1)  # (N, K, D)
    if cache is not None:
        torch.save({"emb": emb, "captions": captions}, cache)
    return emb, captions


def token_bank(captions: list[list[str]], clip_spec: str, cache: Path | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The captions' last-layer token features for cross-attention: (N, K, L, W) float16 and (N, K, L)
    masks, L cut to the longest caption's tokens; cached in `cache`."""
    if cache is not None and cache.exists():
        state = torch.load(cache, map_location="cpu", weights_only=False)
        return state["tokens"], state["mask"]
    clip = ClipModel.load(clip_spec, device="cpu")
    flat = [c for caps in captions for c in caps]
    parts = [encode_tokens(clip, flat[i:i + 512]) for i in range(0, len(flat), 512)]
    mask = torch.cat([p.mask for p in parts])
    length = int(mask.sum(1).max())
    tokens = torch.cat([p.tokens[:, :length].half() for p in parts])
    n, k = len(captions), len(captions[0])
    tokens, mask = tokens.view(n, k, length, -1), mask[:, :length].reshape(n, k, length)
    if cache is not None:
        torch.save({"tokens": tokens, "mask": mask}, cache)
    return tokens, mask


@torch.inference_mode()
def image_bank(data: EmojiData, clip: ClipModel, renders: int, seed: int = 0) -> torch.Tensor:
    """(N, R, D) unit image embeddings of R renders per emoji on white (scale 0.8–1.0, as the DDPMs see them)."""
    g = torch.Generator().manual_seed(seed)
    mean, std = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    out = []
    for _ in range(renders):
        x = augment_batch(data.glyphs, clip.image_size, g, scale_range=(0.8, 1.0), max_angle=0.0, background="white")
        out.append(torch.cat([clip.encode_pixels((x[i:i + 256] - mean) / std) for i in range(0, len(x), 256)]))
    return torch.stack(out, 1)
