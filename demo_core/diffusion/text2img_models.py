"""The text-to-image models as the app loads them: the conditional DDPM, the CLIP whose text conditions it,
the noised CLIP trained for that CLIP (CLIP guidance) and the upsampler; one ``Text2ImgService`` per
installed model (the Text to image tab offers each)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..clip.model import ClipModel
from ..clip.noised import NoisedImageTower, load_noised_clip
from ..device import DeviceChoice
from ..errors import ModelUnavailable
from ..registry import ASSETS
from ..runs import ModelService
from .conditional import TextCondUNet, load_cond_model
from .ddpm import Schedule
from .upsampler import BUNDLED_UPSAMPLER, Upsampler, optional_upsampler

logger = logging.getLogger(__name__)

BUNDLED_TEXT2IMG = ASSETS / "models" / "emoji-text2img"
BUNDLED_TEXT2IMG_TOKENS = ASSETS / "models" / "emoji-text2img-tokens"  # GLIDE's second way: + cross-attention
BUNDLED_TEXT2IMGS = (BUNDLED_TEXT2IMG_TOKENS, BUNDLED_TEXT2IMG)  # the Text to image tab's choices, default first
BUNDLED_NOISED_CLIP = ASSETS / "models" / "noised-mini-clip"  # trained on mini-clip's image tower
# Every noised CLIP the app looks for; a model takes the one trained for its own CLIP (noised_clip_for).
BUNDLED_NOISED_CLIPS = (BUNDLED_NOISED_CLIP,)
NoisedPaths = str | Path | Sequence[str | Path]


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


def noised_clips(noised_path: NoisedPaths) -> list[tuple[Path, str | None]]:
    """The installed noised CLIPs among the folders `noised_path`, each with the CLIP it was trained for."""
    out = []
    for folder in _noised_paths(noised_path):
        try:
            out.append((folder, json.loads((folder / "noised_clip.json").read_text()).get("base_clip")))
        except (OSError, ValueError):
            continue
    return out


def noised_clip_for(clip_spec: str, noised_path: NoisedPaths) -> Path | None:
    """The folder of the noised CLIP trained for `clip_spec` among `noised_path` (a noised CLIP of another CLIP
    would score in another embedding space); None if there is none."""
    return next((folder for folder, base in noised_clips(noised_path) if base in (None, clip_spec)), None)


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
    noised = None
    folder = noised_clip_for(model.cfg.clip_spec, noised_path)
    if folder is not None:
        noised = load_noised_clip(folder, clip.model.visual, device=device.device)
    elif installed := noised_clips(noised_path):  # their scores would live in another embedding space
        logger.warning("CLIP guidance is off for %s: no noised CLIP for %s, the CLIP it is conditioned on; "
                       "installed: %s", path.name, model.cfg.clip_spec,
                       ", ".join(f"{f} (trained for {b})" for f, b in installed))
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


class Text2ImgService(ModelService[Text2ImgModels]):
    """The bundled text-to-image models (``ModelService``): the conditional DDPM and the noised CLIP."""

    def __init__(self, device: DeviceChoice, clip_for: Callable[[str], ClipModel | None],
                 path: str | Path = BUNDLED_TEXT2IMG, noised_path: NoisedPaths = BUNDLED_NOISED_CLIPS,
                 upsampler_path: str | Path = BUNDLED_UPSAMPLER):
        self.path, self.noised_path, self.upsampler_path = Path(path), _noised_paths(noised_path), Path(upsampler_path)
        super().__init__(device, clip_for)

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

    def guides_with_clip(self) -> bool:
        """Whether a noised CLIP for this model's CLIP is installed (so CLIP guidance is offered), from configs."""
        return noised_clip_for(self._config().get("clip_spec"), self.noised_path) is not None

    def describe(self) -> str:
        """The model as the tab's model choice names it: what it is conditioned on, and on which CLIP."""
        how = "pooled embedding + the prompt's tokens (cross-attention)" if self.reads_tokens() else "pooled embedding"
        return f"{self.name}: {how}, {self._config().get('clip_spec', '?')}"

    def _load(self) -> Text2ImgModels:
        models = load_text2img(self.path, self.noised_path, device=self.device,
                               clip=self._clip_for(self._config().get("clip_spec")),
                               upsampler_path=self.upsampler_path)
        logger.info("text-to-image model %s loaded (CLIP guidance %s)", self.path.name,
                    "on" if models.noised is not None else "off: no noised CLIP")
        return models
