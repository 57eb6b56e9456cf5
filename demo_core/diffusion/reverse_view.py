"""Running a sampler for the UI: frames to stream, a kept strip to scrub, a GIF to download.

``run_reverse`` wraps ``samplers.ddpm_sampler`` / ``ddim_sampler`` for one DDPM model and seed.
It yields ``ReverseFrame``s as the sampler yields steps; the UI shows x_t, ε̂ and x̂_0 side by side.
Closing the generator (the Stop button) keeps everything received so far.
"""
from __future__ import annotations

import io
from pathlib import Path
from dataclasses import dataclass, field
from typing import Iterator, Literal

import torch
from PIL import Image

from ..images import grid
from .ddpm import Schedule
from .models import DdpmModel
from .samplers import Step, ddim_sampler, ddpm_sampler, initial_noise

SamplerName = Literal["DDPM", "DDIM"]
MAX_KEPT = 60  # frames kept for the strip and the GIF


@dataclass
class ReverseFrame:
    step: Step
    x_t: Image.Image
    eps_hat: Image.Image
    x0_hat: Image.Image


@dataclass
class ReverseRun:
    """What a run keeps for afterwards: x_t every few steps, for the timeline strip and the GIF."""

    kept: list[tuple[int, Image.Image]] = field(default_factory=list)  # (t, x_t grid) every few steps

    def gif(self, duration_ms: int = 80) -> bytes:
        """The kept x_t frames as an animated GIF (the last frame held longer)."""
        if not self.kept:
            return b""
        frames = [im for _, im in self.kept]
        buf = io.BytesIO()
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:] + [frames[-1]] * 10,
                       duration=duration_ms, loop=0)
        return buf.getvalue()


def run_reverse(model: DdpmModel, sampler: SamplerName, *, seed: int = 0, n: int = 4, ddim_steps: int = 50,
                eta: float = 0.0, clip_x0: bool = True, run: ReverseRun | None = None) -> Iterator[ReverseFrame]:
    """Sample `n` images with `sampler` from x_T drawn with `seed`; yield a frame per step.

    The same seed gives the same x_T for DDPM and DDIM, so the two can be compared side by side.
    ``clip_x0=False`` is Algorithm 2 exactly as written; ``True`` clips x̂_0 to [−1, 1] inside each
    step, as diffusers' schedulers do by default (``clip_sample=True``).
    """
    s = Schedule.make(model.schedule, model.T)
    shape = (n, model.channels, model.sample_size, model.sample_size)
    x_T = initial_noise(shape, torch.Generator().manual_seed(seed), remove_colour_mean=model.bundled)
    g = torch.Generator().manual_seed(seed + 1)
    steps = (ddpm_sampler(model.eps, s, x_T, g, clip_x0=clip_x0) if sampler == "DDPM"
             else ddim_sampler(model.eps, s, x_T, g, steps=ddim_steps, eta=eta, clip_x0=clip_x0))
    run = run if run is not None else ReverseRun()
    total = model.T if sampler == "DDPM" else ddim_steps
    every = max(1, total // MAX_KEPT)
    try:
        for st in steps:
            x_img = grid(st.x_prev)
            if st.index % every == 0 or st.index == st.total - 1:
                run.kept.append((st.t, x_img))
            yield ReverseFrame(st, x_img, grid(st.eps_hat / 3), grid(st.x0_hat))  # ε̂ ~ N(0,1): /3 to show it
    finally:
        steps.close()


@dataclass
class ReverseUpdate:
    """A reverse run as it stands: the latest frame of each sampler; at the end, the kept x_t
    strip and the GIF of the first sampler's run."""

    latest: dict[str, ReverseFrame | None]
    elapsed_s: float
    final: bool = False
    stopped: bool = False
    strip: list[tuple[Image.Image, str]] = field(default_factory=list)  # (x_t, "DDPM t=…")
    gif: Path | None = None
