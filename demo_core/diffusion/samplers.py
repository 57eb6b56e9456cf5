"""Samplers that yield every step, so a UI can stream them and stop them.

A sampler is a generator: iterate to run it, stop iterating (or ``close()`` it) to cancel; the
frames already received are the partial result. Each frame is a ``Step``. ``model(x_t, t)`` takes
a batch (B, …) and the slides' timestep t (1…T) and returns ε̂ of the same shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Literal

import torch

from .ddpm import Schedule, ddim_step, ddim_timesteps, ddpm_step, predict_x0

EpsModel = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass
class Step:
    t: int  # the timestep this frame denoised from
    x_t: torch.Tensor  # (B, …) input of the step
    eps_hat: torch.Tensor  # the model's predicted noise ε̂(x_t, t)
    x0_hat: torch.Tensor  # the predicted clean sample x̂_0
    x_prev: torch.Tensor  # the step's output x_{t−1} (DDPM) or x_{t_prev} (DDIM)
    index: int  # 0-based position of this frame in the run
    total: int  # frames the full run has


def initial_noise(shape: tuple[int, ...], generator: torch.Generator, device="cpu",
                  dtype=torch.float32) -> torch.Tensor:
    """x_T ~ N(0, I), drawn first from `generator` (as diffusers' pipelines do)."""
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


@torch.inference_mode()
def ddpm_sampler(model: EpsModel, s: Schedule, x_T: torch.Tensor, generator: torch.Generator, *,
                 variance: Literal["beta", "beta_tilde"] = "beta_tilde", clip_x0: bool = False) -> Iterator[Step]:
    """Algorithm 2: for t = T, …, 1: ε̂ = model(x_t, t); x_{t−1} = ddpm_step(…). Yields T frames."""
    x = x_T
    for i, t in enumerate(range(s.T, 0, -1)):  # T, T-1, ..., 1 (the slides' range(Ts, 0) runs zero times)
        eps = model(x, t)
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if t > 1 else None
        x_prev = ddpm_step(s, x, t, eps, z, variance=variance, clip_x0=clip_x0)
        yield Step(t, x, eps, predict_x0(s, x, t, eps), x_prev, i, s.T)
        x = x_prev


@torch.inference_mode()
def ddim_sampler(model: EpsModel, s: Schedule, x_T: torch.Tensor, generator: torch.Generator, *,
                 steps: int = 50, eta: float = 0.0, clip_x0: bool = False) -> Iterator[Step]:
    """DDIM over ``ddim_timesteps(T, steps)``; η = 0 is deterministic. Yields `steps` frames."""
    ts = ddim_timesteps(s.T, steps)
    ratio = s.T // steps
    x = x_T
    for i, t in enumerate(ts):
        eps = model(x, t)
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if eta > 0 else None
        x_prev = ddim_step(s, x, t, t - ratio, eps, z, eta=eta, clip_x0=clip_x0)
        yield Step(t, x, eps, predict_x0(s, x, t, eps), x_prev, i, len(ts))
        x = x_prev
