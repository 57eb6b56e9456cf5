"""index_builder + search: build, query, incremental updates, interruption, bad files, safety."""
import os
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from demo_core.search.builder import build_index, scan
from demo_core.search.index import ImageIndex
from demo_core.errors import IndexProblem, InputError
from demo_core.search.query import image_query_vector, parse_query, text_query_vector
from tests.conftest import EXAMPLES, ROOT, sigkill_after_rows


@pytest.fixture
def collection(tmp_path):
    """The six held-out example emoji, a nested copy, a broken file, a hidden file and a symlink loop."""
    root = tmp_path / "photos"
    (root / "nested" / "deeper").mkdir(parents=True)
    for p in EXAMPLES.glob("*.png"):
        shutil.copy(p, root / p.name)
    shutil.copy(EXAMPLES / "cat.png", root / "nested" / "deeper" / "Cat Copy.PNG")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / ".hidden.png").write_bytes((EXAMPLES / "dog.png").read_bytes())
    (root / "notes.txt").write_text("not an image")
    os.symlink(root, root / "nested" / "loop")  # must not be followed forever
    return root


def _build(root, out, clip, **kw):
    return build_index(root, out, clip, batch_size=3, workers=2, **kw)


def test_scan_finds_images_case_insensitively_skips_hidden_and_loops(collection):
    files, _ = scan(collection)
    rels = sorted(f.rel for f in files)
    assert "nested/deeper/Cat Copy.PNG" in rels and "broken.jpg" in rels
    assert not any(r.startswith(".") or "/loop/" in r or r.endswith(".txt") for r in rels)
    assert len(rels) == 8


def test_build_then_search_text_and_image(collection, tmp_path, bundled_clip):
    report = _build(collection, tmp_path / "idx", bundled_clip)
    assert report.indexed + report.reused == 7 and report.total == 7  # the copy may reuse the vector
    assert [r for r, _ in report.skipped] == ["broken.jpg"]
    assert "not an image" in report.skipped[0][1]
    idx = ImageIndex(tmp_path / "idx", readonly=True)
    hits = idx.search(image_query_vector(bundled_clip, EXAMPLES / "train.png"), 3)
    assert hits[0].path == "train.png" and hits[0].score == pytest.approx(1.0, abs=1e-3)
    # cat.png is the "grinning cat" emoji, a cat's face: mini-clip-2 put the whole dog before it for plain "a cat"
    # (its card: "a cat" means a whole cat to it), so the query says what the picture shows
    top = idx.search(text_query_vector(bundled_clip, parse_query("a cat face")), 2)
    assert {h.path for h in top} == {"cat.png", "nested/deeper/Cat Copy.PNG"}
    st = idx.stats()
    assert st["count"] == 7 and st["model"] == bundled_clip.spec.spec and st["index_type"].startswith("Flat")


def test_rerun_is_incremental_with_add_remove_rename(collection, tmp_path, bundled_clip, monkeypatch):
    out = tmp_path / "idx"
    _build(collection, out, bundled_clip)
    (collection / "dog.png").rename(collection / "nested" / "puppy.png")  # rename
    (collection / "bird.png").unlink()  # remove
    shutil.copy(EXAMPLES / "train.png", collection / "nested" / "train again.png")  # copy of indexed content
    Image.new("RGB", (64, 64), (20, 120, 220)).save(collection / "blue.png")  # new
    calls = []
    real = bundled_clip.encode_pixels
    monkeypatch.setattr(bundled_clip, "encode_pixels", lambda x: calls.append(len(x)) or real(x))
    report = _build(collection, out, bundled_clip)
    assert (report.indexed, report.renamed, report.removed, report.reused) == (1, 1, 1, 1)
    assert report.unchanged == 5 and sum(calls) == 1  # only blue.png went through the model
    idx = ImageIndex(out, readonly=True)
    paths = set(idx.rows())
    assert "nested/puppy.png" in paths and "dog.png" not in paths and "bird.png" not in paths
    hits = idx.search(image_query_vector(bundled_clip, EXAMPLES / "dog.png"), 1)
    assert hits[0].path == "nested/puppy.png"
    report = _build(collection, out, bundled_clip)  # nothing changed: nothing embedded
    assert report.indexed == report.renamed == report.removed == 0 and report.unchanged == 8


def test_model_mismatch_says_how_to_rebuild(collection, tmp_path, bundled_clip, tiny_clip_folder):
    from demo_core.clip.model import ClipModel

    _build(collection, tmp_path / "idx", bundled_clip)
    tiny = ClipModel.load(f"local-dir:{tiny_clip_folder}", "cpu")
    name = bundled_clip.spec.spec
    with pytest.raises(IndexProblem, match=rf"built with {name} \(128-d\).*rebuild with .*--model"):
        _build(collection, tmp_path / "idx", tiny)
    with pytest.raises(IndexProblem, match=f"--clip-model {name}"):
        ImageIndex(tmp_path / "idx", readonly=True).check_model(tiny.spec.spec, tiny.embed_dim)


@pytest.mark.parametrize("rel", ["../outside.png", "../../etc/passwd", "/etc/passwd", "nested/../../x.png",
                                 "nested/loop/cat.png"])
def test_paths_outside_the_collection_or_not_indexed_are_refused(collection, tmp_path, bundled_clip, rel):
    (collection.parent / "outside.png").write_bytes((EXAMPLES / "cat.png").read_bytes())
    _build(collection, tmp_path / "idx", bundled_clip)
    idx = ImageIndex(tmp_path / "idx", readonly=True)
    with pytest.raises(IndexProblem):
        idx.safe_path(rel)
    assert idx.safe_path("cat.png").is_file()


def test_query_arithmetic_parsing():
    assert [(t.weight, t.text) for t in parse_query("cat + 2:dog - grass")] == [(1, "cat"), (2, "dog"), (-1, "grass")]
    assert [(t.weight, t.text) for t in parse_query("cat and dog")] == [(1, "cat and dog")]
    assert [t.text for t in parse_query("t-shirt")] == ["t-shirt"]
    with pytest.raises(InputError):
        parse_query("  ")
    with pytest.raises(InputError, match="positive"):
        parse_query("- grass")


@pytest.mark.slow
def test_killed_build_then_rerun_is_complete_and_consistent(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(150):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / f"img{i:03d}.png")
    out = tmp_path / "idx"
    cmd = [sys.executable, str(ROOT / "index_builder"), str(root), "--out", str(out), "--model", "mini-clip",
           "--batch-size", "4", "--workers", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    n = sigkill_after_rows(cmd, env, out / "meta.sqlite", 20, timeout=120)
    assert 0 < n < 150, "the build should have been killed part-way"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(out / "meta.sqlite")
    paths = [p for (p,) in db.execute("SELECT path FROM files")]
    assert len(paths) == len(set(paths)) == 150
    assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 150
    assert db.execute("SELECT COUNT(*) FROM files f LEFT JOIN vectors v ON v.id = f.id WHERE v.id IS NULL").fetchone()[0] == 0
    assert "index now holds 150 images" in done.stdout


@pytest.mark.slow
def test_cli_exit_codes(tmp_path, tiny_clip_folder):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    missing = subprocess.run([sys.executable, str(ROOT / "index_builder"), str(tmp_path / "nope")],
                             capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error:")
    assert "Traceback" not in missing.stderr
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    unwritable = subprocess.run([sys.executable, str(ROOT / "index_builder"), str(tmp_path), "--out",
                                 str(blocked / "idx")], capture_output=True, text=True, env=env)
    assert unwritable.returncode == 1 and "cannot write" in unwritable.stderr
    # 3: an index folder that belongs to another collection is refused, not overwritten
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(EXAMPLES / "cat.png", tmp_path / name / "cat.png")
    cmd = [sys.executable, str(ROOT / "index_builder"), "--out", str(tmp_path / "idx"), "--model", str(tiny_clip_folder)]
    first = subprocess.run(cmd + [str(tmp_path / "a")], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    other = subprocess.run(cmd + [str(tmp_path / "b")], capture_output=True, text=True, env=env)
    assert other.returncode == 3, other.stderr
    assert other.stderr.strip().splitlines()[-1].startswith("error:") and "Traceback" not in other.stderr


def _clustered(n, dim, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(4, n // 200), dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.normal(size=(n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_ann_index_reaches_target_recall_and_reranks_exactly():
    from demo_core.search.index import build_ann, search_ann

    vecs = _clustered(6000, 32)
    ids = np.arange(6000, dtype=np.int64) * 3 + 7  # ids need not be row numbers
    index, info = build_ann(vecs, ids, threshold=1000)
    assert info["index_type"].startswith("IVF") and info["recall_at_10"] >= 0.95
    q = vecs[123] + 0.01
    q /= np.linalg.norm(q)
    hits = search_ann(index, vecs, ids, q, 5)
    assert hits[0][0] == ids[123]
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(float(vecs[123] @ q), abs=1e-5)  # exact cosine, not an estimate


def test_ann_index_survives_save_and_reload(collection, tmp_path, bundled_clip, monkeypatch):
    """An index over the ANN threshold is written, reopened read-only and searched the same way."""
    out = tmp_path / "idx"
    _build(collection, out, bundled_clip)
    idx = ImageIndex(out)
    ids, vecs = idx.load_vectors()
    info = idx.build_faiss(threshold=2)  # force IVF on a tiny collection
    assert info["index_type"].startswith("IVF")
    idx.close()
    ro = ImageIndex(out, readonly=True)
    assert ro.manifest()["index_type"].startswith("IVF")
    hits = ro.search(vecs[0], 1)
    assert hits[0].id == ids[0]


def test_search_uses_the_query_template_measured_for_the_model(tiny_clip_folder, tmp_path):
    """A model folder may name its search template (measured by bench/gallery_queries.py); the query
    vector is the term in that template, and a folder that names none gets the CLIP paper's."""
    import json
    import shutil

    import torch

    from demo_core.clip.model import SEARCH_TEMPLATE, ClipModel
    from demo_core.search.query import parse_query, text_query_vector

    plain = ClipModel.load(f"local-dir:{tiny_clip_folder}", "cpu")
    assert plain.search_template == SEARCH_TEMPLATE
    named = tmp_path / "named"
    shutil.copytree(tiny_clip_folder, named)
    config = json.loads((named / "open_clip_config.json").read_text())
    config["demo_meta"] = {"search_template": "an emoji of {}"}
    (named / "open_clip_config.json").write_text(json.dumps(config))
    clip = ClipModel.load(f"local-dir:{named}", "cpu")
    assert clip.search_template == "an emoji of {}"
    v = torch.from_numpy(text_query_vector(clip, parse_query("cat")))
    assert torch.allclose(v, clip.encode_texts(["an emoji of cat"])[0], atol=1e-5)
    assert not torch.allclose(v, clip.encode_texts([SEARCH_TEMPLATE.format("cat")])[0], atol=1e-3)
    assert ClipModel.load("mini-clip-v1", "cpu").search_template == "a photo of {}"  # no full stop: measured


def test_the_gallery_is_prebuilt_for_the_app_clip_and_for_the_one_unclip_reads(tmp_path, monkeypatch):
    """Offline, neither the Search tab (the app's CLIP) nor unCLIP's nearest images (the CLIP its prior and
    decoder were trained on) embed the gallery at startup: each finds a bundled index it made, whole."""
    import json
    import threading

    from demo_core.clip.model import ClipModel
    from demo_core.diffusion.unclip import BUNDLED_DECODER, BUNDLED_PRIOR
    from demo_core.registry import BUNDLED_CLIP
    from demo_core.search.builder import scan
    from demo_core.search.service import BUNDLED_GALLERY, BUNDLED_INDEXES, SearchService

    monkeypatch.setenv("DEMO_CACHE", str(tmp_path / "cache"))
    unclip_clip = json.loads((BUNDLED_PRIOR / "prior_config.json").read_text())["clip_spec"]
    assert unclip_clip == json.loads((BUNDLED_DECODER / "cond_config.json").read_text())["clip_spec"]
    service = SearchService([], lambda: None, threading.Event(), threading.Event(), tmp_path / "thumbs")
    images = len(scan(BUNDLED_GALLERY)[0])
    for name in (BUNDLED_CLIP, unclip_clip):
        folder = service.gallery_folder(ClipModel.load(name, "cpu"))
        assert folder in BUNDLED_INDEXES
        assert ImageIndex(folder, readonly=True).stats()["count"] == images
    assert not list((tmp_path / "cache").glob("gallery-*"))  # nothing was embedded (the cache holds mini-clip-3's
    # weights joined from their two files, clip.weights)
