"""The app's example pictures: held-out emoji rendered from the Noto font (``emoji_data --examples DIR``).

The zero-shot examples (``EXAMPLE_EMOJI``) at 224 px on soft backgrounds, and the unCLIP examples
(``EXAMPLE_ON_WHITE``) at 128 px on white; each must be in the held-out split of the dataset.
"""
from __future__ import annotations

import json
from pathlib import Path

from .emoji_data import find_font, render_glyph

# Held-out emoji rendered as the app's examples (file name -> emoji name); none is in training.
EXAMPLE_EMOJI = {
    "cat.png": "grinning cat with smiling eyes", "dog.png": "dog", "automobile.png": "automobile",
    "palm_tree.png": "palm tree", "train.png": "train", "bird.png": "bird",
}

# Held-out emoji of the judge's shape groups, on white as the unCLIP decoder draws them (its examples).
EXAMPLE_ON_WHITE = ("alarm clock", "grinning cat with smiling eyes", "orange heart", "taxi", "sunflower",
                    "winking face", "waxing crescent moon")


def write_examples(out_dir: Path, data_dir: Path) -> list[Path]:
    """Render EXAMPLE_EMOJI at 224 px on soft backgrounds, and EXAMPLE_ON_WHITE at 128 px on white
    into ``heldout-emoji/``; refuses any emoji seen in training."""
    from PIL import Image, ImageFont

    records = {r["name"]: r for r in json.loads((data_dir / "meta.json").read_text())}
    font = ImageFont.truetype(str(find_font()), 109)
    out_dir.mkdir(parents=True, exist_ok=True)
    backgrounds = [(235, 243, 255), (255, 244, 230), (236, 250, 236), (250, 236, 248)]
    written = []
    for i, (fname, name) in enumerate(EXAMPLE_EMOJI.items()):
        rec = records[name]
        if rec["split"] != "heldout":
            raise ValueError(f"example '{name}' is in the training split")
        glyph = Image.fromarray(render_glyph(rec["char"], font, size=160))
        im = Image.new("RGB", (224, 224), backgrounds[i % len(backgrounds)])
        im.paste(glyph, (32, 32), glyph)
        im.save(out_dir / fname)
        written.append(out_dir / fname)
    (out_dir / "heldout-emoji").mkdir(exist_ok=True)
    for name in EXAMPLE_ON_WHITE:
        rec = records[name]
        if rec["split"] != "heldout":
            raise ValueError(f"example '{name}' is in the training split")
        glyph = Image.fromarray(render_glyph(rec["char"], font, size=116))
        im = Image.new("RGB", (128, 128), (255, 255, 255))
        im.paste(glyph, (6, 6), glyph)
        path = out_dir / "heldout-emoji" / (name.replace(" ", "_") + ".png")
        im.save(path)
        written.append(path)
    return written
