"""The mini-CLIP architecture: open_clip's ``CLIP`` class with a small CLIP-ResNet image tower and
a small text transformer over CLIP's BPE tokenizer.

The bundled mini-clip (trained by ``demo_core.training.train_clip``) and the tiny CLIP that the How
CLIP learns tab trains live (``clip.matrix.train_live``) are both built here, so the app never
imports a training script.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class MiniClipConfig:
    """open_clip model config of the bundled mini-CLIP (written to open_clip_config.json)."""

    embed_dim: int = 128
    image_size: int = 64
    vision_layers: tuple[int, ...] = (1, 2, 2, 1)  # CLIP-ResNet blocks per stage
    vision_width: int = 16
    context_length: int = 32  # emoji captions are short
    text_width: int = 64
    text_heads: int = 4
    text_layers: int = 4

    def open_clip_cfg(self) -> dict:
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {
                "image_size": self.image_size,
                "layers": list(self.vision_layers),
                "width": self.vision_width,
                "head_width": 32,
                "patch_size": None,
            },
            "text_cfg": {
                "context_length": self.context_length,
                "vocab_size": 49408,
                "width": self.text_width,
                "heads": self.text_heads,
                "layers": self.text_layers,
            },
        }


def build_model(cfg: MiniClipConfig):
    """A randomly initialised open_clip ``CLIP`` of this shape (draws from torch's global RNG)."""
    from open_clip.model import CLIP

    return CLIP(**cfg.open_clip_cfg(), output_dict=True)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> the input CLIP was trained on (OpenAI's mean and std)."""
    mean = torch.tensor(OPENAI_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std
