"""Text to image with guidance: a sampler that yields every step *and the pieces of its prediction*.

Each frame holds what the lecture draws: x_t, the two noise predictions ε̂(x_t, ∅) and ε̂(x_t, c)
and the guided ε̂ (classifier-free guidance), or the noised CLIP's score f(x_t, t)·g(c) and its
gradient (CLIP guidance), then x̂_0 and the step's output. The DDPM/DDIM step itself is the
project's one DDPM module (``diffusion``); the guidance formulas are ``guidance``.

``scale`` may be a (B,) tensor: one run then samples a *guidance sweep*, every image from the same
x_T at its own scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Literal

import torch

from .conditional import TextCondUNet
from .ddpm import Schedule, ddim_step, ddim_timesteps, ddpm_step, predict_x0
from .guidance import cfg_eps, clip_guided_eps, clip_guided_mean, clip_score_grad

Method = Literal["none", "cfg", "clip"]
SamplerName = Literal["ddpm", "ddim"]


@dataclass
class GuidedStep:
    t: int
    index: int
    total: int
    x_t: torch.Tensor  # (B, 3, H, W)
    eps: torch.Tensor  # the ε̂ the step used (guided)
    x0_hat: torch.Tensor  # x̂_0 from that ε̂
    x_prev: torch.Tensor
    eps_uncond: torch.Tensor | None = None  # ε̂(x_t, ∅) (or the negative prompt's)
    eps_cond: torch.Tensor | None = None  # ε̂(x_t, c)
    grad: torch.Tensor | None = None  # ∇_{x_t} f(x_t, t)·g(c)   (CLIP guidance)
    clip_score: torch.Tensor | None = None  # (B,) f(x_t, t)·g(c)
    eps_guided: bool = True  # False for DDPM with CLIP guidance: the guidance shifts the mean μ, so ε̂ is the model's


def _per_sample(scale: float | torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor | float:
    if torch.is_tensor(scale):
        if scale.numel() not in (1, batch):
            raise ValueError(f"{scale.numel()} guidance scales for {batch} images.")
        return scale.to(like.device, like.dtype).view(-1, *([1] * (like.ndim - 1)))
    return float(scale)


def guided_sampler(model: TextCondUNet, s: Schedule, x_T: torch.Tensor, generator: torch.Generator, *,
                   method: Method = "cfg", scale: float | torch.Tensor = 3.0, cond: torch.Tensor | None = None,
                   negative: torch.Tensor | None = None, noised_clip=None, sampler: SamplerName = "ddim",
                   steps: int = 50, eta: float = 0.0, clip_x0: bool = True) -> Iterator[GuidedStep]:
    """Sample from the conditional model with the chosen guidance, yielding one ``GuidedStep`` per step.

    Args:
        model: ε_θ(x_t, k, e) with k = t − 1 (``TextCondUNet``).
        x_T: (B, 3, H, W) starting noise.
        method: "none" (the unconditional model, e = ∅), "cfg" (classifier-free guidance with the
            text), "clip" (the unconditional model steered by ``noised_clip``'s gradient).
        scale: w for CFG (0 = unconditional, 1 = conditional), s for CLIP guidance; float or (B,).
        cond: (D,) or (B, D) unit text embedding of the prompt (needed by "cfg" and "clip").
        negative: (D,) or (B, D) embedding that replaces ∅ in CFG (a negative prompt).
        sampler: "ddpm" (Algorithm 2 over all T steps, σ² = β̃) or "ddim" (``steps`` steps, η = ``eta``).
        clip_x0: clip x̂_0 to [−1, 1] inside the step and take ε̂ back from the clipped x̂_0 (diffusers'
            ``clip_sample=True`` with DDIM's ``use_clipped_model_output=True``).
    """
    b, dev = x_T.shape[0], x_T.device
    if method != "none" and cond is None:
        raise ValueError(f"Guidance '{method}' needs the prompt's embedding.")
    if method == "clip" and noised_clip is None:
        raise ValueError("CLIP guidance needs the noised CLIP image tower.")
    null = model.null(b, device=dev, dtype=x_T.dtype)
    c = cond.to(dev, x_T.dtype).expand(b, -1) if cond is not None else null
    uncond = negative.to(dev, x_T.dtype).expand(b, -1) if negative is not None else null
    w = _per_sample(scale, b, x_T)
    if sampler == "ddpm":
        ts = list(range(s.T, 0, -1))  # T, T−1, …, 1
        prev = [t - 1 for t in ts]
    else:
        ts = ddim_timesteps(s.T, steps)
        prev = [t - s.T // steps for t in ts]
    x = x_T
    for i, (t, t_prev) in enumerate(zip(ts, prev)):
        k = torch.full((b,), t - 1, device=dev, dtype=torch.long)
        frame = dict(t=t, index=i, total=len(ts), x_t=x)
        with torch.inference_mode():
            if method == "cfg":
                both = model(torch.cat([x, x]), torch.cat([k, k]), torch.cat([uncond, c]))  # one batched call
                eps_u, eps_c = both.chunk(2)
                eps = cfg_eps(eps_u, eps_c, w)
                frame.update(eps_uncond=eps_u, eps_cond=eps_c)
            else:
                eps = model(x, k, null)
        grad = None
        if method == "clip":
            grad, score = clip_score_grad(noised_clip, x, t, c)
            frame.update(grad=grad, clip_score=score)
        z = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
        if sampler == "ddpm":
            if grad is None:
                x_prev = ddpm_step(s, x, t, eps, z, clip_x0=clip_x0)
            else:
                mean = ddpm_step(s, x, t, eps, None, clip_x0=clip_x0)  # μ_θ(x_t): z = None gives the mean
                var = s.posterior_variance(t)  # Σ = β̃_t·I
                mean = clip_guided_mean(mean, var, grad, w)
                x_prev = mean + (math.sqrt(var) * z if t > 1 else 0)
        else:
            if grad is not None:
                eps = clip_guided_eps(eps, float(s.alpha_bars[t]), grad, w)
            x_prev = ddim_step(s, x, t, t_prev, eps, z if eta > 0 else None, eta=eta, clip_x0=clip_x0)
        yield GuidedStep(eps=eps, x0_hat=predict_x0(s, x, t, eps), x_prev=x_prev,
                         eps_guided=not (sampler == "ddpm" and grad is not None), **frame)
        x = x_prev
