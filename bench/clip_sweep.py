"""Train several mini-CLIP recipes side by side on one GPU, score each evaluation model on the held-out emoji, and
fine-tune each into a shippable model (the ship recipe: every emoji, every style, 600 steps).

    python bench/clip_sweep.py --data data/emoji --work data/sweep --budget-s 330 --out OUT

A lent GPU has minutes, not hours, so the step counts are fitted to them: every recipe first runs 50 steps, all at
once (so the measured pace includes sharing the GPU), and each then gets min(its steps, what the budget allows at
that pace), in whole 500s. A run that still overruns is stopped and its latest checkpoint (every 50 steps) scored,
as "stopped". Each finished evaluation model is scored by ``eval_clip`` on the CPU (fp32, as the figures in
``bench/RESULTS.md``), while the GPU fine-tunes it into its ship model. OUT gets ``summary.json``, the logs and
evaluation files (``evals.tar.gz``), and the best recipe's ship model and evaluation model as tar files (the best:
min(seen / 0.75, unseen / 0.60), issue #18's aims), split in 15 MiB parts where bigger (``cat NAME.tar.part* >
NAME.tar``).

What the lent GPU (one H200, 16 cores) gave on 2026-12-04: six recipes at once ran at 0.13-0.15 s a step each; one
width-32 run alone at 0.063 s a step. The data travels as ``lzma``-compressed .npy files (39 MB for the five styles),
open_clip, ftfy and wcwidth as wheels; the commands are in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

# The evaluation recipe of mini-clip-2 with the moving average (bench/RESULTS.md), and the levers tried beside it.
BASE = ["--styles", "seen5", "--split", "train", "--cross-style", "2.0", "--ema", "0.998"]
RECIPES = {  # name: (steps wanted, flags beyond BASE); in priority order
    "w16": (4000, []),
    "w24": (4000, ["--vision-width", "24"]),
    "w16-8k": (8000, []),
    "w24-8k": (8000, ["--vision-width", "24"]),
    "w16-b512": (4000, ["--batch-size", "512"]),
    "w32": (4000, ["--vision-width", "32"]),  # its model file (~18 MB) is over what a file may be here (10 MB)
    "w32-8k": (8000, ["--vision-width", "32"]),
    "w32-6k": (6000, ["--vision-width", "32"]),  # with w32 alone, both fit one ~9-minute call (0.063 s a step alone)
    # The token embedding started from GloVe and kept fixed (demo_core.training.word_vectors; data/word_vectors).
    "w16-glove": (4000, ["--token-init", "data/word_vectors"]),
    "w32-glove": (4000, ["--vision-width", "32", "--token-init", "data/word_vectors"]),
    "w32-glove-3k": (3000, ["--vision-width", "32", "--token-init", "data/word_vectors"]),
}
PART = 15 * 2**20  # a file coming back from the lent machine is at most 16 MiB: bigger tars are split
SHIP = ["--styles", "all5", "--split", "all", "--cross-style", "2.0", "--steps", "600", "--lr", "5e-4", "--warmup", "30"]
SHAPE_FLAGS = ("--vision-width", "--embed-dim", "--text-layers", "--token-init")  # what the ship fine-tune keeps
EVAL_STYLES = "noto,twemoji,fluent-flat,fluent-modern,fluent-high-contrast"
TRAIN = [sys.executable, "-m", "demo_core.training.train_clip"]


def shape_of(flags: list[str]) -> list[str]:
    """The model-shape flags of a recipe and its fixed word vectors (its ship fine-tune must build the same model)."""
    out = []
    for i, f in enumerate(flags):
        if f in SHAPE_FLAGS:
            out += [f, flags[i + 1]]
    return out


def launch(cmd: list[str], log: Path, threads: int, cpu_only: bool = False) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    if cpu_only:
        env["DEMO_DEVICE"] = "cpu"
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def log_lines(log: Path) -> list[dict]:
    out = []
    for line in log.read_text().splitlines() if log.exists() else []:
        if line.startswith('{"step"'):
            out.append(json.loads(line))
    return out


def calibrate(args, recipes: dict, work: Path) -> dict[str, float]:
    """Seconds a step of each recipe, all running at once."""
    procs = {name: launch(TRAIN + ["--data", args.data, "--run", str(work / "cal" / name), "--steps", "50",
                                   "--threads", str(args.threads)] + BASE + flags, work / "logs" / f"cal-{name}.log",
                          args.threads) for name, (_, flags) in recipes.items()}
    pace = {}
    for name, p in procs.items():
        p.wait()
        lines = log_lines(work / "logs" / f"cal-{name}.log")
        by_step = {e["step"]: e["elapsed_s"] for e in lines}
        if p.returncode or 20 not in by_step or 50 not in by_step:
            print(f"{name}: calibration failed (exit {p.returncode}); see cal-{name}.log", flush=True)
            continue
        pace[name] = (by_step[50] - by_step[20]) / 30
    return pace


def score(ev: dict) -> float:
    t = ev["trained"]
    return min(t["seen_styles"]["zero_shot_top1_ensemble"] / 0.75, t["unseen_style"]["zero_shot_top1_ensemble"] / 0.60)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/emoji")
    ap.add_argument("--work", default="data/sweep")
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=330, help="seconds of training for the longest recipe")
    ap.add_argument("--deadline-s", type=float, default=540, help="from the start: everything left is stopped")
    ap.add_argument("--score-margin-s", type=float, default=120,
                    help="training still running this long before the deadline is stopped and scored")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of each process")
    ap.add_argument("--only", default=None, help="comma-separated recipe names (default: all)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every step count (a dry run on the CPU)")
    ap.add_argument("--ship-best", type=int, default=1, help="how many ship models come back")
    ap.add_argument("--no-calibrate", action="store_true", help="run every recipe's own steps (a pace already known)")
    ap.add_argument("--ship-steps", type=int, default=600, help="steps of the ship fine-tune")
    ap.add_argument("--extra", default="", help="flags added to every training (a dry run: '--batch-size 32')")
    args = ap.parse_args(argv)
    t0 = time.time()
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",") if args.only else list(RECIPES)
    recipes = {n: (max(50, int(RECIPES[n][0] * args.scale)), RECIPES[n][1] + args.extra.split()) for n in names}
    ship = SHIP[: SHIP.index("--steps") + 1] + [str(args.ship_steps)] + SHIP[SHIP.index("--steps") + 2:]
    pace = {n: 0.0 for n in recipes} if args.no_calibrate else calibrate(args, recipes, work)
    print(f"calibrated in {time.time() - t0:.0f} s: " + json.dumps({k: round(v, 4) for k, v in pace.items()}),
          flush=True)
    plan = {}
    for name, s in pace.items():
        want = recipes[name][0]
        fits = math.floor(args.budget_s / s / 500) * 500 if s else want
        plan[name] = want if fits >= want else max(min(1000, want), fits)  # a run stopped at the deadline is scored
    print("plan: " + json.dumps(plan), flush=True)

    runs = {name: launch(TRAIN + ["--data", args.data, "--run", str(work / "runs" / name), "--steps", str(steps),
                                  "--threads", str(args.threads), "--export", str(work / "eval" / name)]
                         + BASE + recipes[name][1], work / "logs" / f"{name}.log", args.threads)
            for name, steps in plan.items()}
    train_deadline = t0 + args.deadline_s - args.score_margin_s  # room left to score what stopped
    started = {name: time.time() for name in runs}
    done: dict[str, dict] = {}
    evals: dict[str, subprocess.Popen] = {}
    ships: dict[str, subprocess.Popen] = {}

    def score_it(name: str):
        evals[name] = launch([sys.executable, "-m", "demo_core.training.eval_clip", "--model", str(work / "eval" / name),
                              "--data", args.data, "--styles", EVAL_STYLES, "--out", str(work / "evals" / f"{name}.json")],
                             work / "logs" / f"eval-{name}.log", args.threads, cpu_only=True)

    (work / "evals").mkdir(parents=True, exist_ok=True)
    while runs:
        time.sleep(2)
        for name, p in list(runs.items()):
            if p.poll() is None and time.time() < train_deadline:
                continue
            stopped = p.poll() is None
            if stopped:
                p.kill()
                p.wait()
            runs.pop(name)
            lines = log_lines(work / "logs" / f"{name}.log")
            done[name] = {"flags": BASE + recipes[name][1], "steps_planned": plan[name],
                          "steps_done": lines[-1]["step"] if lines else 0, "s_per_step_calibrated": round(pace[name], 4),
                          "wall_s": round(time.time() - started[name], 1), "exit": p.returncode,
                          "stopped": stopped, "last_log": lines[-1] if lines else None}
            if stopped or p.returncode:  # score the latest checkpoint (every 50 steps) as it is
                subprocess.run(TRAIN + ["--run", str(work / "runs" / name), "--export", str(work / "eval" / name),
                                        "--export-only"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            if (work / "eval" / name).exists():
                score_it(name)
            if not stopped and not p.returncode:
                ships[name] = launch(TRAIN + ["--data", args.data, "--run", str(work / "ship-runs" / name), "--init",
                                              str(work / "runs" / name), "--threads", str(args.threads), "--export",
                                              str(work / "ship" / name)] + ship + shape_of(recipes[name][1]) + args.extra.split(),
                                     work / "logs" / f"ship-{name}.log", args.threads)
    for group in (evals, ships):
        for name, p in group.items():
            try:
                p.wait(timeout=max(1, t0 + args.deadline_s - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                print(f"{name}: stopped at the deadline", flush=True)
    for name, info in done.items():
        f = work / "evals" / f"{name}.json"
        if f.exists():
            ev = json.loads(f.read_text())
            t = ev["trained"]
            info["eval"] = {"seen": t["seen_styles"]["zero_shot_top1_ensemble"],
                            "unseen": t["unseen_style"]["zero_shot_top1_ensemble"],
                            "seen_R1_R5": [t["seen_styles"]["t2i_R@1"], t["seen_styles"]["t2i_R@5"]],
                            "unseen_R1_R5": [t["unseen_style"]["t2i_R@1"], t["unseen_style"]["t2i_R@5"]],
                            "score": round(score(ev), 4)}
        info["ship"] = (work / "ship" / name / "open_clip_model.safetensors").exists()
    import torch

    summary = {"recipes": done, "budget_s": args.budget_s, "total_s": round(time.time() - t0, 1),
               "torch": torch.__version__,
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1), flush=True)
    with tarfile.open(out / "evals.tar.gz", "w:gz") as tar:
        for sub in ("evals", "logs"):
            if (work / sub).exists():
                tar.add(work / sub, arcname=sub)
        for name in done:
            log = work / "runs" / name / "train_log.json"
            if log.exists():
                tar.add(log, arcname=f"train_logs/{name}.json")
    ranked = sorted((n for n in done if "eval" in done[n]), key=lambda n: -done[n]["eval"]["score"])
    if ranked:
        with tarfile.open(out / f"eval-{ranked[0]}.tar", "w") as tar:
            tar.add(work / "eval" / ranked[0], arcname=f"eval-{ranked[0]}")
    for name in [n for n in ranked if done[n]["ship"]][: args.ship_best]:
        with tarfile.open(out / f"ship-{name}.tar", "w") as tar:
            tar.add(work / "ship" / name, arcname=f"ship-{name}")
    for f in out.glob("*.tar"):
        if f.stat().st_size > PART:
            with f.open("rb") as src:
                for k, chunk in enumerate(iter(lambda: src.read(PART), b"")):
                    (out / f"{f.name}.part{k}").write_bytes(chunk)  # cat NAME.tar.part* > NAME.tar
            f.unlink()
    shutil.rmtree(work / "cal", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
