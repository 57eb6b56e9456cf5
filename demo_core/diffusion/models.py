"""Unconditional DDPM image models, loaded by spec through diffusers' ``from_pretrained``.

A spec is a bundled name (``emoji-ddpm`` = assets/models/emoji-ddpm), a local folder in diffusers'
pipeline format, or a hub id such as ``google/ddpm-cifar10-32``. The bundled model goes through
the same ``DDPMPipeline.from_pretrained`` call as the hub one. Only the UNet and the training
schedule's length are used: the sampling math is ours (``diffusion``, ``samplers``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..device import DeviceChoice, pick_device
from ..errors import ModelUnavailable
from ..registry import ASSETS, cached_file, hub_offline, hub_reachable

logger = logging.getLogger(__name__)

BUNDLED_DDPMS = {"emoji-ddpm": ASSETS / "models" / "emoji-ddpm"}
HUB_DDPMS = ("google/ddpm-cifar10-32",)


@dataclass
class DdpmModel:
    unet: torch.nn.Module
    T: int
    schedule: str  # "linear" or "cosine", from the scheduler config it was trained with
    sample_size: int
    channels: int
    spec: str
    device: DeviceChoice

    @property
    def bundled(self) -> bool:
        """One of the project's emoji models (x_T's colour mean is removed for them: ``initial_noise``)."""
        return self.spec in BUNDLED_DDPMS

    @property
    def display(self) -> str:
        return f"{self.spec} (bundled)" if self.bundled else self.spec

    def eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """ε̂(x_t, t) with the slides' t (1..T); diffusers' UNets count k = t − 1."""
        k = torch.full((x.shape[0],), t - 1, device=self.device.device, dtype=torch.long)
        out = self.unet(x.to(self.device.device, self.device.dtype), k).sample
        return out.to(x.dtype).to(x.device)


def available_ddpms() -> list[str]:
    """Bundled models that are present, then the hub ones that can load: in the local cache, or the hub
    answers (a model that cannot load is not offered)."""
    bundled = [n for n, p in BUNDLED_DDPMS.items() if (p / "model_index.json").exists()]
    cached = [n for n in HUB_DDPMS if cached_file(n, ["model_index.json"]) is not None]
    online = not hub_offline() and len(cached) < len(HUB_DDPMS) and hub_reachable()
    return bundled + [n for n in HUB_DDPMS if n in cached or online]


def load_ddpm(spec: str, device: str | DeviceChoice | None = None) -> DdpmModel:
    """Load a DDPM by spec. Raises ModelUnavailable with a plain sentence when it cannot be had.

    Where the files come from is decided once, here: a local folder; the local Hugging Face cache
    (``local_files_only``: no request, and the process-wide offline switch is left alone); or the hub.
    """
    from diffusers import DDPMPipeline

    dev = device if isinstance(device, DeviceChoice) else pick_device(device)
    path = Path(BUNDLED_DDPMS.get(spec, spec))
    local = path.is_dir()
    cached = not local and cached_file(spec, ["model_index.json"]) is not None
    if not local and not cached and hub_offline():
        raise ModelUnavailable(f"{spec} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set.")
    t0 = time.perf_counter()
    try:
        pipe = DDPMPipeline.from_pretrained(str(path) if local else spec, local_files_only=local or cached,
                                            dtype=dev.dtype)
    except Exception as e:  # network errors, missing files, bad folders: one sentence for the user
        logger.exception("could not load the DDPM %s", spec)
        raise ModelUnavailable(f"Could not load the DDPM '{spec}': {type(e).__name__}: "
                               f"{str(e).splitlines()[0][:200]}") from None
    unet = pipe.unet.to(dev.device).eval()
    cfg = pipe.scheduler.config
    schedule = "cosine" if cfg.get("beta_schedule") == "squaredcos_cap_v2" else "linear"
    size = unet.config.sample_size
    size = size if isinstance(size, int) else size[0]
    logger.info("loaded the DDPM %s in %.1f s", spec, time.perf_counter() - t0)
    return DdpmModel(unet, int(cfg.num_train_timesteps), schedule, int(size), int(unet.config.in_channels), spec, dev)


def hub_note(model: DdpmModel) -> str:
    """A line for the UI: hub DDPMs are slow on a CPU."""
    if model.spec not in BUNDLED_DDPMS and model.device.device.type == "cpu":
        return "This model runs 1000 UNet steps per image; on a CPU that takes minutes: a GPU is recommended."
    return ""

