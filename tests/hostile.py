"""A hostile image collection: every kind of bad file the app and index_builder have met, next to good
images (some of them odd but valid), for tests that build an index over it.

    corpus = make_corpus(tmp_path / "hostile")
    corpus.good  # paths (relative, '/'-separated, as os.walk gives them) that must end up in the index
    corpus.bad   # path as index_builder prints it -> a fragment of the reason it must give

Everything is made in well under a second: the 12000×12000 PNG is a valid 1-bit image whose rows
compress to a few kilobytes, and the "bombs" are headers with no pixel data behind them.
"""
from __future__ import annotations

import os
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, *, pixels: bool = True) -> bytes:
    """A 1-bit greyscale PNG of width×height, all black; with ``pixels=False`` only its header (a
    decompression bomb: the header claims the size, there is nothing to decode)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    body = b""
    if pixels:
        row = b"\x00" * (1 + (width + 7) // 8)  # filter byte 0, then the packed bits
        z = zlib.compressobj(9)
        body = _chunk(b"IDAT", b"".join(z.compress(row) for _ in range(height)) + z.flush())
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + body + _chunk(b"IEND", b"")


@dataclass
class Corpus:
    root: Path
    good: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)


def make_corpus(root: Path) -> Corpus:
    """Write the hostile collection under `root` (created) and say what each file must become."""
    root.mkdir(parents=True)
    c = Corpus(root)

    def good(rel: str, make) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
        c.good.append(rel)

    def bad(rel: str, reason: str, make) -> None:
        make(root / rel)
        c.bad[rel] = reason

    # good: the held-out example emoji, a nested copy (its vector is reused), and valid but odd images
    for p in sorted(EXAMPLES.glob("*.png")):
        good(p.name, lambda dst, p=p: shutil.copy(p, dst))
    good("nested/deeper/Cat Copy.PNG", lambda dst: shutil.copy(EXAMPLES / "cat.png", dst))
    good("folder.jpg/inside.png", lambda dst: shutil.copy(EXAMPLES / "dog.png", dst))  # a folder named .jpg
    rng = np.random.default_rng(0)
    good("cmyk.jpg", lambda dst: Image.new("CMYK", (32, 24), (0, 255, 255, 0)).save(dst))
    good("grey16.png", lambda dst: Image.fromarray(np.full((10, 10), 32768, dtype=np.uint16)).save(dst))
    good("rgba.png", lambda dst: Image.new("RGBA", (8, 8), (0, 0, 255, 0)).save(dst))
    good("photo.jpg", lambda dst: Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(dst))

    def rotated(dst):
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90° clockwise to view"
        Image.new("RGB", (40, 20), (255, 0, 0)).save(dst, exif=exif.tobytes())

    good("phone.jpg", rotated)

    # bad: each must give one `skipped` line with this reason, and nothing else
    bad("bomb.png", "1600 megapixels", lambda dst: dst.write_bytes(png_bytes(40000, 40000, pixels=False)))
    bad("bomb-64mp.png", "8000×8000 (64 megapixels)", lambda dst: dst.write_bytes(png_bytes(8000, 8000, pixels=False)))
    bad("large.png", "12000×12000 (144 megapixels)", lambda dst: dst.write_bytes(png_bytes(12000, 12000)))
    bad("truncated.png", "damaged or incomplete",
        lambda dst: dst.write_bytes((EXAMPLES / "cat.png").read_bytes()[:6590]))

    def cut_jpeg(dst):
        Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(dst)
        dst.write_bytes(dst.read_bytes()[:600])

    bad("cut.jpg", "damaged or incomplete", cut_jpeg)
    bad("broken.jpg", "not an image", lambda dst: dst.write_bytes(b"\xff\xd8\xff not really a jpeg"))
    bad("empty.png", "the file is empty", lambda dst: dst.write_bytes(b""))
    bad("fifo.jpg", "named pipe (FIFO)", lambda dst: os.mkfifo(dst))
    outside = root.parent / f"{root.name}-outside.png"
    shutil.copy(EXAMPLES / "cat.png", outside)
    bad("outside.png", "outside the collection", lambda dst: os.symlink(outside, dst))
    bad("dangling.png", "cannot read", lambda dst: os.symlink(root / "nowhere.png", dst))
    # good too: a name that is not UTF-8 (Latin-1, as from an old camera card or a Windows zip) is a photo all
    # the same, indexed byte for byte; os.walk hands it over with a surrogate for the byte 0xFF
    with open(os.path.join(os.fsencode(root), b"caf\xe9 \xff.png"), "wb") as f:
        f.write(png_bytes(40, 30))
    c.good.append(os.fsdecode(b"caf\xe9 \xff.png"))

    # neither good nor bad: never looked at
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes((EXAMPLES / "dog.png").read_bytes())
    os.symlink(root, root / "nested" / "loop")  # a folder loop, not followed
    return c
