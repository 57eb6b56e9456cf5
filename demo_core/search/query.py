"""Queries against an ImageIndex: text, image, and query arithmetic ("cat + 2:dog - grass").

A query becomes one normalised vector in CLIP's joint space, then the index returns the
nearest images by cosine similarity. Arithmetic adds and subtracts weighted text embeddings
(in the spirit of rclip): ``cat + 2:dog - grass`` = normalise(e(cat) + 2·e(dog) − e(grass)).
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..clip.model import ClipModel
from ..errors import InputError
from ..images import load_image
from .index import Hit, ImageIndex

THUMB_SIZE = 256
MAX_QUERY_TERMS = 16


@dataclass
class Term:
    weight: float
    text: str


def parse_query(text: str | None) -> list[Term]:
    """'cat + 2:dog - grass' -> [Term(1, 'cat'), Term(2, 'dog'), Term(-1, 'grass')].

    A plain query ('cat and dog') is one term. A term may carry a weight 'W:text'.
    """
    text = (text or "").strip()
    if not text:
        raise InputError("Type something to search for, e.g. cat and dog.")
    tokens = re.split(r"(?:^|\s+)([+-])\s+", text)  # signs count only with spaces around them
    pairs = ([("+", tokens[0])] if tokens[0].strip() else []) + list(zip(tokens[1::2], tokens[2::2]))
    terms = []
    for sign, body in pairs:
        body = body.strip()
        weight = 1.0
        m = re.match(r"^(\d+(?:\.\d+)?)\s*:\s*(.+)$", body)
        if m:
            weight, body = float(m.group(1)), m.group(2).strip()
        if not body:
            raise InputError(f"Part of the query is empty: '{text}'.")
        terms.append(Term(weight if sign == "+" else -weight, body))
    if len(terms) > MAX_QUERY_TERMS:
        raise InputError(f"At most {MAX_QUERY_TERMS} terms in one query.")
    if not terms or all(t.weight <= 0 for t in terms):
        raise InputError("A query needs at least one positive term (only subtractions were given).")
    return terms


def text_query_vector(clip: ClipModel, terms: list[Term], templates: tuple[str, ...] | None = None) -> np.ndarray:
    """Each term in the model's own search template (``ClipModel.search_template``), weighted and summed."""
    emb = clip.label_embeddings([t.text for t in terms], templates or (clip.search_template,))  # (T, D), normalised
    w = torch.tensor([t.weight for t in terms]).unsqueeze(1)
    v = (w * emb).sum(0)
    return torch.nn.functional.normalize(v, dim=0).numpy()


def image_query_vector(clip: ClipModel, image) -> np.ndarray:
    return clip.encode_images([load_image(image)])[0].numpy()


def thumbnail(index: ImageIndex, hit: Hit, cache: Path | None = None) -> Path:
    """A JPEG thumbnail of an indexed file (longest side THUMB_SIZE), made once: cached by path and mtime.

    Written under a name of its own and renamed into place, so requests making the same thumbnail at
    once never see (or serve) a half-written file."""
    src = index.safe_path(hit.path)
    key = hashlib.sha1(os.fsencode(src) + f":{src.stat().st_mtime_ns}".encode()).hexdigest()[:20]  # any name
    cache = cache or Path(tempfile.gettempdir()) / "clip-lab-thumbs"
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{key}.jpg"
    if not out.exists():
        im = load_image(src)
        im.thumbnail((THUMB_SIZE, THUMB_SIZE))
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{key}-", suffix=".jpg")
        try:
            with os.fdopen(fd, "wb") as f:
                im.save(f, format="JPEG", quality=85)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return out
