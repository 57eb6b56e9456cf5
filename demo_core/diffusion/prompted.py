"""The text-conditional emoji model in the place of a DDPM, for the reverse-process view: noise denoised
step by step into a picture of the prompt.

``run_reverse`` needs only ε̂(x_t, t), the schedule and the image shape. Here ε̂ is classifier-free guided
(GLIDE; Ho & Salimans, 2022) toward the prompt's mini-CLIP text embedding c (and its tokens, for a model with cross-attention):

    ε̂(x_t, t) = ε_θ(x_t, t, ∅) + w · (ε_θ(x_t, t, c) − ε_θ(x_t, t, ∅))

so every view of the tab (x_t, ε̂, x̂₀, the timeline, the GIF, DDPM against DDIM, Algorithm 2 as written)
works on it unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..clip.prompts import check_prompt
from ..inputs import check_number
from .guidance import cfg_eps
from .conditional import batch_cond, cat_cond
from .text2img_view import MAX_SCALE, Text2ImgModels, prompt_condition

TEXT_DDPM = "text-conditional emoji DDPM (your prompt)"  # its name in the Model list: Text to image's default model
OLD_TEXT_DDPM = "emoji-text2img (your prompt)"  # the same, as the `sample` endpoint took it before (still accepted)


@dataclass
class PromptedDdpm:
    models: Text2ImgModels
    cond: object  # the prompt's condition: its (D,) unit text embedding, or a ``TokenCond`` (``prompt_condition``)
    prompt: str
    scale: float  # w: 0 = unconditional, 1 = conditional, > 1 guided
    spec: str = TEXT_DDPM
    channels: int = 3
    bundled: bool = True  # x_T with its colour mean removed, as Text to image draws it

    @property
    def T(self) -> int:
        return len(self.models.schedule.betas) - 1

    @property
    def schedule(self) -> str:
        return self.models.schedule.name

    @property
    def sample_size(self) -> int:
        return self.models.image_size

    @property
    def device(self):
        return self.models.device

    @property
    def display(self) -> str:
        return f"{self.models.name}, “{self.prompt}”, w = {self.scale:g}"

    def eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """The guided ε̂(x_t, t) with the slides' t (1..T); the model counts k = t − 1."""
        dev, dtype = self.models.device.device, self.models.device.dtype
        b = x.shape[0]
        model = self.models.model
        k = torch.full((2 * b,), t - 1, device=dev, dtype=torch.long)
        null = model.null(b, device=dev, dtype=dtype)
        c = batch_cond(self.cond, b, dev, dtype)
        xx = x.to(dev, dtype)
        with torch.inference_mode():
            eps_u, eps_c = model(torch.cat([xx, xx]), k, cat_cond(null, c)).chunk(2)  # one batched call
        return cfg_eps(eps_u, eps_c, self.scale).to(x.dtype).to(x.device)


def prompted_ddpm(models: Text2ImgModels, prompt: str, scale: float) -> PromptedDdpm:
    """The model guided toward `prompt` at scale `scale`; InputError for an empty or too long prompt, or a
    scale that is not a number from 0 to MAX_SCALE."""
    prompt = check_prompt(models.clip, prompt)
    scale = check_number(scale, "The guidance scale", 0, MAX_SCALE)
    cond, _ = prompt_condition(models.model, models.clip, prompt)
    return PromptedDdpm(models, cond, prompt, float(scale))
