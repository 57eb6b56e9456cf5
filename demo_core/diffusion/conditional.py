"""A text-conditional DDPM the GLIDE way: the CLIP text embedding enters in place of a class embedding.

GLIDE (Nichol et al. 2022): "the final token embedding is used in place of a class embedding".
Here the condition is the bundled mini-CLIP's (unit-norm, 128-d) text embedding e of the caption.
diffusers' ``UNet2DModel`` adds a class embedding to its time embedding (``class_embed_type=
"identity"``); a unit vector is weak beside a time embedding of norm ~4–6, so e goes through a
learned projection first, after scaling by √d as DALLE2-pytorch does:

    c = W₂·SiLU(W₁·(√d·e) + b₁) + b₂,      temb ← temb + c

The *null* condition ∅ (classifier-free guidance) is e = 0, used for a fraction of training
batches and at sampling time: the same null in both. A folder holds ``unet/`` (diffusers format),
``cond_proj.safetensors`` and ``cond_config.json`` (which CLIP made the embeddings, schedule, T).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..registry import model_folder


@dataclass
class CondConfig:
    clip_spec: str = "mini-clip"  # the CLIP whose text embeddings condition the model
    embed_dim: int = 128
    T: int = 1000
    schedule: str = "linear"
    prediction: str = "epsilon"
    null: str = "zeros"  # the unconditional input: e = 0
    condition: str = "text"  # what e embeds: a caption ("text", GLIDE) or an image ("image", unCLIP's decoder)
    token_width: int = 0  # > 0: the UNet also cross-attends to the caption's tokens of this width (``cross_attention``)


class TextCondUNet(nn.Module):
    """ε_θ(x_t, t, e): a diffusers UNet2DModel whose class embedding is a projection of e."""

    def __init__(self, unet: nn.Module, cfg: CondConfig):
        super().__init__()
        self.unet = unet
        self.cfg = cfg
        temb = unet.config.block_out_channels[0] * 4  # UNet2DModel's time-embedding width
        self.cond_proj = nn.Sequential(nn.Linear(cfg.embed_dim, temb), nn.SiLU(), nn.Linear(temb, temb))

    @property
    def image_size(self) -> int:
        """The side of the square images it draws."""
        size = self.unet.config.sample_size
        return int(size if isinstance(size, int) else size[0])

    def null(self, batch: int, device=None, dtype=torch.float32) -> torch.Tensor:
        """The null condition ∅ for a batch: (B, D) zeros, as in training."""
        return torch.zeros(batch, self.cfg.embed_dim, device=device, dtype=dtype)

    def forward(self, x_t: torch.Tensor, k: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x_t (B, 3, H, W), diffusers timestep k = t − 1 (B,), e (B, D) text embedding or zeros -> ε̂."""
        c = self.cond_proj(e * math.sqrt(self.cfg.embed_dim))  # (B, temb)
        return self.unet(x_t, k, class_labels=c).sample


def batch_cond(cond, batch: int, device=None, dtype=torch.float32):
    """A condition (a (D,) or (B, D) embedding, or a ``TokenCond``) for a batch of `batch` images."""
    if torch.is_tensor(cond):
        return cond.to(device, dtype).expand(batch, -1)
    return cond.batch(batch, device, dtype)


def cat_cond(a, b):
    """Two batches of conditions as one (CFG's ∅ and c in one call)."""
    return torch.cat([a, b]) if torch.is_tensor(a) else a.cat(b)


def pooled_of(cond) -> torch.Tensor:
    """The pooled (B, D) embedding of a condition (what CLIP guidance scores against)."""
    return cond if torch.is_tensor(cond) else cond.pooled


def build_unet(block_out_channels: tuple[int, ...], image_size: int = 32) -> nn.Module:
    """The UNet2DModel family of the bundled emoji DDPM, with an identity class embedding."""
    from diffusers import UNet2DModel

    n = len(block_out_channels)
    return UNet2DModel(
        sample_size=image_size, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=tuple(block_out_channels), norm_num_groups=8,
        down_block_types=("DownBlock2D",) * (n - 1) + ("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
        class_embed_type="identity",
    )


def save_cond_model(model: TextCondUNet, out: str | Path, meta: dict | None = None, dtype=torch.float16) -> Path:
    """Write the folder: unet/ (diffusers), cond_proj.safetensors, cond_config.json, training_meta.json."""
    from safetensors.torch import save_file

    out = model_folder(out, "cond_config.json", model.cfg, meta)
    model.unet.to(dtype).save_pretrained(out / "unet", safe_serialization=True)
    model.unet.float()
    save_file({k: v.to(dtype).contiguous() for k, v in model.cond_proj.state_dict().items()},
              str(out / "cond_proj.safetensors"))
    return out


def load_cond_model(path: str | Path, device="cpu", dtype=torch.float32) -> TextCondUNet:
    """Load a folder written by ``save_cond_model`` (a ``TokenCondUNet`` when it reads tokens)."""
    from diffusers import UNet2DConditionModel, UNet2DModel
    from safetensors.torch import load_file

    from .cross_attention import TokenCondUNet

    path = Path(path)
    cfg = CondConfig(**json.loads((path / "cond_config.json").read_text()))
    if cfg.token_width:
        model = TokenCondUNet(UNet2DConditionModel.from_pretrained(path / "unet"), cfg)
    else:
        model = TextCondUNet(UNet2DModel.from_pretrained(path / "unet"), cfg)
    model.cond_proj.load_state_dict(load_file(str(path / "cond_proj.safetensors")))
    return model.to(device, dtype).eval()
