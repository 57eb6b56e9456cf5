"""Tests run offline: no hub, no telemetry, no analytics."""
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("DEMO_DEVICE", "cpu")

# `make test` runs two pytest workers (pytest-xdist) on a 2-core machine. Each worker, and every app or
# builder it starts, gets one torch thread (two processes of two threads each slow each other far more
# than 2x) and its own caches: the gallery cache of another CLIP and Gradio's examples cache are shared
# folders that two apps starting at once would both write.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import tempfile

    _worker = Path(tempfile.gettempdir()) / f"clip-lab-tests-{os.getppid()}-{os.environ['PYTEST_XDIST_WORKER']}"
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    os.environ["DEMO_CACHE"] = str(_worker / "cache")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(_worker / "cached_examples")
    os.environ["GRADIO_TEMP_DIR"] = str(_worker / "gradio")

import pytest  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch  # noqa: E402

    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent

# The longest test files, longest first (seconds of one run with --durations=0, three workers, 2026-12-03). `make
# test` hands whole files to two workers in collection order (--no-loadscope-reorder), so the long ones start
# first and the short ones fill in around them, instead of a long file starting last and running alone.
LONGEST_FILES = ("test_browser_generation.py", "test_ray_builder.py", "test_browser.py", "test_own_collection.py",
                 "test_hostile_build.py", "test_console.py", "test_app.py", "test_retrieval.py",
                 "test_text2img_app.py", "test_tower.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order


@pytest.fixture(scope="session", autouse=True)
def _worker_folders_removed():
    """A worker's caches (above) go when it ends."""
    yield
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import shutil

        shutil.rmtree(_worker, ignore_errors=True)

EXAMPLES = ROOT / "assets" / "examples"

# the browser modules' fixtures (module scope: each browser test module launches its own app, so two
# pytest workers can each run one)
from tests.browser import app_url, browser, page  # noqa: E402, F401


@pytest.fixture(scope="session")
def bundled_clip():
    """The app's CLIP offline (registry.BUNDLED_CLIP)."""
    from demo_core.clip.model import ClipModel
    from demo_core.registry import BUNDLED_CLIP

    return ClipModel.load(BUNDLED_CLIP, "cpu")


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
