"""Text to image with guidance: a sampler that yields every step *and the pieces of its prediction*.

Each frame holds what the lecture draws: x_t, the two noise predictions ε̂(x_t, ∅) and ε̂(x_t, c)
and the guided ε̂ (classifier-free guidance), or the noised CLIP's score f(x_t, t)·g(c) and its
gradient (CLIP guidance), then x̂_0 and the step's output. The DDPM/DDIM step itself is the
project's one DDPM module (``diffusion``); the guidance formulas are ``guidance``.

``scale`` may be a (B,) tensor: one run then samples a *guidance sweep*, every image from the same
x_T at its own scale.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal

import torch

from .conditional import TextCondUNet, batch_cond, cat_cond, pooled_of
from .cross_attention import TokenCondUNet
from .ddpm import Schedule
from .guidance import cfg_eps, clip_guided_eps, clip_guided_mean, clip_score_grad
from .samplers import Prediction, Predictor, run_sampler

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
    attention: torch.Tensor | None = None  # (B, L, S, S) cross-attention of ε̂(x_t, c) to the prompt's tokens
    words: tuple[str, ...] = ()  # the prompt's tokens as text, naming `attention`'s rows (set by the view)


def _per_sample(scale: float | torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor | float:
    if torch.is_tensor(scale):
        if scale.numel() not in (1, batch):
            raise ValueError(f"{scale.numel()} guidance scales for {batch} images.")
        return scale.to(like.device, like.dtype).view(-1, *([1] * (like.ndim - 1)))
    return float(scale)


def guided_predictor(model: TextCondUNet, s: Schedule, batch: int, *, method: Method = "cfg",
                     scale: float | torch.Tensor = 3.0, cond: torch.Tensor | None = None,
                     negative: torch.Tensor | None = None, noised_clip=None, sampler: SamplerName = "ddim",
                     device=None, dtype=torch.float32) -> Predictor:
    """The noise predictor of a guided run, for ``samplers.run_sampler``: guidance as a wrapper round ε_θ.

    - "none": ε_θ(x_t, t, ∅), the unconditional model;
    - "cfg": ``cfg_eps`` of ε_θ(x_t, t, ∅) (or the negative prompt's) and ε_θ(x_t, t, c), in one batched call;
    - "clip": ε_θ(x_t, t, ∅) steered by the noised CLIP's gradient: for DDIM inside ε̂ (``clip_guided_eps``),
      for DDPM as a shift of the mean (``clip_guided_mean``; ε̂ stays the model's: ``eps_guided`` False).
    Its pieces are GuidedStep's fields, for the view."""
    if method != "none" and cond is None:
        raise ValueError(f"Guidance '{method}' needs the prompt's embedding.")
    if method == "clip" and noised_clip is None:
        raise ValueError("CLIP guidance needs the noised CLIP image tower.")
    null = model.null(batch, device=device, dtype=dtype)
    c = batch_cond(cond, batch, device, dtype) if cond is not None else null
    uncond = batch_cond(negative, batch, device, dtype) if negative is not None else null
    tokens = isinstance(model, TokenCondUNet)

    def predict(x: torch.Tensor, t: int) -> Prediction:
        w = _per_sample(scale, batch, x)
        k = torch.full((batch,), t - 1, device=x.device, dtype=torch.long)
        with torch.inference_mode():
            if method == "cfg":
                args = (torch.cat([x, x]), torch.cat([k, k]), cat_cond(uncond, c))
                if tokens:  # which word each pixel looked at, in the conditional half
                    both, maps = model.attention_maps(model, *args)
                    pieces = dict(attention=maps[batch:])
                else:
                    both, pieces = model(*args), {}
                eps_u, eps_c = both.chunk(2)
                return Prediction(cfg_eps(eps_u, eps_c, w), pieces=dict(eps_uncond=eps_u, eps_cond=eps_c, **pieces))
            eps = model(x, k, null)
        if method == "none":
            return Prediction(eps)
        grad, score = clip_score_grad(noised_clip, x, t, pooled_of(c))
        pieces = dict(grad=grad, clip_score=score)
        if sampler == "ddpm":
            return Prediction(eps, mean_shift=lambda var: clip_guided_mean(0.0, var, grad, w),
                              pieces={**pieces, "eps_guided": False})
        return Prediction(clip_guided_eps(eps, float(s.alpha_bars[t]), grad, w), pieces=pieces)

    return predict


def guided_sampler(model: TextCondUNet, s: Schedule, x_T: torch.Tensor, generator: torch.Generator, *,
                   method: Method = "cfg", scale: float | torch.Tensor = 3.0, cond: torch.Tensor | None = None,
                   negative: torch.Tensor | None = None, noised_clip=None, sampler: SamplerName = "ddim",
                   steps: int = 50, eta: float = 0.0, clip_x0: bool = True) -> Iterator[GuidedStep]:
    """Sample from the conditional model with the chosen guidance (``guided_predictor``) through the one
    sampler core, yielding one ``GuidedStep`` per step.

    Args:
        model: ε_θ(x_t, k, e) with k = t − 1 (``TextCondUNet``).
        x_T: (B, 3, H, W) starting noise.
        method: "none" (the unconditional model, e = ∅), "cfg" (classifier-free guidance with the
            text), "clip" (the unconditional model steered by ``noised_clip``'s gradient).
        scale: w for CFG (0 = unconditional, 1 = conditional), s for CLIP guidance; float or (B,).
        cond: (D,) or (B, D) unit text embedding of the prompt (needed by "cfg" and "clip"), or its
            ``TokenCond`` for a model that also reads the tokens.
        negative: the same for a prompt that replaces ∅ in CFG (a negative prompt).
        sampler: "ddpm" (Algorithm 2 over all T steps, σ² = β̃) or "ddim" (``steps`` steps, η = ``eta``).
        clip_x0: clip x̂_0 to [−1, 1] inside the step and take ε̂ back from the clipped x̂_0 (diffusers'
            ``clip_sample=True`` with DDIM's ``use_clipped_model_output=True``).
    """
    predict = guided_predictor(model, s, x_T.shape[0], method=method, scale=scale, cond=cond, negative=negative,
                               noised_clip=noised_clip, sampler=sampler, device=x_T.device, dtype=x_T.dtype)
    for st in run_sampler(predict, s, x_T, generator, sampler=sampler, steps=steps, eta=eta, clip_x0=clip_x0):
        yield GuidedStep(st.t, st.index, st.total, st.x_t, st.eps_hat, st.x0_hat, st.x_prev, **st.pieces)
