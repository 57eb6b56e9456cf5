"""Heat pictures for the Text to image tab: which word looked where (a token-conditioned model's
cross-attention maps), and ``heatmap`` for the CLIP guidance gradient.

At one step of a run, ``TokenCondUNet.attention_maps`` gives, for every pixel of the UNet's attention
layers, how its attention is shared among the prompt's tokens (it sums to 1 over them). Each token's
map is drawn as heat over the step's x̂₀, stretched from its own minimum to its own maximum so that a word
that draws little (or evenly spread) attention still shows *where* it looks most; the caption says how much
of the attention it got overall
(the ⟨start⟩ token usually takes most of it: the layers park attention there when no word is needed).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

from ..images import DISPLAY, grid, to_pil


def heat_over(base: torch.Tensor, heat: torch.Tensor, size: int = DISPLAY) -> Image.Image:
    """(3, H, W) image in [-1, 1], dimmed and greyed, with (h, w) heat in [0, 1] over it in red-yellow."""
    grey = base.mean(0, keepdim=True).expand(3, -1, -1)
    under = F.interpolate(grey[None], size=(size, size), mode="nearest")[0] * 0.35 + 0.3  # a faint picture
    h = F.interpolate(heat[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)
    colour = torch.stack([torch.ones_like(h), h, torch.zeros_like(h)]) * 2 - 1  # red -> yellow
    return to_pil(under * (1 - h) + colour * h)


def attention_pictures(maps: torch.Tensor, words: list[str] | tuple[str, ...], x0_hat: torch.Tensor
                       ) -> list[tuple[Image.Image, str]]:
    """One captioned picture per real token: `maps` (L, S, S) of one image (its first len(words) rows are
    the prompt's tokens), `x0_hat` (3, H, W) the step's predicted clean image."""
    out = []
    for j, word in enumerate(words):
        m = maps[j].float()
        share = float(m.mean())  # of all the attention at this step (the maps sum to 1 over tokens)
        heat = (m - m.min()) / (m.max() - m.min()).clamp(min=1e-12)
        out.append((heat_over(x0_hat.float().cpu(), heat.cpu()),
                    f"“{word}”: {share:.0%} of the attention"))
    return out


def heatmap(x: torch.Tensor, size: int = 128) -> Image.Image:
    """|x| summed over channels (C, H, W) as a black-red-yellow-white heat map, scaled to its max."""
    v = x.abs().sum(0)
    v = (v / v.max().clamp(min=1e-12)).clamp(0, 1)
    rgb = torch.stack([(3 * v).clamp(0, 1), (3 * v - 1).clamp(0, 1), (3 * v - 2).clamp(0, 1)]) * 2 - 1
    return grid(rgb[None], size=size)
