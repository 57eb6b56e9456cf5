"""Text search quality of CLIP models, beyond the lecture's own queries (bench/gallery_queries.py):

    python bench/search_quality.py --models mini-clip mini-clip-2 [--out bench/search_quality.json]

- **Gallery, 25 concepts**: for each of the evaluation's 25 concepts (cat, dog, car, …), the query ``a {concept}``
  in the model's search template over the bundled gallery's 317 images; a result is right when its file name
  names the concept (``gallery_queries.shows``). Reported: precision in the top 5, mean average precision,
  and the share of concepts whose first result is right.
- **The app's example pictures as a small own collection** (``assets/examples``: 6 pictures, and 7 held-out
  emoji): each picture's own name as the query (``a grinning cat with smiling eyes``), and eight plain concept
  words (``a cat`` → cat.png, ``a dog`` → dog.png, …); the rank of the picture among the 13.

Exact search (as the bundled Flat index does); nothing is trained or timed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from demo_core.clip.model import ClipModel  # noqa: E402
from demo_core.training.emoji_concepts import EVAL_CONCEPTS  # noqa: E402
from gallery_queries import embed, gallery_paths, shows  # noqa: E402

EXAMPLES = ROOT / "assets" / "examples"
WORDS = {"a cat": "cat.png", "a dog": "dog.png", "a car": "automobile.png", "a tree": "palm_tree.png",
         "a clock": "alarm_clock.png", "a heart": "orange_heart.png", "a moon": "waxing_crescent_moon.png",
         "a flower": "sunflower.png"}


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _order(clip: ClipModel, images: torch.Tensor, query: str) -> list[int]:
    return (clip.label_embeddings([query], [clip.search_template]) @ images.T)[0].argsort(descending=True).tolist()


def gallery_concepts(clip: ClipModel) -> dict:
    paths = gallery_paths()
    images = embed(clip, paths)
    p5, ap, first = {}, {}, {}
    for concept in EVAL_CONCEPTS:
        rel = [shows(paths[i], concept) for i in _order(clip, images, _a(concept))]
        n = sum(rel)
        if not n:
            continue
        p5[concept] = sum(rel[:5]) / min(5, n)
        hits, total = 0, 0.0
        for k, r in enumerate(rel, 1):
            if r:
                hits += 1
                total += hits / k
        ap[concept] = total / n
        first[concept] = rel.index(True) + 1
    k = len(p5)
    return {"concepts": k, "precision_at_5": round(sum(p5.values()) / k, 3), "mAP": round(sum(ap.values()) / k, 3),
            "first_result_right": round(sum(r == 1 for r in first.values()) / k, 3), "first_right_rank": first}


def example_pictures(clip: ClipModel) -> dict:
    paths = sorted(EXAMPLES.glob("*.png")) + sorted((EXAMPLES / "heldout-emoji").glob("*.png"))
    names = [p.name for p in paths]
    images = embed(clip, paths)
    own = {p.name: _order(clip, images, _a(p.stem.replace("_", " "))).index(i) + 1 for i, p in enumerate(paths)}
    words = {q: _order(clip, images, q).index(names.index(f)) + 1 for q, f in WORDS.items()}
    return {"pictures": len(paths), "own_name_rank": own, "own_name_first": sum(r == 1 for r in own.values()),
            "word_rank": words, "word_first": sum(r == 1 for r in words.values())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/search_quality.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["mini-clip", "mini-clip-2"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = {"command": "python bench/search_quality.py --models " + " ".join(args.models)
           + (f" --out {args.out}" if args.out else ""), "models": {}}
    for name in args.models:
        clip = ClipModel.load(name, "cpu")
        res = {"search_template": clip.search_template, "gallery_25_concepts": gallery_concepts(clip),
               "example_pictures": example_pictures(clip)}
        out["models"][name] = res
        g, e = res["gallery_25_concepts"], res["example_pictures"]
        print(f"{name:14s} gallery: P@5 {g['precision_at_5']:.3f}  mAP {g['mAP']:.3f}  first right "
              f"{g['first_result_right']:.2f} | examples: own name first {e['own_name_first']}/{e['pictures']}, "
              f"word first {e['word_first']}/{len(WORDS)} {e['word_rank']}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
