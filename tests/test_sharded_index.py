"""The compressed, sharded index for large collections: recall with exact re-ranking,
shard merging, the size threshold, re-ranking from a memmap, the manifest, and the app's search on it."""
import json
import shutil

import faiss
import numpy as np
import pytest

from demo_core.search import compressed
from demo_core.search.compressed import (CompressedIndex, Params, VectorStore, add_shard, build_compressed,
                                         choose_params, merge_into, merge_on_disk, search_store, train_index)
from demo_core.search.index import ImageIndex
from tests.conftest import ROOT

GALLERY = ROOT / "assets" / "gallery"


def clustered(n, d, seed=0, clusters=200):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def queries_near(x, m, seed):
    rng = np.random.default_rng(seed)
    q = x[rng.choice(len(x), m, replace=False)] + rng.normal(0, 0.5 / np.sqrt(x.shape[1]), (m, x.shape[1]))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def recall(found, exact):
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


@pytest.fixture(scope="module")
def data():
    x = clustered(20_000, 64)
    return np.arange(20_000, dtype=np.int64) * 3 + 5, x  # ids not equal to rows


@pytest.fixture(scope="module")
def built(data, tmp_path_factory):
    ids, x = data
    folder = tmp_path_factory.mktemp("compressed")
    VectorStore.write(folder, len(x), x.shape[1], ((ids[i:i + 4096], x[i:i + 4096]) for i in range(0, len(x), 4096)))
    index, info = build_compressed(folder)
    return folder, index, info


def test_compressed_index_with_rerank_finds_the_exact_top10(data, built):
    ids, x = data
    folder, index, info = built
    q = queries_near(x, 200, seed=7)  # not the build's tuning queries
    exact = ids[np.argsort(-(q @ x.T), axis=1)[:, :10]]
    served = CompressedIndex(folder)
    found = [[i for i, _ in served.search(v, 10)] for v in q]
    assert recall(found, exact) >= 0.95
    assert np.array_equal(served.store.exact_top(q[:20], 10, rows=3000),  # brute force, 7 blocks
                          ids[np.argsort(-(q[:20] @ x.astype(np.float16).astype(np.float32).T), axis=1)[:, :10]])
    no_rerank = [[i for i, _ in search_store(served.index, served.store, v, 10, 10)] for v in q]
    assert recall(no_rerank, exact) < 0.9  # the codes alone are not enough: the re-rank is what makes it exact
    assert info["recall_at_10"] >= 0.95


def test_the_rerank_reads_float16_rows_through_a_memmap(data, built):
    ids, x = data
    served = CompressedIndex(built[0])
    assert isinstance(served.store.vectors, np.memmap) and served.store.vectors.dtype == np.float16
    assert isinstance(served.store.ids, np.memmap)
    (best, score), *_ = served.search(x[123], 5)
    assert best == ids[123]
    assert score == pytest.approx(float(x[123].astype(np.float16).astype(np.float32) @ x[123]), abs=1e-6)
    held = len(faiss.serialize_index(served.index))
    assert held < x.nbytes / 4  # the codes: 16 bytes + an 8-byte id a vector, against 256 bytes of float32


def test_params_follow_the_rule_and_are_recorded(built):
    folder, _, info = built
    p = info["compressed_params"]
    assert json.loads((folder / "params.json").read_text()) == p
    assert (p["nlist"], p["m"], p["nbits"], p["opq"], p["ondisk"], p["fast_scan"]) == (128, 16, 4, False, False, True)
    assert p["nprobe"] in compressed.NPROBES and p["rerank"] in compressed.RERANK_DEPTHS
    assert p["bytes_per_vector"] == 16 and set(p["seconds"]) == {"train", "add", "merge", "tune"}
    big = choose_params(10_000_000, 512)  # 72 bytes a vector: 720 MB of codes, in RAM
    assert (big.nlist, big.m, big.nbits, big.ondisk) == (4096, 128, 4, False)
    assert choose_params(10_000_000, 512, budget=300 * 2**20).m == 32  # D/8 codes would not fit
    assert choose_params(10_000_000, 512, budget=100 * 2**20).ondisk  # nothing fits: lists on disk


def test_shards_merged_give_the_same_results_as_one_add(data, tmp_path):
    ids, x = data
    folder = tmp_path / "s"
    VectorStore.write(folder, len(x), x.shape[1], [(ids, x)])
    store = VectorStore(folder)
    p = choose_params(len(x), x.shape[1])
    trained = train_index(store, p)
    single = add_shard(trained, ids, x)
    merged = faiss.clone_index(trained)
    for s in range(0, len(x), 7000):
        merge_into(merged, add_shard(trained, ids[s:s + 7000], x[s:s + 7000]))
    assert merged.ntotal == single.ntotal == len(x)
    q = queries_near(x, 50, seed=3)
    for index in (single, merged):
        compressed._set_nprobe(index, 16)
    d1, i1 = single.search(q, 20)
    d2, i2 = merged.search(q, 20)
    assert np.array_equal(i1, i2) and np.allclose(d1, d2)


def test_lists_merged_on_disk_give_the_same_results(tmp_path):
    x = clustered(4000, 32, seed=1, clusters=50)
    ids = np.arange(len(x), dtype=np.int64)
    VectorStore.write(tmp_path, len(x), 32, [(ids, x)])
    p = Params(nlist=16, m=4, nbits=4, opq=False, ondisk=True, train_size=4000, shard_rows=1500)
    trained = train_index(VectorStore(tmp_path), p)
    single = add_shard(trained, ids, x)
    names = []
    for s in range(0, len(x), 1500):
        names.append(str(tmp_path / f"shard-{s}.faiss"))
        faiss.write_index(add_shard(trained, ids[s:s + 1500], x[s:s + 1500]), names[-1])
    ondisk = faiss.clone_index(trained)
    merge_on_disk(ondisk, names, tmp_path)
    assert (tmp_path / "lists.ivfdata").stat().st_size > 0 and ondisk.ntotal == len(x)
    q = queries_near(x, 30, seed=4)
    for index in (single, ondisk):
        compressed._set_nprobe(index, 4)
    assert np.array_equal(single.search(q, 10)[1], ondisk.search(q, 10)[1])


def test_a_build_over_the_budget_serves_its_lists_from_disk(tmp_path):
    x = clustered(3000, 32, seed=2, clusters=30)
    VectorStore.write(tmp_path, len(x), 32, [(np.arange(3000), x)])
    _, info = build_compressed(tmp_path, budget=10_000)  # 3000 codes do not fit in 10 kB
    assert info["compressed_params"]["ondisk"] and (tmp_path / "lists.ivfdata").exists()
    served = CompressedIndex(tmp_path)
    assert served.search(x[42], 3)[0][0] == 42


def _synthetic_index(folder, x):
    idx = ImageIndex(folder, create=True)
    idx.set_manifest(model="synthetic", dim=x.shape[1], root=".")
    idx.add([(f"img/{i}.png", 100, 1.0, f"sha{i}", 8, 8) for i in range(len(x))], x)
    return idx


def test_the_threshold_switches_the_index_kind_and_back(tmp_path):
    x = clustered(3000, 64, seed=5, clusters=40)
    idx = _synthetic_index(tmp_path / "idx", x)
    info = idx.build_faiss(compressed_threshold=3000)  # at the threshold: today's kind
    assert info["index_type"].startswith("Flat") and (tmp_path / "idx" / "index.faiss").exists()
    info = idx.build_faiss(compressed_threshold=2999)
    m = idx.manifest()
    assert m["index_type"].startswith("IVF-PQ compressed") and m["compressed"] == "compressed-1"
    assert m["compressed_params"]["factory"] == "IVF64,PQ16x4" and m["nprobe"] == m["compressed_params"]["nprobe"]
    assert not (tmp_path / "idx" / "index.faiss").exists() and (tmp_path / "idx" / "compressed-1").is_dir()
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["compressed_params"]["m"] == 16
    assert idx.search(x[7], 1)[0].path == "img/7.png"
    idx.build_faiss(compressed_threshold=10_000)  # shrunk below it: back to today's kind, old folder gone
    assert idx.manifest()["compressed"] is None and not list((tmp_path / "idx").glob("compressed-*"))
    assert compressed.use_compressed(262_144, 512) != compressed.use_compressed(262_145, 512)
    assert not compressed.use_compressed(100, 64, threshold=0)  # too few to train codes


def test_a_read_only_open_searches_the_last_complete_build(tmp_path):
    x = clustered(3000, 64, seed=6, clusters=40)
    idx = _synthetic_index(tmp_path / "idx", x)
    idx.build_faiss(compressed_threshold=0)
    idx.remove(["img/5.png"])  # a build killed before its index: the database moved on
    ro = ImageIndex(tmp_path / "idx", readonly=True)
    hits = ro.search(x[5], 3)
    assert ro._vectors is None and isinstance(ro._compressed.store.vectors, np.memmap)
    assert "img/5.png" not in {h.path for h in hits}  # rows gone from SQLite are left out
    assert ro.search(x[9], 1)[0].path == "img/9.png"


def test_a_read_only_open_with_no_build_makes_one_privately(tmp_path, monkeypatch):
    x = clustered(3000, 64, seed=8, clusters=40)
    idx = _synthetic_index(tmp_path / "idx", x)
    idx.build_faiss()  # 3000·64 is small: today's kind
    monkeypatch.setattr(compressed, "COMPRESSED_MIN_WORK", 0)
    idx.remove(["img/1.png"])  # stale, and now "large"
    (tmp_path / "idx" / "index.faiss").unlink()  # and no complete build left to search
    before = sorted(p.name for p in (tmp_path / "idx").iterdir())
    ro = ImageIndex(tmp_path / "idx", readonly=True)
    assert ro.search(x[2], 1)[0].path == "img/2.png" and ro._compressed is not None
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == before  # the folder is left as it was
    private = ro._private
    assert (private / "compressed-2" / "vectors.npy").exists()
    ro.close()
    assert not private.exists()


@pytest.fixture
def gallery_copy(tmp_path):
    """The bundled gallery and its index, copied so that files can move (mtimes kept: nothing re-embeds)."""
    root = tmp_path / "images"
    shutil.copytree(GALLERY / "images", root)
    shutil.copytree(GALLERY / "index", tmp_path / "index")
    idx = ImageIndex(tmp_path / "index")
    idx.set_root(root)
    idx.close()
    return root, tmp_path / "index"


def test_the_app_searches_a_compressed_index_and_builds_keep_their_semantics(gallery_copy, bundled_clip, monkeypatch):
    from demo_core.engine import Engine
    from demo_core.search.builder import build_index

    root, out = gallery_copy
    flat = ImageIndex(GALLERY / "index", readonly=True)
    monkeypatch.setattr(compressed, "COMPRESSED_MIN_WORK", 0)  # the gallery's 287 vectors count as large
    victim = sorted(p for p in root.rglob("*.png"))[0]
    moved = victim.with_name("moved-" + victim.name)
    victim.rename(moved)
    gone = sorted(p for p in root.rglob("*.png"))[-1]
    gone.unlink()
    report = build_index(root, out, bundled_clip)
    assert (report.indexed, report.renamed, report.removed) == (0, 1, 1)  # nothing re-embedded
    assert report.index_type.startswith("IVF-PQ compressed")
    engine = Engine(bundled_clip.spec.spec, "cpu", indexes=[str(out)])
    try:
        terms, found = engine.search.text("a cat", str(out), 8)
        assert engine.search.stats(str(out))["index_type"].startswith("IVF-PQ compressed")
        idx = engine.search.index(str(out))
        assert idx._compressed is not None and idx._vectors is None
        expected = [h.path for h in flat.search(idx.embedding(found[0].id), 8)]
        assert found[0].name == idx.search(idx.embedding(found[0].id), 1)[0].path.rsplit("/", 1)[-1]
        rel_moved, rel_gone = moved.relative_to(root).as_posix(), gone.relative_to(root).as_posix()
        got = [h.path for h in idx.search(idx.embedding(found[0].id), 8)]
        assert len(set(got) & {p.replace(moved.name, victim.name) for p in expected}) >= 7
        assert rel_gone not in got
        by_moved = idx.search(flat.embedding(flat.db.execute(
            "SELECT id FROM files WHERE path = ?", (victim.relative_to(root).as_posix(),)).fetchone()[0]), 1)
        assert by_moved[0].path == rel_moved
    finally:
        engine.close()
        flat.close()
