"""Train the bundled emoji DDPM (Algorithm 1 of Ho et al. 2020) at 32x32 with a small diffusers UNet.

    python -m demo_core.training.train_ddpm --data data/emoji --run data/runs/emoji-ddpm \
        --export assets/models/emoji-ddpm                   # resumable: re-run to continue

Algorithm 1, as on the slides:
    repeat
        x_0 ~ q(x_0)                      (an emoji from the training split, on white, 32x32, in [-1, 1])
        t ~ Uniform({1, …, T})
        ε ~ N(0, I)
        gradient step on ‖ε − ε_θ(√ᾱ_t·x_0 + √(1−ᾱ_t)·ε, t)‖²
    until converged
The noisy input is ``diffusion.q_sample``, the same function the forward explorer shows. The
exported folder is a diffusers ``DDPMPipeline`` (unet/ + scheduler/), loaded with
``from_pretrained`` like a hub model; it holds the EMA of the weights (bias-corrected, see
``debias_ema``), which samples better than the last raw weights.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..diffusion.ddpm import Schedule, q_sample
from .emoji_data import EmojiData, augment_batch
from .loop import checkpoint_ema, debias_ema, seed_run, train_with_ema, training_cli


@dataclass
class DdpmConfig:
    """The model and its diffusion (written into the exported pipeline), then the optimisation."""

    T: int = 1000  # diffusion steps
    schedule: str = "linear"  # β schedule: "linear" or "cosine"
    image_size: int = 32
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # UNet widths, one per resolution
    steps: int = 3500
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 100


def build_unet(cfg: DdpmConfig):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=cfg.image_size, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=cfg.block_out_channels, norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    )


def make_batch(data: EmojiData, step: int, cfg: DdpmConfig, s: Schedule):
    """Batch `step`: x_0 in [-1, 1], t ~ U{1..T}, ε, and x_t = q_sample(x_0, t, ε). Seeded by step."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    idx = torch.randint(0, len(data), (cfg.batch_size,), generator=g)
    x0 = augment_batch(data.glyphs[idx], cfg.image_size, g, scale_range=(0.8, 1.0), max_angle=0.0,
                       background="white") * 2 - 1  # (B, 3, 32, 32)
    t = torch.randint(1, cfg.T + 1, (cfg.batch_size,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    return q_sample(s, x0, t, eps), t, eps


def initial_unet(cfg: DdpmConfig) -> torch.nn.Module:
    """The UNet exactly as training starts it: seeded, then built (nothing else draws first)."""
    torch.manual_seed(cfg.seed)
    return build_unet(cfg)


def export_pipeline(ema, cfg: DdpmConfig, out: Path, meta: dict) -> Path:
    """Save the bias-corrected EMA as a diffusers DDPMPipeline folder (fp16 weights), loadable with
    from_pretrained. ``meta["steps"]`` is how many EMA updates `ema` has had."""
    from diffusers import DDPMPipeline, DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=cfg.T,
                              beta_schedule="linear" if cfg.schedule == "linear" else "squaredcos_cap_v2")
    unet = initial_unet(cfg)
    unet.load_state_dict(debias_ema(ema.state_dict(), unet.state_dict(), cfg.ema_decay, meta["steps"]))
    unet = unet.to(torch.float16)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(out, safe_serialization=True)
    (Path(out) / "training_meta.json").write_text(json.dumps(meta, indent=1))
    return Path(out)


def train(data_dir: str, run_dir: str, cfg: DdpmConfig, export: str | None = None, threads: int | None = None,
          stop_at: int | None = None) -> dict:
    """Train (or resume) the run in `run_dir`; `stop_at` ends this call early, as an interruption would."""
    seed_run(cfg.seed, threads)
    data = EmojiData.load(data_dir, split="train")
    s = Schedule.make(cfg.schedule, cfg.T)
    model = build_unet(cfg)

    def loss_at(step: int) -> torch.Tensor:
        x_t, t, eps = make_batch(data, step, cfg, s)
        # diffusers' UNet counts timesteps k = t - 1 (0..T-1)
        return torch.nn.functional.mse_loss(model(x_t, t - 1).sample, eps)

    ema, result = train_with_ema(run_dir, cfg, model, loss_at, log_every=50, weight_decay=cfg.weight_decay,
                                 stop_at=stop_at, loss_key="final_loss_ema100")
    result["train_emoji"] = len(data)
    return _export(ema, cfg, export, result) if export else result


def export_checkpoint(run_dir: str, export: str) -> dict:
    """Export the run's latest checkpoint (e.g. of an unfinished run) as a DDPMPipeline folder."""
    config_from = lambda c: DdpmConfig(**{**c, "block_out_channels": tuple(c["block_out_channels"])})  # noqa: E731
    cfg, ema, result = checkpoint_ema(run_dir, config_from, build_unet, loss_key="final_loss_ema100")
    return _export(ema, cfg, export, result)


def _export(ema, cfg: DdpmConfig, out: str, result: dict) -> dict:
    meta = {"trained_by": "demo_core.training.train_ddpm", **result, "config": asdict(cfg)}
    export_pipeline(ema, cfg, Path(out), meta)
    return result


if __name__ == "__main__":
    sys.exit(training_cli(None, prog="python -m demo_core.training.train_ddpm", doc=__doc__, config_cls=DdpmConfig,
                          run_default="data/runs/emoji-ddpm", export_help="write the EMA model here as a diffusers "
                          "DDPMPipeline", train=train, export_checkpoint=export_checkpoint))
