"""One sampler core that yields every step, so a UI can stream it and stop it; every view samples through it.

A sampler is a generator: iterate to run it, stop iterating (or ``close()`` it) to cancel; the
frames already received are the partial result. Each frame is a ``Step``.

``run_sampler`` takes a *noise predictor* ``predict(x_t, t)``: a batch (B, …) and the slides' timestep t
(1…T) in, ε̂ of the same shape out (or a ``Prediction``, which may carry more). What it predicts for is up
to the caller: an unconditional DDPM, a text-conditional one wrapped in classifier-free guidance, the same
with CLIP guidance (which shifts the DDPM mean instead of ε̂), or unCLIP's prior in embedding space (whose
model predicts x̂_0, turned into ε̂). ``ddpm_sampler`` and ``ddim_sampler`` are the core with a plain model.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal

import torch

from .ddpm import Schedule, ddim_step, ddim_timesteps, ddpm_step, predict_x0

EpsModel = Callable[[torch.Tensor, int], torch.Tensor]
Variance = Literal["beta", "beta_tilde"]


@dataclass
class Prediction:
    """One step's prediction: ε̂ (what the step uses), and optionally
    - ``mean_shift(σ²)``: a term added to the DDPM step's mean, given the step's variance (CLIP guidance:
      μ̂ = μ + s·Σ·∇; DDIM has no Σ, so a DDIM predictor puts guidance into ε̂ instead);
    - ``pieces``: named tensors of how ε̂ was made, for a view to show (ε̂(∅), ε̂(c), the gradient, …)."""

    eps: torch.Tensor
    mean_shift: Callable[[float], torch.Tensor] | None = None
    pieces: dict = field(default_factory=dict)


Predictor = Callable[[torch.Tensor, int], "torch.Tensor | Prediction"]


@dataclass
class Step:
    t: int  # the timestep this frame denoised from
    x_t: torch.Tensor  # (B, …) input of the step
    eps_hat: torch.Tensor  # the predicted noise ε̂(x_t, t) the step used
    x0_hat: torch.Tensor  # the predicted clean sample x̂_0 from that ε̂
    x_prev: torch.Tensor  # the step's output x_{t−1} (DDPM) or x_{t_prev} (DDIM)
    index: int  # 0-based position of this frame in the run
    total: int  # frames the full run has
    pieces: dict = field(default_factory=dict)  # the predictor's ``Prediction.pieces``


def initial_noise(shape: tuple[int, ...], generator: torch.Generator, device="cpu",
                  dtype=torch.float32, *, remove_colour_mean: bool = False) -> torch.Tensor:
    """x_T ~ N(0, I), drawn first from `generator` (as diffusers' pipelines do).

    ``remove_colour_mean`` subtracts each image's mean over its pixels, channel by channel (x_T stays N(0, I)
    but for one degree of freedom per channel). The bundled emoji models, trained on drawings on white, carry
    the noise's colour cast into the picture: seed 0's fourth image (green mean −0.076, 2.4 standard errors)
    came out a muddy magenta field for every prompt. Removed, the judge's shape share over eight prompts rises
    from 0.70 to 0.82 (six rise or stay, "a moon" falls 0.60 → 0.50: ``bench/muddy_seed.py``). Models from the
    hub get x_T as drawn."""
    x = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if remove_colour_mean and x.ndim == 4:
        x = x - x.mean(dim=(2, 3), keepdim=True)
    return x


def run_sampler(predict: Predictor, s: Schedule, x_T: torch.Tensor, generator: torch.Generator, *,
                sampler: Literal["ddpm", "ddim"] = "ddpm", steps: int | None = None, eta: float = 0.0,
                variance: Variance = "beta_tilde", clip_x0: bool = False) -> Iterator[Step]:
    """The reverse process from x_T, one ``Step`` per step.

    - ``"ddpm"``: Algorithm 2 over t = T, …, 1 (σ_t² = β_t or β̃_t, ``variance``); z is drawn for t > 1 only.
    - ``"ddim"``: ``steps`` steps over ``ddim_timesteps(T, steps)`` with η = ``eta``; z is drawn only when η > 0.
    ``clip_x0`` clips x̂_0 to [−1, 1] inside each step (``ddpm_step``, ``ddim_step``)."""
    if sampler == "ddpm":
        ts = list(range(s.T, 0, -1))  # T, T−1, …, 1 (the slides' range(Ts, 0) runs zero times)
        prev = [t - 1 for t in ts]
    else:
        ts = ddim_timesteps(s.T, steps or s.T)
        prev = [t - s.T // (steps or s.T) for t in ts]
    x = x_T
    for i, (t, t_prev) in enumerate(zip(ts, prev)):
        p = predict(x, t)
        p = p if isinstance(p, Prediction) else Prediction(p)
        if sampler == "ddpm":
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if t > 1 else None
            if p.mean_shift is None:
                x_prev = ddpm_step(s, x, t, p.eps, z, variance=variance, clip_x0=clip_x0)
            else:  # the mean μ (z = None gives it), shifted, then the step's noise
                var = float(s.betas[t]) if variance == "beta" else s.posterior_variance(t)
                x_prev = ddpm_step(s, x, t, p.eps, None, clip_x0=clip_x0) + p.mean_shift(var)
                if z is not None:
                    x_prev = x_prev + math.sqrt(var) * z
        else:
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if eta > 0 else None
            x_prev = ddim_step(s, x, t, t_prev, p.eps, z, eta=eta, clip_x0=clip_x0)
        yield Step(t, x, p.eps, predict_x0(s, x, t, p.eps), x_prev, i, len(ts), p.pieces)
        x = x_prev


@torch.inference_mode()
def ddpm_sampler(model: EpsModel, s: Schedule, x_T: torch.Tensor, generator: torch.Generator, *,
                 variance: Variance = "beta_tilde", clip_x0: bool = False) -> Iterator[Step]:
    """Algorithm 2: for t = T, …, 1: ε̂ = model(x_t, t); x_{t−1} = ddpm_step(…). Yields T frames."""
    yield from run_sampler(model, s, x_T, generator, sampler="ddpm", variance=variance, clip_x0=clip_x0)


@torch.inference_mode()
def ddim_sampler(model: EpsModel, s: Schedule, x_T: torch.Tensor, generator: torch.Generator, *,
                 steps: int = 50, eta: float = 0.0, clip_x0: bool = False) -> Iterator[Step]:
    """DDIM over ``ddim_timesteps(T, steps)``; η = 0 is deterministic. Yields `steps` frames."""
    yield from run_sampler(model, s, x_T, generator, sampler="ddim", steps=steps, eta=eta, clip_x0=clip_x0)


def until_stopped(run: Iterator, stop: "threading.Event | None") -> Iterator:
    """The steps of `run` as they come, ending after the current one once `stop` is set (the Stop button);
    the run is closed however the loop ends, so what it made so far is the result."""
    try:
        for step in run:
            yield step
            if stop is not None and stop.is_set():
                break
    finally:
        run.close()
