"""Search the bundled gallery in words no training caption holds ("puppy", "kitten", "automobile", ...).

    python bench/unseen_words.py --models mini-clip-2 mini-clip-3 [--out bench/unseen_words.json]

A user types their own words, not the emoji's CLDR names. Each query here is a word for one of the gallery's
everyday objects (``gallery_queries.EVERYDAY``) that appears in no caption of the training data (names, aliases
and keywords in ``data/emoji/meta.json``), asked as "a photo of {word}". A query counts as found when a picture of
its object (by file name, ``gallery_queries.shows``) is in the top 5. ``chance`` is what a random ranking finds on average, from the gallery's counts.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gallery_queries import embed, gallery_paths, shows  # noqa: E402

from demo_core.clip.model import ClipModel  # noqa: E402

# word -> the gallery object it names; kept only when no training caption holds the word
WORDS = {"puppy": "dog", "pup": "dog", "doggy": "dog", "hound": "dog", "canine": "dog", "kitten": "cat",
         "kitty": "cat", "feline": "cat", "tomcat": "cat", "automobile": "car", "sedan": "car", "coupe": "car",
         "vehicle": "car", "spaceship": "rocket", "spacecraft": "rocket", "blossom": "flower", "bloom": "flower",
         "daisy": "flower", "tulip": "flower", "sparrow": "bird", "pigeon": "bird", "songbird": "bird",
         "salmon": "fish", "trout": "fish", "lunar": "moon", "sunshine": "sun", "oak": "tree", "pine": "tree",
         "cottage": "house", "home": "house"}


def caption_words(meta: Path) -> set[str]:
    words = set()
    for r in json.loads(meta.read_text()):
        for t in [r["name"], *r.get("aliases", []), *r.get("keywords", [])]:
            words |= set(re.findall(r"[a-z0-9]+", t.lower()))
    return words


def run(models: list[str], meta: Path, k: int = 5) -> dict:
    known = caption_words(meta)
    queries = {w: c for w, c in WORDS.items() if w not in known}
    paths = gallery_paths()
    n = len(paths)
    chance = sum(1 - math.comb(n - sum(shows(p, c) for p in paths), k) / math.comb(n, k) for c in queries.values())
    out = {"queries": queries, "gallery_images": n, "k": k, "chance_found": round(chance, 2), "models": {}}
    for name in models:
        clip = ClipModel.load(name, "cpu")
        images = embed(clip, paths)
        found = {}
        for word, concept in queries.items():
            top = (clip.label_embeddings([word], ["a photo of {}"]) @ images.T)[0].topk(k).indices.tolist()
            found[word] = {"found": any(shows(paths[i], concept) for i in top), "top": [paths[i].name for i in top]}
        out["models"][name] = {"found": sum(f["found"] for f in found.values()), "of": len(queries),
                               "missed": [w for w, f in found.items() if not f["found"]], "per_word": found}
        print(f"{name:14s} {out['models'][name]['found']:2d} / {len(queries)} found in the top {k} "
              f"(chance {chance:.1f}); missed: {', '.join(out['models'][name]['missed'])}", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["mini-clip-2", "mini-clip-3"])
    ap.add_argument("--meta", default=str(ROOT / "data" / "emoji" / "meta.json"),
                    help="the dataset's meta.json (python -m demo_core.training.emoji_data)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if not Path(args.meta).exists():
        print(f"error: {args.meta} not found; build the dataset first (python -m demo_core.training.emoji_data)",
              file=sys.stderr)
        return 2
    res = run(args.models, Path(args.meta))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
