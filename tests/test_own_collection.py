"""Searching your own collection, as a new user does it: `python index_builder DIR`, then
`python app.py --index OUT`. The named index is what Search opens; a collection that moved or
lost files says so instead of answering empty; closing the engine leaves nothing open behind."""
import logging
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from demo_core.errors import CollectionMissing, IndexProblem, UserError
from tests.conftest import EXAMPLES, ROOT


def _photos(folder):
    folder.mkdir(parents=True)
    for p in sorted(EXAMPLES.glob("*.png")):
        shutil.copy(p, folder / p.name)
    return folder


@pytest.fixture(scope="module")
def lab(tmp_path_factory, tiny_clip_folder):
    """An engine started with two indexes of the user's (`--index A --index B`), A and B built of their
    own folders with the engine's CLIP; the bundled gallery is embedded into a private cache."""
    from demo_core.engine import Engine
    from demo_core.search.builder import build_index

    tmp = tmp_path_factory.mktemp("own")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEMO_CACHE", str(tmp / "cache"))
        engine = Engine(f"local-dir:{tiny_clip_folder}", "cpu", indexes=[str(tmp / "index-a"), str(tmp / "index-b")])
        for name in ("a", "b"):
            build_index(_photos(tmp / f"photos-{name}"), tmp / f"index-{name}", engine.clip, workers=1)
        yield engine, tmp
        engine.close()


def _search_fn(demo, name):
    return next(dep.fn for dep in demo.fns.values() if getattr(dep.fn, "__wrapped__", dep.fn).__name__ == name)


def test_the_index_named_at_startup_is_what_search_opens(lab):
    import app
    from demo_core.engine import GALLERY

    engine, tmp = lab
    first, second = str(tmp / "index-a"), str(tmp / "index-b")
    assert engine.search.names() == [first, second, GALLERY]  # the gallery stays on offer, after them
    demo = app.build_demo(engine)
    pick = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "s-index")
    assert pick.value == first
    params = {p["parameter_name"]: p for p in demo.get_api_info()["named_endpoints"]["/search"]["parameters"]}
    assert params["index_name"]["parameter_default"] == first  # an API caller who names no index gets it too
    _, found = engine.search.text("a cat", first, 3)
    assert found and all(f.thumbnail.is_file() for f in found)


def test_index_flags_and_DEMO_INDEX_reach_the_engine_in_order(monkeypatch, capsys):
    import app

    seen = []

    def engine(clip, device, indexes, **_):
        seen.append(indexes)
        raise UserError("stop here")

    monkeypatch.setattr(app, "Engine", engine)
    monkeypatch.setenv("DEMO_INDEX", "/c")
    with pytest.raises(SystemExit) as e:
        app.main(["--index", "/a", "--index", "/b"])
    assert seen == [["/a", "/b", "/c"]]
    assert e.value.code == 2 and capsys.readouterr().err.strip() == "error: stop here"


def test_lost_files_and_a_moved_collection_are_said_not_silent(lab, caplog):
    import app

    engine, tmp = lab
    name, photos = str(tmp / "index-b"), tmp / "photos-b"
    _, every = engine.search.text("a cat", name, 10)
    assert len(every) == 6 and not every.note
    (photos / "dog.png").unlink()
    with caplog.at_level(logging.WARNING, logger="demo_core"):
        _, found = engine.search.text("a cat", name, 10)
    assert sorted(f.name for f in found) == sorted(f.name for f in every if f.name != "dog.png")  # the rest still shown
    assert "1 of the 6" in found.note and "dog.png" in found.note and f"index_builder {photos}" in found.note
    assert any("dog.png" in r.getMessage() for r in caplog.records)
    search = _search_fn(app.build_demo(engine), "search")
    with pytest.warns(UserWarning, match="dog.png"):  # gr.Warning: a toast in the browser
        _, details, _ = search("a cat", name, 10)
    assert "dog.png" in details  # and in the answer, for an API caller

    photos.rename(tmp / "photos-b-moved")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="demo_core"):
        with pytest.raises(CollectionMissing, match="not there any more") as e:
            engine.search.text("a cat", name, 10)
    assert str(photos) in str(e.value) and "index_builder" in str(e.value)
    assert any(str(photos) in r.getMessage() for r in caplog.records)
    with pytest.raises(IndexProblem, match="not there any more"):
        engine.search.more_like(name, every[0].id, 5)
    import gradio as gr

    with pytest.raises(gr.Error, match=str(photos)):  # the UI shows the same words
        search("a cat", name, 10)


def test_close_releases_every_index_and_its_private_copy(tiny_clip_folder, tmp_path, monkeypatch):
    """A read-only open of a collection past the compressed threshold, whose build did not finish,
    builds a private copy under the temporary folder: close() must close it and remove the copy."""
    from demo_core.engine import GALLERY, Engine
    from demo_core.search import compressed
    from demo_core.search.index import ImageIndex

    monkeypatch.setenv("DEMO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(compressed, "COMPRESSED_MIN_WORK", 0)
    folder = tmp_path / "big-index"
    engine = Engine(f"local-dir:{tiny_clip_folder}", "cpu", indexes=[str(folder)])
    try:
        w = ImageIndex(folder, create=True)
        w.set_manifest(model=engine.clip.spec.spec, dim=engine.clip.embed_dim)
        w.set_root(tmp_path)
        vecs = np.random.default_rng(0).standard_normal((300, engine.clip.embed_dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        w.add([(f"{i}.png", 1, 0.0, f"{i:064x}", 8, 8) for i in range(300)], vecs)  # no FAISS yet
        w.close()
        big, gallery = engine.search.index(str(folder)), engine.search.index(GALLERY)
        assert big.search(vecs[7], 1)[0].path == "7.png" and gallery.search(gallery.embedding(1), 1)
        private = big._private
        assert private is not None and private.is_dir() and private != folder
    finally:
        engine.close()
    assert not private.exists()
    for idx in (big, gallery):
        with pytest.raises(sqlite3.ProgrammingError):  # its database handle is closed
            idx.db.execute("SELECT 1")
    with pytest.raises(IndexProblem, match="shutting down"):  # and is not opened again behind close()
        engine.search.index(str(folder))


def _cli(*args, env_extra=None):
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    env.pop("DEMO_DEVICE", None)
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=300)


def _one_error_line(done) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert len([ln for ln in done.stderr.splitlines() if ln.startswith("error:")]) == 1, done.stderr


@pytest.mark.slow  # a subprocess CLI run (the fast set keeps test_cli_over_the_hostile_corpus for the wiring)
def test_index_builder_with_a_damaged_model_folder_exits_2_in_one_line(tmp_path, tiny_clip_folder):
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(tiny_clip_folder / "open_clip_config.json", model)
    (model / "open_clip_model.safetensors").write_bytes(b"not safetensors")
    done = _cli(ROOT / "index_builder", _photos(tmp_path / "photos"), "--out", tmp_path / "idx", "--model", model)
    assert done.returncode == 2
    _one_error_line(done)
    assert "could not be loaded" in done.stderr and str(model) in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("program", ["index_builder", "app.py"])
def test_asking_for_a_gpu_that_is_not_there_exits_2_in_one_line(program, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    args = [ROOT / "index_builder", _photos(tmp_path / "photos")] if program == "index_builder" else [ROOT / "app.py"]
    done = _cli(*args, "--device", "gpu")
    assert done.returncode == 2
    _one_error_line(done)
    assert "no CUDA GPU is available" in done.stderr


def _colour_pngs(folder, n, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"new-{seed}-{i:03d}.png")


def test_a_rebuild_while_the_app_runs_is_seen_whole_by_the_next_search(tiny_clip_folder, tmp_path, monkeypatch):
    """index_builder adds 80 images in 8-image transactions in a second process while searches run in a loop:
    every answer is one complete generation (the old files exactly, or the new set exactly), and the first
    search after the build ends finds the new images, without a restart."""
    import os
    import time

    from demo_core.engine import Engine
    from demo_core.search.builder import build_index

    monkeypatch.setenv("DEMO_CACHE", str(tmp_path / "cache"))
    photos, out = _photos(tmp_path / "photos"), tmp_path / "index"
    spec = f"local-dir:{tiny_clip_folder}"
    engine = Engine(spec, "cpu", indexes=[str(out)])
    try:
        build_index(photos, out, engine.clip, workers=1)
        served = engine.search.index(str(out))  # the read-only index the app's searches go through
        query = engine.clip.encode_texts(["a cat"])[0].numpy()

        def answer():  # every file, ranked: more than Search's 48, so that a whole generation is visible
            return frozenset(h.path for h in served.search(query, 500))

        old = answer()
        assert len(old) == 6 and served.stats()["generation"] == 1
        _colour_pngs(photos, 80, seed=1)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, str(ROOT / "index_builder"), str(photos), "--out", str(out),
                                 "--model", spec, "--batch-size", "8", "--workers", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        db = sqlite3.connect(out / "meta.sqlite")
        answers, mid_build = [], 0
        while proc.poll() is None:
            rows = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
            answers.append(answer())
            mid_build += 6 < rows < 86  # the database held part of the new rows when this search ran
            time.sleep(0.01)
        assert proc.wait() == 0, proc.stderr.read()
        new = answer()
        assert len(new) == 86 and old < new  # seen by the first search after the build, no restart
        assert mid_build >= 3, "the build finished before searches could run during it"
        assert all(a in (old, new) for a in answers), sorted({len(a) for a in answers})
        stats = served.stats()
        assert stats["generation"] > 1 and stats["built"] and stats["count"] == 86
        from ui.status import index_summary

        line = index_summary(engine, str(out))  # the Search summary and the Status panel
        assert "**86** images" in line and f"generation {stats['generation']}, built 20" in line
        _, found = engine.search.text("a cat", str(out), 48)  # and Search shows them
        assert len(found) == 48 and any(f.name.startswith("new-") for f in found)
    finally:
        engine.close()


def test_a_file_whose_name_is_not_utf8_is_indexed_shown_and_found_again(tiny_clip_folder, tmp_path, monkeypatch):
    """A photo copied from an old camera card with a Latin-1 name (b'caf\\xe9.png'): indexed byte for byte,
    shown with the replacement character, its thumbnail served, and "more like this" works from it."""
    import os

    from demo_core.engine import Engine
    from demo_core.search.builder import build_index
    from tests.hostile import png_bytes

    monkeypatch.setenv("DEMO_CACHE", str(tmp_path / "cache"))
    photos, out = _photos(tmp_path / "photos"), tmp_path / "index"
    with open(os.path.join(os.fsencode(photos), b"caf\xe9.png"), "wb") as f:
        f.write(png_bytes(40, 30))
    engine = Engine(f"local-dir:{tiny_clip_folder}", "cpu", indexes=[str(out)])
    try:
        report = build_index(photos, out, engine.clip, workers=1)
        assert report.total == 7 and not report.skipped
        _, found = engine.search.text("a cat", str(out), 48)
        latin1 = next(f for f in found if f.name == "caf\ufffd.png")  # shown as "caf�.png"
        assert latin1.thumbnail.is_file() and latin1.thumbnail.stat().st_size > 0
        again = engine.search.more_like(str(out), latin1.id, 3)
        assert again[0].name == "caf\ufffd.png" and again[0].score > 0.999
        rebuilt = build_index(photos, out, engine.clip, workers=1)  # a re-run finds it unchanged, not new
        assert (rebuilt.unchanged, rebuilt.indexed, rebuilt.removed) == (7, 0, 0)
    finally:
        engine.close()
