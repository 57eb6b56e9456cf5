"""Train the cascade's upsampler: a 64×64 emoji DDPM conditioned on the same emoji at 32×32.

    python -m demo_core.training.train_upsampler --data data/emoji --run data/runs/emoji-upsampler \
        --export assets/models/emoji-upsampler               # resumable: re-run to continue

Algorithm 1 with a low-resolution condition and noise conditioning augmentation (``diffusion.upsampler``):
    repeat
        x_0 ~ q(x_0)  at 64×64;   x_low = area-downsample(x_0) to 32×32   (what the base model draws)
        s ~ Uniform({0, …, s_max}),  z_s = √ᾱ_s·x_low + √(1−ᾱ_s)·ε′        (the condition, noised)
        t ~ Uniform({1, …, T}),  ε ~ N(0, I)
        v = √ᾱ_t·ε − √(1−ᾱ_t)·x_0
        gradient step on  ‖v − v_θ(√ᾱ_t·x_0 + √(1−ᾱ_t)·ε, t, z_s, s)‖²
    until converged
(v-prediction: see ``diffusion.upsampler``; the ε-loss weight it implies, SNR + 1, already balances the
timesteps, so no min-SNR weight). The renders are the training split's emoji on
white at 0.8–1.0 of the frame, as the base models see them, from the 96-px glyphs (so 64 px holds real
detail; 128 px would not: the glyphs have 96). The network has no attention, so it trains on 32×32 crops
(a quarter of the cost) and samples whole 64×64 pictures, as Imagen's super-resolution models do.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..diffusion.ddpm import Schedule, q_sample
from ..diffusion.upsampler import Upsampler, UpsamplerConfig, build_upsampler, save_upsampler
from .emoji_data import EmojiData, augment_batch
from .loop import checkpoint_ema, debias_ema, seed_run, train_with_ema, training_cli


@dataclass
class UpsamplerTrainConfig:
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    ema_decay: float = 0.999
    T: int = 1000
    schedule: str = "linear"
    low_size: int = 32
    size: int = 64
    max_aug: int = 250
    block_out_channels: tuple[int, ...] = (32, 48, 64, 96)
    crop: int = 32  # train on crops this big of the 64×64 render (and the matching 16×16 of the 32×32); 0: whole
    seed: int = 0
    checkpoint_every: int = 50


def make_batch(data: EmojiData, step: int, cfg: UpsamplerTrainConfig, s: Schedule):
    """Batch `step` (seeded by step): x_t, t, ε, the augmented low-resolution image z, its level, and x_0."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    idx = torch.randint(0, len(data), (cfg.batch_size,), generator=g)
    x0 = augment_batch(data.glyphs[idx], cfg.size, g, scale_range=(0.8, 1.0), max_angle=0.0,
                       background="white") * 2 - 1  # (B, 3, 64, 64)
    if cfg.crop:  # a random crop at an even offset, so that the low-resolution pixels line up with it
        f = cfg.size // cfg.low_size
        oy, ox = (torch.randint(0, (cfg.size - cfg.crop) // f + 1, (2,), generator=g) * f).tolist()
        x0 = x0[:, :, oy:oy + cfg.crop, ox:ox + cfg.crop]
    low = F.interpolate(x0, scale_factor=cfg.low_size / cfg.size, mode="area")
    aug = torch.randint(0, cfg.max_aug + 1, (cfg.batch_size,), generator=g)
    aug_noise = torch.randn(low.shape, generator=g)
    t = torch.randint(1, cfg.T + 1, (cfg.batch_size,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    z = torch.where(aug.view(-1, 1, 1, 1) > 0, q_sample(s, low, aug.clamp(min=1), aug_noise), low)
    return q_sample(s, x0, t, eps), t, eps, z, aug, x0


def initial_model(cfg: UpsamplerTrainConfig) -> Upsampler:
    torch.manual_seed(cfg.seed)
    return build_upsampler(UpsamplerConfig(cfg.low_size, cfg.size, cfg.T, cfg.schedule, cfg.max_aug),
                           cfg.block_out_channels)


def train(data_dir: str, run_dir: str, cfg: UpsamplerTrainConfig, export: str | None = None,
          threads: int | None = None, stop_at: int | None = None) -> dict:
    """Train (or resume) the run in `run_dir`; `stop_at` ends this call early, as an interruption would."""
    data = EmojiData.load(data_dir, split="train")
    s = Schedule.make(cfg.schedule, cfg.T)
    seed_run(cfg.seed, threads)
    model = initial_model(cfg)

    def loss_at(step: int) -> torch.Tensor:
        x_t, t, eps, z, aug, x0 = make_batch(data, step, cfg, s)
        ab = s.alpha_bars[t].float().view(-1, 1, 1, 1)
        v = ab.sqrt() * eps - (1 - ab).sqrt() * x0
        return (model.net(x_t, t - 1, z, aug) - v).pow(2).mean()

    ema, result = train_with_ema(run_dir, cfg, model, loss_at, stop_at=stop_at)
    result["train_emoji"] = len(data)
    return _export(ema, cfg, export, result) if export else result


def export_checkpoint(run_dir: str, export: str) -> dict:
    """Export the run's latest checkpoint (e.g. of an unfinished run)."""
    config_from = lambda c: UpsamplerTrainConfig(**{**c, "block_out_channels": tuple(c["block_out_channels"])})  # noqa: E731
    cfg, ema, result = checkpoint_ema(run_dir, config_from, initial_model)
    return _export(ema, cfg, export, result)


def _export(ema: Upsampler, cfg: UpsamplerTrainConfig, out: str, result: dict) -> dict:
    """Save the bias-corrected EMA (fp16)."""
    model = initial_model(cfg)
    model.load_state_dict(debias_ema(ema.state_dict(), model.state_dict(), cfg.ema_decay, result["steps"]))
    save_upsampler(model, out, {"trained_by": "demo_core.training.train_upsampler", **result, "config": asdict(cfg)})
    return result


def main(argv: list[str] | None = None) -> int:
    return training_cli(argv, prog="python -m demo_core.training.train_upsampler", doc=__doc__,
                        run_default="data/runs/emoji-upsampler", export_help="write the EMA model here",
                        config_cls=UpsamplerTrainConfig, train=train, export_checkpoint=export_checkpoint,
                        options={"lr": {"type": float, "help": "peak learning rate"},
                                 "max_aug": {"type": int, "help": "s_max: the noisiest augmentation of the 32×32 input"},
                                 "crop": {"type": int, "help": "train on crops this big (0: whole pictures)"}})


if __name__ == "__main__":
    sys.exit(main())
