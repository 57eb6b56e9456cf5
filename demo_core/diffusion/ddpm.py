"""DDPM math, written to be read beside the lecture's slides (Ho et al. 2020; Song et al. 2021).

Indexing follows the slides: t = 1, …, T, and index 0 holds ᾱ_0 = 1 (no noise), so that
``alpha_bar[t - 1]`` *is* ᾱ_{t−1}, also at t = 1. (diffusers counts k = t − 1 = 0, …, T − 1; a
UNet trained with diffusers is called with k.)

Errata in the slides, corrected here (see tests/test_diffusion.py):
- forward noising is  x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε   (one slide writes (1−ᾱ_t)·ε);
- the reverse loop runs t = T, T−1, …, 1   (``for t in range(Ts, 0)`` is an empty loop);
- Algorithm 2 divides ε̂ by √(1−ᾱ_t)   (one slide shows √(1−α_t));
- μ̃'s coefficient on x_t is √α_t(1−ᾱ_{t−1})/(1−ᾱ_t)   (one slide shows √ᾱ_t);
- ᾱ_t = ∏_{i≤t} α_i is a cumulative product, O(T)   (the slides' double loop is O(T²)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

ScheduleName = Literal["linear", "cosine"]


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """β_t = β_0 + (β_T − β_0)·(t−1)/(T−1), t = 1…T   (the slides' ``np.linspace``)."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021): ᾱ(t) = cos²(((t/T)+s)/(1+s)·π/2),  β_t = min(1 − ᾱ(t)/ᾱ(t−1), 0.999)."""
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return torch.tensor([min(1 - f(t / T) / f((t - 1) / T), max_beta) for t in range(1, T + 1)], dtype=torch.float64)


@dataclass(frozen=True)
class Schedule:
    """β, α = 1 − β and ᾱ_t = ∏_{i=1}^t α_i, each of length T + 1 (index 0: β_0 = 0, ᾱ_0 = 1)."""

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor
    name: str

    @classmethod
    def make(cls, name: ScheduleName = "linear", T: int = 1000) -> "Schedule":
        if T < 2:
            raise ValueError("T must be at least 2.")
        if name == "linear":
            b = linear_betas(T)
        elif name == "cosine":
            b = cosine_betas(T)
        else:
            raise ValueError(f"Unknown schedule '{name}': use 'linear' or 'cosine'.")
        betas = torch.cat([torch.zeros(1, dtype=torch.float64), b])
        alphas = 1 - betas
        return cls(betas, alphas, torch.cumprod(alphas, 0), name)  # cumprod: O(T), not the slides' O(T²)

    @property
    def T(self) -> int:
        return len(self.betas) - 1

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio SNR(t) = ᾱ_t / (1 − ᾱ_t), t = 1…T."""
        ab = self.alpha_bars[1:]
        return ab / (1 - ab)

    def posterior_variance(self, t: int) -> float:
        """β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t."""
        return float((1 - self.alpha_bars[t - 1]) / (1 - self.alpha_bars[t]) * self.betas[t])

    def posterior_mean_coefs(self, t: int) -> tuple[float, float]:
        """μ̃_t(x_t, x_0) = c_0·x_0 + c_t·x_t with
        c_0 = √ᾱ_{t−1}·β_t / (1 − ᾱ_t),   c_t = √α_t·(1 − ᾱ_{t−1}) / (1 − ᾱ_t)."""
        ab, ab_prev = self.alpha_bars[t], self.alpha_bars[t - 1]
        c0 = ab_prev.sqrt() * self.betas[t] / (1 - ab)
        ct = self.alphas[t].sqrt() * (1 - ab_prev) / (1 - ab)
        return float(c0), float(ct)


def q_sample(s: Schedule, x0: torch.Tensor, t: int | torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Sample q(x_t | x_0) in closed form:  x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε.

    `t` is one timestep, or a (B,) tensor of timesteps for a batch x0 of shape (B, …)."""
    ab = s.alpha_bars[t].to(x0.dtype)
    if ab.ndim:
        ab = ab.view(-1, *([1] * (x0.ndim - 1)))  # (B, 1, 1, 1): one ᾱ_t per sample
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def predict_x0(s: Schedule, x_t: torch.Tensor, t: int, eps_hat: torch.Tensor) -> torch.Tensor:
    """ε̂ → x̂_0:  x̂_0 = (x_t − √(1 − ᾱ_t)·ε̂) / √ᾱ_t   (the closed form solved for x_0)."""
    ab = float(s.alpha_bars[t])
    return (x_t - math.sqrt(1 - ab) * eps_hat) / math.sqrt(ab)


def ddpm_step(s: Schedule, x_t: torch.Tensor, t: int, eps_hat: torch.Tensor, z: torch.Tensor | None,
              *, variance: Literal["beta", "beta_tilde"] = "beta_tilde", clip_x0: bool = False) -> torch.Tensor:
    """One step of Algorithm 2 (DDPM sampling), x_t → x_{t−1}:

        x_{t−1} = 1/√α_t · (x_t − β_t/√(1 − ᾱ_t) · ε̂) + σ_t·z,   z ~ N(0, I) if t > 1 else 0,

    with σ_t² = β_t or β̃_t. With ``clip_x0`` the mean is μ̃_t(x_t, clip(x̂_0, −1, 1)) instead, the same
    formula when nothing is clipped, as diffusers' ``clip_sample`` does.
    """
    if clip_x0:
        c0, ct = s.posterior_mean_coefs(t)
        mean = c0 * predict_x0(s, x_t, t, eps_hat).clamp(-1, 1) + ct * x_t
    else:
        a, ab, b = float(s.alphas[t]), float(s.alpha_bars[t]), float(s.betas[t])
        mean = (x_t - b / math.sqrt(1 - ab) * eps_hat) / math.sqrt(a)
    if t == 1 or z is None:
        return mean
    var = float(s.betas[t]) if variance == "beta" else s.posterior_variance(t)
    return mean + math.sqrt(var) * z


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """The DDIM sub-sequence t = T', …, 1 with stride T // steps (diffusers' "leading" spacing)."""
    if not 1 <= steps <= T:
        raise ValueError(f"DDIM steps must be between 1 and T = {T}.")
    ratio = T // steps
    return [k * ratio + 1 for k in reversed(range(steps))]


def ddim_step(s: Schedule, x_t: torch.Tensor, t: int, t_prev: int, eps_hat: torch.Tensor, z: torch.Tensor | None,
              *, eta: float = 0.0, clip_x0: bool = False) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12), x_t → x_{t_prev} (t_prev = 0 means the clean image, ᾱ_0 = 1):

        x̂_0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t,   σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1 − ᾱ_t/ᾱ_prev),
        x_prev = √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev − σ²)·ε̂ + σ·z.

    η = 0 is deterministic; η = 1 matches DDPM's variance.
    """
    ab, ab_prev = float(s.alpha_bars[t]), float(s.alpha_bars[max(t_prev, 0)])
    x0 = predict_x0(s, x_t, t, eps_hat)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
        eps_hat = (x_t - math.sqrt(ab) * x0) / math.sqrt(1 - ab)  # ε̂ consistent with the clipped x̂_0
    sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab)) * math.sqrt(1 - ab / ab_prev)
    x_prev = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps_hat
    if eta > 0 and z is not None:
        x_prev = x_prev + sigma * z
    return x_prev
