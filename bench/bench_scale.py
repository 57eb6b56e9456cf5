"""Index at scale: the compressed, sharded index on N synthetic clustered vectors, and at
--compare vectors against today's IVF-Flat, in one run.

    python bench/bench_scale.py [--n 10000000] [--dim 512] [--compare 1000000] [--work DIR] [--out bench/scale.json]

Data: unit vectors around 2,000 Gaussian centres (as bench_search.py), generated in chunks of 100k,
chunk i from seed (0, i), written as float16 chunk files to --work (a temporary folder by default,
removed at the end). Queries: 1,000 points near stored vectors of the first --compare rows (seed 1).
Each stage runs in a fresh process, so its peak RSS (VmHWM, which counts the mapped file pages it
touched) is its own (Linux only: /proc/self/status):
  store   the chunks copied into one vector store (vectors.npy float16 + ids.npy), as the builder
          copies SQLite's vectors into it
  build   train on a sample / add shards / merge / tune nprobe and re-rank depth (build_compressed)
  exact   exact top-10 of the 1,000 queries, chunked brute force over the memmap
  serve   open the index; 20 warm-up, then 1,000 single queries with re-rank: p50/p95, recall@10;
          peak RSS, and at the end RssAnon (the process's own memory) and RssFile (mapped pages);
          then the store dropped from the page cache and 200 queries timed again (cold p50/p95)
  ivfflat today's index (build_ann, threshold 0: IVF-Flat, float32 vectors in RAM) on the same rows
Bytes per vector: index.faiss (codes, ids, centroids) / N; on disk the store adds 2·D + 8.
"""
from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _report import report  # noqa: E402  (bench/ is on sys.path when run as a script)

CHUNK = 100_000
CENTRES = 2000
QUERIES = 1000
COLD = 200  # queries timed after the store is dropped from the page cache


def _mem() -> dict:
    """This process's peak RSS (VmHWM) and what it holds now: RssAnon (its own memory) and RssFile
    (mapped file pages it touched: the store's rows, page cache that the kernel can drop), in MB.
    Not ru_maxrss: Linux carries it across fork and exec, so a fresh stage would report its parent's."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmHWM", "RssAnon", "RssFile"):
            out[{"VmHWM": "peak_rss_mb"}.get(key, key.lower() + "_mb")] = round(int(line.split()[1]) / 1024, 1)
    return out


def stage(fn, *args):
    """Run fn(*args) in a fresh process; returns its result (a dict, with the stage's memory)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def generate(work: Path, n: int, dim: int) -> list[Path]:
    centres = np.random.default_rng(0).normal(size=(CENTRES, dim)).astype(np.float32)
    files = []
    for i, start in enumerate(range(0, n, CHUNK)):
        rng = np.random.default_rng((0, i))
        m = min(CHUNK, n - start)
        x = centres[rng.integers(0, CENTRES, m)] + 0.6 * rng.normal(size=(m, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        files.append(work / f"chunk-{i:05d}.npy")
        np.save(files[-1], x.astype(np.float16))
    return files


def make_queries(files: list[Path], rows: int, dim: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    picks = np.sort(rng.choice(rows, QUERIES, replace=False))
    q = np.stack([np.load(files[p // CHUNK], mmap_mode="r")[p % CHUNK].astype(np.float32) for p in picks])
    q += rng.normal(0, 0.5 / np.sqrt(dim), q.shape).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def store_stage(files: list[str], rows: int, dim: int, folder: str) -> dict:
    from demo_core.search.compressed import VectorStore

    def chunks():
        left = rows
        for i, f in enumerate(files):
            x = np.load(f, mmap_mode="r")[:left]
            left -= len(x)
            yield np.arange(i * CHUNK, i * CHUNK + len(x), dtype=np.int64), x
            if not left:
                return

    t = time.perf_counter()
    VectorStore.write(folder, rows, dim, chunks())
    return {"store_s": round(time.perf_counter() - t, 2), **_mem()}


def build_stage(folder: str) -> dict:
    from demo_core.search.compressed import build_compressed

    _, info = build_compressed(folder)
    return {"params": info["compressed_params"], **_mem()}


def exact_stage(folder: str, queries: str, out: str) -> dict:
    from demo_core.search.compressed import VectorStore

    t = time.perf_counter()
    np.save(out, VectorStore(folder).exact_top(np.load(queries), 10))
    return {"exact_s": round(time.perf_counter() - t, 2), **_mem()}


def _latency_recall(search, queries: np.ndarray, exact: np.ndarray) -> dict:
    for q in queries[:20]:
        search(q)
    lat, found = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(search(q))
        lat.append((time.perf_counter() - t) * 1000)
    recall = float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))
    return {"p50_ms": round(float(np.percentile(lat, 50)), 3), "p95_ms": round(float(np.percentile(lat, 95)), 3),
            "recall_at_10": round(recall, 4)}


def serve_stage(folder: str, queries: str, exact: str) -> dict:
    from demo_core.search.compressed import CompressedIndex

    t = time.perf_counter()
    index = CompressedIndex(folder)
    opened = time.perf_counter() - t
    assert isinstance(index.store.vectors, np.memmap)
    search = lambda q: [i for i, _ in index.search(q, 10)]  # noqa: E731
    res = _latency_recall(search, np.load(queries), np.load(exact))
    mem = _mem()
    # Cold: the store's pages dropped from the page cache (POSIX_FADV_DONTNEED), then COLD queries,
    # each reading its k' rows from disk; the warm figures above had the store cached by the exact stage.
    # (The mapping is closed first: the kernel keeps pages that a process still maps.)
    del index, search
    gc.collect()
    fd = os.open(Path(folder) / "vectors.npy", os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    index = CompressedIndex(folder)
    search = lambda q: [i for i, _ in index.search(q, 10)]  # noqa: E731
    lat = []
    for q in np.load(queries)[:COLD]:
        t = time.perf_counter()
        search(q)
        lat.append((time.perf_counter() - t) * 1000)
    return {"open_s": round(opened, 2), **res, **mem, "cold_p50_ms": round(float(np.percentile(lat, 50)), 3),
            "cold_p95_ms": round(float(np.percentile(lat, 95)), 3)}


def ivfflat_stage(folder: str, queries: str, exact: str) -> dict:
    """Today's index on the same rows: float32 vectors in RAM, IVF-Flat, exact re-rank from RAM."""
    import faiss

    from demo_core.search.ann import build_ann, search_ann
    from demo_core.search.compressed import VectorStore

    store = VectorStore(folder)
    ids, vecs = np.asarray(store.ids), np.asarray(store.vectors, dtype=np.float32)
    del store
    t = time.perf_counter()
    index, info = build_ann(vecs, ids, threshold=0)
    build_s = time.perf_counter() - t
    res = _latency_recall(lambda q: [i for i, _ in search_ann(index, vecs, ids, q, 10)], np.load(queries), np.load(exact))
    held = len(faiss.serialize_index(index)) + vecs.nbytes
    return {"index": info["index_type"], "build_s": round(build_s, 2), **res,
            "bytes_per_vector": round(held / len(ids), 1), **_mem()}


def run_size(work: Path, files: list[Path], rows: int, dim: int, queries: Path, with_ivfflat: bool) -> list[dict]:
    folder = work / f"store-{rows}"
    exact = work / f"exact-{rows}.npy"
    st = stage(store_stage, [str(f) for f in files], rows, dim, str(folder))
    print(json.dumps({"n": rows, "stage": "store", **st}), flush=True)
    bd = stage(build_stage, str(folder))
    p = bd.pop("params")
    print(json.dumps({"n": rows, "stage": "build", **bd, "seconds": p["seconds"]}), flush=True)
    ex = stage(exact_stage, str(folder), str(queries), str(exact))
    print(json.dumps({"n": rows, "stage": "exact", **ex}), flush=True)
    sv = stage(serve_stage, str(folder), str(queries), str(exact))
    index_bytes = (folder / "index.faiss").stat().st_size + sum(f.stat().st_size for f in folder.glob("*.ivfdata"))
    rows_out = [{"n": rows, "dim": dim, "index": f"{p['factory']}{' fast-scan' if p['fast_scan'] else ''}, "
                 f"nprobe {p['nprobe']}, re-rank {p['rerank']}",
                 "build_s": {"store": st["store_s"], **p["seconds"]},
                 "bytes_per_vector": round(index_bytes / rows, 1), "disk_bytes_per_vector": 2 * dim + 8,
                 "build_peak_rss_mb": max(st["peak_rss_mb"], bd["peak_rss_mb"]),
                 **{k: sv[k] for k in ("open_s", "p50_ms", "p95_ms", "recall_at_10", "cold_p50_ms", "cold_p95_ms")},
                 "serve_peak_rss_mb": sv["peak_rss_mb"], "serve_rss_anon_mb": sv.get("rssanon_mb"),
                 "serve_rss_file_mb": sv.get("rssfile_mb"), "build_recall_at_10": p["recall_at_10"],
                 "why": p["why"]}]
    print(json.dumps(rows_out[0]), flush=True)
    if with_ivfflat:
        fl = stage(ivfflat_stage, str(folder), str(queries), str(exact))
        rows_out.append({"n": rows, "dim": dim, **{k: v for k, v in fl.items() if k != "rssfile_mb"},
                         "serve_peak_rss_mb": fl["peak_rss_mb"]})
        print(json.dumps(rows_out[-1]), flush=True)
    shutil.rmtree(folder)
    return rows_out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=512, help="synthetic dimension (ViT-B-32: 512)")
    ap.add_argument("--compare", type=int, default=1_000_000, help="size of the IVF-Flat comparison (capped at --n)")
    ap.add_argument("--work", default=None, help="folder for the chunks and stores (default: a temporary one)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import faiss

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    compare = min(args.compare, args.n)
    try:
        t = time.perf_counter()
        files = generate(work, args.n, args.dim)
        gen_s = time.perf_counter() - t
        print(json.dumps({"stage": "generate", "n": args.n, "seconds": round(gen_s, 1)}), flush=True)
        queries = work / "queries.npy"
        np.save(queries, make_queries(files, compare, args.dim))
        rows = []
        for n in sorted({compare, args.n}):
            rows += run_size(work, files, n, args.dim, queries, with_ivfflat=n == compare)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    report(rows, args.out, faiss=faiss.__version__, faiss_threads=faiss.omp_get_max_threads(),
           generate_s=round(gen_s, 1), queries=QUERIES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
