"""Whatever a user uploads becomes an upright 8-bit RGB image or a clear ImageError."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from demo_core.errors import ImageError
from demo_core.images import check_readable, header_size, load_image, to_pil, to_uint8


def bomb_png(path, width=40000, height=40000):
    """A tiny PNG file whose header claims width x height pixels (a decompression bomb)."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def test_no_image():
    with pytest.raises(ImageError, match="No image"):
        load_image(None)


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not a picture")
    with pytest.raises(ImageError, match="not an image"):
        load_image(p)


def test_truncated_image(tmp_path):
    p = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:600])
    with pytest.raises(ImageError, match="damaged or incomplete"):
        load_image(p)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    p = bomb_png(tmp_path / "bomb.png")
    with pytest.raises(Image.DecompressionBombError):
        Image.open(p)  # Pillow's own guard is on, for every library in the process
    with pytest.raises(ImageError, match="1600 megapixels; the limit is 50 megapixels"):
        load_image(p)
    with pytest.raises(ImageError, match="1600 megapixels"):
        header_size(p.read_bytes())  # the index builder's header read says the same, without a traceback


def test_our_limit_refuses_what_pillow_would_open(tmp_path):
    p = bomb_png(tmp_path / "big.png", 8000, 8000)  # 64 MP: under Pillow's error threshold, over ours
    with pytest.raises(ImageError, match="8000×8000 \\(64 megapixels\\); the limit is 50"):
        load_image(p)


def test_a_limit_above_pillows_is_allowed_for_that_one_open_only(tmp_path, monkeypatch):
    p = tmp_path / "wide.png"
    Image.new("RGB", (300, 100), (0, 200, 0)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses more than 2000 pixels now
    with pytest.raises(ImageError, match="megapixels"):
        load_image(p, max_pixels=1500)
    assert load_image(p, max_pixels=40_000).size == (300, 100)  # our limit is the larger: it decides
    assert Image.MAX_IMAGE_PIXELS == 1000  # and Pillow's guard is back as it was


def test_the_upload_check_reads_headers_only_and_says_what_load_image_would(tmp_path):
    """What the app runs on every upload: the same refusals as load_image for a non-image or too many pixels;
    a truncated file passes (its header is whole), and load_image still refuses it when it is used."""
    notes = tmp_path / "notes.png"
    notes.write_text("this is not a picture")
    with pytest.raises(ImageError, match="not an image"):
        check_readable(notes)
    with pytest.raises(ImageError, match="8000×8000 \\(64 megapixels\\); the limit is 50"):
        check_readable(bomb_png(tmp_path / "big.png", 8000, 8000))
    with pytest.raises(ImageError, match="1600 megapixels"):
        check_readable(bomb_png(tmp_path / "bomb.png"))
    cut = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(cut)
    cut.write_bytes(cut.read_bytes()[:len(cut.read_bytes()) // 2])
    check_readable(cut)
    with pytest.raises(ImageError, match="damaged or incomplete"):
        load_image(cut)


def test_one_conversion_from_model_tensors_to_pixels():
    import torch

    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 3.0]).view(1, 1, 5)  # (C=1, H=1, W=5) in [-1, 1], some outside
    assert to_uint8(x).tolist() == [[[0, 0, 0], [0, 0, 0], [128, 128, 128], [255, 255, 255], [255, 255, 255]]]
    y = torch.full((2, 3, 2, 2), 0.5)  # a batch in [0, 1]
    assert to_uint8(y, (0, 1)).shape == (2, 2, 2, 3) and int(to_uint8(y, (0, 1))[0, 0, 0, 0]) == 128
    assert to_pil(torch.zeros(3, 4, 6)).size == (6, 4)


def test_cmyk(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 24), (0, 255, 255, 0)).save(p)  # pure red in CMYK
    im = load_image(p)
    assert im.mode == "RGB" and im.size == (32, 24)
    r, g, b = im.getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60


def test_16_bit_greyscale_keeps_its_brightness(tmp_path):
    p = tmp_path / "g16.png"
    arr = np.full((10, 10), 32768, dtype=np.uint16)  # mid grey in 16 bits
    Image.fromarray(arr).save(p)
    assert Image.open(p).mode.startswith("I")
    im = load_image(p)
    assert im.mode == "RGB"
    assert 120 <= im.getpixel((0, 0))[0] <= 135  # not clipped to white


def test_palette_with_transparency_composited_on_white(tmp_path):
    p = tmp_path / "pal.png"
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.putpixel((0, 0), 1)
    im.info["transparency"] = 0
    im.save(p, transparency=0)
    out = load_image(p)
    assert out.getpixel((0, 0)) == (255, 0, 0)
    assert out.getpixel((5, 5)) == (255, 255, 255)  # transparent -> white, not black


def test_alpha_composited_on_white(tmp_path):
    p = tmp_path / "rgba.png"
    Image.new("RGBA", (8, 8), (0, 0, 255, 0)).save(p)
    assert load_image(p).getpixel((3, 3)) == (255, 255, 255)


def test_exif_rotation_is_applied(tmp_path):
    p = tmp_path / "phone.jpg"
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    im.save(p, exif=exif.tobytes(), quality=95)
    out = load_image(p)
    assert out.size == (20, 40)
    assert out.getpixel((10, 5))[0] > 200  # red ends up on top
    assert out.getpixel((10, 35))[2] > 200  # blue at the bottom
