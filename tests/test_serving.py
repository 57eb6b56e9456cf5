"""How the app serves many clients at once (figures in bench/RESULTS.md): light handlers
share a larger pool than the model runs, and search thumbnails are made once and handed out as they are."""
import os
import subprocess
import sys
import threading

import pytest
from PIL import Image

from tests.conftest import ROOT

LIGHT_EVENTS = {"classify", "search", "search_1", "search_image", "more_like"}
MODEL_RUNS = {"sample", "toy2d", "text2img", "text2img_sweep", "clip_train", "clip_matrix", "forward"}


@pytest.fixture(scope="module")
def engine():
    from demo_core.engine import Engine

    return Engine("mini-clip", "cpu")


def test_light_handlers_share_a_larger_pool_and_model_runs_keep_the_default(engine):
    import app
    from ui.common import LIGHT_CONCURRENCY

    demo = app.build_demo(engine)
    by_name = {dep.api_name: dep for dep in demo.fns.values()}
    assert LIGHT_CONCURRENCY > 2
    for name in LIGHT_EVENTS:
        assert (by_name[name].concurrency_id, by_name[name].concurrency_limit) == ("light", LIGHT_CONCURRENCY), name
    for name in MODEL_RUNS:
        assert by_name[name].concurrency_limit == "default", name  # the queue's default_concurrency_limit=2


def test_the_legacy_switch_restores_the_old_serving():
    """bench/bench_load.py measures before and after in one run through DEMO_LEGACY_QUEUE=1."""
    code = "import ui.common as c; print(c.LIGHT, c.LEGACY_QUEUE)"
    env = {**os.environ, "DEMO_LEGACY_QUEUE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["{}", "True"]


def test_thumbnails_are_made_once_in_a_private_folder_and_served_as_they_are(engine):
    import app
    from gradio import utils

    from demo_core.engine import GALLERY

    app.build_demo(engine)  # the Search tab hands the folder to Gradio
    _, found = engine.search.text("cat", GALLERY, 5)
    assert {f.thumbnail.parent for f in found} == {engine.search.thumbnail_folder}
    assert os.stat(engine.search.thumbnail_folder.parent).st_mode & 0o077 == 0  # nobody else can put files there
    assert all(utils.is_static_file(str(f.thumbnail)) for f in found)  # not hashed and copied per answer
    made = {f.thumbnail: f.thumbnail.stat().st_mtime_ns for f in found}
    _, again = engine.search.text("cat", GALLERY, 5)
    assert {f.thumbnail: f.thumbnail.stat().st_mtime_ns for f in again} == made  # not made again


def test_requests_making_the_same_thumbnail_at_once(engine, tmp_path):
    from demo_core.engine import GALLERY
    from demo_core.search.query import thumbnail

    idx = engine.search.index(GALLERY)
    hit = idx.search(idx.embedding(1), 1)[0]
    paths, errors = [], []

    def make():
        try:
            paths.append(thumbnail(idx, hit, tmp_path))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(paths)) == 1
    assert Image.open(paths[0]).size[0] > 0 and [p.name for p in tmp_path.iterdir()] == [paths[0].name]


def test_a_read_only_index_reads_its_root_once(engine, monkeypatch):
    from demo_core.engine import GALLERY

    idx = engine.search.index(GALLERY)
    root = idx.root
    calls = []
    real = idx.manifest
    monkeypatch.setattr(idx, "manifest", lambda: calls.append(1) or real())
    for _ in range(5):
        assert idx.root == root
    assert calls == []
