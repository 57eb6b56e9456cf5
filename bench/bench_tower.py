"""Faster image towers: images per second and agreement with fp32, one run.

    python bench/bench_tower.py [--models mini-clip vit-b-32] [--batch 32] [--rounds 3] [--threads 2]
                                [--folder assets/gallery/images] [--out bench/tower.json]

Towers: demo_core.clip.tower.TOWERS (fp32, bf16, int8, onnx, onnx-int8), each built from the same
loaded model. Speed: preprocessed pixels of the folder's first --batch images, held in memory (the
tower alone, not decoding); --rounds rounds, each timing every tower in turn on 3 batches after one
warm-up batch (interleaved, so the machine's drift falls on all alike); images/s is the median over
rounds, and `x_fp32` its ratio to fp32's in the same rounds. Agreement: every image of --folder (a
real folder: the app's gallery, photos and emoji) embedded by each tower against fp32
(tower.agreement: least and mean cosine, mean top-10 neighbour overlap within the folder).

End to end (--build-images N; 1,000 at most for ViT-B-32): index_builder's local engine (build_index,
batch 64, 4 decoding threads) on bench_ray's N-image folder, into fresh indexes: --tower fp32; auto
with its AUTO_MIN_IMAGES floor lifted (what it picked and why is its note; the difference to the next
row is the cost of measuring every tower); the tower auto picks here, named (checked on 64 images,
not timed); fp32 again. Wall seconds each.

Models: `mini-clip` (bundled, trained) and `vit-b-32`: the ViT-B-32 architecture of open_clip. Its
trained weights come from the hub, which is not reachable here, so unless a local copy resolves
(e.g. --models "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K" with it cached) it is initialised
at random: its speed is the trained model's (same shapes, same kernels), its agreement is not
evidence about the trained model, and the row says so (`weights`).
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _report import report  # noqa: E402  (bench/ is on sys.path when run as a script)
from demo_core.clip import tower as tower_mod  # noqa: E402
from demo_core.clip.tower import TOWERS, ImageTower, agreement, agrees  # noqa: E402
from demo_core.errors import InputError  # noqa: E402


def load(name: str):
    """(ClipModel, weights) for a model name: a spec the app resolves, or vit-b-32 at random."""
    from demo_core.clip.model import ClipModel
    from demo_core.device import pick_device
    from demo_core.registry import parse_clip_spec

    if name != "vit-b-32":
        return ClipModel.load(name, "cpu"), "trained"
    import open_clip

    torch.manual_seed(0)
    model, _, pre = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    return ClipModel(model, pre, open_clip.get_tokenizer("ViT-B-32"), parse_clip_spec("ViT-B-32"),
                     pick_device("cpu")), "random (hub weights not reachable offline)"


def images(folder: Path) -> list:
    from PIL import Image

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"})
    return [Image.open(p).convert("RGB") for p in paths]


def embed_all(tower, pixels: torch.Tensor, batch: int) -> np.ndarray:
    return np.concatenate([tower.encode_pixels(pixels[i:i + batch]).numpy() for i in range(0, len(pixels), batch)])


def bench_model(name: str, ims: list, args) -> list[dict]:
    clip, weights = load(name)
    pixels = torch.stack([clip.preprocess(im) for im in ims])
    towers = {}
    for kind in TOWERS:
        t = time.perf_counter()
        try:
            towers[kind] = ImageTower(clip, kind)
        except InputError as e:
            print(f"{name} {kind}: {e}", file=sys.stderr)
            continue
        towers[kind].setup_s = time.perf_counter() - t
    x = pixels[:args.batch]
    speed = {k: [] for k in towers}
    for _ in range(args.rounds):
        for kind, tw in towers.items():
            tw.encode_pixels(x)
            t = time.perf_counter()
            for _ in range(3):
                tw.encode_pixels(x)
            speed[kind].append(3 * len(x) / (time.perf_counter() - t))
    ref = embed_all(towers["fp32"], pixels, args.batch)
    rows = []
    for kind, tw in towers.items():
        agree = agreement(ref, embed_all(tw, pixels, args.batch))
        ips = statistics.median(speed[kind])
        ratio = statistics.median(s / f for s, f in zip(speed[kind], speed["fp32"]))
        rows.append({"model": name, "weights": weights, "tower": kind, "img_s": round(ips, 1), "x_fp32": round(ratio, 2),
                     "setup_s": round(tw.setup_s, 1), **{k: round(v, 5) if isinstance(v, float) else v for k, v in agree.items()},
                     "agrees": agrees(agree)})
        print(rows[-1], flush=True)
    return rows


def end_to_end(name: str, n: int) -> list[dict]:
    import tempfile

    from bench_ray import make_folder
    from demo_core.search.builder import build_index

    clip, weights = load(name)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        make_folder(Path(tmp) / "imgs", n)
        best = "onnx" if name == "mini-clip" else "onnx-int8"
        tower_mod.AUTO_MIN_IMAGES = 0  # auto's floor lifted: its measuring cost is what this row shows
        for i, kind in enumerate(("fp32", "auto", best, "fp32")):
            rep = build_index(Path(tmp) / "imgs", Path(tmp) / f"idx{i}", clip, batch_size=64, workers=4, tower=kind)
            rows.append({"model": name, "weights": weights, "end_to_end": f"build_index {n} images", "tower": kind,
                         "used": rep.tower, "wall_s": round(rep.seconds, 2), "img_s": round(n / rep.seconds, 1),
                         "note": rep.tower_note})
            print(rows[-1], flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["mini-clip", "vit-b-32"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--folder", default=str(ROOT / "assets/gallery/images"))
    ap.add_argument("--build-images", type=int, default=2000, help="end-to-end build folder size (0: skip)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's advice goes to the root logger
    ims = images(Path(args.folder))
    rows = [r for name in args.models for r in bench_model(name, ims, args)]
    for name in args.models if args.build_images else ():
        rows += end_to_end(name, args.build_images if name == "mini-clip" else min(args.build_images, 1000))
    import onnxruntime

    report(rows, args.out, folder=str(Path(args.folder).relative_to(ROOT)) if Path(args.folder).is_relative_to(ROOT)
           else args.folder, images=len(ims), batch=args.batch, rounds=args.rounds, onnxruntime=onnxruntime.__version__,
           cpu_flags=" ".join(f for f in ("avx512_vnni", "amx_int8", "amx_bf16", "avx512_bf16")
                              if f in Path("/proc/cpuinfo").read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
