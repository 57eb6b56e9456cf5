"""What the judged benches share: their command line (--seeds, --out), the judges and a mini-CLIP engine."""
from __future__ import annotations

import argparse

from demo_core.engine import Engine
from demo_core.registry import ASSETS
from demo_core.training.judge import judge_groups, load_judge

JUDGES = {"shape": ASSETS / "models" / "emoji-judge", "shape_second_judge": ASSETS / "models" / "emoji-judge-2"}


def judged_setup(doc: str):
    """(args, judges, engine) for a bench whose module docstring is `doc`; judges maps a figure's name to a
    judge: the first judge ("shape") and, when installed, the second ("shape_second_judge")."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=None)
    judges = {name: load_judge(path) for name, path in JUDGES.items() if (path / "judge.json").exists()}
    return ap.parse_args(), judges, Engine("mini-clip", "cpu")


def hits(judges: dict, images, group: str) -> dict[str, int]:
    """How many of `images` each judge puts in `group`."""
    return {name: sum(g == group for g in judge_groups(j, images)) for name, j in judges.items()}
