"""The bundled search gallery: emoji renders plus public-domain photos that scikit-image ships.

    python -m demo_core.training.gallery --data data/emoji --out assets/gallery/images
    python index_builder assets/gallery/images --out assets/gallery/index --model mini-clip-3
    python index_builder assets/gallery/images --out assets/gallery/index-mini-clip --model mini-clip

Emoji: every held-out emoji of an evaluation concept, then a seeded sample of the other held-out
and training emoji, rendered at 128 px on varied backgrounds (``emoji_data.render_fixed``).
Other art styles: everyday objects (``STYLE_EMOJI``) drawn in two of the four SVG styles each
(Twemoji, Fluent flat/modern/high-contrast, in rotation), so that "cat and dog" finds cats and dogs drawn
differently (``emoji/styles/<name>__<style>.png``; the caption is the name).
Photos: scikit-image's bundled samples that its docs mark CC0 or public domain (scikit-image is
needed only to make the gallery, not to run the app).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

from ..images import to_pil
from .emoji_data import EVAL_CONCEPTS, EmojiData, concept_of, render_fixed

# scikit-image sample -> file name; all CC0 or public domain per skimage.data's docstrings.
PHOTOS = {
    "chelsea": "cat_chelsea", "astronaut": "astronaut", "coffee": "coffee_cup", "rocket": "rocket_launch",
    "camera": "cameraman", "horse": "horse_silhouette", "hubble_deep_field": "hubble_deep_field",
    "brick": "brick_wall", "grass": "grass", "gravel": "gravel", "retina": "retina",
}


# Everyday objects shown again in other art styles (each in two of them).
STYLE_EMOJI = ("dog", "dog face", "cat face", "cat", "automobile", "rocket", "tropical fish", "fish", "bird",
               "crescent moon", "sunflower", "tulip", "deciduous tree", "house", "sun")


# The styles the bundled gallery was drawn from (fixed, so adding a style to the dataset does not change it).
GALLERY_STYLES = ("twemoji", "fluent-flat", "fluent-modern", "fluent-high-contrast")


def write_style_gallery(data_dir: Path, out: Path, seed: int = 0) -> int:
    styles = list(GALLERY_STYLES)
    folder = out / "emoji" / "styles"
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for i, name in enumerate(STYLE_EMOJI):
        for style in (styles[i % len(styles)], styles[(i + 2) % len(styles)]):
            data = EmojiData.load(data_dir, None, (style,))
            rows = [j for j, r in enumerate(data.records) if r["name"] == name]
            if not rows:
                continue
            img = render_fixed(data.glyphs[rows[:1]], 128, seed + i)[0]
            to_pil(img, (0, 1)).save(folder / f"{slug(name)}__{slug(style)}.png", optimize=True)
            written += 1
    return written


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:60]


def write_gallery(data_dir: Path, out: Path, n_other: int = 220, seed: int = 0) -> dict:
    from PIL import Image

    counts = {}
    for split in ("heldout", "train"):
        data = EmojiData.load(data_dir, split)
        order = list(range(len(data)))
        random.Random(seed).shuffle(order)
        concept = [i for i in order if concept_of(data.records[i]) in EVAL_CONCEPTS] if split == "heldout" else []
        quota = n_other // 2
        chosen = concept + [i for i in order if i not in set(concept)][:quota]
        assert len({slug(data.records[i]["name"]) for i in chosen}) == len(chosen), "file name clash"
        renders = render_fixed(data.glyphs[chosen], 128, seed)
        folder = out / "emoji" / split
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in zip(chosen, renders):
            to_pil(img, (0, 1)).save(folder / f"{slug(data.records[i]['name'])}.png", optimize=True)
        counts[f"emoji_{split}"] = len(chosen)
    counts["emoji_other_styles"] = write_style_gallery(data_dir, out, seed)
    try:
        import skimage.data as skd
    except ImportError:
        raise SystemExit("scikit-image is needed to add the photos: pip install scikit-image")
    photos = out / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for fn, name in PHOTOS.items():
        im = Image.fromarray(getattr(skd, fn)())
        im.thumbnail((512, 512))
        im.convert("RGB").save(photos / f"{name}.jpg", quality=85)
    counts["photos"] = len(PHOTOS)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo_core.training.gallery", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/emoji")
    ap.add_argument("--out", default="assets/gallery/images")
    args = ap.parse_args(argv)
    print(json.dumps(write_gallery(Path(args.data), Path(args.out))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
