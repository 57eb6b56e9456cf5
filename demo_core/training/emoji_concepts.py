"""The everyday concepts of the zero-shot evaluation, which emoji show them, and the fixed held-out split.

An emoji counts for a concept when its name or an alias holds the concept's word (or a synonym) and no
other concept's; the split holds emoji out by a hash of their name, so it is the same on every machine.
"""
from __future__ import annotations

import hashlib
import re

HELD_OUT_FRACTION = 0.12

# Everyday concepts for the zero-shot evaluation. Each is matched as a whole word against an
# emoji's name and aliases; an emoji that matches two concepts is left out of that evaluation.
# Every concept keeps some emoji in training and some held out (see `make_split`).
CONCEPTS = (
    "cat", "dog", "car", "tree", "pizza", "flower", "fish", "bird", "heart", "sun",
    "moon", "star", "house", "book", "clock", "ball", "boat", "train", "monkey", "hand",
    "flag", "face", "bus", "mouse", "bear", "cake", "hat", "bell", "phone", "shoe",
)
# Synonyms that count as the concept when matching names (e.g. 🚗's name is "automobile").
CONCEPT_SYNONYMS = {
    "car": ("automobile", "car"),
    "clock": ("clock", "o’clock", "oclock"),
    "phone": ("phone", "telephone"),
    "flower": ("flower", "blossom", "rose", "tulip", "sunflower", "hibiscus"),
    "house": ("house", "home"),
    "hat": ("hat", "cap"),
    "shoe": ("shoe", "boot", "sandal"),
    "bird": ("bird", "chicken", "rooster", "parrot", "eagle", "owl", "penguin", "duck", "dove"),
}
# Concepts reported in the model card (flag/face/hand are in CONCEPTS only so that their many
# emoji are never mis-assigned to another concept; pizza and mouse have a single emoji that shows
# the thing, so none can be held out).
EVAL_CONCEPTS = (
    "cat", "dog", "car", "tree", "flower", "fish", "bird", "heart", "sun",
    "moon", "star", "house", "book", "clock", "ball", "boat", "train", "monkey", "bus",
    "bear", "cake", "hat", "bell", "phone", "shoe",
)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z’']+", text.lower()))


# Emoji whose name holds a concept word but which do not show that thing (🌭 "hot dog").
NOT_CONCEPT = frozenset({
    "hot dog", "railway car", "police car light", "flower playing cards", "fishing pole",
    "bell pepper", "mouse trap", "computer mouse", "rice ball", "field hockey", "cricket game",
    "ping pong", "moon viewing ceremony", "star-struck", "star and crescent", "star of David",
    "bus stop", "couple with heart", "couple with heart man man", "couple with heart woman man",
    "couple with heart woman woman", "heart hands", "mobile phone off", "confetti ball",
})


def concept_of(record: dict) -> str | None:
    """The single concept whose word (or synonym) is in this emoji's name/aliases, else None."""
    if record["name"] in NOT_CONCEPT:
        return None
    words = _words(" ".join([record["name"], *record["aliases"]]))
    hits = [c for c in CONCEPTS if words & set(CONCEPT_SYNONYMS.get(c, (c,)))]
    return hits[0] if len(hits) == 1 else None


def _hash01(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def make_split(records: list[dict]) -> None:
    """Assign record['split'] in place: 'heldout' or 'train', fixed by a hash of the name.

    Emoji of an evaluation concept are held out at a higher rate (35%, at least one, never all),
    so that each concept has held-out test images while training still sees the concept; all
    other emoji are held out at HELD_OUT_FRACTION.
    """
    by_concept: dict[str, list[dict]] = {}
    for r in records:
        c = concept_of(r)
        if c is not None:
            by_concept.setdefault(c, []).append(r)
        r["split"] = "heldout" if _hash01(r["name"]) < HELD_OUT_FRACTION else "train"
    for c, rs in by_concept.items():
        rs = sorted(rs, key=lambda r: _hash01("split:" + r["name"]))
        n_held = max(1, round(0.35 * len(rs))) if len(rs) >= 2 else 0
        for i, r in enumerate(rs):
            r["split"] = "heldout" if i < n_held else "train"
