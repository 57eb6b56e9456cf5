"""Toy 2-D diffusion: learn a point cloud (swiss roll, two moons, rings, or a drawn shape) with a
small MLP ε-model in seconds, then watch DDPM pull pure noise back onto the shape.

Same math as the images (``diffusion.q_sample`` for Algorithm 1, ``samplers.ddpm_sampler`` for
Algorithm 2); only the data are 2-D points, so every step can be drawn as a scatter plot.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..inputs import check_number, check_seed
from ..runs import seeded
from .ddpm import Schedule, q_sample
from .samplers import Step, ddpm_sampler, initial_noise

Shape = Literal["swiss roll", "two moons", "rings"]
T_TOY = 200  # cosine schedule: ᾱ_T ≈ 0 with few steps, so sampling streams quickly
MAX_STEPS = 4000  # training steps one request may ask for (about a minute on two CPU cores)
MAX_DRAWING_PIXELS = 4_000_000  # a drawn canvas, however high the screen's resolution, is far smaller


def make_points(shape: Shape, n: int = 2000, seed: int = 0) -> torch.Tensor:
    """(n, 2) points of a named 2-D distribution, scaled to roughly [-1.5, 1.5]²."""
    rng = np.random.default_rng(check_seed(seed))
    if shape == "swiss roll":
        t = 1.5 * np.pi * (1 + 2 * rng.random(n))
        pts = np.stack([t * np.cos(t), t * np.sin(t)], 1) / 10
    elif shape == "two moons":
        k = rng.integers(0, 2, n)
        a = np.pi * rng.random(n)
        pts = np.where(k[:, None] == 0, np.stack([np.cos(a), np.sin(a)], 1),
                       np.stack([1 - np.cos(a), 0.5 - np.sin(a)], 1)) - [0.5, 0.25]
    elif shape == "rings":
        r = np.where(rng.random(n) < 0.5, 0.5, 1.2)
        a = 2 * np.pi * rng.random(n)
        pts = np.stack([r * np.cos(a), r * np.sin(a)], 1)
    else:
        raise InputError(f"Unknown shape '{shape}': use swiss roll, two moons or rings.")
    pts = pts + 0.03 * rng.normal(size=pts.shape)
    return torch.tensor(pts, dtype=torch.float32)


def drawing_to_gray(image: np.ndarray | None) -> np.ndarray:
    """A drawing (H, W, 4) RGBA, (H, W, 3) RGB or (H, W) -> greyscale (H, W) in 0..255, strokes dark.
    On a transparent canvas the strokes are where alpha is; the rest counts as white."""
    if image is None:
        raise InputError("Draw a shape first (or pick one of the named distributions).")
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return np.where(arr[..., 3] > 0, arr[..., :3].mean(-1), 255.0)
    return arr.mean(-1) if arr.ndim == 3 else arr


def points_from_image(gray: np.ndarray, n: int = 2000, seed: int = 0) -> torch.Tensor:
    """Sample (n, 2) points from the dark pixels of a drawing (H, W) in 0..255, y pointing up."""
    ys, xs = np.nonzero(gray < 128)
    if len(xs) < 10:
        raise InputError("The drawing has (almost) no dark pixels: draw a shape in a dark colour.")
    rng = np.random.default_rng(check_seed(seed))
    i = rng.integers(0, len(xs), n)
    h, w = gray.shape
    scale = 3.0 / max(h, w)
    pts = np.stack([(xs[i] - w / 2) * scale, (h / 2 - ys[i]) * scale], 1) + rng.uniform(-0.5, 0.5, (n, 2)) * scale
    return torch.tensor(pts, dtype=torch.float32)


class EpsMLP(nn.Module):
    """ε_θ(x_t, t) for 2-D points: sinusoidal embedding of t, then a 3-layer MLP."""

    def __init__(self, hidden: int = 128, t_dim: int = 32):
        super().__init__()
        self.t_dim = t_dim
        self.net = nn.Sequential(nn.Linear(2 + t_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2))

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        half = self.t_dim // 2
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half) / half)
        ang = t.float()[:, None] * freqs[None] * (1000.0 / T_TOY)
        return torch.cat([ang.sin(), ang.cos()], 1)  # (B, t_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, self.embed(t)], 1))


@dataclass
class TrainProgress:
    step: int
    steps: int
    loss: float


def train(points: torch.Tensor, *, steps: int = 1500, batch: int = 512, lr: float = 3e-3, seed: int = 0,
          model: EpsMLP | None = None) -> Iterator[TrainProgress | EpsMLP]:
    """Algorithm 1 on 2-D points. Yields TrainProgress every 50 steps, then the trained model."""
    steps = check_number(steps, "Training steps", 1, MAX_STEPS, integer=True)
    seed = check_seed(seed)
    s = Schedule.make("cosine", T_TOY)
    model = model or seeded(seed, EpsMLP)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    running = None
    for step in range(1, steps + 1):
        x0 = points[torch.randint(0, len(points), (batch,), generator=g)]
        t = torch.randint(1, T_TOY + 1, (batch,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        loss = nn.functional.mse_loss(model(q_sample(s, x0, t, eps), t), eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 50 == 0 or step == steps:
            yield TrainProgress(step, steps, running)
    yield model.eval()


def start_points(n: int, seed: int = 0) -> torch.Tensor:
    """x_T of ``sample(model, n, seed)``: the n points of pure noise that sampling starts from."""
    return initial_noise((n, 2), torch.Generator().manual_seed(seed))


def sample(model: EpsMLP, n: int = 1000, seed: int = 0) -> Iterator[Step]:
    """Algorithm 2 on n points from N(0, I): yields T_TOY steps (t = T … 1)."""
    s = Schedule.make("cosine", T_TOY)
    x_T = start_points(n, seed)
    eps_fn = lambda x, t: model(x, torch.full((x.shape[0],), t))  # noqa: E731
    yield from ddpm_sampler(eps_fn, s, x_T, torch.Generator().manual_seed(seed + 1))


def forward_points(points: torch.Tensor, t: int, seed: int = 0) -> torch.Tensor:
    """q(x_t | x_0) applied to the points: the same cloud diffusing into noise."""
    s = Schedule.make("cosine", T_TOY)
    if t <= 0:
        return points
    return q_sample(s, points, min(t, T_TOY), torch.randn(points.shape, generator=torch.Generator().manual_seed(seed)))
