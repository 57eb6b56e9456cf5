"""Text to image for the UI: load the bundled models, check the user's prompt, and stream a guided run.

``Text2ImgModels`` holds the text-conditional DDPM, the CLIP whose text tower conditions it (the
bundled mini-CLIP, whatever CLIP the rest of the app uses) and the noised CLIP image tower for CLIP
guidance. ``run_text2img`` wraps ``text2img.guided_sampler`` and yields ``Text2ImgUpdate``s: x_t and
x̂_0 as they are denoised, the pieces of the guided prediction at the step the user chose to
inspect, the CLIP score over steps, and at the end the images.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

import torch
from PIL import Image

from ..clip.model import ClipModel
from ..clip.prompts import check_prompt
from ..clip.noised import NoisedImageTower, load_noised_clip
from ..clip.tokens import encode_tokens
from ..device import DeviceChoice
from ..errors import InputError, ModelUnavailable
from ..images import grid
from ..inputs import check_number, check_seed
from ..registry import ASSETS
from ..runs import ModelService
from .attention_view import attention_pictures, heatmap
from .conditional import TextCondUNet, load_cond_model
from .cross_attention import TokenCond, TokenCondUNet
from .ddpm import Schedule
from .samplers import initial_noise, until_stopped
from .text2img import GuidedStep, guided_sampler
from .upsampler import BUNDLED_UPSAMPLER, UPSAMPLING, Upsampler, cascade, optional_upsampler

logger = logging.getLogger(__name__)

BUNDLED_TEXT2IMG = ASSETS / "models" / "emoji-text2img"
BUNDLED_TEXT2IMG_TOKENS = ASSETS / "models" / "emoji-text2img-tokens"  # GLIDE's second way: + cross-attention
BUNDLED_TEXT2IMGS = (BUNDLED_TEXT2IMG, BUNDLED_TEXT2IMG_TOKENS)  # the Text to image tab's choices, default first
BUNDLED_NOISED_CLIP = ASSETS / "models" / "noised-clip"  # trained on mini-clip-v1's image tower
BUNDLED_NOISED_MINI_CLIP = ASSETS / "models" / "noised-mini-clip"  # on mini-clip's (the five-style CLIP)
BUNDLED_NOISED_CLIPS = (BUNDLED_NOISED_CLIP, BUNDLED_NOISED_MINI_CLIP)  # a model takes the one for its CLIP
NoisedPaths = str | Path | Sequence[str | Path]
METHODS = {"none (unconditional)": "none", "classifier-free guidance": "cfg", "CLIP guidance (noised CLIP)": "clip"}
SWEEP_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)  # the CFG paper's trade-off, side by side
MAX_IMAGES = 8
MAX_SCALE = 1000.0
Sampler = Literal["DDPM", "DDIM"]


@dataclass
class Text2ImgModels:
    model: TextCondUNet
    clip: ClipModel  # the CLIP whose text embeddings condition `model`
    noised: NoisedImageTower | None
    schedule: Schedule
    device: DeviceChoice
    name: str
    upsampler: Upsampler | None = None  # the cascade's second stage (32×32 -> 64×64), when installed

    @property
    def image_size(self) -> int:
        return self.model.image_size



def _noised_paths(noised_path: NoisedPaths) -> list[Path]:
    return [Path(noised_path)] if isinstance(noised_path, (str, Path)) else [Path(p) for p in noised_path]


def load_text2img(path: str | Path = BUNDLED_TEXT2IMG, noised_path: NoisedPaths = BUNDLED_NOISED_CLIPS, *,
                  device: DeviceChoice, clip: ClipModel | None = None,
                  upsampler_path: str | Path = BUNDLED_UPSAMPLER) -> Text2ImgModels:
    """Load the conditional DDPM at `path`, its CLIP (reusing `clip` when it is that one), the noised
    CLIP trained for that CLIP among the folders `noised_path` when one is (CLIP guidance is then offered: a noised
    CLIP of another CLIP would score in another embedding space, so it is refused) and the upsampler at
    `upsampler_path` when present (the cascade's second stage is then offered)."""
    path = Path(path)
    if not (path / "cond_config.json").exists():
        raise ModelUnavailable(f"No text-to-image model in {path}.")
    model = load_cond_model(path, device=device.device, dtype=torch.float32)
    if clip is None or clip.spec.spec != model.cfg.clip_spec:
        clip = ClipModel.load(model.cfg.clip_spec, device)
    noised, others = None, []
    for folder in _noised_paths(noised_path):
        meta = folder / "noised_clip.json"
        if not meta.exists():
            continue
        base = json.loads(meta.read_text()).get("base_clip", model.cfg.clip_spec)
        if base == model.cfg.clip_spec:
            noised = load_noised_clip(folder, clip.model.visual, device=device.device)
            break
        others.append(f"{folder} (trained for {base})")
    if noised is None and others:  # their scores would live in another embedding space than the prompt's
        logger.warning("CLIP guidance is off for %s: no noised CLIP for %s, the CLIP it is conditioned on; "
                       "installed: %s", path.name, model.cfg.clip_spec, ", ".join(others))
    upsampler = optional_upsampler(upsampler_path, model.image_size, device.device)
    return Text2ImgModels(model, clip, noised, Schedule.make(model.cfg.schedule, model.cfg.T), device, path.name,
                          upsampler)


def noised_clip_curve(noised_path: NoisedPaths = BUNDLED_NOISED_CLIPS) -> list[dict]:
    """Held-out zero-shot accuracy against t of the plain and the noised CLIP image tower, as measured
    when the noised CLIP was trained (``noised_clip.json``; the first installed of `noised_path`): rows
    {t, accuracy, tower}; [] if none is installed."""
    metas = [p / "noised_clip.json" for p in _noised_paths(noised_path) if (p / "noised_clip.json").exists()]
    if not metas:
        return []
    meta = metas[0]
    curve = json.loads(meta.read_text()).get("accuracy_vs_t", {})
    return [{"t": t, "accuracy": acc, "tower": f"{name} CLIP"}
            for name in ("plain", "noised") for t, acc in zip(curve.get("t", []), curve.get(name, []))]


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


class Text2ImgService(ModelService[Text2ImgModels]):
    """The bundled text-to-image models (``ModelService``): the conditional DDPM and the noised CLIP."""

    def __init__(self, device: DeviceChoice, active_clip: Callable[[], ClipModel | None],
                 path: str | Path = BUNDLED_TEXT2IMG, noised_path: NoisedPaths = BUNDLED_NOISED_CLIPS,
                 upsampler_path: str | Path = BUNDLED_UPSAMPLER):
        self.path, self.noised_path, self.upsampler_path = Path(path), _noised_paths(noised_path), Path(upsampler_path)
        super().__init__(device, active_clip)

    def required(self) -> list[Path]:
        return [self.path / "cond_config.json"]  # the noised CLIP is optional: CLIP guidance is then off

    @property
    def name(self) -> str:
        return self.path.name

    def _config(self) -> dict:
        try:
            return json.loads((self.path / "cond_config.json").read_text())
        except (OSError, ValueError):
            return {}

    def reads_tokens(self) -> bool:
        """Whether the model has GLIDE's token path (cross-attention), read from its config without loading it."""
        return bool(self._config().get("token_width"))

    def describe(self) -> str:
        """The model as the tab's model choice names it: what it is conditioned on, and on which CLIP."""
        how = "pooled embedding + the prompt's tokens (cross-attention)" if self.reads_tokens() else "pooled embedding"
        return f"{self.name}: {how}, {self._config().get('clip_spec', '?')}"

    def _load(self) -> Text2ImgModels:
        models = load_text2img(self.path, self.noised_path, device=self.device, clip=self._active_clip(),
                               upsampler_path=self.upsampler_path)
        logger.info("text-to-image model %s loaded (CLIP guidance %s)", self.path.name,
                    "on" if models.noised is not None else "off: no noised CLIP")
        return models
