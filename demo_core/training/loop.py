"""What every training script here shares: the loop with its checkpoints, resume and log, the
learning-rate schedule, the EMA of the weights, and the command line.

A trainer builds its model, optimiser and data, then hands ``train_loop`` one function that does
one optimisation step. The loop sets the learning rate, logs, checkpoints atomically and resumes:
a run killed at any moment and re-run continues from its last checkpoint, and because each step's
batch is drawn from a generator seeded by the step, the resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from ..errors import UserError

logger = logging.getLogger(__name__)


def seed_run(seed: int, threads: int | None = None) -> None:
    """How every run starts: torch's CPU threads (when given), then torch's RNG seeded, so that the
    model built next starts from the same weights on every machine."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)


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


def load_checkpoint(run_dir: str | Path) -> dict:
    """The run's latest checkpoint (or, given a file, that checkpoint: a snapshot ``step{N}.pt``): state dicts by
    name, plus step, config and log."""
    path = Path(run_dir)
    return torch.load(path if path.is_file() else path / "checkpoint.pt", map_location="cpu", weights_only=False)


def train_loop(run_dir: str | Path, cfg, opt: torch.optim.Optimizer, step_fn: Callable[[int], dict], *,
               state: dict, log_every: int, stop_at: int | None = None) -> tuple[int, list[dict]]:
    """Run steps until ``cfg.steps`` (or `stop_at`, as an interruption would), resuming first.

    Args:
        run_dir: checkpoint folder; ``checkpoint.pt`` in it is resumed from and rewritten every
            ``cfg.checkpoint_every`` steps and at the end; ``train_log.json`` is written at the end. With
            ``cfg.snapshot_every`` (optional), a copy ``step{N}.pt`` is also kept every that many steps.
        cfg: a dataclass with steps, lr, warmup, checkpoint_every (and optionally snapshot_every).
        opt: its learning rate is set from ``lr_at`` before every step.
        step_fn: does optimisation step number `step` (0-based) and returns its figures for the log.
        state: what the checkpoint holds, by name (modules and the optimiser); loaded on resume.
        log_every: log (print one JSON line) every this many steps, and at the last.
    Returns:
        (steps done, log entries).
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    ckpt = run / "checkpoint.pt"
    step, log = 0, []
    if ckpt.exists():
        saved = load_checkpoint(run)
        for name, obj in state.items():
            obj.load_state_dict(saved[name])
        step, log = saved["step"], saved["log"]
        logger.info("resumed from %s at step %d", ckpt, step)
    t0, t_prev = time.time(), (log[-1]["elapsed_s"] if log else 0.0)
    while step < (stop_at or cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        figures = step_fn(step)
        step += 1
        if step % log_every == 0 or step == cfg.steps:
            entry = {"step": step, **figures, "elapsed_s": round(t_prev + time.time() - t0, 1)}
            log.append(entry)
            print(json.dumps(entry), flush=True)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, step, cfg, log, **state)
        if getattr(cfg, "snapshot_every", 0) and step % cfg.snapshot_every == 0:
            save_checkpoint(run / f"step{step}.pt", step, cfg, log, **state)  # kept: scored later, as a run's own
    (run / "train_log.json").write_text(json.dumps({"config": asdict(cfg), "log": log}, indent=0))
    return step, log


def summary(step: int, log: list[dict], loss_key: str = "final_loss") -> dict:
    """Steps, training time and the last logged loss: what an export records about its run."""
    return {"steps": step, "train_time_s": log[-1]["elapsed_s"] if log else 0.0,
            loss_key: log[-1]["loss"] if log else None}


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema ← decay·ema + (1 − decay)·model, parameter by parameter."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - decay)


class DiffusionStep:
    """One optimisation step as both DDPM trainers take it: backward, gradient norm clipped at 1, step,
    EMA update, and the loss smoothed over about 50 steps for the log."""

    def __init__(self, model: torch.nn.Module, opt: torch.optim.Optimizer, ema: torch.nn.Module, ema_decay: float):
        self.model, self.opt, self.ema, self.ema_decay = model, opt, ema, ema_decay
        self.running: float | None = None

    def __call__(self, loss: torch.Tensor) -> dict:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        ema_update(self.ema, self.model, self.ema_decay)
        value = loss.item()
        self.running = value if self.running is None else 0.98 * self.running + 0.02 * value
        return {"loss": round(self.running, 5)}


def train_with_ema(run_dir: str | Path, cfg, model: torch.nn.Module, loss_at: Callable[[int], torch.Tensor], *,
                   log_every: int = 25, weight_decay: float = 0.0, stop_at: int | None = None,
                   loss_key: str = "final_loss_ema50") -> tuple[torch.nn.Module, dict]:
    """What the diffusion trainers share: AdamW, ``DiffusionStep`` (clipped step and EMA) and ``train_loop``
    (resume, checkpoints, log) over ``loss_at(step)``, the loss of batch `step`. Returns the EMA model and
    the run's ``summary``."""
    import copy

    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=weight_decay)
    optimise = DiffusionStep(model, opt, ema, cfg.ema_decay)
    model.train()
    step, log = train_loop(run_dir, cfg, opt, lambda i: optimise(loss_at(i)),
                           state={"model": model, "ema": ema, "opt": opt}, log_every=log_every, stop_at=stop_at)
    return ema, summary(step, log, loss_key)


def checkpoint_ema(run_dir: str | Path, config_from: Callable[[dict], object], build: Callable[[object], torch.nn.Module],
                   loss_key: str = "final_loss_ema50") -> tuple[object, torch.nn.Module, dict]:
    """A diffusion run's latest checkpoint as (config, EMA model, summary with "of_steps"): what an export of an
    unfinished run needs. `config_from` turns the saved config dict back into the trainer's config."""
    state = load_checkpoint(run_dir)
    cfg = config_from(dict(state["config"]))
    ema = build(cfg)
    ema.load_state_dict(state["ema"])
    return cfg, ema, {**summary(state["step"], state["log"], loss_key), "of_steps": cfg.steps}


def min_snr_weights(alpha_bars: torch.Tensor, gamma: float) -> torch.Tensor:
    """The min-SNR-γ loss weight of each t (Hang et al. 2023): min(SNR(t), γ) / SNR(t), SNR = ᾱ/(1 − ᾱ).
    It stops the many nearly noise-free timesteps from dominating a short run."""
    snr = alpha_bars / (1 - alpha_bars).clamp(min=1e-12)
    return (snr.clamp(max=gamma) / snr).float()


def debias_ema(ema_state: dict, init_state: dict, decay: float, steps: int) -> dict:
    """Remove the initial weights' share from an EMA, as Adam bias-corrects its moments.

    After n updates  ema_n = d^n·θ_0 + (1−d)·Σ_k d^(n−k)·θ_k,  so the random θ_0 still weighs d^n
    (0.999^3500 ≈ 3%, enough to put speckle in samples). Return (ema_n − d^n·θ_0) / (1 − d^n).
    """
    w = decay ** steps
    return {k: ((v.double() - w * init_state[k].double()) / (1 - w)).to(v.dtype) if v.is_floating_point() else v
            for k, v in ema_state.items()}


def training_cli(argv, *, prog: str, doc: str, run_default: str, export_help: str, config_cls, train,
                 export_checkpoint, options: dict[str, dict] | None = None,
                 export_options: dict[str, dict] | None = None) -> int:
    """The command line the training scripts share: train (resuming from --run) or --export-only.

    ``train(data, run, cfg, export=, threads=)`` and ``export_checkpoint(run, export)`` are the
    script's own; ``config_cls(steps=, batch_size=, seed=, **options)`` builds its config, where
    `options` names further config fields to expose as flags (field -> argparse keywords);
    `export_options` names flags passed to ``export_checkpoint`` as keywords (with --export-only)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("demo_core").setLevel(logging.INFO)  # ours: resumed from, exported to
    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    ap.add_argument("--data", default="data/emoji", help="dataset folder from demo_core.training.emoji_data")
    ap.add_argument("--run", default=run_default, help="checkpoint folder; a re-run resumes from it (with "
                    "--export-only, a checkpoint file such as a snapshot step{N}.pt also works)")
    ap.add_argument("--export", default=None, help=export_help)
    ap.add_argument("--steps", type=int, default=config_cls.steps)
    ap.add_argument("--batch-size", type=int, default=config_cls.batch_size)
    ap.add_argument("--seed", type=int, default=config_cls.seed)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    for field, kw in (options or {}).items():
        ap.add_argument("--" + field.replace("_", "-"), dest=field, default=getattr(config_cls, field), **kw)
    for name, kw in (export_options or {}).items():
        ap.add_argument("--export-" + name.replace("_", "-"), dest="export_" + name, **kw)
    ap.add_argument("--export-only", action="store_true",
                    help="do not train: export the run's latest checkpoint to --export")
    args = ap.parse_args(argv)
    if args.export_only:
        if not args.export:
            ap.error("--export-only needs --export DIR")
        extra = {name: getattr(args, "export_" + name) for name in (export_options or {})}
        try:
            print(json.dumps(export_checkpoint(args.run, args.export, **extra)))
        except FileNotFoundError as e:
            print(f"error: no checkpoint to export: {e}", file=sys.stderr)
            return 2
        logger.info("exported %s to %s", args.run, args.export)
        return 0
    cfg = config_cls(steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                     **{field: getattr(args, field) for field in (options or {})})
    try:
        result = train(args.data, args.run, cfg, export=args.export, threads=args.threads)
    except (FileNotFoundError, UserError) as e:  # no dataset; a device this machine lacks
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    if args.export:
        logger.info("exported to %s", args.export)
    return 0
