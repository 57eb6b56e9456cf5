"""Train the bundled text-conditional emoji DDPM (GLIDE-style text conditioning, classifier-free guidance).

    python -m demo_core.training.train_text2img --data data/emoji --run data/runs/emoji-text2img \
        --export assets/models/emoji-text2img                # resumable: re-run to continue

Algorithm 1 with a condition (Ho & Salimans 2022, classifier-free guidance):
    repeat
        (x_0, caption) ~ data;  e = CLIP_text(caption)        (the frozen mini-CLIP, unit norm)
        e = 0 with probability p_uncond                       (the null condition ∅)
        t ~ Uniform({1, …, T}),  ε ~ N(0, I)
        gradient step on  w_t·‖ε − ε_θ(√ᾱ_t·x_0 + √(1−ᾱ_t)·ε, t, e)‖²
    until converged
with the min-SNR-γ weight w_t = min(SNR(t), γ)/SNR(t) (Hang et al. 2023), which stops the many
nearly-noise-free timesteps from dominating a short training run.

Captions: each emoji gets a fixed bank of captions (its name, aliases or CLDR keywords in the
templates mini-CLIP was trained with, plus colour and shape words: "a red heart", "a yellow face"),
embedded once by mini-CLIP. Emoji of the judge's shape groups (``emoji_groups``) are drawn more
often, so the few cars and flowers are seen as often as the many flags.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..clip.model import ClipModel
from ..diffusion.conditional import CondConfig, TextCondUNet, build_unet, load_cond_model, save_cond_model
from ..diffusion.cross_attention import TokenCond, TokenCondUNet, build_token_unet
from ..diffusion.ddpm import Schedule, q_sample
from .banks import caption_bank, image_bank, token_bank
from .emoji_data import EmojiData, augment_batch
from .emoji_groups import sampling_weights
from .loop import checkpoint_ema, debias_ema, min_snr_weights, seed_run, train_with_ema, training_cli


@dataclass
class Text2ImgConfig:
    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 200
    ema_decay: float = 0.999
    T: int = 1000
    schedule: str = "linear"
    image_size: int = 32
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    p_uncond: float = 0.15  # how often the caption is replaced by the null condition
    min_snr_gamma: float = 5.0
    group_share: float = 0.5  # expected fraction of each batch drawn from the shape groups
    captions_per_emoji: int = 12
    clip_spec: str = "mini-clip"
    embed_dim: int = 128  # the CLIP's embedding width
    condition: str = "text"  # "text": captions (GLIDE); "image": render embeddings (unCLIP's decoder)
    init: str | None = None  # start from this conditional-model folder's weights (same architecture)
    token_width: int = 0  # > 0: also cross-attend to the captions' tokens (GLIDE's second path; the CLIP's text width)
    attention_levels: int = 2  # with tokens: cross-attention at this many of the lowest resolutions
    seed: int = 0
    checkpoint_every: int = 50


def make_batch(data: EmojiData, bank: torch.Tensor, weights: torch.Tensor, step: int, cfg: Text2ImgConfig, s: Schedule,
               tokens: tuple[torch.Tensor, torch.Tensor] | None = None):
    """Batch `step` (seeded by step, so a resumed run sees the same batches): x_t, t, ε, e — e a ``TokenCond``
    when `tokens` (the token bank) is given; the null condition then covers both paths."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    idx = torch.multinomial(weights, cfg.batch_size, replacement=True, generator=g)
    x0 = augment_batch(data.glyphs[idx], cfg.image_size, g, scale_range=(0.8, 1.0), max_angle=0.0,
                       background="white") * 2 - 1  # (B, 3, 32, 32)
    cap = torch.randint(0, bank.shape[1], (cfg.batch_size,), generator=g)
    e = bank[idx, cap].clone()  # (B, D)
    drop = torch.rand(cfg.batch_size, generator=g) < cfg.p_uncond
    e[drop] = 0.0  # the null condition ∅
    t = torch.randint(1, cfg.T + 1, (cfg.batch_size,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    if tokens is not None:
        h, mask = tokens[0][idx, cap].float(), tokens[1][idx, cap].clone()  # (B, L, W), (B, L)
        h[drop] = 0.0
        mask[drop] = False
        mask[drop, 0] = True  # ∅ is one zero token
        e = TokenCond(e, h, mask)
    return q_sample(s, x0, t, eps), t, eps, e


def initial_model(cfg: Text2ImgConfig) -> TextCondUNet:
    """θ_0: seeded random weights, or those of `cfg.init` (a warm start: the decoder starts from the
    GLIDE model, whose UNet already draws emoji; only what the condition means has to change)."""
    torch.manual_seed(cfg.seed)
    cond = CondConfig(clip_spec=cfg.clip_spec, embed_dim=cfg.embed_dim, T=cfg.T, schedule=cfg.schedule,
                      condition=cfg.condition, token_width=cfg.token_width)
    if cfg.token_width:
        model = TokenCondUNet(build_token_unet(cfg.block_out_channels, cfg.image_size, cfg.token_width,
                                               cfg.attention_levels), cond)
    else:
        model = TextCondUNet(build_unet(cfg.block_out_channels, cfg.image_size), cond)
    if cfg.init:
        start = load_cond_model(cfg.init)
        same = (start.cfg.embed_dim == cfg.embed_dim and start.cfg.token_width == cfg.token_width
                and tuple(start.unet.config.block_out_channels) == tuple(cfg.block_out_channels))
        if not same:
            raise ValueError(f"{cfg.init} has another architecture than this run; it cannot be the start.")
        model.load_state_dict(start.state_dict())
    return model


def _config_from_state(state: dict) -> Text2ImgConfig:
    c = dict(state["config"])
    c["block_out_channels"] = tuple(c["block_out_channels"])
    return Text2ImgConfig(**c)


def train(data_dir: str, run_dir: str, cfg: Text2ImgConfig, export: str | None = None, threads: int | None = None,
          stop_at: int | None = None) -> dict:
    """Train (or resume) the run in `run_dir`; `stop_at` ends this call early, as an interruption would."""
    data = EmojiData.load(data_dir, split="train")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if cfg.condition == "image":  # unCLIP's decoder: conditioned on the CLIP image embedding of a render
        bank = image_bank(data, ClipModel.load(cfg.clip_spec, device="cpu"), cfg.captions_per_emoji, cfg.seed)
    else:
        bank, captions = caption_bank(data, cfg.clip_spec, cfg.captions_per_emoji, cfg.seed,
                                      cache=run / "caption_bank.pt")
    if bank.shape[-1] != cfg.embed_dim:
        raise ValueError(f"{cfg.clip_spec} makes {bank.shape[-1]}-d embeddings; set embed_dim={bank.shape[-1]}.")
    tokens = None
    if cfg.token_width:
        if cfg.condition != "text":
            raise ValueError("Cross-attention reads a caption's tokens: it needs condition 'text'.")
        tokens = token_bank(captions, cfg.clip_spec, cache=run / "token_bank.pt")
        if tokens[0].shape[-1] != cfg.token_width:
            raise ValueError(f"{cfg.clip_spec}'s tokens are {tokens[0].shape[-1]} wide; set token_width to that.")
    weights = sampling_weights(data, cfg.group_share)
    s = Schedule.make(cfg.schedule, cfg.T)
    loss_w = min_snr_weights(s.alpha_bars, cfg.min_snr_gamma)
    seed_run(cfg.seed, threads)
    model = initial_model(cfg)

    def loss_at(step: int) -> torch.Tensor:
        x_t, t, eps, e = make_batch(data, bank, weights, step, cfg, s, tokens)
        per_sample = (model(x_t, t - 1, e) - eps).pow(2).mean(dim=(1, 2, 3))  # (B,); the UNet counts k = t − 1
        return (loss_w[t] * per_sample).mean()

    ema, result = train_with_ema(run, cfg, model, loss_at, stop_at=stop_at)
    result["train_emoji"] = len(data)
    return _export(ema, cfg, export, result) if export else result


def export_checkpoint(run_dir: str, export: str) -> dict:
    """Export the run's latest checkpoint (e.g. of an unfinished run)."""
    cfg, ema, result = checkpoint_ema(run_dir, lambda c: _config_from_state({"config": c}), initial_model)
    return _export(ema, cfg, export, result)


def _export(ema: TextCondUNet, cfg: Text2ImgConfig, out: str, result: dict) -> dict:
    """Save the bias-corrected EMA (fp16) as a conditional-model folder."""
    model = initial_model(cfg)
    model.load_state_dict(debias_ema(ema.state_dict(), model.state_dict(), cfg.ema_decay, result["steps"]))
    save_cond_model(model, out, {"trained_by": "demo_core.training.train_text2img", **result, "config": asdict(cfg)})
    return result


def main(argv: list[str] | None = None) -> int:
    return training_cli(argv, prog="python -m demo_core.training.train_text2img", doc=__doc__,
                        run_default="data/runs/emoji-text2img",
                        export_help="write the EMA model here as a conditional-model folder",
                        config_cls=Text2ImgConfig, train=train, export_checkpoint=export_checkpoint,
                        options={"condition": {"choices": ["text", "image"],
                                               "help": "text: GLIDE (captions); image: unCLIP's decoder"},
                                 "init": {"help": "warm start from this conditional-model folder"},
                                 "token_width": {"type": int, "help": "> 0: cross-attend to the caption's tokens "
                                                 "(the CLIP's text width: 64 for mini-clip)"},
                                 "attention_levels": {"type": int, "help": "resolutions with cross-attention"},
                                 "clip_spec": {"help": "the CLIP whose text embeddings condition the model"},
                                 "lr": {"type": float, "help": "peak learning rate"}})


if __name__ == "__main__":
    sys.exit(main())
