"""A noised CLIP image tower: f(x_t, t), mini-CLIP's image encoder fine-tuned on noisy images.

GLIDE: "CLIP is first trained on noisy images". A plain CLIP has only seen clean pictures, so on
the x_t of a reverse process its embedding, and the gradient CLIP guidance follows, is
meaningless for most t. This tower takes t as well: a sinusoidal embedding of t goes through a
small MLP to a per-channel scale and shift of the first features (FiLM after the stem), initialised
to zero so that training starts from the plain tower. It works in the DDPM's pixel space: x_t in
[−1, 1] at the DDPM's size, mapped to CLIP's input (resize, CLIP normalisation) inside.

A folder holds ``noised_clip.safetensors`` (tower + FiLM MLP) and ``noised_clip.json`` (the base
CLIP spec whose architecture and text tower it shares, T, input size).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .mini import OPENAI_MEAN, OPENAI_STD


def timestep_features(t: torch.Tensor, dim: int = 64, T: int = 1000) -> torch.Tensor:
    """Sinusoidal features of t/T (B,) -> (B, dim), as in the DDPM UNet's time embedding."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
    angles = (t.float() / T * 1000)[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class NoisedImageTower(nn.Module):
    """f(x_t, t) -> (B, D) unit embeddings; t = 0 is a clean image."""

    def __init__(self, visual: nn.Module, *, T: int = 1000, image_size: int = 64):
        super().__init__()
        self.visual = visual
        self.T = T
        self.image_size = image_size
        ch = visual.conv3.out_channels  # the stem's output channels (open_clip ModifiedResNet)
        self.film = nn.Sequential(nn.Linear(64, 128), nn.SiLU(), nn.Linear(128, 2 * ch))
        nn.init.zeros_(self.film[-1].weight)
        nn.init.zeros_(self.film[-1].bias)
        self.register_buffer("mean", torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(OPENAI_STD).view(1, 3, 1, 1), persistent=False)

    def to_clip_input(self, x_t: torch.Tensor) -> torch.Tensor:
        """x_t in [−1, 1] (B, 3, h, w) -> CLIP-normalised (B, 3, S, S)."""
        x = (x_t + 1) / 2
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def forward(self, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(t):
            t = torch.full((x_t.shape[0],), int(t), device=x_t.device)
        v = self.visual
        h = v.stem(self.to_clip_input(x_t))  # (B, C, S/4, S/4)
        scale, shift = self.film(timestep_features(t, T=self.T)).chunk(2, dim=1)  # (B, C) each
        h = h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        h = v.layer4(v.layer3(v.layer2(v.layer1(h))))
        return F.normalize(v.attnpool(h).float(), dim=-1)


def save_noised_clip(tower: NoisedImageTower, out: str | Path, base_spec: str, meta: dict | None = None) -> Path:
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in tower.state_dict().items()}, str(out / "noised_clip.safetensors"))
    cfg = {"base_clip": base_spec, "T": tower.T, "image_size": tower.image_size}
    (out / "noised_clip.json").write_text(json.dumps({**cfg, **(meta or {})}, indent=1))
    return out


def load_noised_clip(path: str | Path, base_visual: nn.Module, device="cpu") -> NoisedImageTower:
    """Load a folder written by ``save_noised_clip``; ``base_visual`` is a module of the base CLIP's
    image-tower architecture (its weights are replaced)."""
    import copy

    from safetensors.torch import load_file

    path = Path(path)
    cfg = json.loads((path / "noised_clip.json").read_text())
    tower = NoisedImageTower(copy.deepcopy(base_visual).float(), T=cfg["T"], image_size=cfg["image_size"])
    tower.load_state_dict({k: v.float() for k, v in load_file(str(path / "noised_clip.safetensors")).items()})
    return tower.to(device).eval().requires_grad_(False)
