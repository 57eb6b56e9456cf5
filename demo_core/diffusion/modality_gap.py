"""CLIP's modality gap, measured on true (image, caption) pairs: why unCLIP needs a prior.

A caption's text embedding and its image's embedding are far apart (cosine ~0.3 for CLIP), while two views
of one picture sit close (~0.9): the decoder, trained on image embeddings, never saw anything like a text
embedding. The unCLIP tab plots these cosines as histograms.
"""
from __future__ import annotations

import torch
from PIL import Image

from ..clip.model import ClipModel


def _rescaled(im: Image.Image, scale: float = 0.85) -> Image.Image:
    """The same picture shrunk and centred on its corner colour: another view of the same thing."""
    small = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))), Image.BICUBIC)
    out = Image.new("RGB", im.size, im.getpixel((0, 0)))
    out.paste(small, ((im.width - small.width) // 2, (im.height - small.height) // 2))
    return out


def modality_gap(clip: ClipModel, images: list[Image.Image], captions: list[str]) -> dict[str, list[float]]:
    """Cosines that show CLIP's modality gap on true (image, caption) pairs: text–image of a true pair,
    against image–image of the same picture rescaled (where the decoder's embeddings live) and
    image–image and text–text of *different* pairs."""
    img = clip.encode_images(images)
    view = clip.encode_images([_rescaled(im) for im in images])
    txt = clip.encode_texts(captions)
    off = ~torch.eye(len(img), dtype=torch.bool)
    return {"text–image pair": (img * txt).sum(-1).tolist(),  # short names: the plot's legend is one line
            "same image": (img * view).sum(-1).tolist(),
            "image–image": (img @ img.T)[off].tolist(),
            "text–text": (txt @ txt.T)[off].tolist()}


def gap_histogram(gap: dict[str, list[float]], bins: int = 40) -> list[dict]:
    """Rows {cosine, share, pairs}: each kind's cosines as a histogram over [−0.5, 1] (shares sum to 1)."""
    edges = torch.linspace(-0.5, 1.0, bins + 1)
    rows = []
    for kind, values in gap.items():
        v = torch.tensor(values).clamp(-0.5, 1.0)
        counts = torch.histc(v, bins=bins, min=-0.5, max=1.0)
        share = counts / counts.sum().clamp(min=1)
        rows += [{"cosine": round(float(c), 3), "share": float(s), "pairs": kind}
                 for c, s in zip((edges[:-1] + edges[1:]) / 2, share)]
    return rows
