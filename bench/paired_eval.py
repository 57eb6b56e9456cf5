"""Is one CLIP better than another on the held-out emoji, beyond the noise of a 56-emoji test?

    python bench/paired_eval.py --data data/emoji --models REFERENCE OTHER [OTHER ...] [--out bench/paired_eval.json]

Every model is scored by ``eval_clip`` on the same images (held-out emoji, fixed seeded renders; the seen styles
pooled, and the unseen Twemoji style). For each other model it reports its zero-shot top-1 (prompt ensemble) and
the difference to the first model with a 95% interval from a *paired* bootstrap: whole emoji are resampled, and
both models are scored on the same draw, so what the two have in common (hard emoji, easy emoji) cancels. A
difference whose interval holds 0 is not shown to be real by this test set.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _report import report  # noqa: E402

from demo_core.clip.model import ClipModel  # noqa: E402
from demo_core.training.eval_clip import bootstrap_ci, evaluate_styles, input_size  # noqa: E402

STYLES = ("noto", "twemoji", "fluent-flat", "fluent-modern", "fluent-high-contrast")
REGIMES = ("seen_styles", "unseen_style")


def compare(models: list[str], data: str, styles: tuple[str, ...] = STYLES, renders: int = 4) -> list[dict]:
    """One row per model: its figures and, past the first, the paired difference to the first with its interval."""
    raw: list[dict] = []
    rows = []
    for k, name in enumerate(models):
        clip = ClipModel.load(name, "cpu")
        raw.append({})
        figures = evaluate_styles(clip, data, renders, input_size(clip), styles, raw=raw[k])
        row = {"model": name}
        for regime in REGIMES:
            mine, first = raw[k][regime], raw[0][regime]
            assert mine["images"] == first["images"], "the models were scored on different images"
            row[regime] = figures[regime]["zero_shot_top1_ensemble"]
            row[regime + "_ci95"] = figures[regime]["zero_shot_top1_ensemble_ci95"]
            if k:
                row[regime + "_minus_first"] = round((mine["right"].mean() - first["right"].mean()).item(), 4)
                row[regime + "_minus_first_ci95"] = bootstrap_ci(mine["images"], mine["right"], minus=first["right"])
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | seen styles [95%] | minus the first [95%] | Twemoji [95%] | minus the first [95%] |",
             "|---|---|---|---|---|"]
    for r in rows:
        cells = []
        for regime in REGIMES:
            lo, hi = r[regime + "_ci95"]
            cells.append(f"{r[regime]:.3f} [{lo:.2f}, {hi:.2f}]")
            if regime + "_minus_first" in r:
                lo, hi = r[regime + "_minus_first_ci95"]
                cells.append(f"{r[regime + '_minus_first']:+.3f} [{lo:+.2f}, {hi:+.2f}]")
            else:
                cells.append("—")
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/emoji")
    ap.add_argument("--models", nargs="+", required=True, help="the first is the reference")
    ap.add_argument("--renders", type=int, default=4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    rows = compare(args.models, args.data, renders=args.renders)
    report(rows, args.out, command="python bench/paired_eval.py " + " ".join(argv or sys.argv[1:]))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
