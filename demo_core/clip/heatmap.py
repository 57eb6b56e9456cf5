"""The B×B matrices of How CLIP learns as pictures: each row's image on the left, each column's caption on
top, the value in every cell on a viridis scale, and the diagonal (the true pairs) outlined in red."""
from __future__ import annotations

from typing import Sequence

import torch

_STOPS = [(0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)),
          (1.0, (253, 231, 37))]  # viridis


def _colour(v: float) -> tuple[int, int, int]:
    v = min(1.0, max(0.0, v))
    for (a, ca), (b, cb) in zip(_STOPS, _STOPS[1:]):
        if v <= b:
            f = (v - a) / (b - a)
            return tuple(round(x + f * (y - x)) for x, y in zip(ca, cb))
    return _STOPS[-1][1]


def render_heatmap(values: torch.Tensor, images: Sequence, captions: Sequence[str], title: str,
                   lo: float | None = None, hi: float | None = None, cell: int = 44):
    """A B×B heatmap with each row's image on the left, each column's caption on top (rotated),
    the value in every cell, and the diagonal (the true pairs) outlined."""
    from PIL import Image, ImageDraw

    from ..images import drawable, label_font

    B = values.shape[0]
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    font = label_font(13)
    small = label_font(11 if B <= 10 else 9)
    band = 40  # blank band on top: the UI's label badge sits over it (the picture is shown scaled down)
    top, left = band + 150, cell + 8
    W, H = left + B * cell + 90, top + B * cell + 4  # right margin: the last rotated caption
    canvas = Image.new("RGB", (W, H + 22), "white")
    d = ImageDraw.Draw(canvas)
    d.text((W // 2, band), drawable(title, font), fill="black", font=font, anchor="ma")
    for j, cap in enumerate(captions):
        text = drawable(cap if len(cap) <= 24 else cap[:23] + "…", small)
        tw = int(d.textlength(text, font=small)) + 4
        label = Image.new("RGBA", (tw, 14), (255, 255, 255, 0))
        ImageDraw.Draw(label).text((2, 0), text, fill="black", font=small)
        label = label.rotate(60, expand=True)
        canvas.paste(label, (left + j * cell + cell // 2 - label.width // 3, top - label.height - 2), label)
    for i, im in enumerate(images):
        canvas.paste(im.convert("RGB").resize((cell - 4, cell - 4)), (2, top + i * cell + 2))
    span = (hi - lo) or 1.0
    for i in range(B):
        for j in range(B):
            v = float(values[i, j])
            x, y = left + j * cell, top + i * cell
            c = _colour((v - lo) / span)
            d.rectangle([x, y, x + cell - 1, y + cell - 1], fill=c)
            ink = "black" if sum(c) > 380 else "white"
            d.text((x + cell // 2, y + cell // 2), f"{v:.2f}", fill=ink, font=small, anchor="mm")
        d.rectangle([left + i * cell, top + i * cell, left + i * cell + cell - 1, top + i * cell + cell - 1],
                    outline="red", width=2)
    d.text((4, H + 4), drawable(f"colour: {lo:.2f} (dark) … {hi:.2f} (yellow); red boxes = the true pairs", small),
           fill="black", font=small)
    return canvas
