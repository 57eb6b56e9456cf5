"""index_builder --engine ray: the same index as the local engine, incremental, exactly once when an actor
is killed, resumable when the driver is killed. Ray is an optional extra (requirements-scale.txt, installed
by `make test`); the Ray tests run on at most one CPU's worth of actors."""
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
from PIL import Image

from demo_core.search.builder import build_index
from demo_core.search.index import ImageIndex
from demo_core.search import ray_builder
from demo_core.search.ray_builder import ray_available, sizing
from tests.conftest import EXAMPLES, ROOT, sigkill_after_rows
from tests.hostile import make_corpus
from tests.test_retrieval import collection  # noqa: F401  (a fixture)

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
needs_ray = pytest.mark.skipif(not ray_available(), reason="ray[data] is not installed (requirements-scale.txt)")


def test_actors_take_fractional_cpus_and_leave_room_for_ray_data():
    """The pitfall: actors holding every CPU of a node starve Ray Data's read tasks; the job hangs."""
    for cpus, workers in [(1, None), (2, None), (2, 1), (2, 2), (2, 8), (16, 4), (64, None)]:
        n, each, threads = sizing(cpus, workers, local=True)
        assert n >= 1 and 0 < each <= 1 and n * each <= 0.8 * cpus + 1e-9, (cpus, workers, n, each)
        assert threads >= 1
    assert sizing(2, None, local=True)[0] == 1 and sizing(2, 8, local=True)[0] == 8


@pytest.mark.slow  # a subprocess CLI run (the fast set keeps test_cli_over_the_hostile_corpus for the wiring)
def test_without_ray_the_cli_says_how_to_install_it(tmp_path):
    code = ("import sys, runpy; sys.modules['ray'] = None; sys.modules['ray.data'] = None; "
            f"sys.argv = ['index_builder', {str(EXAMPLES)!r}, '--out', {str(tmp_path / 'idx')!r}, '--engine', 'ray']; "
            f"runpy.run_path({str(ROOT / 'index_builder')!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: the Ray engine needs Ray Data: .venv/bin/pip install -r requirements-scale.txt"]


@pytest.mark.slow  # a subprocess CLI run (the fast set keeps test_cli_over_the_hostile_corpus for the wiring)
def test_an_address_where_no_cluster_answers_is_one_error_line(tmp_path):
    if not ray_available():
        pytest.skip("ray[data] is not installed")
    done = subprocess.run([sys.executable, str(ROOT / "index_builder"), str(EXAMPLES), "--out", str(tmp_path / "idx"),
                           "--model", "mini-clip", "--engine", "ray", "--address", "127.0.0.1:1"],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 5
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "no Ray cluster answers at 127.0.0.1:1" in errors[0]
    assert "Traceback" not in done.stderr
    # told before the model loads or the index folder is made: a wrong address leaves nothing behind
    assert "model:" not in done.stderr and not (tmp_path / "idx").exists()


@pytest.fixture(scope="module")
def cluster():
    """A one-CPU Ray cluster for the module; builds join it with --address, as on a real cluster."""
    if not ray_available():
        pytest.skip("ray[data] is not installed")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 256 * 2**20,
                                                      "include_dashboard": False})
    try:
        yield c.address
    finally:
        c.shutdown()


def _vectors(out):
    idx = ImageIndex(out, readonly=True)
    ids, vecs = idx.load_vectors()
    by_id = {i: p for p, (i, *_rest) in idx.rows().items()}
    idx.close()
    return {by_id[i]: v for i, v in zip(ids, vecs)}


def _ray(root, out, clip, address, **kw):
    from demo_core.search.ray_builder import build_index_ray

    return build_index_ray(root, out, clip, address=address, batch_size=3, **kw)


@needs_ray
@pytest.mark.slow
def test_ray_engine_builds_the_local_engines_index_incrementally(collection, tmp_path, bundled_clip, cluster):  # noqa: F811
    local = build_index(collection, tmp_path / "local", bundled_clip, batch_size=3, workers=2)
    report, run = _ray(collection, tmp_path / "ray", bundled_clip, cluster)
    assert report.total == local.total == 7 and report.indexed + report.reused == 7
    assert report.skipped == local.skipped and [r for r, _ in report.skipped] == ["broken.jpg"]
    assert run.workers == 1 and run.duplicates == 0 and run.rounds == 1
    a, b = _vectors(tmp_path / "local"), _vectors(tmp_path / "ray")
    assert a.keys() == b.keys()
    assert max(abs(float(a[p] @ a[p]) - float(a[p] @ b[p])) for p in a) < 1e-5
    assert ImageIndex(tmp_path / "ray", readonly=True).stats()["model"] == bundled_clip.spec.spec

    (collection / "dog.png").rename(collection / "nested" / "puppy.png")  # rename
    (collection / "bird.png").unlink()  # remove
    shutil.copy(EXAMPLES / "train.png", collection / "nested" / "train again.png")  # copy of indexed content
    Image.new("RGB", (64, 64), (20, 120, 220)).save(collection / "blue.png")  # new
    report, run = _ray(collection, tmp_path / "ray", bundled_clip, cluster, tower="onnx")  # the actors' tower
    assert (report.indexed, report.renamed, report.removed, report.reused, report.unchanged) == (1, 1, 1, 1, 5)
    assert report.tower == "onnx" and report.tower_note.startswith("tower onnx: least cosine to fp32 1.0000")
    paths = set(_vectors(tmp_path / "ray"))
    assert "nested/puppy.png" in paths and "dog.png" not in paths and "bird.png" not in paths


@needs_ray
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_ray_engine_over_the_hostile_corpus(tmp_path, bundled_clip, cluster):
    """The actors read with the local engine's safe reader: every bad file skipped with its reason, none fatal."""
    corpus = make_corpus(tmp_path / "c")
    report, _ = _ray(corpus.root, tmp_path / "idx", bundled_clip, cluster)
    latin1 = os.fsdecode(b"caf\xe9 \xff.png")  # Arrow strings are UTF-8: Ray skips it and says how to index it
    bad = {**corpus.bad, latin1: "--engine local"}
    assert dict(report.skipped).keys() == bad.keys()
    for rel, reason in report.skipped:
        assert bad[rel] in reason, rel
    assert report.indexed + report.reused == report.total == len(corpus.good) - 1


def _random_images(root, n, seed=0):
    root.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / f"img{i:03d}.png")


@needs_ray
@pytest.mark.slow
def test_a_killed_actor_is_retried_with_no_duplicate_or_missing_row(tmp_path, bundled_clip, cluster, monkeypatch):
    _random_images(tmp_path / "many", 24)
    marker = tmp_path / "killed"
    monkeypatch.setenv("DEMO_RAY_FAULT", f"kill-actor:3:{marker}")  # SIGKILL in the actor's 3rd batch, once
    monkeypatch.setattr(ray_builder, "WINDOW", 10)  # three Ray jobs of at most 10 files, as a huge folder has many
    report, run = _ray(tmp_path / "many", tmp_path / "ray", bundled_clip, cluster)
    assert marker.exists(), "the fault was not triggered"
    assert report.indexed == report.total == 24 and not report.skipped and run.rounds >= 3
    db = sqlite3.connect(tmp_path / "ray" / "meta.sqlite")
    paths = [p for (p,) in db.execute("SELECT path FROM files")]
    assert len(paths) == len(set(paths)) == 24 and db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 24
    monkeypatch.delenv("DEMO_RAY_FAULT")
    build_index(tmp_path / "many", tmp_path / "local", bundled_clip, batch_size=8, workers=1)
    a, b = _vectors(tmp_path / "local"), _vectors(tmp_path / "ray")
    assert a.keys() == b.keys() and max(float(np.abs(a[p] - b[p]).max()) for p in a) < 1e-5


def _ray_processes(tag):
    """pids of the Ray processes whose command line names our temp folder."""
    out = subprocess.run(["pgrep", "-f", tag], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@needs_ray
@pytest.mark.slow
def test_a_killed_driver_is_rerun_and_continues_without_re_embedding(tmp_path):
    _random_images(tmp_path / "many", 48)
    out = tmp_path / "idx"
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must stay under 107 bytes
    env = {**ENV, "RAY_TMPDIR": ray_tmp}
    cmd = [sys.executable, str(ROOT / "index_builder"), str(tmp_path / "many"), "--out", str(out), "--model",
           "mini-clip", "--engine", "ray", "--cpus", "1", "--workers", "1", "--batch-size", "4"]
    sigkill_after_rows(cmd, env, out / "meta.sqlite", 8, timeout=90)
    n = sqlite3.connect(out / "meta.sqlite").execute("SELECT COUNT(*) FROM files").fetchone()[0]
    assert 0 < n < 48, "the driver should have been killed part-way"
    deadline = time.time() + 30
    while _ray_processes(ray_tmp) and time.time() < deadline:  # the local Ray goes with its driver
        time.sleep(0.5)
    left = _ray_processes(ray_tmp)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "the local Ray outlived its killed driver"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    assert f"indexed {48 - n}, reused 0, renamed 0, unchanged {n}, removed 0, skipped 0" in done.stdout
    assert "index now holds 48 images" in done.stdout and "Traceback" not in done.stderr
    db = sqlite3.connect(out / "meta.sqlite")
    paths = [p for (p,) in db.execute("SELECT path FROM files")]
    assert len(paths) == len(set(paths)) == 48 and db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 48
