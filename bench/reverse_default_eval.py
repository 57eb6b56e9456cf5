"""Diffusion step by step's default run, judged: does noise denoise into a picture of the prompt?

    python bench/reverse_default_eval.py [--seeds 5] [--out bench/reverse_default.json]

The tab's default is the text-conditional model guided toward a prompt (``ui.diffusion.DEFAULT_PROMPT``),
DDIM-50, x̂₀ clipped, w = 3, 4 images from seed 0. This runs that setting through the engine (as the tab
does) for seeds 0 … --seeds−1 and for one prompt per shape group of the judge (``emoji_groups.GROUP_PROMPTS``)
besides the default, and reports the share of images that the judge (``assets/models/emoji-judge``, which
never guided anything) puts in the prompt's group, and the second judge's (``emoji-judge-2``, another
architecture that never saw the Noto style) when it is installed. It is how the default prompt was chosen.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo_core.diffusion.prompted import TEXT_DDPM  # noqa: E402
from demo_core.training.emoji_groups import GROUP_PROMPTS  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from _judged import hits, judged_setup  # noqa: E402
from _report import report  # noqa: E402
from ui.diffusion import DEFAULT_PROMPT  # noqa: E402


def final_images(update, n: int) -> torch.Tensor:
    """The run's last x_t grid (one row of n 128-px tiles) -> (n, 3, 128, 128) in [-1, 1]."""
    grid = np.asarray(update.latest["DDIM"].x_t.convert("RGB"), dtype=np.float32) / 127.5 - 1
    tiles = torch.from_numpy(grid).permute(2, 0, 1)
    side = tiles.shape[1]
    return torch.stack([tiles[:, :, i * side:(i + 1) * side] for i in range(n)])


def main() -> int:
    args, judges, engine = judged_setup(__doc__)
    if DEFAULT_PROMPT not in GROUP_PROMPTS.values():
        raise SystemExit(f"the default prompt {DEFAULT_PROMPT!r} is not one of the judge's group prompts")
    prompts = {f"{g} (default)" if p == DEFAULT_PROMPT else g: p for g, p in GROUP_PROMPTS.items()}
    rows, t0 = [], time.time()
    try:
        for label, prompt in prompts.items():
            group = label.split()[0]
            found, total = dict.fromkeys(judges, 0), 0
            for seed in range(args.seeds):
                *_, last = engine.reverse.sample(TEXT_DDPM, "DDIM", ddim_steps=50, seed=seed, n=4, prompt=prompt, scale=3.0)
                for name, k in hits(judges, final_images(last, 4), group).items():
                    found[name] += k
                total += 4
            rows.append({"prompt": prompt, "group": group, "images": total,
                         **{name: round(k / total, 3) for name, k in found.items()}})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        engine.close()
    report(rows, args.out, setting="DDIM-50, x0 clipped, w = 3, 4 images a seed", seeds=args.seeds, seconds=round(time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
