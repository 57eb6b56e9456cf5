"""unCLIP's prior (DALL·E 2, Ramesh et al. 2022): a diffusion model in CLIP's embedding space that
turns a caption's text embedding into a plausible *image* embedding.

CLIP's text and image embeddings of the same thing are not the same vector (the "modality gap"), so a
decoder trained on image embeddings is fed one from the prior rather than the text embedding itself.
The prior diffuses the image embedding z = √D·e (e unit-norm; √D makes its components ~unit scale,
matched to N(0, I) noise, as DALLE2-pytorch does) and, as in the paper, predicts the clean ẑ_0
directly:

    ẑ_0 = f_θ(z_t, t, g(c)),     loss ‖ẑ_0 − z_0‖²,     g(c) = 0 with probability p (the null ∅)

Sampling is DDIM (the one sampler core, ``samplers.run_sampler``) with ε̂ = (z_t − √ᾱ_t·ẑ_0)/√(1−ᾱ_t), classifier-free guided
on ẑ_0; the result is normalised back to a unit image embedding.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..clip.noised import timestep_features
from ..registry import model_folder
from .ddpm import Schedule
from .samplers import run_sampler


@dataclass
class PriorConfig:
    embed_dim: int = 128
    width: int = 256
    depth: int = 4
    T: int = 1000
    schedule: str = "cosine"
    clip_spec: str = "mini-clip"


class _Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))

    def forward(self, h):
        return h + self.ff(self.norm(h))


class DiffusionPrior(nn.Module):
    """ẑ_0 = f_θ(z_t, t, text): an MLP of residual blocks over [z_t, √D·text, time features]."""

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.cfg = cfg
        d, w = cfg.embed_dim, cfg.width
        self.inp = nn.Linear(2 * d + 64, w)
        self.blocks = nn.Sequential(*[_Block(w) for _ in range(cfg.depth)])
        self.out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, d))

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """z_t (B, D) noisy scaled image embedding, t (B,) in 1…T, text (B, D) unit or zeros (∅) -> ẑ_0 (B, D)."""
        scale = math.sqrt(self.cfg.embed_dim)
        h = self.inp(torch.cat([z_t, text * scale, timestep_features(t, 64, self.cfg.T)], dim=1))
        return self.out(self.blocks(h))

    @torch.inference_mode()
    def sample(self, text: torch.Tensor, generator: torch.Generator, *, steps: int = 50, guidance: float = 1.0,
               candidates: int = 1) -> torch.Tensor:
        """Unit image embeddings (B, D) for unit text embeddings (B, D).

        ``guidance``: classifier-free scale w on ẑ_0 (1 = the conditional prior). With ``candidates`` > 1,
        draw that many per text and keep the one closest to the text (unCLIP §2.2)."""
        s = Schedule.make(self.cfg.schedule, self.cfg.T)
        b, d = text.shape
        text = text.repeat_interleave(candidates, 0)  # (B·K, D)
        z = torch.randn(text.shape, generator=generator, device=text.device)
        null = torch.zeros_like(text)

        def predict(z_t: torch.Tensor, t: int) -> torch.Tensor:  # ẑ_0, guided, as the ε̂ the sampler steps with
            tt = torch.full((len(z_t),), t, device=z_t.device)
            z0 = self(z_t, tt, text)
            if guidance != 1.0:
                z0_u = self(z_t, tt, null)
                z0 = z0_u + guidance * (z0 - z0_u)
            ab = float(s.alpha_bars[t])
            return (z_t - math.sqrt(ab) * z0) / math.sqrt(1 - ab)

        for st in run_sampler(predict, s, z, generator, sampler="ddim", steps=steps):  # η = 0: no draws
            z = st.x_prev
        e = F.normalize(z, dim=-1).view(b, candidates, d)
        best = (e * F.normalize(text, dim=-1).view(b, candidates, d)).sum(-1).argmax(1)  # (B,)
        return e[torch.arange(b), best]


def save_prior(prior: DiffusionPrior, out: str | Path, meta: dict | None = None) -> Path:
    from safetensors.torch import save_file

    out = model_folder(out, "prior_config.json", prior.cfg, meta)
    save_file({k: v.contiguous() for k, v in prior.state_dict().items()}, str(out / "prior.safetensors"))
    return out


def load_prior(path: str | Path, device="cpu") -> DiffusionPrior:
    from safetensors.torch import load_file

    path = Path(path)
    prior = DiffusionPrior(PriorConfig(**json.loads((path / "prior_config.json").read_text())))
    prior.load_state_dict(load_file(str(path / "prior.safetensors")))
    return prior.to(device).eval()


def slerp(a: torch.Tensor, b: torch.Tensor, u: float) -> torch.Tensor:
    """Spherical interpolation between unit vectors a and b (…, D): u = 0 gives a, u = 1 gives b,
    and every point between stays on the unit sphere (where CLIP's embeddings live).

        slerp(a, b, u) = sin((1−u)·θ)/sin θ · a + sin(u·θ)/sin θ · b,   cos θ = a·b
    """
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    theta = torch.arccos((a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    if float(theta.max()) < 1e-4:  # (nearly) the same direction: a straight line is exact enough
        return F.normalize((1 - u) * a + u * b, dim=-1)
    return (torch.sin((1 - u) * theta) * a + torch.sin(u * theta) * b) / torch.sin(theta)
