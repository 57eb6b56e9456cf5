"""How CLIP learns: the B×B similarity matrix of one batch, and a tiny CLIP trained live on it.

The lecture's pseudo-code, which ``batch_matrix`` computes (through ``contrastive.contrastive_loss``,
the same function that trained the bundled mini-CLIP):

    I_e = l2_normalize(I_f, axis=1)            # (B, D) image embeddings
    T_e = l2_normalize(T_f, axis=1)            # (B, D) text embeddings, caption i belongs to image i
    logits = np.dot(I_e, T_e.T) * np.exp(t)    # (B, B): row i = image i against every caption
    labels = np.arange(n)                      # the right answer of row i (and of column i) is i
    loss_i = cross_entropy_loss(logits, labels, axis=0)
    loss_t = cross_entropy_loss(logits, labels, axis=1)
    loss   = (loss_i + loss_t)/2

Read here as: loss_i classifies each image (row) among the B captions, loss_t each caption
(column) among the B images. The B matches sit on the diagonal, the B²−B non-matches off it.
"""
from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ..errors import InputError
from ..images import load_image
from ..inputs import MAX_SEED, check_number, check_seed, check_text
from ..registry import ASSETS
from ..runs import seeded
from .contrastive import contrastive_loss, contrastive_step, l2_normalize
from .heatmap import render_heatmap
from .mini import MiniClipConfig, build_model, normalize

MIN_B, MAX_B = 2, 16
MIN_TEMPERATURE = 0.01  # τ; exp(t) = 1/τ is at most 100, CLIP's own clamp
MAX_LIVE_STEPS = 600  # steps of one live training run (a few minutes on two CPU cores)
GALLERY = ASSETS / "gallery" / "images"
PHOTO_CAPTIONS = {  # the bundled scikit-image photos (see training/gallery.py)
    "cat_chelsea": "a cat", "astronaut": "an astronaut", "coffee_cup": "a cup of coffee",
    "rocket_launch": "a rocket launch", "cameraman": "a man with a camera", "horse_silhouette": "a horse",
    "hubble_deep_field": "galaxies in deep space", "brick_wall": "a brick wall", "grass": "grass",
    "gravel": "gravel", "retina": "a retina",
}


@dataclass
class Pair:
    image: object  # PIL.Image, RGB
    caption: str
    source: str  # file name, for display


@functools.lru_cache(maxsize=4)
def gallery_pairs(root: Path = GALLERY) -> list[Pair]:
    """Every image–caption pair the bundled gallery offers: emoji named by their file, and photos.
    Cached: treat the list and its images as read-only."""
    from PIL import Image

    pairs = []
    for path in sorted(root.rglob("*.png")) + sorted(root.rglob("*.jpg")):
        stem = path.stem.split("__")[0]  # other art styles: dog__twemoji.png is "dog"
        caption = PHOTO_CAPTIONS.get(stem) or stem.replace("_", " ")
        with Image.open(path) as im:
            pairs.append(Pair(im.convert("RGB"), caption, path.name))
    return pairs


def pick_pairs(pool: Sequence[Pair], B: int, seed: int) -> list[Pair]:
    """B pairs with distinct captions, chosen by `seed`."""
    B = check_number(B, "B", MIN_B, MAX_B, integer=True)
    seed = check_seed(seed)
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    chosen, seen = [], set()
    for i in order:
        if pool[i].caption not in seen:
            chosen.append(pool[i])
            seen.add(pool[i].caption)
        if len(chosen) == B:
            return chosen
    raise InputError(f"Only {len(chosen)} distinct pairs are available; pick a smaller B.")


def user_pairs(paths: Sequence[str], captions_text: str | None) -> list[Pair]:
    """The user's own batch: MIN_B to MAX_B images and one caption per line, in the same order."""
    captions_text = check_text(captions_text, "The captions", max_chars=MAX_B * 1000)
    captions = [c.strip() for c in captions_text.splitlines() if c.strip()]
    if not MIN_B <= len(paths) <= MAX_B:
        raise InputError(f"Upload between {MIN_B} and {MAX_B} images (you gave {len(paths)}).")
    if len(captions) != len(paths):
        raise InputError(f"Type one caption per line, one for each image: {len(paths)} images but "
                         f"{len(captions)} captions.")
    if len(set(captions)) != len(captions):
        raise InputError("Two captions are the same; each image needs its own caption.")
    return [Pair(load_image(p), c, Path(p).name) for p, c in zip(paths, captions)]


def batch_pairs(source: str, B: int, seed: int, paths: Sequence[str], captions_text: str | None) -> list[Pair]:
    """The batch to show: B gallery pairs picked by `seed`, or (source "my images") the user's own."""
    if source == "my images":
        return user_pairs(paths, captions_text)
    return pick_pairs(gallery_pairs(), B, seed)


def caption_order(B: int, shuffle: int) -> list[int]:
    """Which caption sits in column j. shuffle=0: its own (the true pairs). shuffle=k>0: the k-th
    seeded derangement, so no image keeps its caption and every diagonal cell is a wrong pair."""
    if shuffle <= 0:
        return list(range(B))
    rng = random.Random(shuffle)
    while True:
        perm = list(range(B))
        rng.shuffle(perm)
        if all(p != i for i, p in enumerate(perm)):
            return perm


@dataclass
class MatrixResult:
    cosine: torch.Tensor  # (B, B) cos(I_e[i], T_e[j])
    logit_scale: float  # exp(t)
    logits: torch.Tensor  # cosine * exp(t)
    p_image_to_text: torch.Tensor  # softmax over each row: image i's probabilities over the captions
    p_text_to_image: torch.Tensor  # softmax down each column: caption j's probabilities over the images
    loss_i: float
    loss_t: float
    loss: float

    @property
    def B(self) -> int:
        return self.cosine.shape[0]

    @property
    def accuracy(self) -> tuple[float, float]:
        """Share of rows (images) and of columns (captions) whose largest entry is on the diagonal."""
        right = torch.arange(self.B)
        return ((self.logits.argmax(1) == right).float().mean().item(),
                (self.logits.argmax(0) == right).float().mean().item())


def batch_matrix(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: float) -> MatrixResult:
    """The pseudo-code above on one batch: image_features[i] and text_features[i] are a pair."""
    I_f, T_f = image_features.detach().float().cpu(), text_features.detach().float().cpu()
    out = contrastive_loss(I_f, T_f, float(logit_scale))
    cosine = l2_normalize(I_f) @ l2_normalize(T_f).T
    return MatrixResult(cosine, float(logit_scale), out.logits, out.logits.softmax(dim=1), out.logits.softmax(dim=0),
                        out.loss_i.item(), out.loss_t.item(), out.loss.item())


@dataclass
class BatchView:
    """One batch scored by a CLIP, as the tab shows it."""

    matrix: MatrixResult
    captions: list[str]  # column j's caption
    shuffled: bool  # wrong captions on the diagonal
    cosine: object  # PIL heatmaps: cosines, softmax along rows, softmax down columns
    rows: object
    columns: object


def logit_scale_for(temperature, learned: float) -> float:
    """exp(t) = 1/τ for a chosen temperature τ in [MIN_TEMPERATURE, 1]; none chosen (None or 0): `learned`."""
    if temperature is None or (not isinstance(temperature, bool) and temperature == 0):
        return learned
    return 1.0 / check_number(temperature, "The temperature τ", MIN_TEMPERATURE, 1.0)


def view_batch(clip, pairs: Sequence[Pair], shuffle: int, logit_scale: float) -> BatchView:
    """Score `pairs` with `clip` (a ``ClipModel``), captions moved by ``caption_order(B, shuffle)``
    and the logits scaled by `logit_scale` = exp(t) = 1/τ, and draw the three heatmaps."""
    order = caption_order(len(pairs), check_number(shuffle, "The shuffle", 0, MAX_SEED, integer=True))
    captions = [pairs[j].caption for j in order]
    images = [p.image for p in pairs]
    m = batch_matrix(clip.encode_images(images), clip.encode_texts(captions), logit_scale)
    thumbs = [im.copy() for im in images]
    return BatchView(
        m, captions, order != list(range(len(pairs))),
        render_heatmap(m.cosine, thumbs, captions, "cosine similarity cos(I_e[i], T_e[j])"),
        render_heatmap(m.p_image_to_text, thumbs, captions, "image → text: softmax along each row", 0.0, 1.0),
        render_heatmap(m.p_text_to_image, thumbs, captions, "text → image: softmax down each column", 0.0, 1.0))


def loss_rows(m: MatrixResult) -> list[tuple[str, str]]:
    """The losses, their chance level and the diagonal's accuracy, as (quantity, value) rows."""
    acc_i, acc_t = m.accuracy
    return [("loss_i (image → text, over rows)", f"{m.loss_i:.4f}"),
            ("loss_t (text → image, over columns)", f"{m.loss_t:.4f}"),
            ("loss = (loss_i + loss_t) / 2", f"{m.loss:.4f}"),
            ("chance level, log B", f"{math.log(m.B):.4f}"),
            ("rows whose top caption is their own", f"{acc_i:.0%}"),
            ("columns whose top image is their own", f"{acc_t:.0%}")]


# --- a tiny CLIP trained live ------------------------------------------------------------------------

@dataclass
class LiveFrame:
    step: int
    steps: int
    loss: float  # the training batch's loss at this step
    matrix: MatrixResult  # the shown pairs, scored by the model as it is now


def _pixels(images: Sequence, size: int) -> torch.Tensor:
    import numpy as np

    arr = [np.asarray(im.convert("RGB").resize((size, size), 3), dtype=np.float32) / 255 for im in images]
    return normalize(torch.from_numpy(np.stack(arr)).permute(0, 3, 1, 2))


def tiny_config() -> MiniClipConfig:
    return MiniClipConfig(embed_dim=64, image_size=32, vision_layers=(1, 1, 1, 1), vision_width=16,
                          context_length=16, text_width=64, text_heads=4, text_layers=2)


def train_live(shown: Sequence[Pair], pool: Sequence[Pair], steps: int = 300, batch_size: int = 48,
               seed: int = 0, every: int = 10, lr: float = 2e-3) -> Iterator[LiveFrame]:
    """Train a tiny CLIP from random weights with the contrastive loss, yielding the shown pairs'
    matrix every `every` steps (and at step 0). Each training batch holds the shown pairs plus
    random others from `pool`, so the learner watches those B pairs being learned. No augmentation:
    this is a demonstration of the objective, not a model to keep."""
    from open_clip.tokenizer import SimpleTokenizer

    steps = check_number(steps, "Training steps", 1, MAX_LIVE_STEPS, integer=True)
    seed = check_seed(seed)
    cfg = tiny_config()
    g = torch.Generator().manual_seed(seed)
    model = seeded(seed, lambda: build_model(cfg))
    tok = SimpleTokenizer(context_length=cfg.context_length)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    shown_px, shown_tok = _pixels([p.image for p in shown], cfg.image_size), tok([p.caption for p in shown])
    shown_caps = {p.caption for p in shown}
    others = [p for p in pool if p.caption not in shown_caps]
    others_px = _pixels([p.image for p in others], cfg.image_size) if others else shown_px[:0]
    others_tok = tok([p.caption for p in others]) if others else shown_tok[:0]

    def look() -> MatrixResult:
        model.eval()
        with torch.inference_mode():
            out = model(shown_px, shown_tok)
        model.train()
        return batch_matrix(out["image_features"], out["text_features"], out["logit_scale"].item())

    first = look()
    yield LiveFrame(0, steps, first.loss, first)
    for step in range(1, steps + 1):
        k = max(0, min(batch_size - len(shown), len(others)))
        idx = torch.randperm(len(others), generator=g)[:k]
        px = torch.cat([shown_px, others_px[idx]])
        tk = torch.cat([shown_tok, others_tok[idx]])
        res = contrastive_step(model, opt, px, tk)
        if step % every == 0 or step == steps:
            yield LiveFrame(step, steps, res.loss.item(), look())


# --- pictures ----------------------------------------------------------------------------------------
