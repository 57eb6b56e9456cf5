"""The one place that picks the compute device and dtype: cuda -> mps -> cpu.

Half precision on CUDA (bf16 where supported, else fp16); fp32 on MPS and CPU, where half
precision is slow or unsupported for many ops. ``DEMO_DEVICE`` forces a choice (e.g. ``cpu``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from .errors import DeviceUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    dtype: torch.dtype
    reason: str

    def describe(self) -> str:
        name = self.device.type
        if name == "cuda":
            name = f"cuda ({torch.cuda.get_device_name(self.device)})"
        return f"{name}, {str(self.dtype).removeprefix('torch.')}"


def pick_device(requested: str | None = None) -> DeviceChoice:
    """Choose the device. `requested` (or $DEMO_DEVICE) may be 'cuda' (or 'gpu'), 'cuda:1', 'mps' or 'cpu';
    DeviceUnavailable for a device this machine lacks or a name that is none."""
    requested = (requested or os.environ.get("DEMO_DEVICE") or "").strip() or None
    if requested:
        try:  # "gpu" is what people type for an NVIDIA GPU; torch calls it cuda
            dev = torch.device("cuda" + requested[3:] if requested.lower().startswith("gpu") else requested)
        except (RuntimeError, ValueError):
            raise DeviceUnavailable(f"Unknown device '{requested}': use cuda (or gpu), mps or cpu.") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise DeviceUnavailable(f"Device '{requested}' was asked for, but no CUDA GPU is available here; "
                                    "use cpu, or leave the device unset (--device, DEMO_DEVICE) for the best one here.")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise DeviceUnavailable(f"Device '{requested}' was asked for, but MPS is not available here; "
                                    "use cpu, or leave the device unset (--device, DEMO_DEVICE) for the best one here.")
        if dev.type not in ("cuda", "mps", "cpu"):
            raise DeviceUnavailable(f"Unknown device '{requested}': use cuda (or gpu), mps or cpu.")
        reason = f"asked for {requested}"
    elif torch.cuda.is_available():
        dev, reason = torch.device("cuda"), "CUDA is available"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        dev, reason = torch.device("mps"), "Apple MPS is available"
    else:
        dev, reason = torch.device("cpu"), "no GPU found"
    if dev.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.float32
    logger.info("device %s, %s (%s)", dev, str(dtype).removeprefix("torch."), reason)
    return DeviceChoice(dev, dtype, reason)
