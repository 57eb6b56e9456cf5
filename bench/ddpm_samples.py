"""The emoji DDPM's sample grid for its model card, and how long it took.

    python bench/ddpm_samples.py [--model emoji-ddpm] [--out assets/models/emoji-ddpm/samples.png]

16 samples from seed 0: DDPM-1000 (Algorithm 2, σ² = β̃) in the top two rows and DDIM-50 (η = 0) from the
same x_T in the bottom two, 32×32 shown ×2. Reports the wall time of each sampler for the batch of 16.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _report import report  # noqa: E402  (bench/ is on sys.path when run as a script)

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from demo_core.diffusion.models import load_ddpm  # noqa: E402
from demo_core.images import grid  # noqa: E402
from demo_core.diffusion.ddpm import Schedule  # noqa: E402
from demo_core.diffusion.samplers import ddim_sampler, ddpm_sampler, initial_noise  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="emoji-ddpm")
    ap.add_argument("--out", default="assets/models/emoji-ddpm/samples.png")
    ap.add_argument("--n", type=int, default=16)
    args = ap.parse_args()
    m = load_ddpm(args.model, "cpu")
    s = Schedule.make(m.schedule, m.T)
    shape = (args.n, m.channels, m.sample_size, m.sample_size)
    rows, times = [], {}
    for name, run in [("DDPM-1000", lambda x, g: ddpm_sampler(m.eps, s, x, g)),
                      ("DDIM-50", lambda x, g: ddim_sampler(m.eps, s, x, g, steps=50))]:
        g = torch.Generator().manual_seed(0)
        x_T = initial_noise(shape, g)
        t = time.perf_counter()
        *_, last = run(x_T, g)
        times[name] = {"s": round(time.perf_counter() - t, 1), "samples": args.n}
        rows.append(grid(last.x_prev, size=2 * m.sample_size, per_row=8))
    out = Image.new("RGB", (rows[0].width, rows[0].height * 2 + 8), "white")
    out.paste(rows[0], (0, 0))
    out.paste(rows[1], (0, rows[0].height + 8))
    out.save(args.out, optimize=True)
    report(times, None, model=args.model, grid=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
