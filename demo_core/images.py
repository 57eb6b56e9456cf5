"""Opening user images safely: one function, clear errors, every Pillow mode turned into RGB.

A user can hand the app anything: a text file renamed .png, a truncated JPEG, a PNG whose header
claims 40000x40000 (a decompression bomb), CMYK, 16-bit greyscale, palette images with a
transparent colour, RGBA, or a phone photo whose EXIF says "rotate 90°". ``load_image`` reads the
header first, refuses what is too large *before* decoding it, applies the EXIF orientation and
returns an 8-bit RGB image; anything else raises ``ImageError`` with a sentence for the user.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = int(os.environ.get("DEMO_MAX_IMAGE_PIXELS", 50_000_000))  # 50 megapixels
# Pillow refuses images over 2 x MAX_IMAGE_PIXELS inside Image.open with its own exception;
# we check the size ourselves (with a clearer message), so Pillow's guard is lifted for
# header reads. Decoding still only happens after our check.
Image.MAX_IMAGE_PIXELS = None


class ImageError(ValueError):
    """An input that is not a usable image; the message is meant for the user."""


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


def load_image(source, *, max_pixels: int = MAX_PIXELS, draft_size: int | None = None) -> Image.Image:
    """Open an image path, bytes or PIL image as 8-bit RGB, upright per its EXIF orientation.

    ``draft_size``: the caller will shrink the image to about this many pixels a side anyway, so a
    JPEG may be decoded at 1/2, 1/4 or 1/8 scale (never below draft_size): far less decoding work.

    Raises:
        ImageError: no image given, not an image, unreadable/truncated, or too many pixels.
    """
    if source is None:
        raise ImageError("No image given: upload one, paste one or pick an example.")
    if isinstance(source, Image.Image):
        im = source
    else:
        try:
            if isinstance(source, (bytes, bytearray)):
                im = Image.open(io.BytesIO(source))
            else:
                path = Path(source)
                if not path.is_file():
                    raise ImageError(f"Image file not found: {path.name}")
                im = Image.open(path)
        except UnidentifiedImageError:
            raise ImageError("That file is not an image this app can read (try PNG, JPEG or WebP).") from None
        except OSError as e:
            raise ImageError(f"The image file is damaged or incomplete and could not be read ({e}).") from None
    w, h = im.size
    if w * h > max_pixels:
        raise ImageError(
            f"The image is {w}×{h} ({w * h / 1e6:.0f} megapixels); the limit is "
            f"{max_pixels / 1e6:.0f} megapixels. Please use a smaller image."
        )
    if w == 0 or h == 0:
        raise ImageError("The image is empty (0 pixels wide or high).")
    try:
        if draft_size and im.format == "JPEG":
            im.draft("RGB", (draft_size, draft_size))
        im.load()
        im = ImageOps.exif_transpose(im) or im
        return _to_rgb(im)
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt pixel data
        raise ImageError(f"The image file is damaged or incomplete and could not be decoded ({e}).") from None


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) as stored, read from the header only (EXIF rotation applied)."""
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("That file is not an image this app can read (try PNG, JPEG or WebP).") from None
    except OSError as e:
        raise ImageError(f"The image file is damaged or incomplete and could not be read ({e}).") from None
    w, h = im.size
    orientation = im.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
