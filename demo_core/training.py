"""Pieces shared by the training scripts: the learning-rate schedule and atomic checkpoints."""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import torch


def lr_at(step: int, cfg) -> float:
    """Linear warm-up over ``cfg.warmup`` steps, then cosine decay to 0 at ``cfg.steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * progress))


def save_checkpoint(path: Path, step: int, cfg, log: list, **state) -> None:
    """Write {state dicts..., step, config, log} atomically: an interrupted save never leaves a
    broken checkpoint, so a killed run always resumes from the last complete one."""
    tmp = path.with_suffix(".tmp")
    payload = {k: v.state_dict() for k, v in state.items()}
    payload.update(step=step, config=asdict(cfg), log=log)
    torch.save(payload, tmp)
    tmp.replace(path)
