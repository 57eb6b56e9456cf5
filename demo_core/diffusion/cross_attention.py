"""GLIDE's second text path: the UNet's attention layers read the caption's tokens (cross-attention).

GLIDE (Nichol et al. 2022) conditions on text in two ways at once:
  1. "the final token embedding is used in place of a class embedding" — the pooled CLIP text
     embedding e, projected and added to the time embedding (``conditional.TextCondUNet``);
  2. "the last layer of token embeddings (a sequence of K feature vectors) is separately projected to
     the dimensionality of each attention layer throughout the diffusion model" — cross-attention.

Here the UNet is diffusers' ``UNet2DConditionModel``: at its two lowest resolutions (16×16 and 8×8
for 32×32 images) every attention layer projects the tokens h_1…h_K (mini-CLIP's text transformer
output, ``clip.tokens``) to its own keys and values, and each pixel's query attends over them:

    A = softmax(Q·Kᵀ / √d_head) over the caption's real tokens,    out = A·V

A[pixel, k] is "how much this pixel looked at word k": the view draws it (``attention_maps``).
The null condition ∅ of classifier-free guidance covers both paths: e = 0 and a single zero token,
so Q·Kᵀ = 0, V = 0 and the layer adds only its output bias — the same ∅ in training and sampling.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .conditional import CondConfig, TextCondUNet


@dataclass
class TokenCond:
    """The condition of a token-conditioned model: pooled embeddings and the tokens they came from."""

    pooled: torch.Tensor  # (B, D) unit text embeddings, or zeros (∅)
    tokens: torch.Tensor  # (B, L, W) last-layer token features, or zeros (∅)
    mask: torch.Tensor  # (B, L) bool: the real tokens

    @classmethod
    def null(cls, batch: int, embed_dim: int, width: int, length: int = 1, device=None, dtype=torch.float32):
        """∅: e = 0 and one zero token (the rest of `length` masked out)."""
        mask = torch.zeros(batch, length, dtype=torch.bool, device=device)
        mask[:, 0] = True
        return cls(torch.zeros(batch, embed_dim, device=device, dtype=dtype),
                   torch.zeros(batch, length, width, device=device, dtype=dtype), mask)

    def batch(self, batch: int, device=None, dtype=torch.float32) -> "TokenCond":
        """This condition for a batch of `batch` images (a single condition is repeated)."""
        rep = lambda x: x.to(device) if x.shape[0] == batch else x.to(device).expand(batch, *x.shape[1:])  # noqa: E731
        return TokenCond(rep(self.pooled).to(dtype), rep(self.tokens).to(dtype), rep(self.mask))

    def cat(self, other: "TokenCond") -> "TokenCond":
        """Both batches in one (padded to the longer token sequence), for CFG's one batched call."""
        n = max(self.tokens.shape[1], other.tokens.shape[1])
        pad_t = lambda c: F.pad(c.tokens, (0, 0, 0, n - c.tokens.shape[1]))  # noqa: E731
        pad_m = lambda c: F.pad(c.mask, (0, n - c.mask.shape[1]), value=False)  # noqa: E731
        return TokenCond(torch.cat([self.pooled, other.pooled]), torch.cat([pad_t(self), pad_t(other)]),
                         torch.cat([pad_m(self), pad_m(other)]))


class RecordingCrossAttention:
    """diffusers attention processor: scaled dot-product attention, and while ``store`` is a list, the
    softmax weights (B, heads, HW, L) of every call are appended to it (the maps the view draws)."""

    def __init__(self):
        self.store: list[torch.Tensor] | None = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **_):
        b, n, _ = hidden_states.shape
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        heads = attn.heads
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        split = lambda x: x.view(b, -1, heads, x.shape[-1] // heads).transpose(1, 2)  # noqa: E731 (B, h, N, d)
        q, k, v = split(q), split(k), split(v)
        bias = None
        if attention_mask is not None:  # diffusers passes the mask as an additive bias (B, 1, L)
            bias = attention_mask.view(b, 1, 1, -1).to(q.dtype)
        if self.store is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
            probs = (scores if bias is None else scores + bias).softmax(-1)  # (B, h, N, L)
            self.store.append(probs.detach())
            out = probs @ v
        out = out.transpose(1, 2).reshape(b, n, -1)
        return attn.to_out[1](attn.to_out[0](out))


class TokenCondUNet(TextCondUNet):
    """ε_θ(x_t, t, e, h_1…h_K): the pooled embedding e in place of a class embedding, *and* the tokens
    through cross-attention (``UNet2DConditionModel`` with ``encoder_hidden_states``)."""

    def __init__(self, unet: nn.Module, cfg: CondConfig):
        super().__init__(unet, cfg)
        self.recorder = RecordingCrossAttention()
        unet.set_attn_processor({name: self.recorder if name.endswith("attn2.processor") else proc
                                 for name, proc in unet.attn_processors.items()})

    def null(self, batch: int, device=None, dtype=torch.float32) -> TokenCond:
        return TokenCond.null(batch, self.cfg.embed_dim, self.cfg.token_width, device=device, dtype=dtype)

    def forward(self, x_t: torch.Tensor, k: torch.Tensor, e: TokenCond) -> torch.Tensor:
        """x_t (B, 3, H, W), diffusers timestep k = t − 1 (B,), e a ``TokenCond`` (or ∅) -> ε̂."""
        c = self.cond_proj(e.pooled * math.sqrt(self.cfg.embed_dim))
        return self.unet(x_t, k, encoder_hidden_states=e.tokens, class_labels=c,
                         encoder_attention_mask=e.mask.to(x_t.dtype)).sample

    def attention_maps(self, fn, *args) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``fn(*args)`` (a forward pass of this model) recording its cross-attention; return fn's
        result and the maps (B, L, S, S): each token's weight at each pixel, averaged over heads and
        layers, every layer resized to the finest attention resolution S. At each pixel they sum to 1
        over the real tokens."""
        self.recorder.store = []
        try:
            out = fn(*args)
            layers = self.recorder.store
        finally:
            self.recorder.store = None
        side = max(math.isqrt(p.shape[2]) for p in layers)
        maps = []
        for p in layers:
            b, _, n, length = p.shape
            s = math.isqrt(n)
            m = p.mean(1).transpose(1, 2).reshape(b, length, s, s)  # (B, L, s, s)
            maps.append(F.interpolate(m, size=(side, side), mode="nearest") if s != side else m)
        return out, torch.stack(maps).mean(0)


def build_token_unet(block_out_channels: tuple[int, ...], image_size: int = 32, token_width: int = 64,
                     attention_levels: int = 2) -> nn.Module:
    """The emoji UNet family with cross-attention at its `attention_levels` lowest resolutions."""
    from diffusers import UNet2DConditionModel

    n = len(block_out_channels)
    plain = n - attention_levels
    return UNet2DConditionModel(
        sample_size=image_size, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=tuple(block_out_channels), norm_num_groups=8,
        down_block_types=("DownBlock2D",) * plain + ("CrossAttnDownBlock2D",) * attention_levels,
        mid_block_type="UNetMidBlock2DCrossAttn",
        up_block_types=("CrossAttnUpBlock2D",) * attention_levels + ("UpBlock2D",) * plain,
        cross_attention_dim=token_width, attention_head_dim=4, class_embed_type="identity",
    )
