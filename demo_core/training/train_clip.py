"""Train the bundled mini-CLIP on rendered emoji (the lecture's contrastive pre-training).

    python -m demo_core.training.emoji_data --out data/emoji          # make the data (seconds)
    python -m demo_core.training.train_clip --data data/emoji --run data/runs/mini-clip \
        --export assets/models/mini-clip                    # train, resumable, then export

The model is open_clip's ``CLIP`` class with a small CLIP-ResNet image tower and a small text
transformer over open_clip's CLIP BPE tokenizer. The loss is ``contrastive.contrastive_loss``
(symmetric cross-entropy over the B x B logits) with a learned temperature clamped at 100;
the optimiser is AdamW with linear warm-up, cosine decay and weight decay on weight matrices only
(as open_clip does: no decay on gains, biases and the temperature).

Every step's batch is drawn from a generator seeded by (seed, step), so a run resumed from a
checkpoint sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..clip.contrastive import MAX_LOG_SCALE, contrastive_loss
from .emoji_data import EmojiData, augment_batch, sample_caption
from .loop import lr_at, save_checkpoint, training_cli

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


@dataclass
class TrainConfig:
    steps: int = 1400
    batch_size: int = 256
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    seed: int = 0
    checkpoint_every: int = 50
    model: MiniClipConfig = field(default_factory=MiniClipConfig)


def build_model(cfg: MiniClipConfig):
    from open_clip.model import CLIP

    return CLIP(**cfg.open_clip_cfg(), output_dict=True)


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # Gains, biases, norms and the temperature are not decayed (open_clip's rule).
        (no_decay if p.ndim < 2 or "bn" in name or "ln" in name or "logit_scale" in name else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
    )


def normalize(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def make_batch(data: EmojiData, tokenizer, step: int, cfg: TrainConfig):
    """Batch `step` of the run: B distinct emoji, augmented renders and random captions."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    idx = torch.randperm(len(data), generator=g)[: cfg.batch_size]
    images = augment_batch(data.glyphs[idx], cfg.model.image_size, g)  # (B, 3, S, S) in [0, 1]
    rng = random.Random(cfg.seed * 1_000_003 + step)
    captions = [sample_caption(data.records[i], rng) for i in idx.tolist()]
    return normalize(images), tokenizer(captions)


def contrastive_step(model, opt, images: torch.Tensor, tokens: torch.Tensor):
    """One optimisation step on the symmetric contrastive loss; then exp(t) is clamped at 100, as in
    the paper. Returns the step's ``ContrastiveOutput``."""
    out = model(images, tokens)
    res = contrastive_loss(out["image_features"], out["text_features"], out["logit_scale"])
    opt.zero_grad(set_to_none=True)
    res.loss.backward()
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, MAX_LOG_SCALE)
    return res


def export_open_clip_folder(model, cfg: MiniClipConfig, out: Path, extra_meta: dict | None = None) -> Path:
    """Write the model as an open_clip hub-format folder (fp16 safetensors + config)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16) if v.is_floating_point() else v.detach()
             for k, v in model.state_dict().items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "open_clip_model.safetensors"))
    config = {
        "model_cfg": cfg.open_clip_cfg(),
        "preprocess_cfg": {"mean": list(OPENAI_MEAN), "std": list(OPENAI_STD),
                           "interpolation": "bicubic", "resize_mode": "shortest"},
    }
    if extra_meta:
        config["demo_meta"] = extra_meta
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    return out


def train(data_dir: str, run_dir: str, cfg: TrainConfig, export: str | None = None, threads: int | None = None,
          stop_at: int | None = None) -> dict:
    """Train (or resume) the run in `run_dir`; `stop_at` ends this call early, as an interruption would."""
    from open_clip.tokenizer import SimpleTokenizer

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    data = EmojiData.load(data_dir, split="train")
    tokenizer = SimpleTokenizer(context_length=cfg.model.context_length)
    model = build_model(cfg.model)
    opt = make_optimizer(model, cfg)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    ckpt = run / "checkpoint.pt"
    step, log = 0, []
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, log = state["step"], state["log"]
        print(f"resumed from {ckpt} at step {step}", flush=True)
    model.train()
    t0, t_prev = time.time(), (log[-1]["elapsed_s"] if log else 0.0)
    while step < (stop_at or cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        images, tokens = make_batch(data, tokenizer, step, cfg)
        res = contrastive_step(model, opt, images, tokens)
        step += 1
        if step % 10 == 0 or step == cfg.steps:
            acc = (res.logits.argmax(1) == torch.arange(len(images))).float().mean().item()
            entry = {"step": step, "loss": round(res.loss.item(), 4), "batch_acc_i2t": round(acc, 4),
                     "logit_scale": round(model.logit_scale.exp().item(), 2),
                     "elapsed_s": round(t_prev + time.time() - t0, 1)}
            log.append(entry)
            print(json.dumps(entry), flush=True)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, step, cfg, log, model=model, opt=opt)
    summary = {"steps": step, "train_time_s": log[-1]["elapsed_s"] if log else 0.0,
               "final_loss": log[-1]["loss"] if log else None, "train_emoji": len(data)}
    (run / "train_log.json").write_text(json.dumps({"config": asdict(cfg), "log": log}, indent=0))
    if export:
        model.eval()
        export_open_clip_folder(model, cfg.model, Path(export),
                                {"name": "mini-clip", "trained_by": "demo_core.training.train_clip", **summary})
        print(f"exported to {export}", flush=True)
    return summary


def export_checkpoint(run_dir: str, export: str) -> dict:
    """Export the run's latest checkpoint (e.g. of an unfinished run) as an open_clip folder."""
    state = torch.load(Path(run_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)
    cfg = state["config"]
    mcfg = MiniClipConfig(**{**cfg["model"], "vision_layers": tuple(cfg["model"]["vision_layers"])})
    model = build_model(mcfg)
    model.load_state_dict(state["model"])
    log = state["log"]
    summary = {"steps": state["step"], "train_time_s": log[-1]["elapsed_s"] if log else 0.0,
               "final_loss": log[-1]["loss"] if log else None}
    export_open_clip_folder(model.eval(), mcfg, Path(export),
                            {"name": "mini-clip", "trained_by": "demo_core.training.train_clip", **summary})
    return summary


def main(argv: list[str] | None = None) -> int:
    return training_cli(argv, prog="python -m demo_core.training.train_clip", doc=__doc__, run_default="data/runs/mini-clip",
                        export_help="write the trained model here as an open_clip folder", config_cls=TrainConfig, train=train,
                        export_checkpoint=export_checkpoint)


if __name__ == "__main__":
    sys.exit(main())
