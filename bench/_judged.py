"""What the judged benches share: their command line (--seeds, --out), the judge and a mini-CLIP engine."""
from __future__ import annotations

import argparse

from demo_core.engine import Engine
from demo_core.registry import ASSETS
from demo_core.training.judge import load_judge


def judged_setup(doc: str):
    """(args, judge, engine) for a bench whose module docstring is `doc`."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=None)
    return ap.parse_args(), load_judge(ASSETS / "models" / "emoji-judge"), Engine("mini-clip", "cpu")
