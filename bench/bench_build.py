"""index_builder throughput: the builder vs a naive per-image loop vs the model-forward ceiling.

    python bench/bench_build.py [--images 192] [--models mini-clip ViT-B-32] [--out bench/build.json]

Image set: N photo-like JPEGs (1024x768, made by resizing, cropping and recolouring scikit-image's
public-domain samples; seeded) in a temp folder. Three timings per model, same images:
- builder: ``demo_core.search.builder.build_index`` into a fresh index (batched, threaded decode);
- naive: for each file, decode -> preprocess -> encode one image;
- ceiling: the model forward alone on pre-decoded, pre-processed tensors in batches of 64.
ViT-B-32 runs with random weights (no pretrained weights are reachable here); speed is the same.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _report import report  # noqa: E402  (bench/ is on sys.path when run as a script)
from demo_core.clip.model import ClipModel  # noqa: E402
from demo_core.device import pick_device  # noqa: E402
from demo_core.images import load_image  # noqa: E402
from demo_core.search.builder import build_index  # noqa: E402
from demo_core.registry import ClipSpec  # noqa: E402


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    from PIL import Image

    photos = sorted((Path(__file__).resolve().parent.parent / "assets/gallery/images/photos").glob("*.jpg"))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        im = Image.open(photos[i % len(photos)]).convert("RGB").resize((1400, 1050))
        x, y = rng.integers(0, 376), rng.integers(0, 282)
        im = im.crop((x, y, x + 1024, y + 768))
        arr = np.asarray(im).astype(np.float32) * rng.uniform(0.7, 1.3, 3)
        p = folder / f"photo_{i:04d}.jpg"
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(p, quality=90)
        out.append(p)
    return out


def load_model(name: str) -> ClipModel:
    if name != "ViT-B-32":
        return ClipModel.load(name, "cpu")
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    return ClipModel(model, preprocess, open_clip.get_tokenizer("ViT-B-32"),
                     ClipSpec("ViT-B-32 (random init)", "pretrained", "ViT-B-32"), pick_device("cpu"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=192)
    ap.add_argument("--models", nargs="+", default=["mini-clip", "ViT-B-32"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "imgs").mkdir()
        files = make_images(Path(tmp) / "imgs", args.images)
        for name in args.models:
            clip = load_model(name)
            clip.encode_pixels(torch.stack([clip.preprocess(load_image(files[0]))] * 2))  # warm-up
            t = time.perf_counter()
            build_index(Path(tmp) / "imgs", Path(tmp) / f"idx-{len(rows)}", clip, batch_size=64, workers=args.workers, tower="fp32")
            builder = args.images / (time.perf_counter() - t)
            t = time.perf_counter()
            for f in files:
                clip.encode_images([load_image(f)])
            naive = args.images / (time.perf_counter() - t)
            pixels = torch.stack([clip.preprocess(load_image(f)) for f in files])
            t = time.perf_counter()
            for i in range(0, len(pixels), 64):
                clip.encode_pixels(pixels[i:i + 64])
            ceiling = args.images / (time.perf_counter() - t)
            row = {"model": clip.name, "images": args.images, "builder_img_s": round(builder, 1),
                   "naive_img_s": round(naive, 1), "ceiling_img_s": round(ceiling, 1),
                   "builder_vs_ceiling": round(builder / ceiling, 3), "builder_vs_naive": round(builder / naive, 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    report(rows, args.out, torch=torch.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
