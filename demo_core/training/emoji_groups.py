"""Shape groups and colour names for emoji: the vocabulary of the text-to-image judge.

A *group* is a kind of thing a person can name at a glance (a face, a heart, a clock…). Each emoji
belongs to at most one group, matched on the words of its name and aliases; an emoji that would
fall in two groups (🙀 is a cat *and* a face) or that only mentions the thing (🚨 "police car
light") belongs to none, so the judge is never taught an ambiguous answer.

A *colour* is the dominant hue of an image's coloured pixels, named with everyday words. The same
function names the colour of a glyph (for captions such as "a red heart") and of a generated sample
(to judge "a blue heart"), so the two can never disagree on what "blue" means.
"""
from __future__ import annotations

import re

import torch

# group -> words that put an emoji's name in it (whole words of the name or an alias)
GROUPS: dict[str, tuple[str, ...]] = {
    "face": ("face",),
    "heart": ("heart", "hearts"),
    "clock": ("clock", "o’clock", "oclock", "thirty"),
    "moon": ("moon",),
    "cat": ("cat",),
    "car": ("car", "automobile", "taxi", "vehicle"),
    "flower": ("flower", "blossom", "rose", "tulip", "sunflower", "hibiscus", "bouquet"),
    "hand": ("hand", "hands", "thumbs", "fist", "fingers", "finger", "salute"),
}
# One prompt per group for the adherence measure (what a person would type).
GROUP_PROMPTS: dict[str, str] = {
    "face": "a smiling face", "heart": "a heart", "clock": "a clock", "moon": "a moon",
    "cat": "a cat", "car": "a car", "flower": "a flower", "hand": "a hand",
}
# Emoji whose name holds a group word but whose picture is something else or a mix of things.
NOT_IN_GROUP = frozenset({
    "police car light", "railway car", "tram car", "flower playing cards", "palm tree", "moon cake",
    "moon viewing ceremony", "couple with heart", "couple with heart man man", "couple with heart woman man",
    "couple with heart woman woman", "heart hands", "folding hand fan", "men holding hands",
    "women holding hands", "woman and man holding hands", "people holding hands", "man raising hand",
    "woman raising hand", "person raising hand", "man tipping hand", "woman tipping hand",
    "person tipping hand", "heart suit", "heart exclamation", "anatomical heart",
    "face in clouds",
})
# Animal or object faces are not "a face" in the smiley sense; their names start with these words.
_NOT_FACE_FIRST_WORDS = frozenset({"cat", "dog", "cow", "dragon", "monkey", "tiger", "horse", "pig", "rabbit",
                                   "mouse", "bear", "wolf", "fox", "lion", "frog", "unicorn", "hamster", "panda",
                                   "koala", "moose", "donkey", "sun", "moon", "clock"})


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z’']+", text.lower()))


def group_of(record: dict) -> str | None:
    """The one group an emoji record ({name, aliases}) belongs to, or None."""
    name = record["name"]
    if name in NOT_IN_GROUP:
        return None
    words = _words(" ".join([name, *record.get("aliases", [])]))
    hits = [g for g, ws in GROUPS.items() if words & set(ws)]
    if len(hits) == 2 and "face" in hits and ("cat" in hits or "moon" in hits):
        hits.remove("face")  # a cat face is a cat, a moon face a moon
    if hits == ["face"] and name.split(" ")[0] in _NOT_FACE_FIRST_WORDS:
        return None
    return hits[0] if len(hits) == 1 else None


# Hue ranges in degrees [lo, hi) for the colour words; red wraps around 0.
HUES: tuple[tuple[str, float, float], ...] = (
    ("red", 345, 360), ("red", 0, 15), ("orange", 15, 40), ("yellow", 40, 70), ("green", 70, 165),
    ("blue", 165, 255), ("purple", 255, 295), ("pink", 295, 345),
)
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey")


def _hsv(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, 3) RGB in [0, 1] -> hue in degrees, saturation, value (each (N,))."""
    mx, arg = rgb.max(dim=1)
    mn = rgb.min(dim=1).values
    d = (mx - mn).clamp(min=1e-8)
    r, g, b = rgb.unbind(1)
    h = torch.where(arg == 0, ((g - b) / d) % 6, torch.where(arg == 1, (b - r) / d + 2, (r - g) / d + 4)) * 60
    s = torch.where(mx > 0, (mx - mn) / mx.clamp(min=1e-8), torch.zeros_like(mx))
    return h, s, mx


def dominant_colour(rgb: torch.Tensor, mask: torch.Tensor | None = None) -> str | None:
    """The colour word of an image's dominant hue.

    Args:
        rgb: (3, H, W) in [0, 1].
        mask: (H, W) bool, the pixels to look at; default: the non-white ones (any channel < 0.9).
    Returns:
        One of COLOURS, or None when fewer than 2% of the pixels are in the mask (a blank image).
    """
    if mask is None:
        mask = rgb.min(dim=0).values < 0.9
    px = rgb.permute(1, 2, 0)[mask]  # (N, 3)
    if px.shape[0] < 0.02 * mask.numel():
        return None
    h, s, v = _hsv(px)
    chromatic = (s > 0.35) & (v > 0.3)
    if chromatic.float().mean() < 0.3:  # mostly greys: name by brightness
        mean_v = float(v.mean())
        return "black" if mean_v < 0.3 else "white" if mean_v > 0.85 else "grey"
    hc, vc = h[chromatic], v[chromatic]
    counts = {c: 0 for c in COLOURS}
    for name, lo, hi in HUES:
        counts[name] += int(((hc >= lo) & (hc < hi)).sum())
    # dark oranges and reds read as brown
    dark_orange = ((hc >= 10) & (hc < 45) & (vc < 0.6)).sum()
    counts["brown"] += int(dark_orange)
    counts["orange"] -= int(((hc >= 15) & (hc < 40) & (vc < 0.6)).sum())
    counts["red"] -= int(((hc >= 10) & (hc < 15) & (vc < 0.6)).sum())
    return max(counts, key=counts.get)


def glyph_colour(glyph: torch.Tensor) -> str | None:
    """Colour word of an RGBA glyph (4, S, S) in [0, 1], over its opaque pixels."""
    return dominant_colour(glyph[:3], glyph[3] > 0.5)


def sampling_weights(data, group_share: float) -> torch.Tensor:
    """Per-emoji draw weights: the group members share `group_share` of the mass, equally by group."""
    groups = [group_of(r) for r in data.records]
    names = sorted({g for g in groups if g})
    w = torch.zeros(len(data))
    others = [i for i, g in enumerate(groups) if g is None]
    if not names or not others:  # nothing to re-weight
        return torch.ones(len(data))
    w[others] = (1 - group_share) / len(others)
    for name in names:
        idx = [i for i, g in enumerate(groups) if g == name]
        w[idx] = group_share / len(names) / len(idx)
    return w
