"""Evaluate a CLIP model on the held-out emoji (never seen in training), in every art style.

    python -m demo_core.training.eval_clip --model mini-clip --data data/emoji [--random-floor] [--out results.json]

Two regimes, as the evaluation model was trained (``train_clip --styles seen --split train``):
- **seen styles**: held-out emoji drawn in the styles it trained on (Noto, Fluent flat/modern/high-contrast);
- **unseen style**: held-out emoji drawn in ``emoji_styles.HELD_OUT_STYLE`` (Twemoji), a whole art style
  it never saw: the nearest thing here to CLIP's transfer to a new dataset. ``unseen_style_train_emoji``
  is the same style on the training emoji (the style alone is new).
The headline figures pool the images of a regime. Per style, it reports:
- zero-shot top-1 over the everyday concepts in ``emoji_data.EVAL_CONCEPTS`` (cat, dog, car, tree,
  …): each held-out emoji whose name holds exactly one concept word is classified among all of
  them, with the bare label, a single template ("a photo of a {}") and the ensemble of
  ``clip.DEFAULT_TEMPLATES``;
- text->image retrieval R@1 / R@5 over all held-out emoji: the query is the emoji's name, the
  candidates are one render of every held-out emoji.
Images are fixed, seeded augmented renders (``emoji_data.render_fixed``), ``--renders`` per emoji.
Each pooled figure comes with ``..._ci95``: a 95% percentile bootstrap interval that resamples whole
emoji (all renders of one emoji, in every style, go together: they are not independent draws), so a
difference between two runs can be read against the noise of a test set of about 56 emoji.
``--random-floor`` also scores a randomly initialised model of the same architecture.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from ..clip.model import DEFAULT_TEMPLATES, ClipModel
from ..errors import UserError
from ..images import to_pil
from .emoji_data import EVAL_CONCEPTS, EmojiData, concept_of, render_fixed
from .emoji_styles import ALL_STYLES, HELD_OUT_STYLE, available_styles


def _to_pil(batch: torch.Tensor) -> list[Image.Image]:
    return [to_pil(x, (0, 1)) for x in batch]  # renders are in [0, 1]


def evaluate(clip: ClipModel, data: EmojiData, renders: int = 4, seed: int = 1234, size: int = 64) -> dict:
    concepts = list(EVAL_CONCEPTS)
    items = [(i, concept_of(r)) for i, r in enumerate(data.records)]
    items = [(i, c) for i, c in items if c in concepts]
    idx = torch.tensor([i for i, _ in items])
    truth = torch.tensor([concepts.index(c) for _, c in items])

    results: dict = {"model": clip.name, "heldout_emoji": len(data), "concepts": len(concepts),
                     "zero_shot_images": len(items) * renders, "zero_shot_emoji": len(items)}
    settings = {"label_only": ["{}"], "single_template": [DEFAULT_TEMPLATES[0]], "ensemble": list(DEFAULT_TEMPLATES)}
    img_emb = [clip.encode_images(_to_pil(render_fixed(data.glyphs[idx], size, seed + k))) for k in range(renders)]
    for name, templates in settings.items():
        weights = clip.label_embeddings(concepts, templates)  # (C, D)
        guesses = torch.stack([(e @ weights.T).argmax(1) for e in img_emb])  # (renders, items)
        right = (guesses == truth).float()
        results[f"zero_shot_top1_{name}"] = round(right.mean().item(), 4)
        results[f"_correct_{name}"] = right.flatten()  # renders-major: image r * items + k shows emoji k
        if name == "ensemble":
            results["zero_shot_missed"] = _missed(data, items, concepts, guesses, truth)
    results["zero_shot_chance"] = round(1 / len(concepts), 4)
    results["_image_emoji"] = [data.records[i]["name"] for _ in range(renders) for i, _ in items]

    # text -> image retrieval over every held-out emoji
    candidates = clip.encode_images(_to_pil(render_fixed(data.glyphs, size, seed)))  # (N, D)
    queries = clip.encode_texts([r["name"] for r in data.records])  # (N, D)
    sims = queries @ candidates.T  # (N, N); the right image for query i is i
    rank = (sims > sims.diag().unsqueeze(1)).sum(1)  # how many images beat the right one
    results["_rank"] = rank
    results["_query_emoji"] = [r["name"] for r in data.records]
    results["t2i_R@1"] = round((rank < 1).float().mean().item(), 4)
    results["t2i_R@5"] = round((rank < 5).float().mean().item(), 4)
    results["t2i_chance_R@1"] = round(1 / len(data), 4)
    results["t2i_chance_R@5"] = round(5 / len(data), 4)
    return results


def _missed(data: EmojiData, items: list, concepts: list[str], guesses: torch.Tensor, truth: torch.Tensor) -> list[dict]:
    """The held-out emoji that some render of was labelled wrong, worst first, with the share of renders right and
    the label it was given most often instead (to read what fails; the score is the top-1 figure)."""
    share = (guesses == truth).float().mean(0)
    out = []
    for k in sorted(range(len(items)), key=lambda k: (share[k].item(), k)):
        if share[k] == 1:
            break
        wrong = guesses[:, k][guesses[:, k] != truth[k]]
        out.append({"emoji": data.records[items[k][0]]["name"], "concept": items[k][1],
                    "right": round(share[k].item(), 2), "called": concepts[int(wrong.mode().values)]})
    return out


def bootstrap_ci(units: list[str], right: torch.Tensor, minus: torch.Tensor | None = None, draws: int = 2000,
                 seed: int = 0) -> list[float]:
    """95% percentile bootstrap interval of the mean of `right` (0/1 per image or query), resampling
    whole units: `units[j]` names the emoji that image j shows, and an emoji's images are drawn together.
    With `minus` (another model's 0/1 on the same images): the interval of the difference of the two
    means, both taken on the same resampled emoji (a paired comparison)."""
    names = sorted(set(units))
    index = {n: k for k, n in enumerate(names)}
    unit = torch.tensor([index[u] for u in units])
    score = right.float() - (minus.float() if minus is not None else 0)
    hits = torch.zeros(len(names)).index_add_(0, unit, score)
    count = torch.zeros(len(names)).index_add_(0, unit, torch.ones(len(units)))
    pick = torch.randint(len(names), (draws, len(names)), generator=torch.Generator().manual_seed(seed))
    share = hits[pick].sum(1) / count[pick].sum(1)
    return [round(q, 4) for q in torch.quantile(share, torch.tensor([0.025, 0.975])).tolist()]


def _pool(parts: list[dict], raw: dict | None = None) -> dict:
    """One regime's figures over the images of all its styles (each style's retrieval is within that style),
    each with its 95% interval (``bootstrap_ci``). `raw`, if given, receives the emoji each image shows and
    whether the ensemble labelled it right (for paired comparisons of two models)."""
    out = {"styles": [p["style"] for p in parts], "zero_shot_images": sum(p["zero_shot_images"] for p in parts)}
    images = [name for p in parts for name in p["_image_emoji"]]
    if raw is not None:
        raw.update(images=images, right=torch.cat([p["_correct_ensemble"] for p in parts]))
    for key in [k for k in parts[0] if k.startswith("_correct_")]:
        right = torch.cat([p[key] for p in parts])
        figure = "zero_shot_top1_" + key[len("_correct_"):]
        out[figure] = round(right.mean().item(), 4)
        out[figure + "_ci95"] = bootstrap_ci(images, right)
    rank = torch.cat([p["_rank"] for p in parts])
    queries = [name for p in parts for name in p["_query_emoji"]]
    for k in (1, 5):
        out[f"t2i_R@{k}"] = round((rank < k).float().mean().item(), 4)
        out[f"t2i_R@{k}_ci95"] = bootstrap_ci(queries, rank < k)
    out["zero_shot_chance"] = parts[0]["zero_shot_chance"]
    return out


def evaluate_styles(clip: ClipModel, data_dir: str, renders: int = 4, size: int = 64,
                    styles: tuple[str, ...] | None = None, raw: dict | None = None) -> dict:
    """Seen styles and the unseen style on held-out emoji, each style reported alone and pooled
    (`styles`: default every style the folder holds). `raw`, if given, receives each pooled regime's
    per-image zero-shot results (``_pool``), keyed as the output."""
    raw = {} if raw is None else raw
    styles = styles or available_styles(Path(data_dir))
    per_style = {}
    for style in styles:
        per_style[style] = {"style": style, **evaluate(clip, EmojiData.load(data_dir, "heldout", (style,)), renders,
                                                       size=size)}
    seen = [p for s, p in per_style.items() if s != HELD_OUT_STYLE]
    out = {"model": clip.name, "seen_styles": _pool(seen, raw.setdefault("seen_styles", {})) if seen else None}
    if HELD_OUT_STYLE in per_style:
        out["unseen_style"] = _pool([per_style[HELD_OUT_STYLE]], raw.setdefault("unseen_style", {}))
        train_emoji = EmojiData.load(data_dir, "train", (HELD_OUT_STYLE,))
        if len(train_emoji):  # a sample of the held-out set has none
            out["unseen_style_train_emoji"] = _pool([{"style": HELD_OUT_STYLE,
                                                      **evaluate(clip, train_emoji, renders, size=size)}])
    out["per_style"] = {s: {k: v for k, v in p.items() if not k.startswith("_")} for s, p in per_style.items()}
    return out


def input_size(clip: ClipModel) -> int:
    """The side in pixels the model's image tower reads (open_clip keeps an int or a pair)."""
    size = clip.model.visual.image_size
    return size[0] if isinstance(size, (tuple, list)) else size


def write_sample(data_dir: str, out: str, size: int = 48) -> dict:
    """A small copy of the dataset for checks that run anywhere: the first held-out emoji (by name) of each
    evaluation concept, in every style, glyphs resampled to `size` px (same files as the full set)."""
    import numpy as np
    from PIL import Image

    from .emoji_styles import load_styles

    src, dst = Path(data_dir), Path(out)
    records = json.loads((src / "meta.json").read_text())
    first: dict[str, int] = {}
    for i in sorted(range(len(records)), key=lambda i: records[i]["name"]):
        c = concept_of(records[i])
        if records[i]["split"] == "heldout" and c in EVAL_CONCEPTS and c not in first:
            first[c] = i
    keep = sorted(first.values())
    (dst / "styles").mkdir(parents=True, exist_ok=True)
    small = lambda g: np.stack([np.asarray(Image.fromarray(x).resize((size, size), Image.LANCZOS)) for x in g])  # noqa: E731
    for style, (glyphs, present) in load_styles(src, available_styles(src)).items():
        if style == "noto":
            np.save(dst / "glyphs.npy", small(glyphs[keep]))
        else:
            np.save(dst / "styles" / f"{style}.npy", small(glyphs[keep]))
            np.save(dst / "styles" / f"{style}.present.npy", present[keep])
    (dst / "meta.json").write_text(json.dumps([records[i] for i in keep], ensure_ascii=False, indent=0))
    return {"emoji": len(keep), "size": size}


def random_init_like(clip: ClipModel, seed: int = 0) -> ClipModel:
    """Same architecture, freshly initialised weights: the floor."""
    import copy

    torch.manual_seed(seed)
    model = copy.deepcopy(clip.model)
    for module in model.modules():
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()
    if hasattr(model, "initialize_parameters"):
        model.initialize_parameters()
    from ..registry import ClipSpec

    spec = ClipSpec(f"{clip.spec.spec} (random init)", "local", clip.spec.model_name)
    return ClipModel(model, clip.preprocess, clip.tokenizer, spec, clip.device)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo_core.training.eval_clip", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mini-clip", help="CLIP spec to evaluate (default: mini-clip)")
    ap.add_argument("--data", default="data/emoji", help="dataset folder from demo_core.training.emoji_data")
    ap.add_argument("--renders", type=int, default=4, help="augmented renders per held-out emoji")
    ap.add_argument("--random-floor", action="store_true", help="also score a random-init model of the same shape")
    ap.add_argument("--styles", default=None,
                    help=f"comma-separated art styles to score, of {', '.join(ALL_STYLES)} "
                    "(default: every style the --data folder holds)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--make-sample", default=None, metavar="DIR",
                    help="instead of evaluating, write a small sample of --data (one held-out emoji per concept, "
                    "every style) to DIR")
    args = ap.parse_args(argv)
    if args.make_sample:
        try:
            print(json.dumps(write_sample(args.data, args.make_sample)))
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    try:
        styles = tuple(s.strip() for s in (args.styles or ",".join(available_styles(Path(args.data)))).split(",")
                       if s.strip())
        if unknown := set(styles) - set(ALL_STYLES):
            raise UserError(f"unknown style(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL_STYLES)}")
        EmojiData.load(args.data, split="heldout", styles=styles)  # a missing style fails here, before the model loads
        clip = ClipModel.load(args.model)
    except (FileNotFoundError, UserError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = input_size(clip)
    t0 = time.time()
    out = {"trained": evaluate_styles(clip, args.data, args.renders, size, styles)}
    if args.random_floor:
        out["random_init"] = evaluate_styles(random_init_like(clip), args.data, args.renders, size, styles)
    out["eval_time_s"] = round(time.time() - t0, 1)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
