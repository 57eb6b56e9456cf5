"""Search latency and recall@10 vs exact, Flat vs IVF, at 10k / 100k / 1M vectors.

    python bench/bench_search.py [--sizes 10000 100000 1000000] [--dim 512] [--out bench/search.json]

Data: (a) clustered synthetic unit vectors (2,000 Gaussian clusters); (b) "real": the bundled
gallery's CLIP embeddings tiled to N with small noise (there are only a few hundred real ones).
Queries: points near stored vectors. Latency: single-query wall time, p50/p95, over 500 queries
(100 for exact search at 1M) after 20 warm-up queries; recall@10 against exact over 200 queries. Memory: serialized FAISS index + stored float32 vectors.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _report import report  # noqa: E402  (bench/ is on sys.path when run as a script)
from demo_core.search.index import exact_top10, near_queries, build_ann, recall_at_10, search_ann  # noqa: E402


def clustered(n: int, dim: int, rng) -> np.ndarray:
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    x = np.empty((n, dim), np.float32)
    for i in range(0, n, 100_000):
        m = min(100_000, n - i)
        x[i:i + m] = centres[rng.integers(0, 2000, m)] + 0.6 * rng.normal(size=(m, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def tiled_real(n: int, rng) -> np.ndarray:
    from demo_core.search.index import ImageIndex

    _, base = ImageIndex(Path(__file__).resolve().parent.parent / "assets/gallery/index", readonly=True).load_vectors()
    x = base[rng.integers(0, len(base), n)] + rng.normal(0, 0.15 / np.sqrt(base.shape[1]), (n, base.shape[1])).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def bench_one(vecs: np.ndarray, kind: str, rng) -> dict:
    import faiss

    n = len(vecs)
    ids = np.arange(n, dtype=np.int64)
    t0 = time.perf_counter()
    index, info = build_ann(vecs, ids, threshold=n + 1 if kind == "flat" else 0)
    build_s = time.perf_counter() - t0
    queries = near_queries(vecs, 520 if n < 1_000_000 or kind != "flat" else 120, rng)
    lat = []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        search_ann(index, vecs, ids, q, 10)
        if i >= 20:
            lat.append((time.perf_counter() - t) * 1000)
    qs = queries[:200]
    recall = recall_at_10(index, vecs, ids, qs, exact_top10(vecs, ids, qs))
    mem = len(faiss.serialize_index(index)) + vecs.nbytes
    return {"n": n, "dim": vecs.shape[1], "index": info["index_type"], "build_s": round(build_s, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 3), "p95_ms": round(float(np.percentile(lat, 95)), 3),
            "recall_at_10": round(recall, 4), "memory_mb": round(mem / 2**20, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=512, help="synthetic dimension (ViT-B-32: 512)")
    ap.add_argument("--flat-max", type=int, default=1_000_000, help="largest size to also time exact Flat at")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import faiss

    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        for data in ("clustered", "real"):
            vecs = clustered(n, args.dim, rng) if data == "clustered" else tiled_real(n, rng)
            for kind in (["flat"] if n <= args.flat_max else []) + ["ivf"]:
                row = {"data": data, **bench_one(vecs, kind, rng)}
                rows.append(row)
                print(json.dumps(row), flush=True)
            del vecs
    report(rows, args.out, faiss=faiss.__version__, faiss_threads=faiss.omp_get_max_threads())
    return 0


if __name__ == "__main__":
    sys.exit(main())
