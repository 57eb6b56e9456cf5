"""End-to-end latencies of the app's main actions, through the UI's own handlers (the functions its
API endpoints run).

    python bench/bench_app.py [--repeats 30] [--out bench/app.json]

- classify: zero-shot on the cat example with 5 labels (label embeddings cached after the first call);
- search: text query on the bundled gallery: encode + FAISS search + thumbnails (thumbnails cached
  after the first call), 12 results;
- forward: x_t at one t plus both strips and the curves (the forward explorer's click);
- clip_matrix: the How CLIP learns tab's B = 8 matrix (encode 8 images and captions, three heatmaps);
  clip_train_live: 300 steps of the live tiny CLIP, streamed frames included;
- reverse (emoji DDPM, when bundled): time per UNet step, DDIM-50 vs DDPM-1000 wall time, and time
  from the call to the first streamed frame; and one step of the google/ddpm-cifar10-32 architecture
  (random weights) for comparison.
Cold = first call; warm = median of the rest.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import app  # noqa: E402
from _report import report  # noqa: E402  (bench/ is on sys.path when run as a script)
from demo_core.diffusion.models import available_ddpms  # noqa: E402
from demo_core.engine import Engine  # noqa: E402
from ui.common import EXAMPLES  # noqa: E402


def timed(fn, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    warm = sorted(times[1:]) or times
    return {"cold_ms": round(times[0], 1), "warm_p50_ms": round(statistics.median(warm), 1),
            "warm_p95_ms": round(warm[int(0.95 * (len(warm) - 1))], 1)}


def cifar_step(x) -> dict:
    """One UNet step of google/ddpm-cifar10-32's architecture (Ho et al. 2020: ch 128, mult 1,2,2,2, two
    res blocks, attention at 16x16; 35.7M parameters) with random weights: the hub weights are not
    reachable here, and the time of a step does not depend on the weights."""
    import torch
    from diffusers import UNet2DModel

    unet = UNet2DModel(sample_size=32, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_eps=1e-6).eval()
    k = torch.full((x.shape[0],), 499)
    with torch.inference_mode():
        row = timed(lambda: unet(x, k), 10)
    row["params_m"] = round(sum(p.numel() for p in unet.parameters()) / 1e6, 1)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    engine = Engine("mini-clip", "cpu")
    handlers = {dep.api_name: dep.fn for dep in app.build_demo(engine).fns.values()}  # endpoint -> its handler
    cat = str(EXAMPLES / "cat.png")
    rows = {"classify": timed(lambda: handlers["classify"](cat, "cat, dog, car, tree, pizza", "a photo of a {}", True),
                              args.repeats)}
    if engine.search.names():
        name = engine.search.names()[0]
        queries = iter(["cat", "dog", "a red car", "tree", "astronaut", "coffee cup"] * args.repeats)
        rows["search"] = timed(lambda: handlers["search"](next(queries), name, 12), args.repeats)
    rows["forward"] = timed(lambda: handlers["forward"](cat, 250, "linear", 1000), max(5, args.repeats // 3))
    if "emoji-ddpm" in available_ddpms():
        import torch

        from demo_core.diffusion.models import load_ddpm
        from demo_core.diffusion.reverse_view import run_reverse

        m = load_ddpm("emoji-ddpm", "cpu")
        x = torch.randn(4, 3, m.sample_size, m.sample_size)
        with torch.inference_mode():
            step = timed(lambda: m.eps(x, 500), 20)
        rows["ddpm_unet_step_batch4"] = step
        t = time.perf_counter()
        gen = handlers["sample"]("", "emoji-ddpm", "DDIM", 50, 0.0, 0, 4)
        next(gen)
        first = (time.perf_counter() - t) * 1000
        gen.close()
        t = time.perf_counter()
        for _ in run_reverse(m, "DDIM", n=4, ddim_steps=50):
            pass
        ddim = time.perf_counter() - t
        t = time.perf_counter()
        for _ in run_reverse(m, "DDPM", n=4):
            pass
        ddpm = time.perf_counter() - t
        rows["reverse"] = {"click_to_first_frame_ms": round(first, 1), "ddim50_s": round(ddim, 2),
                           "ddpm1000_s": round(ddpm, 2), "ddim50_over_ddpm1000": round(ddim / ddpm, 4)}
        rows["cifar10_arch_unet_step_batch4"] = cifar_step(x)
    rows["clip_matrix"] = timed(lambda: handlers["clip_matrix"]("gallery", 8, 0, None, "", 0.03, 0),
                                max(5, args.repeats // 3))
    t = time.perf_counter()
    frames = list(handlers["clip_train"]("gallery", 8, 0, None, "", 300))
    rows["clip_train_live_300_steps"] = {"s": round(time.perf_counter() - t, 1), "frames": len(frames),
                                         "final_status": frames[-1][2]}
    report(rows, args.out, model=engine.clip.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
