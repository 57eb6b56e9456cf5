"""The lecture's own examples on the bundled gallery: does a text query find its object?

    python bench/gallery_queries.py --model mini-clip [--templates "{}|a photo of {}|an emoji of {}"] [--out F]

Embeds every image of ``assets/gallery/images`` with the model (exact search, as the bundled Flat index
does) and asks, for each template:
- "cat and dog": how many cats and how many dogs are in the top 12 (aim: at least 2 of each);
- the everyday queries ``a {object}`` (dog, car, rocket, …): is a picture of the object in the top 5
  (aim: 9 of 11)?
A result shows an object when its file name names it (``dog_face__twemoji.png``, ``cat_chelsea.jpg``),
by the same word rules as the zero-shot evaluation (``emoji_data.concept_of``: synonyms such as
automobile → car, and names such as "hot dog" that are not the thing).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo_core.clip.model import ClipModel  # noqa: E402
from demo_core.images import load_image  # noqa: E402
from demo_core.training.emoji_data import CONCEPT_SYNONYMS, NOT_CONCEPT, _words  # noqa: E402

GALLERY = ROOT / "assets" / "gallery" / "images"
EVERYDAY = ("dog", "car", "rocket", "fish", "bird", "moon", "flower", "tree", "house", "sun", "cat")


def shows(path: Path, concept: str) -> bool:
    """Does this gallery file show `concept`, by its name? (photos: cat_chelsea, rocket_launch, …)"""
    name = path.stem.split("__")[0].replace("_", " ")  # dog_face__twemoji.png: the emoji "dog face"
    if name in {n.replace("’", " ").replace("'", " ").replace("-", " ") for n in NOT_CONCEPT} | set(NOT_CONCEPT):
        return False
    return bool(_words(name) & set(CONCEPT_SYNONYMS.get(concept, (concept,))))


def gallery_paths(noto_only: bool = False) -> list[Path]:
    """The bundled gallery's pictures (without the other-style renders when `noto_only`)."""
    return sorted(p for p in GALLERY.rglob("*") if p.suffix.lower() in {".png", ".jpg"}
                  and not (noto_only and p.parent.name == "styles"))


def embed(clip: ClipModel, paths: list[Path]) -> torch.Tensor:
    """The pictures' image embeddings, 64 at a time."""
    return torch.cat([clip.encode_images([load_image(p) for p in paths[i:i + 64]]) for i in range(0, len(paths), 64)])


def run(model: str, templates: list[str], k_everyday: int = 5, k_pair: int = 12, noto_only: bool = False) -> dict:
    clip = ClipModel.load(model, "cpu")
    paths = gallery_paths(noto_only)
    t0 = time.time()
    images = embed(clip, paths)
    out = {"model": clip.name, "gallery_images": len(paths), "embed_s": round(time.time() - t0, 1), "templates": {}}
    for tpl in templates:
        res = {}
        top = (clip.label_embeddings(["cat and dog"], [tpl]) @ images.T)[0].topk(k_pair).indices.tolist()
        res["cat_and_dog_top12"] = [paths[i].name for i in top]
        res["cats"] = sum(shows(paths[i], "cat") for i in top)
        res["dogs"] = sum(shows(paths[i], "dog") for i in top)
        found = {}
        for obj in EVERYDAY:
            q = ("an " if obj[0] in "aeiou" else "a ") + obj
            top = (clip.label_embeddings([q], [tpl]) @ images.T)[0].topk(k_everyday).indices.tolist()
            found[obj] = {"found": any(shows(paths[i], obj) for i in top), "top": [paths[i].name for i in top]}
        res["everyday"] = found
        res["everyday_found"] = sum(f["found"] for f in found.values())
        res["meets_aims"] = res["cats"] >= 2 and res["dogs"] >= 2 and res["everyday_found"] >= 9
        out["templates"][tpl] = res
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/gallery_queries.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mini-clip")
    ap.add_argument("--templates", default="{}|a photo of {}|a photo of {}.|a picture of {}|an emoji of {}",
                    help="|-separated query templates to compare")
    ap.add_argument("--noto-only", action="store_true",
                    help="leave out the other art styles' renders (emoji/styles/): the gallery before they were added")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    res = run(args.model, args.templates.split("|"), noto_only=args.noto_only)
    for tpl, r in res["templates"].items():
        missed = [o for o, f in r["everyday"].items() if not f["found"]]
        print(f"{tpl!r:22} cats {r['cats']} dogs {r['dogs']} in top 12; everyday {r['everyday_found']}/11 in top 5"
              f"{' (missed: ' + ', '.join(missed) + ')' if missed else ''}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
