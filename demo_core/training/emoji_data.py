"""Emoji image–caption data, made offline from the Noto Color Emoji font.

The bundled mini-CLIP is trained on this. Nothing here is downloaded:
- glyphs come from Debian's ``fonts-noto-color-emoji`` (NotoColorEmoji.ttf, SIL OFL 1.1);
- names and aliases come from the ``emoji`` package (CLDR short names);
- keywords come from Debian's ``unicode-cldr-core`` annotations, when that package is installed.

``python -m demo_core.training.emoji_data --out data/emoji`` writes ``glyphs.npy`` (N, S, S, 4 uint8 RGBA,
each glyph centred on a transparent square) and ``meta.json`` (one record per emoji: char, name,
aliases, keywords, split). The held-out split is fixed by a hash of the emoji's name, so it is the
same on every machine, and held-out emoji are never shown to training.

Augmentation happens per batch in torch (``augment_batch``): random background (solid or
two-colour gradient), scale, rotation and position, so every epoch sees new renders.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .emoji_concepts import (CONCEPT_SYNONYMS, CONCEPTS, EVAL_CONCEPTS, HELD_OUT_FRACTION,  # noqa: F401, E402
                             NOT_CONCEPT, _words, concept_of, make_split)

FONT_PATHS = (
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",
)
CLDR_ANNOTATIONS = (
    "/usr/share/unicode/cldr/common/annotations/en.xml",
    "/usr/share/unicode/cldr/common/annotationsDerived/en.xml",
)
GLYPH_SIZE = 96  # stored glyph canvas; renders are resampled from it
SKIN_TONES = {chr(c) for c in range(0x1F3FB, 0x1F400)}
def find_font() -> Path:
    for p in FONT_PATHS:
        if os.path.exists(p):
            return Path(p)
    raise FileNotFoundError(
        "Noto Color Emoji font not found; install it with `apt-get install fonts-noto-color-emoji`"
    )


def _clean_name(name: str) -> str:
    """':cat_face:' -> 'cat face'"""
    return name.strip(":").replace("_", " ").strip()


def load_cldr_keywords() -> dict[str, list[str]]:
    """CLDR English annotations: emoji (without FE0F) -> keywords. Empty if not installed."""
    out: dict[str, list[str]] = {}
    for path in CLDR_ANNOTATIONS:
        if not os.path.exists(path):
            continue
        for el in ET.parse(path).getroot().iter("annotation"):
            if el.get("type") == "tts" or not el.text:
                continue
            cp = el.get("cp", "").replace("\ufe0f", "")
            out.setdefault(cp, [k.strip() for k in el.text.split("|") if k.strip()])
    return out


def render_glyph(ch: str, font, size: int = GLYPH_SIZE) -> np.ndarray | None:
    """Render one emoji to a (size, size, 4) RGBA array, centred; None if the font lacks it."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (320, 200), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((20, 20), ch, font=font, embedded_color=True)
    bbox = canvas.getbbox()
    if bbox is None:
        return None
    w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
    if w > 1.6 * h or w < 20 or h < 20:  # not one glyph: the font lacks this sequence
        return None
    glyph = canvas.crop(bbox)
    scale = size / max(w, h)
    glyph = glyph.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
    out = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    out.paste(glyph, ((size - glyph.width) // 2, (size - glyph.height) // 2))
    return np.asarray(out, dtype=np.uint8)


def build(out_dir: Path) -> dict:
    """Render every fully-qualified emoji without skin-tone variants; write glyphs + meta."""
    import emoji
    from PIL import ImageFont

    font = ImageFont.truetype(str(find_font()), 109)
    keywords = load_cldr_keywords()
    records, glyphs = [], []
    for ch, info in emoji.EMOJI_DATA.items():
        if info.get("status") != emoji.STATUS["fully_qualified"] or SKIN_TONES & set(ch):
            continue
        arr = render_glyph(ch, font)
        if arr is None:
            continue
        name = _clean_name(info["en"])
        aliases = sorted({_clean_name(a) for a in info.get("alias", [])} - {name})
        kw = keywords.get(ch.replace("\ufe0f", ""), [])
        records.append({"char": ch, "name": name, "aliases": aliases, "keywords": kw})
        glyphs.append(arr)
    make_split(records)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "glyphs.npy", np.stack(glyphs))
    (out_dir / "meta.json").write_text(json.dumps(records, ensure_ascii=False, indent=0))
    return {
        "emoji": len(records),
        "train": sum(r["split"] == "train" for r in records),
        "heldout": sum(r["split"] == "heldout" for r in records),
        "with_keywords": sum(bool(r["keywords"]) for r in records),
    }


@dataclass
class EmojiData:
    """Rows of (glyph, record). With one style (the default, ``noto``) a row is an emoji; with several,
    a row is one drawing of an emoji, its record carries ``style``, and ``emoji_ids`` says which emoji."""

    glyphs: torch.Tensor  # (N, 4, S, S) float in [0, 1], RGBA
    records: list[dict]
    emoji_ids: torch.Tensor | None = None  # (N,) row -> emoji (index into meta.json)

    @classmethod
    def load(cls, data_dir: str | Path, split: str | None = None, styles: tuple[str, ...] = ("noto",)) -> "EmojiData":
        from .emoji_styles import load_styles

        data_dir = Path(data_dir)
        if not (data_dir / "meta.json").exists():
            raise FileNotFoundError(
                f"No emoji dataset in {data_dir}; make one with "
                f"`python -m demo_core.training.emoji_data --out {data_dir}`"
            )
        records = json.loads((data_dir / "meta.json").read_text())
        keep = [i for i, r in enumerate(records) if split is None or r["split"] == split]
        rows, recs, ids = [], [], []
        for style, (glyphs, present) in load_styles(data_dir, tuple(styles)).items():
            idx = [i for i in keep if present[i]]
            rows.append(glyphs[idx])
            recs += [records[i] if styles == ("noto",) else {**records[i], "style": style} for i in idx]
            ids += idx
        g = torch.from_numpy(np.concatenate(rows)).permute(0, 3, 1, 2).float() / 255.0
        return cls(g, recs, torch.tensor(ids))

    def __len__(self) -> int:
        return len(self.records)


CAPTION_TEMPLATES = (
    "{}", "{}", "an emoji of {}", "a picture of {}", "an icon of {}", "a drawing of {}",
    "{} emoji", "a photo of {}", "a cartoon of {}",
)


def article(phrase: str) -> str:
    if phrase.endswith("s") and not phrase.endswith("ss"):
        return phrase
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def sample_caption(record: dict, rng: random.Random, single_word: float = 0.0) -> str:
    """A random caption for one emoji: its name, an alias or some keywords, in a random template.

    With probability `single_word` the phrase is instead one word of its name or keywords (the
    "keywords" caption lever of ``train_clip --captions``: zero-shot labels are single words)."""
    words = [w for w in {*record["name"].split(), *record["keywords"]} if " " not in w and len(w) > 2]
    if single_word and words and rng.random() < single_word:
        template = rng.choice(CAPTION_TEMPLATES)
        phrase = rng.choice(sorted(words))
        return template.format(phrase if template == "{}" or "emoji" in template[2:] else article(phrase))
    r = rng.random()
    if r < 0.55 or not (record["aliases"] or record["keywords"]):
        phrase = record["name"]
    elif r < 0.7 and record["aliases"]:
        phrase = rng.choice(record["aliases"])
    elif record["keywords"]:
        kws = record["keywords"][:]
        rng.shuffle(kws)
        phrase = ", ".join(kws[: rng.randint(1, min(4, len(kws)))])
        if rng.random() < 0.5:
            phrase = record["name"] + ", " + phrase
    else:
        phrase = record["name"]
    template = rng.choice(CAPTION_TEMPLATES)
    return template.format(phrase if template == "{}" or "emoji" in template[2:] else article(phrase))


def augment_batch(glyphs: torch.Tensor, out_size: int, generator: torch.Generator, *,
                  scale_range: tuple[float, float] = (0.55, 1.05), max_angle: float = 25.0,
                  background: str = "random", strong: bool = False) -> torch.Tensor:
    """Composite RGBA glyphs (B, 4, S, S) onto backgrounds with random scale, rotation and
    position. ``background`` is "random" (solid or gradient colours) or "white". Returns RGB
    images (B, 3, out_size, out_size) in [0, 1].

    ``strong`` (the "strong" augmentation lever of ``train_clip --augment``) adds, after the draws
    above: a light background behind dark glyphs (line art such as Fluent high-contrast vanishes on
    a dark one), brightness and saturation jitter of the drawing, and a blur by resampling through
    half the resolution for a third of the batch.

    The random draws come from `generator` (a CPU one) whatever the glyphs' device, so a batch is the same
    on a GPU as on the CPU; the compositing runs where the glyphs are."""
    b, dev = glyphs.shape[0], glyphs.device
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(b, generator=generator)  # noqa: E731
    scale = u(*scale_range)  # glyph size as a fraction of the frame
    angle = u(-max_angle, max_angle) * math.pi / 180
    room = (1 - scale).clamp(min=0)
    tx, ty = u(-1, 1) * room, u(-1, 1) * room
    # affine_grid maps output coords to input coords, so the inverse transform goes here.
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, -(cos * tx - sin * ty)], 1),
         torch.stack([sin, cos, -(sin * tx + cos * ty)], 1)], 1
    ).to(dev)  # (B, 2, 3)
    grid = F.affine_grid(theta, (b, 4, out_size, out_size), align_corners=False)
    premult = torch.cat([glyphs[:, :3] * glyphs[:, 3:4], glyphs[:, 3:4]], 1)
    fg = F.grid_sample(premult, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    rgb, alpha = fg[:, :3], fg[:, 3:4]
    # Background: a solid colour or a vertical/horizontal two-colour gradient, sometimes white.
    c1 = torch.rand(b, 3, 1, 1, generator=generator).to(dev)
    c2 = torch.rand(b, 3, 1, 1, generator=generator).to(dev)
    white = (torch.rand(b, 1, 1, 1, generator=generator) < 0.25).to(dev)
    c1 = torch.where(white, torch.ones_like(c1), c1)
    ramp = torch.linspace(0, 1, out_size, device=dev).view(1, 1, out_size, 1)
    vertical = (torch.rand(b, 1, 1, 1, generator=generator) < 0.5).to(dev)
    ramp = torch.where(vertical, ramp, ramp.transpose(2, 3))
    gradient = (torch.rand(b, 1, 1, 1, generator=generator) < 0.4).to(dev)
    bg = torch.where(gradient, c1 * (1 - ramp) + c2 * ramp, c1.expand(-1, -1, out_size, out_size))
    if background == "white":  # the random draws above still happen, so streams stay aligned
        bg = torch.ones_like(bg)
    if strong:
        rgb, bg = _strong(rgb, alpha, bg, generator)
    out = (rgb + (1 - alpha) * bg).clamp(0, 1)  # `rgb` is premultiplied by alpha
    if strong:
        blur = (torch.rand(b, 1, 1, 1, generator=generator) < 1 / 3).to(dev)
        half = F.interpolate(out, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
        out = torch.where(blur, F.interpolate(half, size=out.shape[-2:], mode="bilinear", align_corners=False), out)
    return out


def _strong(rgb: torch.Tensor, alpha: torch.Tensor, bg: torch.Tensor, generator: torch.Generator):
    """Colour jitter of the (premultiplied) drawing and a light background behind dark drawings."""
    b = rgb.shape[0]
    lum = lambda x: (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])  # noqa: E731
    ink = alpha.sum((1, 2, 3)).clamp(min=1e-6)
    dark = (lum(rgb).sum((1, 2, 3)) / ink < 0.25).view(b, 1, 1, 1)
    bg = torch.where(dark, 0.6 + 0.4 * bg, bg)
    bright = (0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=generator)).to(rgb.device)
    sat = (0.7 + 0.6 * torch.rand(b, 1, 1, 1, generator=generator)).to(rgb.device)
    gray = lum(rgb)
    rgb = ((gray + sat * (rgb - gray)) * bright).clamp(min=0)
    return torch.minimum(rgb, alpha), bg  # premultiplied colour never exceeds its alpha


def render_fixed(glyphs: torch.Tensor, out_size: int, seed: int) -> torch.Tensor:
    """Deterministic augmented renders (for evaluation and for the bundled examples)."""
    return augment_batch(glyphs, out_size, torch.Generator().manual_seed(seed))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m demo_core.training.emoji_data",
        description="Render the Noto Color Emoji font into an image-caption dataset "
        "(glyphs.npy + meta.json) with a fixed held-out split, and the same emoji in the npm registry's "
        "openly licensed SVG styles (styles/*.npy, styles/sources.json).",
    )
    ap.add_argument("--out", default="data/emoji", help="output folder (default: data/emoji)")
    ap.add_argument("--styles", choices=("all", "noto"), default="all",
                    help="all: also Twemoji, Fluent Emoji (flat, modern, high-contrast), Emoji One, Noto v1, Firefox OS and Streamline emoji from npm; noto: the font only")
    ap.add_argument("--npm-cache", default="data/npm", help="where the npm tarballs are kept (default: data/npm)")
    ap.add_argument("--examples", default=None, metavar="DIR",
                    help="also render the app's held-out example images into DIR")
    args = ap.parse_args(argv)
    try:
        stats = build(Path(args.out))
        if args.styles == "all":
            from .emoji_styles import build_styles

            stats["styles"] = build_styles(Path(args.out), Path(args.npm_cache), GLYPH_SIZE)
        if args.examples:
            from .emoji_examples import write_examples

            stats["examples"] = [str(p) for p in write_examples(Path(args.examples), Path(args.out))]
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
