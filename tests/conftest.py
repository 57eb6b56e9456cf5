"""Tests run offline: no hub, no telemetry, no analytics."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("DEMO_DEVICE", "cpu")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"


@pytest.fixture(scope="session")
def bundled_clip():
    from demo_core.clip.model import ClipModel

    return ClipModel.load("mini-clip", "cpu")


@pytest.fixture(scope="session")
def tiny_clip_folder(tmp_path_factory):
    """A tiny randomly initialised open_clip model saved in the hub's folder format."""
    import torch

    from demo_core.clip.mini import MiniClipConfig, build_model
    from demo_core.training.train_clip import export_open_clip_folder

    torch.manual_seed(0)
    cfg = MiniClipConfig(embed_dim=16, vision_layers=(1, 1, 1, 1), vision_width=8, text_width=16,
                         text_heads=2, text_layers=1)
    out = tmp_path_factory.mktemp("tiny-clip")
    export_open_clip_folder(build_model(cfg), cfg, out)
    return out


def sigkill_after_rows(cmd: list, env: dict, db, rows: int, timeout: float) -> int:
    """Start `cmd` (an index_builder run), SIGKILL it once the index database `db` holds `rows` files (or at
    `timeout` seconds, or when it exits first); returns the last file count read."""
    import signal
    import sqlite3
    import subprocess
    import time

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    n, deadline = 0, time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            if Path(db).exists():
                try:
                    n = sqlite3.connect(db).execute("SELECT COUNT(*) FROM files").fetchone()[0]
                except sqlite3.Error:
                    n = 0
                if n >= rows:
                    break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return n
