"""What the forward-diffusion explorer shows: x_t of an image, a strip over t, schedule curves.

Everything here calls ``diffusion.q_sample`` and the ``Schedule``: the picture is the formula
x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε, with one fixed ε per seed so that moving t shows the same noise
growing, not a new draw each time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from ..images import to_pil
from ..inputs import check_number, check_seed
from .ddpm import Schedule, q_sample

DISPLAY_SIZE = 256
STRIP_FRACTIONS = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
MAX_T = 10_000
SCHEDULES = ("linear", "cosine")


def to_model_range(image: Image.Image, size: int = DISPLAY_SIZE) -> torch.Tensor:
    """PIL RGB -> (3, H, W) in [-1, 1], the longest side at most `size` (aspect kept)."""
    im = image.copy()
    im.thumbnail((size, size), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1.0)
    return x.permute(2, 0, 1)


def noisy(x0: torch.Tensor, s: Schedule, t: int, seed: int = 0) -> torch.Tensor:
    """x_t for t in 0..T (t = 0 is the image itself), with the seed's fixed ε."""
    if t <= 0:
        return x0
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    return q_sample(s, x0, min(t, s.T), eps)


def strip(x0: torch.Tensor, s: Schedule, seed: int = 0, fractions=STRIP_FRACTIONS) -> list[tuple[Image.Image, str]]:
    """x_t at fixed fractions of T, captioned with t and √ᾱ_t."""
    out = []
    for f in fractions:
        t = round(f * s.T)
        signal = float(s.alpha_bars[t].sqrt())
        out.append((to_pil(noisy(x0, s, t, seed)), f"{s.name} t={t}  √ᾱ={signal:.2f}"))
    return out


def curves(T: int) -> list[dict]:
    """Rows (t, curve, value, schedule) for ᾱ_t, √ᾱ_t (signal), √(1−ᾱ_t) (noise) and log10 SNR(t)."""
    rows = []
    step = max(1, T // 200)  # ~200 points a curve is plenty for a plot
    for name in ("linear", "cosine"):
        s = Schedule.make(name, T)
        ab = s.alpha_bars[1:].numpy()
        snr = np.log10(s.snr().numpy())
        for i in range(0, T, step):
            t = i + 1
            for curve, v in (("ᾱ_t", ab[i]), ("signal √ᾱ_t", np.sqrt(ab[i])), ("noise √(1−ᾱ_t)", np.sqrt(1 - ab[i])),
                             ("log10 SNR(t)", snr[i])):
                rows.append({"t": t, "curve": f"{curve} ({name})", "value": float(v), "schedule": name})
    return rows


@dataclass
class ForwardView:
    """What the explorer shows for one image, t, schedule and T."""

    x_t: Image.Image
    schedule: str
    T: int
    t: int  # clamped to 0..T
    alpha_bar: float  # ᾱ_t
    strips: dict[str, list[tuple[Image.Image, str]]]  # schedule -> x_t across t
    curves: list[dict]  # see ``curves``
    signal_at_T: dict[str, float]  # schedule -> √ᾱ_T: how much of the image x_T still holds


def explore(image: Image.Image, t: int, schedule: str, T: int, seed: int = 0) -> ForwardView:
    """x_t of `image` at step t under `schedule` with T steps, strips over t for both schedules,
    and the schedule curves (t past T is taken as T). Raises InputError for a t, T, seed or schedule
    out of range."""
    T = check_number(T, "T", 2, MAX_T, integer=True)
    t = min(check_number(t, "t", 0, MAX_T, integer=True), T)
    seed = check_seed(seed)
    if schedule not in SCHEDULES:
        raise InputError(f"Unknown schedule '{schedule}': use {' or '.join(SCHEDULES)}.")
    x0 = to_model_range(image)
    schedules = {name: Schedule.make(name, T) for name in SCHEDULES}
    s = schedules[schedule]
    return ForwardView(to_pil(noisy(x0, s, t, seed)), schedule, T, t, float(s.alpha_bars[t]),
                       {name: strip(x0, sch, seed) for name, sch in schedules.items()}, curves(T),
                       {name: float(sch.alpha_bars[-1]) ** 0.5 for name, sch in schedules.items()})
