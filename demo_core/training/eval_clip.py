"""Evaluate a CLIP model on the held-out emoji (never seen in training).

    python -m demo_core.training.eval_clip --model mini-clip --data data/emoji [--random-floor] [--out results.json]

Reports:
- zero-shot top-1 over the everyday concepts in ``emoji_data.EVAL_CONCEPTS`` (cat, dog, car, tree,
  …): each held-out emoji whose name holds exactly one concept word is classified among all of
  them, with the bare label, a single template ("a photo of a {}") and the ensemble of
  ``clip.DEFAULT_TEMPLATES``;
- text->image retrieval R@1 / R@5 over all held-out emoji: the query is the emoji's name, the
  candidates are one render of every held-out emoji.
Images are fixed, seeded augmented renders (``emoji_data.render_fixed``), ``--renders`` per emoji.
``--random-floor`` also scores a randomly initialised model of the same architecture.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from PIL import Image

from ..clip.model import DEFAULT_TEMPLATES, ClipModel
from ..errors import UserError
from ..images import to_pil
from .emoji_data import EVAL_CONCEPTS, EmojiData, concept_of, render_fixed


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
        correct = [((e @ weights.T).argmax(1) == truth).float() for e in img_emb]
        results[f"zero_shot_top1_{name}"] = round(torch.cat(correct).mean().item(), 4)
    results["zero_shot_chance"] = round(1 / len(concepts), 4)

    # text -> image retrieval over every held-out emoji
    candidates = clip.encode_images(_to_pil(render_fixed(data.glyphs, size, seed)))  # (N, D)
    queries = clip.encode_texts([r["name"] for r in data.records])  # (N, D)
    sims = queries @ candidates.T  # (N, N); the right image for query i is i
    rank = (sims > sims.diag().unsqueeze(1)).sum(1)  # how many images beat the right one
    results["t2i_R@1"] = round((rank < 1).float().mean().item(), 4)
    results["t2i_R@5"] = round((rank < 5).float().mean().item(), 4)
    results["t2i_chance_R@1"] = round(1 / len(data), 4)
    results["t2i_chance_R@5"] = round(5 / len(data), 4)
    return results


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
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    try:
        data = EmojiData.load(args.data, split="heldout")
        clip = ClipModel.load(args.model)
    except (FileNotFoundError, UserError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = clip.model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    t0 = time.time()
    out = {"trained": evaluate(clip, data, args.renders, size=size)}
    if args.random_floor:
        out["random_init"] = evaluate(random_init_like(clip), data, args.renders, size=size)
    out["eval_time_s"] = round(time.time() - t0, 1)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
