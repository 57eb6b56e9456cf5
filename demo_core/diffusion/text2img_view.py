"""Text to image for the UI: check the user's prompt, and stream a guided run.

``run_text2img`` wraps ``text2img.guided_sampler`` on the loaded models (``text2img_models``) and yields
``Text2ImgUpdate``s: x_t and x̂_0 as they are denoised, the pieces of the guided prediction at the step the
user chose to inspect, the cross-attention maps of a model that reads the prompt's tokens, the CLIP score
over steps, and at the end the images.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field, fields, replace
from typing import Iterator, Literal

import torch
from PIL import Image

from ..clip.model import ClipModel
from ..clip.prompts import check_prompt
from ..clip.tokens import encode_tokens
from ..errors import InputError, ModelUnavailable
from ..images import grid
from ..inputs import check_number, check_seed
from .attention_view import attention_pictures, heatmap
from .conditional import TextCondUNet
from .cross_attention import TokenCond, TokenCondUNet
from .samplers import initial_noise, until_stopped
from .text2img import GuidedStep, guided_sampler
from .text2img_models import (BUNDLED_NOISED_CLIP, BUNDLED_NOISED_CLIPS, BUNDLED_TEXT2IMG,  # noqa: F401  (re-exported)
                              BUNDLED_TEXT2IMG_TOKENS, BUNDLED_TEXT2IMGS, Text2ImgModels, Text2ImgService,
                              load_text2img, noised_clip_curve)
from .upsampler import UPSAMPLING, cascade

logger = logging.getLogger(__name__)

METHODS = {"none (unconditional)": "none", "classifier-free guidance": "cfg", "CLIP guidance (noised CLIP)": "clip"}
SWEEP_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)  # the CFG paper's trade-off, side by side
MAX_IMAGES = 8
MAX_SCALE = 1000.0
Sampler = Literal["DDPM", "DDIM"]


@dataclass
class Text2ImgUpdate:
    t: int
    index: int
    total: int
    x_t: Image.Image
    x0_hat: Image.Image
    elapsed_s: float
    pieces: list[tuple[Image.Image, str]] = field(default_factory=list)  # at the inspected step
    clip_scores: list[tuple[int, float]] = field(default_factory=list)  # (t, mean score) so far
    final: bool = False
    stopped: bool = False
    images: list[Image.Image] = field(default_factory=list)  # the samples, at the end
    kept: dict[int, GuidedStep] = field(default_factory=dict)  # image 1 at each inspectable step (``pieces_at``)
    attention: list[tuple[Image.Image, str]] = field(default_factory=list)  # which word looked where (inspected step)
    stage: str = ""  # "" for the base model's steps, UPSAMPLING for the upsampler's
    captions: list[str] = field(default_factory=list)  # one per image in `images`


INSPECT_POSITIONS = 21  # the inspect slider's stops (0, 0.05, …, 1): the steps a finished run keeps


def inspected_index(inspect: float, total: int) -> int:
    """The step (0 = the first, noisiest) that `inspect` in [0, 1] picks out of `total`."""
    return min(total - 1, max(0, round(inspect * (total - 1))))


def _first_image(step: GuidedStep) -> GuidedStep:
    """The step cut down to image 1 (what the pieces show), on the CPU: small enough to keep 21 of."""
    cut = lambda x: x[:1].detach().cpu() if torch.is_tensor(x) else x  # noqa: E731
    return replace(step, **{f.name: cut(getattr(step, f.name)) for f in fields(step)})


def pieces_at(kept: dict[int, GuidedStep], inspect: float) -> tuple[list, list]:
    """The pieces and the attention maps of a finished run's step that `inspect` picks, from what it kept:
    the inspect slider re-renders them without sampling again (a stopped run: its nearest kept step)."""
    if not kept:
        return [], []
    total = next(iter(kept.values())).total
    want = inspected_index(check_number(inspect, "The inspected step", 0, 1), total)
    step = kept[min(kept, key=lambda i: abs(i - want))]
    return pieces_of(step), attention_of(step)


def attention_of(step: GuidedStep, i: int = 0) -> list[tuple[Image.Image, str]]:
    """Image i's cross-attention maps at this step, one per prompt token ([] for a pooled-only model)."""
    if step.attention is None or not step.words:
        return []
    return attention_pictures(step.attention[i], step.words, step.x0_hat[i])


def pieces_of(step: GuidedStep, i: int = 0) -> list[tuple[Image.Image, str]]:
    """The parts of image i's guided prediction at this step, as captioned images."""
    show = lambda e: grid(e[i : i + 1] / 3)  # noqa: E731 - ε ~ N(0, 1): /3 to show it in [-1, 1]
    out = [(grid(step.x_t[i : i + 1]), f"x_t (t = {step.t})")]
    if step.eps_cond is not None:
        diff = step.eps_cond[i] - step.eps_uncond[i]
        out += [(show(step.eps_uncond), "ε̂(x_t, ∅)"), (show(step.eps_cond), "ε̂(x_t, c)"),
                (grid((diff / diff.abs().max().clamp(min=1e-12))[None]), "ε̂(x_t, c) − ε̂(x_t, ∅) (scaled to show)")]
    if step.grad is not None:
        out.append((heatmap(step.grad[i]), f"|∇ CLIP score| (score {float(step.clip_score[i]):.3f})"))
    if step.eps_guided:
        out += [(show(step.eps), "guided ε̂ (what the step uses)"), (grid(step.x0_hat[i : i + 1]), "x̂₀ from the guided ε̂")]
    else:  # DDPM + CLIP guidance: the gradient moves the mean μ, the model's ε̂ is not changed
        out += [(show(step.eps), "ε̂ (unguided: CLIP guidance shifts the mean μ)"),
                (grid(step.x0_hat[i : i + 1]), "x̂₀ from the unguided ε̂")]
    return out


def run_text2img(models: Text2ImgModels, prompt: str, *, negative: str | None = None, method: str = "cfg",
                 scale: float = 3.0, sampler: Sampler = "DDIM", steps: int = 50, seed: int = 0, n: int = 4,
                 inspect: float = 0.5, sweep: bool = False, clip_x0: bool = True, upsample: bool = True,
                 stop: threading.Event | None = None) -> Iterator[Text2ImgUpdate]:
    """Stream a guided run of `n` images; with `sweep`, one image per scale in SWEEP_SCALES from one seed.
    With `upsample` and an upsampler installed, the base samples then go through the cascade's second stage
    (``upsampler.cascade``), streamed too; the images are then each base sample beside its upsampled one.

    ``inspect`` in [0, 1] picks the step whose pieces are shown (0 = the first, noisiest step).
    Setting `stop` ends the run after the current step; the last update (``final``) keeps what was made.
    """
    if method not in METHODS.values():
        raise InputError(f"Unknown guidance '{method}': use one of {', '.join(METHODS)}.")
    if sampler not in ("DDPM", "DDIM"):
        raise InputError(f"Unknown sampler '{sampler}': use DDPM or DDIM.")
    if method == "clip" and models.noised is None:
        raise ModelUnavailable(f"CLIP guidance needs a noised CLIP trained for {models.clip.name}, the CLIP this model "
                               f"({models.name}) is conditioned on; none is installed here. Choose classifier-free "
                               "guidance, or a model whose CLIP has a noised CLIP.")
    scale = check_number(scale, "The guidance scale", 0, MAX_SCALE)
    steps = check_number(steps, "DDIM steps", 1, models.schedule.T, integer=True)
    seed = check_seed(seed)
    n = check_number(n, "The number of images", 1, MAX_IMAGES, integer=True)
    inspect = check_number(inspect, "The inspected step", 0, 1)
    clip = models.clip
    prompt = check_prompt(clip, prompt, required=method != "none") or ""
    negative = check_prompt(clip, negative, what="negative prompt", required=False)
    dev = models.device.device
    cond, words = _condition(models, prompt)
    neg = _condition(models, negative)[0] if negative and method == "cfg" else None
    size = models.image_size
    if sweep:  # every scale from one x_T
        noise = initial_noise((1, 3, size, size), torch.Generator().manual_seed(seed), remove_colour_mean=True)
        x_T = noise.expand(len(SWEEP_SCALES), -1, -1, -1).contiguous().to(dev)
        w = torch.tensor(SWEEP_SCALES) * (scale if method == "clip" else 1.0)  # CLIP: multiples of the scale
    else:
        x_T = initial_noise((n, 3, size, size), torch.Generator().manual_seed(seed), remove_colour_mean=True).to(dev)
        w = scale
    g = torch.Generator(device=dev).manual_seed(seed + 1)
    total = models.schedule.T if sampler == "DDPM" else steps
    at = inspected_index(inspect, total)
    keep = {inspected_index(k / (INSPECT_POSITIONS - 1), total) for k in range(INSPECT_POSITIONS)} | {at}
    run = guided_sampler(models.model, models.schedule, x_T, g, method=method, scale=w, cond=cond, negative=neg,
                         noised_clip=models.noised, sampler=sampler.lower(), steps=steps, clip_x0=clip_x0)
    per_row = len(x_T) if len(x_T) <= 4 else math.ceil(len(x_T) / 2)
    t0, pieces, attention, scores, last, kept = time.time(), [], [], [], None, {}
    for st in until_stopped(run, stop):
        st = replace(st, words=words)
        if st.index == at:
            pieces, attention = pieces_of(st), attention_of(st)
        if st.index in keep:
            kept[st.index] = _first_image(st)
        if st.clip_score is not None:
            scores.append((st.t, float(st.clip_score.mean())))
        last = st
        yield Text2ImgUpdate(st.t, st.index, st.total, grid(st.x_prev, per_row=per_row),
                             grid(st.x0_hat, per_row=per_row), time.time() - t0, pieces, list(scores),
                             attention=attention)
    if last is None:
        return
    stopped = last.index < last.total - 1
    images = [grid(x[None], size=128) for x in last.x_prev]
    captions = [f"image {i + 1}" for i in range(len(images))]
    stage = ""
    if upsample and models.upsampler is not None and not stopped and not sweep:
        up = None
        for up in until_stopped(cascade(models.upsampler, last.x_prev, seed), stop):
            yield Text2ImgUpdate(up.t, up.index, up.total, grid(up.x_prev, per_row=per_row),
                                 grid(up.x0_hat, per_row=per_row), time.time() - t0, pieces, list(scores),
                                 attention=attention, stage=UPSAMPLING)
        if up is not None and up.index == up.total - 1:  # each base sample beside its upsampled one
            images = [im for base, x in zip(images, up.x_prev) for im in (base, grid(x[None], size=128))]
            captions = [c for i in range(len(captions)) for c in (f"image {i + 1} · 32×32 base",
                                                                   f"image {i + 1} · 64×64 upsampled")]
        stopped = up is None or up.index < up.total - 1
        last, stage = up or last, UPSAMPLING
    yield Text2ImgUpdate(last.t, last.index, last.total, grid(last.x_prev, per_row=per_row),
                         grid(last.x0_hat, per_row=per_row), time.time() - t0, pieces, list(scores), final=True,
                         stopped=stopped, images=images, kept=kept, attention=attention, stage=stage,
                         captions=captions)


def _condition(models: Text2ImgModels, prompt: str | None):
    """``prompt_condition`` for the loaded models; (None, ()) for no prompt."""
    if not prompt:
        return None, ()
    return prompt_condition(models.model, models.clip, prompt, models.device.device)


def prompt_condition(model: TextCondUNet, clip: ClipModel, prompt: str, device=None):
    """What `model` is conditioned on for `prompt`: its pooled text embedding (D,), or for a model that also
    reads tokens a ``TokenCond``; and the prompt's tokens as text (for the attention maps)."""
    if isinstance(model, TokenCondUNet):
        f = encode_tokens(clip, [prompt])
        return TokenCond(f.pooled, f.tokens, f.mask), tuple(f.words[0])
    return clip.encode_texts([prompt])[0].to(device), ()
