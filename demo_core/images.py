"""Opening user images safely, and turning model tensors back into pictures.

A user can hand the app anything: a text file renamed .png, a truncated JPEG, a PNG whose header
claims 40000x40000 (a decompression bomb), CMYK, 16-bit greyscale, palette images with a
transparent colour, RGBA, or a phone photo whose EXIF says "rotate 90°". ``load_image`` reads the
header first, refuses what is too large *before* decoding it, applies the EXIF orientation and
returns an 8-bit RGB image; anything else raises ``ImageError`` with a sentence for the user.

Two size guards stand in front of decoding. Pillow's own (``Image.MAX_IMAGE_PIXELS``, an error
past twice that) stays on for the whole process, for every library that opens images here. The
project's limit, ``MAX_PIXELS`` (``DEMO_MAX_IMAGE_PIXELS``), is checked by ``load_image`` with a
plainer message; only when it is set above Pillow's is Pillow's raised, for that one open
(``_pillow_allows``).

``to_uint8`` / ``to_pil`` are the one conversion from model tensors (values in [-1, 1] or [0, 1])
to 8-bit pixels.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

MAX_PIXELS = int(os.environ.get("DEMO_MAX_IMAGE_PIXELS", 50_000_000))  # 50 megapixels
_pillow_limit_lock = threading.Lock()


@contextlib.contextmanager
def _pillow_allows(pixels: int):
    """Let Pillow open an image of up to `pixels` (our own check then guards the decode).

    Only needed when the project's limit is set above Pillow's error threshold; then Pillow's
    limit is raised for this one open and put back, under a lock so two opens cannot interleave."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or pixels <= 2 * limit:
        yield
        return
    with _pillow_limit_lock:
        Image.MAX_IMAGE_PIXELS = pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _open(source, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Image.open on a path or bytes, its failures turned into ImageError (decoding is lazy)."""
    try:
        if isinstance(source, (bytes, bytearray)):
            return Image.open(io.BytesIO(source))
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"Image file not found: {path.name}")
        return Image.open(path)
    except UnidentifiedImageError:
        raise ImageError("That file is not an image this app can read (try PNG, JPEG or WebP).") from None
    except Image.DecompressionBombError as e:  # Pillow's guard: the header claims far too many pixels
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "far too many pixels"
        raise ImageError(f"The image has {size}; the limit is {max_pixels / 1e6:.0f} megapixels. "
                         "Please use a smaller image.") from None
    except OSError as e:
        raise ImageError(f"The image file is damaged or incomplete and could not be read ({e}).") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency is composited on white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if im.mode == "F":
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo or 1.0) * 255.0
        else:
            arr = arr / hi * 255.0
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "PA", "La"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "RGBa"):
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        return background
    return im.convert("RGB")


def check_readable(source, *, max_pixels: int = MAX_PIXELS) -> None:
    """Raise ImageError if `source` (a path or bytes) is not an image ``load_image`` could open, reading only its
    header: nothing is decoded, so it is cheap enough to run on every upload."""
    with _pillow_allows(max_pixels):
        _refuse_too_many_pixels(*_open(source, max_pixels).size, max_pixels)


def _refuse_too_many_pixels(w: int, h: int, max_pixels: int) -> None:
    if w * h > max_pixels:
        raise ImageError(f"The image is {w}×{h} ({w * h / 1e6:.0f} megapixels); the limit is "
                         f"{max_pixels / 1e6:.0f} megapixels. Please use a smaller image.")


def load_image(source, *, max_pixels: int = MAX_PIXELS, draft_size: int | None = None) -> Image.Image:
    """Open an image path, bytes or PIL image as 8-bit RGB, upright per its EXIF orientation.

    ``draft_size``: the caller will shrink the image to about this many pixels a side anyway, so a
    JPEG may be decoded at 1/2, 1/4 or 1/8 scale (never below draft_size): far less decoding work.

    Raises:
        ImageError: no image given, not an image, unreadable/truncated, or too many pixels.
    """
    if source is None:
        raise ImageError("No image given: upload one, paste one or pick an example.")
    with _pillow_allows(max_pixels):
        im = source if isinstance(source, Image.Image) else _open(source, max_pixels)
        w, h = im.size
        _refuse_too_many_pixels(w, h, max_pixels)
        if w == 0 or h == 0:
            raise ImageError("The image is empty (0 pixels wide or high).")
        try:
            if draft_size and im.format == "JPEG":
                im.draft("RGB", (draft_size, draft_size))
            im.load()
            im = ImageOps.exif_transpose(im) or im
            return _to_rgb(im)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # corrupt pixel data
            raise ImageError(f"The image file is damaged or incomplete and could not be decoded ({e}).") from None


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) as stored, read from the header only (EXIF rotation applied): no pixel is decoded.

    A PNG keeps its EXIF in an ``eXIf`` chunk that may follow the pixel data, and Pillow decodes the
    whole image to look for it; so a PNG's orientation is read only when the chunk came before the
    pixels (``info["exif"]``), which is where writers put it. Raises ImageError like ``load_image``.
    """
    with _pillow_allows(MAX_PIXELS):
        im = _open(data)
    w, h = im.size
    if im.format == "PNG" and "exif" not in im.info:
        return w, h
    try:
        orientation = im.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError, struct.error):  # a damaged EXIF block: take the size as stored
        orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def to_uint8(x: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Channels-first floats (…, C, H, W) in `value_range` -> channels-last uint8 (…, H, W, C).

    Values outside the range are clipped; one channel is repeated to three (RGB)."""
    lo, hi = value_range
    x = x.detach().float().cpu().clamp(lo, hi)
    if x.shape[-3] == 1:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    return ((x - lo) * (255.0 / (hi - lo))).round().byte().movedim(-3, -1).numpy()


def to_pil(x: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> Image.Image:
    """One (C, H, W) tensor in `value_range` -> an RGB PIL image (see ``to_uint8``)."""
    return Image.fromarray(to_uint8(x, value_range))


DISPLAY = 128  # px; 32x32 samples are upscaled with nearest-neighbour so pixels stay visible


def grid(batch: torch.Tensor, size: int = DISPLAY, per_row: int | None = None) -> Image.Image:
    """(B, C, H, W) in [-1, 1] -> one image of the B samples, `per_row` a row (default: all in one
    row), each upscaled to `size` px with nearest-neighbour (the diffusion views' pictures)."""
    per_row = per_row or len(batch)
    rows = (len(batch) + per_row - 1) // per_row
    out = Image.new("RGB", (size * per_row, size * rows), "white")
    for i, x in enumerate(batch):
        out.paste(to_pil(x).resize((size, size), Image.NEAREST), ((i % per_row) * size, (i // per_row) * size))
    return out


# Fonts for labels drawn into pictures: DejaVu Sans (Debian's fonts-dejavu-core, most Linux images) has the
# arrows and ellipses the labels use; Pillow's own font, the fallback, lacks them (they came out as boxes).
LABEL_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf",
               "/usr/share/fonts/TTF/DejaVuSans.ttf", "/Library/Fonts/Arial Unicode.ttf", "C:/Windows/Fonts/arial.ttf")
ASCII_FOR = {"→": "->", "←": "<-", "…": "...", "·": "-", "×": "x", "τ": "tau"}


def label_font(size: int):
    """A TrueType font of `size` px for labels in pictures (see LABEL_FONTS)."""
    from PIL import ImageFont

    for path in LABEL_FONTS:
        if os.path.exists(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def drawable(text: str, font) -> str:
    """`text` with each character that `font` has no glyph for (it would draw the missing-glyph box)
    written in ASCII (→ as ->, … as ...)."""
    missing = bytes(font.getmask("\U0010fffd"))
    return "".join(ASCII_FOR.get(ch, ch) if ch in ASCII_FOR and bytes(font.getmask(ch)) == missing else ch
                   for ch in text)
