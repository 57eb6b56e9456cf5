"""Train unCLIP's prior: mini-CLIP text embedding → mini-CLIP image embedding, a diffusion model in embedding space.

    python -m demo_core.training.train_prior --data data/emoji --run data/runs/emoji-prior \
        --export assets/models/emoji-prior                   # minutes on a CPU; resumable

Pairs: each training emoji's caption bank (the text-to-image model's captions, embedded by the
frozen mini-CLIP text tower) against the mini-CLIP image embeddings of a few renders of it on white
(the pictures the decoder draws). Each step: a random caption and render per emoji, z_0 = √D·e_img,
t ~ U{1…T}, z_t = √ᾱ_t·z_0 + √(1−ᾱ_t)·ε, the caption dropped to ∅ 20% of the time, loss ‖f(z_t, t, c) − z_0‖².
``evaluate`` reports, on held-out emoji, the cosine between the prior's image embedding and the
true one against the baseline of using the text embedding itself.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..clip.model import ClipModel
from ..diffusion.ddpm import Schedule, q_sample
from ..diffusion.prior import DiffusionPrior, PriorConfig, save_prior
from .banks import caption_bank, image_bank
from .emoji_data import EmojiData
from .loop import load_checkpoint, seed_run, summary, train_loop, training_cli


@dataclass
class PriorTrainConfig:
    steps: int = 4000
    batch_size: int = 256
    lr: float = 3e-4
    warmup: int = 200
    p_uncond: float = 0.2
    renders_per_emoji: int = 4
    width: int = 256
    depth: int = 4
    T: int = 1000
    schedule: str = "cosine"
    clip_spec: str = "mini-clip"
    seed: int = 0
    checkpoint_every: int = 500


def _prior_config(cfg: PriorTrainConfig, embed_dim: int) -> PriorConfig:
    return PriorConfig(embed_dim=embed_dim, width=cfg.width, depth=cfg.depth, T=cfg.T, schedule=cfg.schedule,
                       clip_spec=cfg.clip_spec)


def banks(data_dir: str, split: str, cfg: PriorTrainConfig, cache: Path | None = None):
    """Text and image banks of a split, cached in `cache` (a .pt file)."""
    if cache is not None and cache.exists():
        state = torch.load(cache, map_location="cpu", weights_only=False)
        return state["text"], state["image"]
    data = EmojiData.load(data_dir, split=split)
    text, _ = caption_bank(data, cfg.clip_spec)
    image = image_bank(data, ClipModel.load(cfg.clip_spec, device="cpu"), cfg.renders_per_emoji, cfg.seed)
    if cache is not None:
        torch.save({"text": text, "image": image}, cache)
    return text, image


def train(data_dir: str, run_dir: str, cfg: PriorTrainConfig, export: str | None = None, threads: int | None = None,
          stop_at: int | None = None) -> dict:
    """Train (or resume) the run in `run_dir`; `stop_at` ends this call early, as an interruption would."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    text, image = banks(data_dir, "train", cfg, run / "banks.pt")
    d = text.shape[-1]
    s = Schedule.make(cfg.schedule, cfg.T)
    seed_run(cfg.seed, threads)
    prior = DiffusionPrior(_prior_config(cfg, d))
    opt = torch.optim.AdamW(prior.parameters(), lr=cfg.lr, weight_decay=0.0)

    def step_fn(step: int) -> dict:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        b = cfg.batch_size
        idx = torch.randint(0, len(text), (b,), generator=g)
        c = text[idx, torch.randint(0, text.shape[1], (b,), generator=g)]  # (B, D)
        z0 = image[idx, torch.randint(0, image.shape[1], (b,), generator=g)] * d ** 0.5  # (B, D), unit scale
        c = torch.where(torch.rand(b, 1, generator=g) < cfg.p_uncond, torch.zeros_like(c), c)
        t = torch.randint(1, cfg.T + 1, (b,), generator=g)
        z_t = q_sample(s, z0, t, torch.randn(z0.shape, generator=g))
        loss = F.mse_loss(prior(z_t, t, c), z0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": round(loss.item(), 5)}

    step, log = train_loop(run, cfg, opt, step_fn, state={"prior": prior, "opt": opt}, log_every=100,
                           stop_at=stop_at)
    result = summary(step, log)
    return _export(prior.eval(), cfg, data_dir, run, export, result) if export else result


@torch.inference_mode()
def evaluate(prior: DiffusionPrior, text: torch.Tensor, image: torch.Tensor, seed: int = 0) -> dict:
    """Held-out figures: cos(prior's embedding, true image embedding) vs cos(text embedding, true one).

    The true embedding of an emoji is the normalised mean of its renders'; the text is its first caption."""
    true = F.normalize(image.mean(1), dim=-1)  # (N, D)
    cap = text[:, 0]  # (N, D)
    g = torch.Generator().manual_seed(seed)
    pred = prior.sample(cap, g)
    pred2 = prior.sample(cap, g, candidates=2)
    render_vs_render = float((image[:, 0] * image[:, 1]).sum(-1).mean()) if image.shape[1] > 1 else None
    return {"emoji": len(true),
            "cos_prior_to_image": round(float((pred * true).sum(-1).mean()), 4),
            "cos_prior_2_candidates_to_image": round(float((pred2 * true).sum(-1).mean()), 4),
            "cos_text_to_image (no prior)": round(float((cap * true).sum(-1).mean()), 4),
            "cos_render_to_render (same emoji)": round(render_vs_render, 4) if render_vs_render else None}


def _export(prior: DiffusionPrior, cfg: PriorTrainConfig, data_dir: str, run: Path, out: str, result: dict) -> dict:
    text, image = banks(data_dir, "heldout", cfg, run / "banks_heldout.pt")
    result["heldout"] = evaluate(prior, text, image, cfg.seed)
    save_prior(prior, out, {"trained_by": "demo_core.training.train_prior", **result, "config": asdict(cfg)})
    return result


def export_checkpoint(run_dir: str, export: str, data_dir: str = "data/emoji") -> dict:
    state = load_checkpoint(run_dir)
    cfg = PriorTrainConfig(**state["config"])
    prior = DiffusionPrior(_prior_config(cfg, state["prior"]["out.1.weight"].shape[0]))
    prior.load_state_dict(state["prior"])
    result = {**summary(state["step"], state["log"]), "of_steps": cfg.steps}
    return _export(prior.eval(), cfg, data_dir, Path(run_dir), export, result)


def main(argv: list[str] | None = None) -> int:
    return training_cli(argv, prog="python -m demo_core.training.train_prior", doc=__doc__,
                        run_default="data/runs/emoji-prior", export_help="write the prior here",
                        config_cls=PriorTrainConfig, train=train, export_checkpoint=export_checkpoint)


if __name__ == "__main__":
    sys.exit(main())
