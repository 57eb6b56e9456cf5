"""Fine-tune mini-CLIP's image tower on noisy images x_t (with t) for CLIP guidance, against its frozen text tower.

    python -m demo_core.training.train_noised_clip --data data/emoji --run data/runs/noised-clip \
        --export assets/models/noised-clip                   # resumable: re-run to continue

Each batch: emoji of the training split drawn on white at the DDPM's 32×32 (the pictures CLIP
guidance will see), t ~ U{0…T} (t = 0: clean, 10% of the time), x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε, and
a caption's embedding from the frozen mini-CLIP text tower (the text-to-image model's caption
bank). Loss: the symmetric contrastive loss over the B×B logits, with mini-CLIP's learned
temperature held fixed. ``evaluate_vs_t`` measures held-out zero-shot accuracy against t for the
plain and the noised tower: the reason GLIDE needs a noised CLIP.
"""
from __future__ import annotations

import copy
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..clip.contrastive import contrastive_loss
from ..clip.model import ClipModel
from ..clip.noised import NoisedImageTower, save_noised_clip
from ..diffusion.ddpm import Schedule, q_sample
from .emoji_data import EmojiData, augment_batch
from .emoji_groups import GROUP_PROMPTS, group_of, sampling_weights
from .loop import load_checkpoint, seed_run, summary, train_loop, training_cli
from .banks import caption_bank


@dataclass
class NoisedClipConfig:
    steps: int = 1200
    batch_size: int = 96
    lr: float = 5e-4
    warmup: int = 100
    T: int = 1000
    schedule: str = "linear"
    p_clean: float = 0.1
    clip_spec: str = "mini-clip"
    seed: int = 0
    checkpoint_every: int = 100


def make_batch(data: EmojiData, bank: torch.Tensor, weights: torch.Tensor, step: int, cfg: NoisedClipConfig, s: Schedule):
    """Batch `step`: x_t (B, 3, 32, 32), t (B,) with 0 = clean, caption embeddings (B, D)."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    idx = torch.multinomial(weights, cfg.batch_size, replacement=False, generator=g)  # distinct emoji
    x0 = augment_batch(data.glyphs[idx], 32, g, scale_range=(0.8, 1.0), max_angle=0.0, background="white") * 2 - 1
    t = torch.randint(1, cfg.T + 1, (cfg.batch_size,), generator=g)
    t = torch.where(torch.rand(cfg.batch_size, generator=g) < cfg.p_clean, torch.zeros_like(t), t)
    eps = torch.randn(x0.shape, generator=g)
    text = bank[idx, torch.randint(0, bank.shape[1], (cfg.batch_size,), generator=g)]
    return q_sample(s, x0, t, eps), t, text


def initial_tower(clip: ClipModel, cfg: NoisedClipConfig) -> NoisedImageTower:
    torch.manual_seed(cfg.seed)
    return NoisedImageTower(copy.deepcopy(clip.model.visual).float(), T=cfg.T, image_size=clip.image_size)


def train(data_dir: str, run_dir: str, cfg: NoisedClipConfig, export: str | None = None, threads: int | None = None,
          stop_at: int | None = None) -> dict:
    """Train (or resume) the run in `run_dir`; `stop_at` ends this call early, as an interruption would."""
    data = EmojiData.load(data_dir, split="train")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    bank, _ = caption_bank(data, cfg.clip_spec, cache=run / "caption_bank.pt")
    weights = sampling_weights(data, 0.5)
    clip = ClipModel.load(cfg.clip_spec, device="cpu")
    scale = clip.logit_scale  # mini-CLIP's learned temperature, held fixed
    s = Schedule.make(cfg.schedule, cfg.T)
    seed_run(cfg.seed, threads)
    tower = initial_tower(clip, cfg).train()
    opt = torch.optim.AdamW(tower.parameters(), lr=cfg.lr, weight_decay=0.0)

    def step_fn(step: int) -> dict:
        x_t, t, text = make_batch(data, bank, weights, step, cfg, s)
        out = contrastive_loss(tower(x_t, t), text, scale)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(tower.parameters(), 1.0)
        opt.step()
        return {"loss": round(out.loss.item(), 4)}

    step, log = train_loop(run, cfg, opt, step_fn, state={"tower": tower, "opt": opt}, log_every=25, stop_at=stop_at)
    result = summary(step, log)
    return _export(tower.eval(), clip, cfg, data_dir, export, result) if export else result


def _export(tower: NoisedImageTower, clip: ClipModel, cfg: NoisedClipConfig, data_dir: str, out: str,
            result: dict) -> dict:
    result["accuracy_vs_t"] = evaluate_vs_t(data_dir, clip, tower)
    save_noised_clip(tower, out, cfg.clip_spec, {"trained_by": "demo_core.training.train_noised_clip", **result,
                                                 "config": asdict(cfg)})
    return result


TS_EVAL = (0, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900)


@torch.inference_mode()
def evaluate_vs_t(data_dir: str, clip: ClipModel, tower: NoisedImageTower, ts=TS_EVAL, renders: int = 4,
                  seed: int = 1234) -> dict:
    """Held-out zero-shot top-1 over the 8 shape groups (their prompts) at each t, plain vs noised tower.

    The plain tower sees x_t exactly as the noised one does (same resize and normalisation), t ignored."""
    held = EmojiData.load(data_dir, split="heldout")
    names = list(GROUP_PROMPTS)
    items = [(i, names.index(g)) for i, r in enumerate(held.records) if (g := group_of(r))]
    idx = torch.tensor([i for i, _ in items]).repeat_interleave(renders)
    truth = torch.tensor([y for _, y in items]).repeat_interleave(renders)
    g = torch.Generator().manual_seed(seed)
    x0 = augment_batch(held.glyphs[idx], 32, g, scale_range=(0.8, 1.0), max_angle=0.0, background="white") * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    weights = clip.encode_texts([GROUP_PROMPTS[n] for n in names])  # (G, D)
    s = Schedule.make("linear", tower.T)
    plain = copy.deepcopy(tower)
    plain.load_state_dict({**tower.state_dict(), **{f"visual.{k}": v for k, v in clip.model.visual.state_dict().items()}})
    for p in plain.film.parameters():
        torch.nn.init.zeros_(p)
    out = {"t": list(ts), "plain": [], "noised": [], "emoji": len(items), "renders_each": renders,
           "chance": round(1 / len(names), 3)}
    for t in ts:
        x_t = q_sample(s, x0, t, eps) if t > 0 else x0
        for name, model in (("plain", plain), ("noised", tower)):
            pred = (model(x_t, t) @ weights.T).argmax(1)
            out[name].append(round(float((pred == truth).float().mean()), 3))
    return out


def export_checkpoint(run_dir: str, export: str, data_dir: str = "data/emoji") -> dict:
    """Export the run's latest checkpoint, with its accuracy-against-t figures on `data_dir`'s held-out split."""
    state = load_checkpoint(run_dir)
    cfg = NoisedClipConfig(**state["config"])
    clip = ClipModel.load(cfg.clip_spec, device="cpu")
    tower = initial_tower(clip, cfg)
    tower.load_state_dict(state["tower"])
    result = {**summary(state["step"], state["log"]), "of_steps": cfg.steps}
    return _export(tower.eval(), clip, cfg, data_dir, export, result)


def main(argv: list[str] | None = None) -> int:
    return training_cli(argv, prog="python -m demo_core.training.train_noised_clip", doc=__doc__,
                        run_default="data/runs/noised-clip", export_help="write the noised image tower here",
                        config_cls=NoisedClipConfig, train=train, export_checkpoint=export_checkpoint)


if __name__ == "__main__":
    sys.exit(main())
