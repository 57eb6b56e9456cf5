"""Two CLIP models side by side, in one run: a text query's latency, a zero-shot call's latency, and
images embedded per second (the index builder's work per image, after decoding).

    python bench/bench_clip_models.py --models mini-clip-v1 mini-clip [--threads 2] [--out bench/clip_models.json]

Text query: one new query string at a time (the text cache never hits), encoded and searched against the
bundled gallery's vectors; p50/p95 over 200 queries after 20 warm-up ones. Zero-shot: one example image with
five new labels and the six default templates (30 prompts). Embedding: the bundled gallery's images (already
decoded) in batches of 64, three passes. The models alternate, round by round, so drift on a shared machine
falls on both alike; figures are ratios to the first model as well as absolute.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo_core.clip.model import DEFAULT_TEMPLATES, ClipModel  # noqa: E402
from demo_core.images import load_image  # noqa: E402

WORDS = ("cat", "dog", "car", "tree", "house", "moon", "sun", "fish", "bird", "flower", "rocket", "boat", "train",
         "clock", "heart", "star", "book", "ball", "hat", "shoe")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/bench_clip_models.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["mini-clip-v1", "mini-clip"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = [ClipModel.load(m, "cpu") for m in args.models]
    paths = sorted(p for p in (ROOT / "assets" / "gallery" / "images").rglob("*") if p.suffix in {".png", ".jpg"})
    images = [load_image(p) for p in paths]
    gallery = {m.name: m.encode_images(images) for m in models}
    example = load_image(ROOT / "assets" / "examples" / "cat.png")
    times = {m.name: {"text_query_ms": [], "zero_shot_ms": [], "embed_img_per_s": []} for m in models}
    for r in range(args.queries + 20):
        for m in models:
            q = f"a {WORDS[r % len(WORDS)]} number {r} {m.name}"  # new every time: no cache hit
            t0 = time.perf_counter()
            v = m.encode_texts([m.search_template.format(q)])[0]
            np.argsort(-(gallery[m.name] @ v).numpy())[:12]
            dt = (time.perf_counter() - t0) * 1000
            labels = [f"{WORDS[(r + k) % len(WORDS)]} {r}" for k in range(5)]
            t0 = time.perf_counter()
            m.zero_shot(example, labels, DEFAULT_TEMPLATES)
            dz = (time.perf_counter() - t0) * 1000
            if r >= 20:
                times[m.name]["text_query_ms"].append(dt)
                times[m.name]["zero_shot_ms"].append(dz)
    for _ in range(3):
        for m in models:
            t0 = time.perf_counter()
            m.encode_images(images)
            times[m.name]["embed_img_per_s"].append(len(images) / (time.perf_counter() - t0))
    base = models[0].name
    out = {"command": "python bench/bench_clip_models.py " + " ".join(argv or sys.argv[1:]),
           "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or ''}",
           "date": time.strftime("%Y-%m-%d"), "gallery_images": len(images), "models": {}}
    for m in models:
        t = times[m.name]
        row = {"text_query_p50_ms": round(float(np.median(t["text_query_ms"])), 2),
               "text_query_p95_ms": round(float(np.percentile(t["text_query_ms"], 95)), 2),
               "zero_shot_p50_ms": round(float(np.median(t["zero_shot_ms"])), 2),
               "embed_img_per_s": round(float(np.median(t["embed_img_per_s"])), 1)}
        out["models"][m.name] = row
    for m in models:
        row, ref = out["models"][m.name], out["models"][base]
        row["ratio_to_" + base] = {k: round(row[k] / ref[k], 3) for k in ref if not k.startswith("ratio")}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
