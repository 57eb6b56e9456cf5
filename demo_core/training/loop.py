"""Pieces shared by the training scripts: the learning-rate schedule, atomic checkpoints and the CLI."""
from __future__ import annotations

import argparse
import json
import math
import sys
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


def training_cli(argv, *, prog: str, doc: str, run_default: str, export_help: str, config_cls, train,
                 export_checkpoint) -> int:
    """The command line both training scripts share: train (resuming from --run) or --export-only.

    ``train(data, run, cfg, export=, threads=)`` and ``export_checkpoint(run, export)`` are the
    script's own; ``config_cls(steps=, batch_size=, seed=)`` builds its config."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    ap.add_argument("--data", default="data/emoji", help="dataset folder from demo_core.training.emoji_data")
    ap.add_argument("--run", default=run_default, help="checkpoint folder; a re-run resumes from it")
    ap.add_argument("--export", default=None, help=export_help)
    ap.add_argument("--steps", type=int, default=config_cls.steps)
    ap.add_argument("--batch-size", type=int, default=config_cls.batch_size)
    ap.add_argument("--seed", type=int, default=config_cls.seed)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--export-only", action="store_true",
                    help="do not train: export the run's latest checkpoint to --export")
    args = ap.parse_args(argv)
    if args.export_only:
        if not args.export:
            ap.error("--export-only needs --export DIR")
        print(json.dumps(export_checkpoint(args.run, args.export)))
        return 0
    cfg = config_cls(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    try:
        summary = train(args.data, args.run, cfg, export=args.export, threads=args.threads)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0
