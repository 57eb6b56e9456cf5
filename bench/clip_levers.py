"""Measure mini-CLIP's levers one at a time: each is a short evaluation-model run (held-out emoji and the
held-out style never seen) that changes one thing against the baseline, then ``eval_clip`` on it.

    python bench/clip_levers.py [--steps 800] [--threads 1] [--only baseline,augment] [--out bench/clip_levers.json]

Runs live under ``data/levers/<name>`` and resume, so an interrupted queue picks up where it stopped; a
finished one is not re-run. Every run has the same seed, learning-rate schedule and data; the batch-size
lever keeps the images seen equal (B=128 for twice the steps). The figures are pooled zero-shot top-1 with
the bare label, and text->image R@1/R@5, on seen styles and on the unseen style.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEVERS = {  # name -> extra train_clip flags (and a steps multiplier)
    "baseline": ([], 1.0),
    "augment-strong": (["--augment", "strong"], 1.0),
    "captions-keywords": (["--captions", "keywords"], 1.0),
    "batch-128": (["--batch-size", "128"], 2.0),
    "wider": (["--vision-width", "24", "--embed-dim", "256"], 1.0),
    "text-2-layers": (["--text-layers", "2"], 1.0),
}


def run_one(name: str, flags: list[str], steps: int, threads: int, data: str) -> dict:
    base = ROOT / "data" / "levers" / name
    result = base / "eval.json"
    if result.exists():
        return json.loads(result.read_text())
    py = sys.executable
    t0 = time.time()
    subprocess.run([py, "-m", "demo_core.training.train_clip", "--data", data, "--run", str(base / "run"),
                    "--export", str(base / "model"), "--steps", str(steps), "--threads", str(threads),
                    "--styles", "seen", "--split", "train", *flags], cwd=ROOT, check=True,
                   stdout=open(base.parent / f"{name}.log", "a"), stderr=subprocess.STDOUT)
    train_s = time.time() - t0
    subprocess.run([py, "-m", "demo_core.training.eval_clip", "--model", str(base / "model"), "--data", data,
                    "--out", str(base / "eval_full.json")], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   env={"OMP_NUM_THREADS": str(threads), **_env()})
    full = json.loads((base / "eval_full.json").read_text())["trained"]
    pick = lambda r: {"zero_shot": r["zero_shot_top1_label_only"], "R@1": r["t2i_R@1"], "R@5": r["t2i_R@5"]}  # noqa: E731
    out = {"lever": name, "flags": " ".join(flags), "steps": steps, "train_s": round(train_s),
           "seen_styles": pick(full["seen_styles"]), "unseen_style": pick(full["unseen_style"])}
    result.write_text(json.dumps(out, indent=1))
    return out


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default="data/emoji")
    ap.add_argument("--only", default=",".join(LEVERS))
    ap.add_argument("--out", default=str(ROOT / "bench" / "clip_levers.json"))
    args = ap.parse_args(argv)
    (ROOT / "data" / "levers").mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    rows = {r["lever"]: r for r in (json.loads(out.read_text())["rows"] if out.exists() else [])}
    for name in args.only.split(","):
        flags, mult = LEVERS[name]
        (ROOT / "data" / "levers" / name).mkdir(parents=True, exist_ok=True)
        rows[name] = run_one(name, flags, int(args.steps * mult), args.threads, args.data)
        out.write_text(json.dumps({"machine": "2 CPU cores, 1 torch thread", "rows": list(rows.values())},
                                  indent=1) + "\n")
        print(json.dumps(rows[name]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
