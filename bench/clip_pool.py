"""Pool an eval_clip result's per-style zero-shot figures over a chosen set of styles (image-weighted).

    python bench/clip_pool.py bench/eval_mini_clip_9s_2k.json noto,fluent-flat,fluent-modern,fluent-high-contrast

Runs of different data (five styles, nine) are compared on the same styles this way.
"""
import json
import sys


def pooled(path: str, styles: list[str], key: str = "zero_shot_top1_ensemble") -> float:
    per = json.load(open(path))["trained"]["per_style"]
    n = sum(per[s]["zero_shot_images"] for s in styles)
    return round(sum(per[s][key] * per[s]["zero_shot_images"] for s in styles) / n, 4)


if __name__ == "__main__":
    print(pooled(sys.argv[1], sys.argv[2].split(",")))
