"""Guidance: how CLIP steers diffusion (the lecture's finale), one formula per function.

Classifier-free guidance (Ho & Salimans 2022; GLIDE): run the same model with and without the
text, and amplify the difference,

    ε̂ = ε̂(x_t, ∅) + w·(ε̂(x_t, c) − ε̂(x_t, ∅)).

Convention: ``w`` as in GLIDE and diffusers' ``guidance_scale``: w = 0 is the unconditional model,
w = 1 the plain conditional model, w > 1 pushes past it. (Ho & Salimans write (1+w)·ε̂(c) − w·ε̂(∅),
whose w = 0 is the conditional model; we use GLIDE's because its 0 and 1 are the two models a
learner can name.) A negative prompt takes the place of ∅.

CLIP guidance (GLIDE §2.3, Dhariwal & Nichol 2021): a CLIP whose image tower f was trained on
noisy images x_t scores the sample against the text's embedding g(c); its gradient shifts the
reverse step's mean,

    μ̂_θ(x_t) = μ_θ(x_t) + s·Σ_θ(x_t)·∇_{x_t} (f(x_t, t) · g(c)).

DDIM has no Σ; there the same gradient enters the noise prediction (Dhariwal & Nichol, §4.2):
ε̂' = ε̂ − s·√(1−ᾱ_t)·∇_{x_t}(f·g).
"""
from __future__ import annotations

import math
from typing import Callable

import torch


def cfg_eps(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, w: float) -> torch.Tensor:
    """ε̂ = ε̂(x_t, ∅) + w·(ε̂(x_t, c) − ε̂(x_t, ∅))."""
    return eps_uncond + w * (eps_cond - eps_uncond)


def clip_guided_mean(mean: torch.Tensor, variance: float, grad: torch.Tensor, s: float) -> torch.Tensor:
    """μ̂ = μ + s·Σ·∇_{x_t}(f(x_t, t)·g(c)), with Σ = σ_t²·I the step's variance."""
    return mean + s * variance * grad


def clip_guided_eps(eps: torch.Tensor, alpha_bar_t: float, grad: torch.Tensor, s: float) -> torch.Tensor:
    """The DDIM form: ε̂' = ε̂ − s·√(1 − ᾱ_t)·∇_{x_t}(f(x_t, t)·g(c))."""
    return eps - s * math.sqrt(1 - alpha_bar_t) * grad


def clip_score_grad(image_embed: Callable[[torch.Tensor, int], torch.Tensor], x_t: torch.Tensor, t: int,
                    text_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """∇_{x_t} of the cosine f(x_t, t)·g(c) for each sample, and the cosines themselves.

    Args:
        image_embed: (x_t (B, 3, H, W), t) -> (B, D) unit image embeddings (the noised CLIP).
        x_t: the current samples (B, 3, H, W).
        text_emb: (B, D) or (D,) unit text embedding g(c).
    Returns:
        (grad (B, 3, H, W), score (B,)).
    """
    with torch.inference_mode(False), torch.enable_grad():
        # clones: tensors made under inference_mode (the UNet's outputs, cached text embeddings) can't enter autograd
        x = x_t.detach().clone().float().requires_grad_(True)
        score = (image_embed(x, t) * text_emb.clone()).sum(dim=-1)  # (B,) cosines: both sides are unit vectors
        (grad,) = torch.autograd.grad(score.sum(), x)  # samples are independent, so sum → per-sample grads
    return grad.detach(), score.detach()
