"""Train the bundled mini-CLIP on rendered emoji (the lecture's contrastive pre-training).

    python -m demo_core.training.emoji_data --out data/emoji          # make the data (seconds)
    python -m demo_core.training.train_clip --data data/emoji --run data/runs/mini-clip \
        --export assets/models/mini-clip                    # train, resumable, then export

The model is ``clip.mini``: open_clip's ``CLIP`` class with a small CLIP-ResNet image tower and a
small text transformer over open_clip's CLIP BPE tokenizer. The loss is ``contrastive.contrastive_loss``
(symmetric cross-entropy over the B x B logits) with a learned temperature clamped at 100;
the optimiser is AdamW with linear warm-up, cosine decay and weight decay on weight matrices only
(as open_clip does: no decay on gains, biases and the temperature).

Every step's batch is drawn from a generator seeded by (seed, step), so a run resumed from a
checkpoint sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..clip.contrastive import contrastive_step, cross_view_step
from ..clip.weights import CONFIG, load_weights, save_weights
from ..clip.mini import OPENAI_MEAN, OPENAI_STD, MiniClipConfig, build_model
from ..device import pick_device
from ..errors import UserError
from .clip_batches import CachedTokenizer, drawings_by_emoji, icon_count, make_batch, other_drawings  # noqa: F401
from .emoji_data import EmojiData
from .emoji_styles import ALL_STYLES, HELD_OUT_STYLE
from .loop import ema_update as ema_update_weights
from .loop import load_checkpoint, seed_run, summary, train_loop, training_cli


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
    snapshot_every: int = 0  # keep step{N}.pt every this many steps (to score a run along its schedule); 0: none
    styles: str = "seen"  # seen: every art style but the held-out one; all; or noto (the font only)
    split: str = "train"  # train: held-out emoji never seen; all: the shipped model sees every emoji
    init: str = ""  # a run folder whose exported weights (its moving average, if any) start this run (the shipped
    # model continues the evaluated one)
    augment: str = "basic"  # basic: background, scale, rotation, position; strong: also colour, blur, light-behind-dark
    captions: str = "mixed"  # mixed: names, aliases, keyword lists; keywords: also single words a third of the time
    icon_share: float = 0.0  # the share of each batch drawn from named icons (``icon_data``); 0: emoji only
    cross_style: float = 0.0  # weight of the SLIP-style image–image term between two styles of each emoji; 0: off
    ema: float = 0.0  # decay of a moving average of the weights, which is what exports; 0: off (the raw weights)
    token_init: str = ""  # word_vectors' token_init.npz (or its folder): GloVe rows for the token embedding, kept fixed
    device: str = "auto"  # auto: CUDA, else MPS, else the CPU (``device.pick_device``); the batches are the same on any
    # Shape levers (0: the MiniClipConfig default); they end up in `model`, which is what is saved.
    embed_dim: int = 0
    vision_width: int = 0
    text_layers: int = 0
    model: MiniClipConfig = field(default_factory=MiniClipConfig)

    def __post_init__(self):
        if isinstance(self.model, dict):  # a resumed run's saved config
            self.model = MiniClipConfig(**{**self.model, "vision_layers": tuple(self.model["vision_layers"])})
        shape = {k: getattr(self, k) for k in ("embed_dim", "vision_width", "text_layers") if getattr(self, k)}
        if shape:
            self.model = replace(self.model, **shape)


# The five styles the bundled mini-clip was trained on, before the Iconify sets were added.
FIRST_FIVE_STYLES = ALL_STYLES[:5]


def style_names(choice: str) -> tuple[str, ...]:
    """seen / all: every style but the held-out one / every style; seen5 / all5: the same among the first
    five (mini-clip's data); noto: the font only."""
    pool = FIRST_FIVE_STYLES if choice.endswith("5") else ALL_STYLES
    if choice.startswith("seen"):
        return tuple(s for s in pool if s != HELD_OUT_STYLE)
    return pool if choice.startswith("all") else ("noto",)


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # Gains, biases, norms and the temperature are not decayed (open_clip's rule); nor are fixed word vectors.
        fixed = cfg.token_init and name == "token_embedding.weight"
        (no_decay if fixed or p.ndim < 2 or "bn" in name or "ln" in name or "logit_scale" in name else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
    )


def training_data(data_dir: str, cfg: TrainConfig) -> EmojiData:
    """What a run trains on: the evaluation model (split train, styles seen) never sees a held-out emoji
    or the held-out style; the shipped model (split all, styles all) sees everything. With an icon share,
    the named icons follow the emoji's rows, each icon its own "emoji" (ids after the emoji's)."""
    data = EmojiData.load(data_dir, split=None if cfg.split == "all" else "train", styles=style_names(cfg.styles))
    if not cfg.icon_share:
        return data
    from .icon_data import load_icons

    glyphs, records = load_icons(Path(data_dir))
    icons = torch.from_numpy(glyphs).permute(0, 3, 1, 2).float() / 255.0
    first = int(data.emoji_ids.max()) + 1 if len(data) else 0
    return EmojiData(torch.cat([data.glyphs, icons]), data.records + records,
                     torch.cat([data.emoji_ids, first + torch.arange(len(records))]))


def initial_weights(init: str) -> dict:
    """What ``--init`` starts from: a run folder's latest weights (its moving average, if any: what it exports,
    which is what was scored), or an exported open_clip folder (e.g. an evaluation model trained elsewhere)."""
    if (Path(init) / CONFIG).exists():
        return {k: v.float() if v.is_floating_point() else v for k, v in load_weights(Path(init)).items()}
    start = load_checkpoint(init)
    return start.get("ema", start["model"])


def fix_word_vectors(model, path: str) -> int:
    """Set the token embedding's rows that are GloVe words (``word_vectors.token_init``) and keep them fixed: their
    gradient is zeroed, and without decay AdamW leaves them as they are. The other rows train. Returns how many."""
    from .word_vectors import load_token_init

    if not Path(path).exists():
        raise UserError(f"--token-init {path}: no such file (python -m demo_core.training.word_vectors writes it)")
    rows, covered = load_token_init(path)
    weight = model.token_embedding.weight
    if rows.shape != tuple(weight.shape):
        raise UserError(f"{path}: {rows.shape[1]}-wide rows for a {weight.shape[1]}-wide text tower")
    keep = torch.from_numpy(covered).to(weight.device)
    with torch.no_grad():
        weight[keep] = torch.from_numpy(rows).to(weight)[keep]
    train_rows = (~keep).to(weight.dtype).unsqueeze(1)
    weight.register_hook(lambda grad: grad * train_rows)
    return int(keep.sum())


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    """``loop.ema_update`` at d = min(decay, (1 + step) / (10 + step)), then the same average of the image tower's
    BatchNorm statistics (its step counter copied): early on the average follows the model, so the random initial
    weights are forgotten within a few hundred steps (timm's and TF's rule)."""
    d = min(decay, (1 + step) / (10 + step))
    ema_update_weights(ema, model, d)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.lerp_(bm, 1 - d) if be.is_floating_point() else be.copy_(bm)


def export_open_clip_folder(model, cfg: MiniClipConfig, out: Path, extra_meta: dict | None = None) -> Path:
    """Write the model as an open_clip hub-format folder (fp16 safetensors + config)."""
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16) if v.is_floating_point() else v.detach()
             for k, v in model.state_dict().items()}
    save_weights(state, out)  # in files under 10 MB (clip.weights)
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

    seed_run(cfg.seed, threads)
    device = pick_device(None if cfg.device == "auto" else cfg.device).device  # the app's rule: CUDA, MPS, CPU
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = training_data(data_dir, cfg)
    drawings = drawings_by_emoji(data)
    icons = icon_count(data)
    data.glyphs = data.glyphs.to(device)  # the batches are composited where the model is
    tokenizer = CachedTokenizer(SimpleTokenizer(context_length=cfg.model.context_length))
    model = build_model(cfg.model)
    if cfg.init and not (Path(run_dir) / "checkpoint.pt").exists():
        model.load_state_dict(initial_weights(cfg.init))
    model.to(device)
    if cfg.token_init:
        fix_word_vectors(model, cfg.token_init)
    opt = make_optimizer(model, cfg)
    state = {"model": model, "opt": opt}
    if cfg.ema:
        state["ema"] = copy.deepcopy(model).requires_grad_(False)

    def step_fn(step: int) -> dict:
        images, tokens, *views = make_batch(data, tokenizer, step, cfg, drawings, icons)
        tokens = tokens.to(device)
        res = (cross_view_step(model, opt, images, views[0], tokens, cfg.cross_style) if views
               else contrastive_step(model, opt, images, tokens))
        if cfg.ema:
            ema_update(state["ema"], model, cfg.ema, step)
        acc = (res.logits.argmax(1) == torch.arange(len(images), device=device)).float().mean().item()
        return {"loss": round(res.loss.item(), 4), "batch_acc_i2t": round(acc, 4),
                "logit_scale": round(model.logit_scale.exp().item(), 2)}

    model.train()
    step, log = train_loop(run_dir, cfg, opt, step_fn, state=state, log_every=10, stop_at=stop_at)
    result = {**summary(step, log), "train_emoji": len(drawings[0]) - icons, "train_icons": icons,
              "train_drawings": len(data) - icons,
              "styles": list(style_names(cfg.styles)), "split": cfg.split, "init": cfg.init or None,
              "device": device.type}
    if cfg.ema:
        result["weights"] = "ema"
    return _export(state.get("ema", model).cpu(), cfg.model, export, result) if export else result


def export_checkpoint(run_dir: str, export: str, weights: str = "ema") -> dict:
    """Export the run's latest checkpoint (e.g. of an unfinished run) as an open_clip folder. `run_dir` may also
    be one checkpoint file (a snapshot ``step{N}.pt``). A run with ``--ema`` exports its moving average unless
    `weights` is "raw" (to score the lever against the raw weights of the same run)."""
    state = load_checkpoint(run_dir)
    saved = state["config"]["model"]
    mcfg = MiniClipConfig(**{**saved, "vision_layers": tuple(saved["vision_layers"])})
    model = build_model(mcfg)
    use_ema = weights == "ema" and "ema" in state
    model.load_state_dict(state["ema" if use_ema else "model"])
    result = summary(state["step"], state["log"])
    if "ema" in state:
        result["weights"] = "ema" if use_ema else "raw"
    return _export(model, mcfg, export, result)


def _export(model, cfg: MiniClipConfig, out: str, result: dict) -> dict:
    export_open_clip_folder(model.eval(), cfg, Path(out),
                            {"name": Path(out).name, "trained_by": "demo_core.training.train_clip", **result})
    return result


if __name__ == "__main__":
    sys.exit(training_cli(None, prog="python -m demo_core.training.train_clip", doc=__doc__, config_cls=TrainConfig,
                          run_default="data/runs/mini-clip", export_help="write the trained model here as an "
                          "open_clip folder", train=train, export_checkpoint=export_checkpoint,
                          export_options={"weights": {"choices": ("ema", "raw"), "default": "ema",
                                                      "help": "with --export-only, of a run trained with --ema: "
                                                      "export its moving average (default) or its raw weights"}},
                          options={"styles": {"choices": ("seen", "all", "seen5", "all5", "noto"),
                                              "help": "art styles to train on (seen: all but the held-out one; "
                                              "seen5/all5: among the first five, mini-clip's data)"},
                                   "split": {"choices": ("train", "all"), "help": "train: held-out emoji stay unseen"},
                                   "init": {"help": "start from this run folder's latest weights (its moving "
                                            "average, if it was trained with --ema), or an exported model folder"},
                                   "lr": {"type": float, "help": "peak learning rate"},
                                   "warmup": {"type": int, "help": "warm-up steps"},
                                   "weight_decay": {"type": float, "help": "AdamW weight decay on weight matrices "
                                                    "(default 0.1)"},
                                   "augment": {"choices": ("basic", "strong"), "help": "augmentation lever"},
                                   "captions": {"choices": ("mixed", "keywords"), "help": "caption lever"},
                                   "embed_dim": {"type": int, "help": "embedding size (default 128)"},
                                   "vision_width": {"type": int, "help": "image tower width (default 16)"},
                                   "text_layers": {"type": int, "help": "text tower depth (default 4)"},
                                   "cross_style": {"type": float, "help": "weight of a SLIP-style image–image "
                                                   "loss between two art styles of each emoji; default 0 (off)"},
                                   "ema": {"type": float, "help": "decay of a moving average of the weights, "
                                           "which is then what exports (e.g. 0.999); default 0 (off)"},
                                   "device": {"help": "auto (CUDA, else MPS, else the CPU), cuda, mps or cpu; "
                                              "the batches are the same on any"},
                                   "snapshot_every": {"type": int, "help": "also keep step{N}.pt every this many "
                                                      "steps, to score the run along its schedule; default 0"},
                                   "token_init": {"help": "word_vectors' token_init.npz (or its folder): start the "
                                                  "token embedding from GloVe and keep those rows fixed"},
                                   "icon_share": {"type": float, "help": "share of each batch from named icons "
                                                  "(python -m demo_core.training.icon_data); default 0"}}))
