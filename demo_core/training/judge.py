"""The judge: a small image classifier over the emoji shape groups, trained apart from every model it judges.

    python -m demo_core.training.judge --data data/emoji --out assets/models/emoji-judge

Generated images are scored by a model that did not guide them: this CNN never sees CLIP
embeddings or diffusion samples, only real emoji renders of the training split (on white and on
random backgrounds, scaled, shifted, slightly rotated, with mild noise and blur so that the
softness of 32×32 samples is not foreign to it). Its own held-out accuracy on the held-out split's
renders is measured first and reported beside every adherence figure.

**The second judge** (``--second``, ``assets/models/emoji-judge-2``) checks that the first is not
flattered (the first helped choose checkpoints): another architecture (``ConvMixerJudge``: patches and
depthwise/pointwise mixing, no pooling pyramid) and another split — it trains on every emoji of the
shape groups, held-out ones too, but only as drawn in the *other* art styles (Twemoji, Fluent flat,
modern and high-contrast), never in Noto, the style every diffusion model here was trained on. Its
held-out figure is its accuracy on the Noto renders of all group emoji: a style it never saw.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .emoji_data import EmojiData, augment_batch
from .emoji_groups import GROUPS, group_of

GROUP_NAMES = tuple(GROUPS)


class Judge(nn.Module):
    """(B, 3, 32, 32) in [-1, 1] -> (B, G) logits over GROUP_NAMES. Three conv stages, ~0.1 M params."""

    def __init__(self, n_groups: int = len(GROUP_NAMES), width: int = 32):
        super().__init__()

        def stage(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.features = nn.Sequential(stage(3, width), stage(width, 2 * width), stage(2 * width, 4 * width))
        self.head = nn.Linear(4 * width, n_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))  # global average pool: (B, 4w)


class ConvMixerJudge(nn.Module):
    """The second judge's architecture (ConvMixer, Trockman & Kolter 2022): a 2×2 patch embedding, then
    `depth` blocks of a residual depthwise 5×5 convolution and a pointwise one at 16×16, average-pooled."""

    def __init__(self, n_groups: int = len(GROUP_NAMES), width: int = 96, depth: int = 6):
        super().__init__()
        act = nn.GELU
        self.embed = nn.Sequential(nn.Conv2d(3, width, 2, stride=2), act(), nn.BatchNorm2d(width))
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"mix": nn.Sequential(nn.Conv2d(width, width, 5, padding=2, groups=width), act(),
                                                nn.BatchNorm2d(width)),
                           "point": nn.Sequential(nn.Conv2d(width, width, 1), act(), nn.BatchNorm2d(width))})
            for _ in range(depth))
        self.head = nn.Linear(width, n_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for b in self.blocks:
            h = b["point"](h + b["mix"](h))
        return self.head(h.mean(dim=(2, 3)))


ARCHITECTURES = {"cnn": Judge, "convmixer": ConvMixerJudge}
OTHER_STYLES = ("twemoji", "fluent-flat", "fluent-modern", "fluent-high-contrast")  # the second judge's data


def group_data(data_dir: str, split: str | None, styles: tuple[str, ...] = ("noto",)
               ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """RGBA glyphs (N, 4, S, S), group labels (N,) and names of the split's emoji (None: all) that have a
    group, drawn in `styles`."""
    data = EmojiData.load(data_dir, split=split, styles=styles)
    keep = [(i, GROUP_NAMES.index(g)) for i, r in enumerate(data.records) if (g := group_of(r))]
    idx = torch.tensor([i for i, _ in keep])
    return data.glyphs[idx], torch.tensor([y for _, y in keep]), [data.records[i]["name"] for i, _ in keep]


def renders(glyphs: torch.Tensor, g: torch.Generator, white_share: float = 0.5) -> torch.Tensor:
    """Training renders in [-1, 1]: random scale/shift/rotation; white or random backgrounds; noise, blur."""
    b = glyphs.shape[0]
    white = augment_batch(glyphs, 32, g, scale_range=(0.6, 1.0), max_angle=15.0, background="white")
    rand = augment_batch(glyphs, 32, g, scale_range=(0.6, 1.0), max_angle=15.0, background="random")
    use_white = (torch.rand(b, 1, 1, 1, generator=g) < white_share).float()
    x = use_white * white + (1 - use_white) * rand
    # colour: half the time the RGB channels are permuted, a fifth of the time grey, so that a shape
    # group is learned by its shape (a white cherry blossom is a flower too)
    perm = torch.stack([torch.randperm(3, generator=g) for _ in range(b)])  # (B, 3)
    permuted = torch.gather(x, 1, perm[:, :, None, None].expand_as(x))
    x = torch.where(torch.rand(b, 1, 1, 1, generator=g) < 0.5, permuted, x)
    x = torch.where(torch.rand(b, 1, 1, 1, generator=g) < 0.2, x.mean(1, keepdim=True).expand_as(x), x)
    blur = torch.rand(b, 1, 1, 1, generator=g) < 0.3
    x = torch.where(blur, F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1), x)
    x = x + 0.04 * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    return x.clamp(0, 1) * 2 - 1


def eval_renders(glyphs: torch.Tensor, n: int, seed: int = 1234) -> torch.Tensor:
    """n fixed renders per glyph on white, as the DDPMs were trained to draw them: (N*n, 3, 32, 32)."""
    g = torch.Generator().manual_seed(seed)
    reps = glyphs.repeat_interleave(n, 0)
    return augment_batch(reps, 32, g, scale_range=(0.8, 1.0), max_angle=0.0, background="white") * 2 - 1


@torch.inference_mode()
def accuracy(model: nn.Module, glyphs: torch.Tensor, labels: torch.Tensor, n: int = 8) -> dict:
    """Accuracy over n fixed white-background renders per emoji: overall, per group, balanced."""
    model.eval()
    pred = model(eval_renders(glyphs, n)).argmax(1)
    y = labels.repeat_interleave(n)
    per = {GROUP_NAMES[k]: round(float((pred[y == k] == k).float().mean()), 3) for k in range(len(GROUP_NAMES))
           if (y == k).any()}
    return {"accuracy": round(float((pred == y).float().mean()), 3),
            "balanced_accuracy": round(sum(per.values()) / len(per), 3), "per_group": per,
            "emoji": int(labels.shape[0]), "renders_each": n}


def train_judge(data_dir: str, *, steps: int = 1500, batch: int = 64, lr: float = 2e-3, seed: int = 0,
                second: bool = False) -> tuple[nn.Module, dict]:
    """The first judge (a CNN on the training split's Noto renders) or, with `second`, the ConvMixer on
    every group emoji in the other art styles."""
    torch.manual_seed(seed)
    glyphs, labels, _ = group_data(data_dir, None, OTHER_STYLES) if second else group_data(data_dir, "train")
    g = torch.Generator().manual_seed(seed)
    # balanced draws: each group equally likely, then an emoji of it
    w = torch.tensor([1.0 / (labels == y).sum() for y in labels])
    model = ConvMixerJudge() if second else Judge()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    for step in range(steps):
        model.train()
        idx = torch.multinomial(w, batch, replacement=True, generator=g)
        loss = F.cross_entropy(model(renders(glyphs[idx], g)), labels[idx], label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 250 == 0:
            print(json.dumps({"step": step + 1, "loss": round(loss.item(), 4), "elapsed_s": round(time.time() - t0, 1)}),
                  flush=True)
    return model.eval(), {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "train_time_s": round(time.time() - t0, 1),
                          "train_emoji": int(labels.shape[0]), "arch": "convmixer" if second else "cnn",
                          "trained_on": "every group emoji in " + ", ".join(OTHER_STYLES) if second
                          else "the training split's group emoji in noto"}


def save_judge(model: nn.Module, out: str | Path, meta: dict) -> Path:
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "judge.safetensors"))
    (out / "judge.json").write_text(json.dumps({"groups": list(GROUP_NAMES), **meta}, indent=1))
    return out


def load_judge(path: str | Path) -> nn.Module:
    from safetensors.torch import load_file

    path = Path(path)
    meta = json.loads((path / "judge.json").read_text())
    groups = meta["groups"]
    if tuple(groups) != GROUP_NAMES:
        raise ValueError(f"The judge in {path} was trained on groups {groups}, not {list(GROUP_NAMES)}; retrain it.")
    model = ARCHITECTURES[meta.get("arch", "cnn")]()
    model.load_state_dict(load_file(str(path / "judge.safetensors")))
    return model.eval()


@torch.inference_mode()
def judge_groups(model: nn.Module, images: torch.Tensor) -> list[str]:
    """Images (B, 3, 32, 32) in [-1, 1] (resized if another size) -> the group name of each."""
    if images.shape[-1] != 32:
        images = F.interpolate(images, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    return [GROUP_NAMES[i] for i in model(images.float()).argmax(1).tolist()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo_core.training.judge", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/emoji", help="dataset folder from demo_core.emoji_data")
    ap.add_argument("--out", default="assets/models/emoji-judge", help="where to write the judge")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--second", action="store_true", help="the second judge: ConvMixer, trained on the other "
                    "art styles only (write it to assets/models/emoji-judge-2)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, meta = train_judge(args.data, steps=args.steps, seed=args.seed, second=args.second)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.second:  # held out: the Noto style itself, on every group emoji
        held, train = group_data(args.data, None), group_data(args.data, None, OTHER_STYLES)
    else:
        held, train = group_data(args.data, "heldout"), group_data(args.data, "train")
    meta["heldout"] = accuracy(model, held[0], held[1])
    meta["train"] = accuracy(model, train[0], train[1])
    save_judge(model, args.out, meta)
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
