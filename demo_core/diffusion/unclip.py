"""unCLIP (DALL·E 2, Ramesh et al. 2022) in three stages, on the bundled emoji models:

    text  --CLIP text tower-->  e_text  --prior-->  e_img  --decoder (a DDPM on e_img)-->  image

CLIP is trained and frozen (the bundled mini-CLIP). The prior (``prior``) turns the caption's text
embedding into a plausible *image* embedding; the decoder is the GLIDE-style conditional UNet
(``conditional``) trained on image embeddings of emoji renders, sampled with classifier-free guidance:

    ε̂ = ε̂(x_t, ∅) + w·(ε̂(x_t, e_img) − ε̂(x_t, ∅))

Because the decoder only needs an image embedding, any picture can be encoded and decoded again:
*variations* (one embedding, several seeds) and *interpolation* (slerp between two embeddings, one
seed). Every run streams ``UnclipUpdate``s: the embeddings, then x_t and x̂_0 as they are denoised,
and at the end the images with their mini-CLIP cosine to what they were made from.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from PIL import Image

from ..clip.model import ClipModel
from ..clip.prompts import check_prompt
from ..device import DeviceChoice
from ..errors import InputError, ModelUnavailable
from ..images import grid, load_image
from ..inputs import check_number, check_seed
from ..registry import ASSETS
from ..runs import ModelService
from .conditional import TextCondUNet, load_cond_model
from .modality_gap import gap_histogram, modality_gap  # noqa: F401  (the unCLIP tab's gap plot)
from .ddpm import Schedule
from .prior import DiffusionPrior, load_prior, slerp
from .samplers import initial_noise, until_stopped
from .upsampler import BUNDLED_UPSAMPLER, UPSAMPLING, Upsampler, cascade, optional_upsampler
from .text2img import guided_sampler

logger = logging.getLogger(__name__)

BUNDLED_PRIOR = ASSETS / "models" / "emoji-prior"
BUNDLED_DECODER = ASSETS / "models" / "emoji-decoder"
MAX_IMAGES = 8
MAX_POINTS = 9  # interpolation strip length
MAX_SCALE = 20.0
NEAREST = 6  # gallery images shown for the prior's embedding


@dataclass
class UnclipModels:
    prior: DiffusionPrior
    decoder: TextCondUNet  # ε_θ(x_t, t, e_img)
    clip: ClipModel  # the frozen CLIP both were trained on
    schedule: Schedule  # the decoder's
    device: DeviceChoice
    upsampler: Upsampler | None = None  # the cascade's second stage (32×32 -> 64×64), when installed

    @property
    def image_size(self) -> int:
        return self.decoder.image_size


def load_unclip(prior_path: str | Path = BUNDLED_PRIOR, decoder_path: str | Path = BUNDLED_DECODER, *,
                device: DeviceChoice, clip: ClipModel | None = None,
                upsampler_path: str | Path = BUNDLED_UPSAMPLER) -> UnclipModels:
    """Load the prior and the image-conditioned decoder, their CLIP (reusing `clip` when it is that one) and
    the upsampler when there is one that takes the decoder's size."""
    prior_path, decoder_path = Path(prior_path), Path(decoder_path)
    if not (prior_path / "prior_config.json").exists():
        raise ModelUnavailable(f"No unCLIP prior in {prior_path}.")
    if not (decoder_path / "cond_config.json").exists():
        raise ModelUnavailable(f"No unCLIP decoder in {decoder_path}.")
    decoder = load_cond_model(decoder_path, device=device.device)
    if decoder.cfg.condition != "image":
        raise ModelUnavailable(f"{decoder_path} is conditioned on {decoder.cfg.condition}, not on image embeddings.")
    prior = load_prior(prior_path, device=device.device)
    if prior.cfg.clip_spec != decoder.cfg.clip_spec or prior.cfg.embed_dim != decoder.cfg.embed_dim:
        raise ModelUnavailable("The unCLIP prior and decoder were trained on different CLIPs.")
    if clip is None or clip.spec.spec != decoder.cfg.clip_spec:
        clip = ClipModel.load(decoder.cfg.clip_spec, device)
    up = optional_upsampler(upsampler_path, decoder.image_size, device.device)
    return UnclipModels(prior, decoder, clip, Schedule.make(decoder.cfg.schedule, decoder.cfg.T), device, up)


@dataclass
class UnclipUpdate:
    """A run as it stands. Embeddings are (D,) or (N, D) unit tensors on the CPU."""

    stage: str  # "embeddings" (before decoding), "decoding", UPSAMPLING, "done"
    elapsed_s: float
    text: torch.Tensor | None = None  # the prompt's text embedding
    source: torch.Tensor | None = None  # the source image's embedding (variations, interpolation)
    condition: torch.Tensor | None = None  # (N, D): what each image is decoded from
    cos_to_text: list[float] = field(default_factory=list)  # cos(e_text, condition_i): the prior's output
    nearest: list = field(default_factory=list)  # real gallery images nearest to condition 0
    t: int = 0
    index: int = 0
    total: int = 0
    x_t: Image.Image | None = None
    x0_hat: Image.Image | None = None
    final: bool = False
    stopped: bool = False
    images: list[Image.Image] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    cos_to_source: list[float] = field(default_factory=list)  # mini-CLIP cos(decoded image, its condition)
    captions: list[str] = field(default_factory=list)  # when set, what each image's caption says instead
    upsampled: bool = False  # the images went through the cascade's upsampler (t, index, total are its steps)


def _settings(models: UnclipModels, seed, scale, steps) -> tuple[int, float, int]:
    return (check_seed(seed), check_number(scale, "The decoder's guidance scale", 0, MAX_SCALE),
            check_number(steps, "DDIM steps", 1, models.schedule.T, integer=True))


def image_embedding(models: UnclipModels, image) -> torch.Tensor:
    """A picture (path, bytes or PIL) -> its unit CLIP image embedding (D,); ImageError if it is no image."""
    return models.clip.encode_images([load_image(image)])[0]


def prior_embeddings(models: UnclipModels, text: torch.Tensor, n: int, seed: int, *, guidance: float = 1.0,
                     candidates: int = 2, steps: int = 50) -> torch.Tensor:
    """n image embeddings (n, D) the prior draws for one text embedding (D,), seeded."""
    g = torch.Generator(device=models.device.device).manual_seed(seed)
    cond = text.to(models.device.device).expand(n, -1)
    return models.prior.sample(cond, g, steps=steps, guidance=guidance, candidates=candidates).float().cpu()


def decode(models: UnclipModels, cond: torch.Tensor, x_T: torch.Tensor, seed: int, *, scale: float, steps: int,
           stop: threading.Event | None = None, t0: float | None = None, upsample: bool = True,
           **shown) -> Iterator[UnclipUpdate]:
    """Decode image embeddings `cond` (B, D) from x_T (B, 3, H, W) with CFG scale w, streaming; then, with
    `upsample` and an upsampler installed, the cascade's second stage (stage ``UPSAMPLING``).

    The last update (``final``) holds the images and their mini-CLIP cosine to the embedding each was
    decoded from; `shown` (text, source, nearest …) is carried on every update for the UI."""
    dev = models.device.device
    t0 = time.time() if t0 is None else t0
    g = torch.Generator(device=dev).manual_seed(seed + 1)
    run = guided_sampler(models.decoder, models.schedule, x_T.to(dev), g, method="cfg", scale=scale,
                         cond=cond.to(dev), sampler="ddim", steps=steps)
    per_row = len(x_T) if len(x_T) <= 5 else -(-len(x_T) // 2)
    last = None
    for st in until_stopped(run, stop):
        last = st
        yield UnclipUpdate("decoding", time.time() - t0, condition=cond, t=st.t, index=st.index, total=st.total,
                           x_t=grid(st.x_prev, per_row=per_row), x0_hat=grid(st.x0_hat, per_row=per_row), **shown)
    if last is None:
        return
    upsampled = upsample and models.upsampler is not None and last.index == last.total - 1
    if upsampled:
        base = up = last
        for up in until_stopped(cascade(models.upsampler, base.x_prev, seed), stop):
            yield UnclipUpdate(UPSAMPLING, time.time() - t0, condition=cond, t=up.t, index=up.index, total=up.total,
                               x_t=grid(up.x_prev, per_row=per_row), x0_hat=grid(up.x0_hat, per_row=per_row), **shown)
        upsampled = up is not base and up.index == up.total - 1
        last = up if upsampled else base  # a stopped upsampler leaves the decoder's pictures
    images = [grid(x[None], size=128) for x in last.x_prev]
    cos = (models.clip.encode_images(images) * cond.cpu()).sum(-1).tolist()
    yield UnclipUpdate("done", time.time() - t0, condition=cond, t=last.t, index=last.index, total=last.total,
                       x_t=grid(last.x_prev, per_row=per_row), x0_hat=grid(last.x0_hat, per_row=per_row), final=True,
                       stopped=last.index < last.total - 1 or (stop is not None and stop.is_set()),
                       images=images, cos_to_source=[round(c, 3) for c in cos], upsampled=upsampled, **shown)


def _noise(models: UnclipModels, n: int, seed: int, shared: bool = False) -> torch.Tensor:
    size = models.image_size
    g = torch.Generator().manual_seed(seed)
    if shared:  # one x_T for every image: only the embedding differs
        return initial_noise((1, 3, size, size), g, remove_colour_mean=True).expand(n, -1, -1, -1).contiguous()
    return initial_noise((n, 3, size, size), g, remove_colour_mean=True)  # the decoder is an emoji model too


def run_unclip(models: UnclipModels, prompt: str, *, n: int = 4, seed: int = 0, scale: float = 3.0,
               steps: int = 50, prior_guidance: float = 1.0, candidates: int = 2, use_prior: bool = True,
               nearest: Callable[[torch.Tensor, int], list] | None = None, upsample: bool = True,
               stop: threading.Event | None = None) -> Iterator[UnclipUpdate]:
    """Text → prior → decoder. With ``use_prior=False`` the decoder is fed the text embedding itself
    (the "why a prior" comparison); `nearest(embedding, k)` finds real images near the prior's output."""
    seed, scale, steps = _settings(models, seed, scale, steps)
    n = check_number(n, "The number of images", 1, MAX_IMAGES, integer=True)
    prior_guidance = check_number(prior_guidance, "The prior's guidance scale", 0, MAX_SCALE)
    candidates = check_number(candidates, "Prior candidates", 1, 4, integer=True)
    prompt = check_prompt(models.clip, prompt)
    t0 = time.time()
    text = models.clip.encode_texts([prompt])[0]
    if use_prior:
        cond = prior_embeddings(models, text, n, seed, guidance=prior_guidance, candidates=candidates)
    else:
        cond = text.expand(n, -1).clone()
    shown = dict(text=text, cos_to_text=[round(float(c @ text), 3) for c in cond])
    shown["nearest"] = nearest(cond[0], NEAREST) if nearest is not None else []
    yield UnclipUpdate("embeddings", time.time() - t0, condition=cond, **shown)
    yield from decode(models, cond, _noise(models, n, seed), seed, scale=scale, steps=steps, stop=stop, t0=t0,
                      upsample=upsample, **shown)


def run_variations(models: UnclipModels, image, *, n: int = 4, seed: int = 0, scale: float = 3.0, steps: int = 50,
                   upsample: bool = True, stop: threading.Event | None = None) -> Iterator[UnclipUpdate]:
    """Encode a picture and decode n new images of its embedding, each from its own noise."""
    seed, scale, steps = _settings(models, seed, scale, steps)
    n = check_number(n, "The number of variations", 1, MAX_IMAGES, integer=True)
    t0 = time.time()
    source = image_embedding(models, image)
    cond = source.expand(n, -1).clone()
    yield UnclipUpdate("embeddings", time.time() - t0, source=source, condition=cond)
    yield from decode(models, cond, _noise(models, n, seed), seed, scale=scale, steps=steps, stop=stop, t0=t0,
                      upsample=upsample, source=source)


def run_interpolation(models: UnclipModels, image_a, image_b=None, prompt_b: str | None = None, *, points: int = 7,
                      seed: int = 0, scale: float = 3.0, steps: int = 50, upsample: bool = True,
                      stop: threading.Event | None = None) -> Iterator[UnclipUpdate]:
    """Slerp from image A's embedding to image B's (or, without B, to the prior's image embedding of
    `prompt_b`) and decode each point from the same x_T, so only the embedding changes along the strip."""
    seed, scale, steps = _settings(models, seed, scale, steps)
    points = check_number(points, "The number of points", 2, MAX_POINTS, integer=True)
    t0 = time.time()
    a = image_embedding(models, image_a)
    if image_b is not None and prompt_b is not None and str(prompt_b).strip():
        raise InputError("Give picture B or a prompt to travel towards, not both: clear one of them.")
    if image_b is not None:
        b = image_embedding(models, image_b)
    elif prompt_b is not None and str(prompt_b).strip():
        text = models.clip.encode_texts([check_prompt(models.clip, prompt_b, what="second prompt")])[0]
        b = prior_embeddings(models, text, 1, seed)[0]
    else:
        raise InputError("Give a second picture, or a prompt to travel towards.")
    us = torch.linspace(0, 1, points)
    cond = torch.stack([slerp(a, b, float(u)) for u in us])  # (points, D)
    yield UnclipUpdate("embeddings", time.time() - t0, source=a, condition=cond)
    for u in decode(models, cond, _noise(models, points, seed, shared=True), seed, scale=scale, steps=steps,
                    stop=stop, t0=t0, upsample=upsample, source=a):
        if u.final:  # where each picture sits on the path: u, and its cosine to each end
            emb = models.clip.encode_images(u.images)
            u.labels = [f"u = {float(x):.2f}" for x in us]
            u.captions = [f"u {float(x):.2f} · A {float(e @ a.cpu()):.2f} · B {float(e @ b.cpu()):.2f}"
                          for x, e in zip(us, emb)]
        yield u


class UnclipService(ModelService[UnclipModels]):
    """The bundled unCLIP models (``ModelService``): the prior and the image-conditioned decoder."""

    def __init__(self, device: DeviceChoice, clip_for: Callable[[str], ClipModel | None],
                 prior_path: str | Path = BUNDLED_PRIOR, decoder_path: str | Path = BUNDLED_DECODER,
                 upsampler_path: str | Path = BUNDLED_UPSAMPLER):
        self.prior_path, self.decoder_path, self.upsampler_path = Path(prior_path), Path(decoder_path), Path(upsampler_path)
        self._gap: list[dict] | None = None
        super().__init__(device, clip_for)

    def required(self) -> list[Path]:
        return [self.prior_path / "prior_config.json", self.decoder_path / "cond_config.json"]

    def _load(self) -> UnclipModels:
        spec = json.loads((self.decoder_path / "cond_config.json").read_text()).get("clip_spec")
        models = load_unclip(self.prior_path, self.decoder_path, device=self.device, clip=self._clip_for(spec),
                             upsampler_path=self.upsampler_path)
        logger.info("unCLIP prior %s and decoder %s loaded", self.prior_path.name, self.decoder_path.name)
        return models

    def gap_rows(self, pairs) -> list[dict]:
        """``gap_histogram`` of ``modality_gap`` on (image, caption) pairs, computed once."""
        if self._gap is None:
            self._gap = gap_histogram(modality_gap(self.models().clip, [p.image for p in pairs],
                                                   [p.caption for p in pairs]))
        return self._gap
