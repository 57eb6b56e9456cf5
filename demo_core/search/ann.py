"""Approximate nearest neighbours in RAM, shared by ImageIndex and bench/: exact Flat or IVF-Flat by
collection size, exact re-ranking on the stored vectors, and the recall measurement both use.
(Moved from index.py unchanged; index.py re-exports these names.)"""
from __future__ import annotations

import os

import numpy as np

EXACT_MAX_WORK = int(os.environ.get("DEMO_EXACT_MAX_WORK", 10_000_000))  # N·D; see bench/RESULTS.md
TARGET_RECALL = 0.95
NPROBES = (4, 8, 16, 32, 64, 128, 256, 512)
RERANK_FACTOR = 4  # the ANN index returns k * RERANK_FACTOR candidates, re-ranked exactly


def build_ann(vecs: np.ndarray, ids: np.ndarray, *, threshold: int | None = None, seed: int = 0):
    """FAISS index over normalised `vecs` (N, D) with `ids`: Flat up to `threshold` vectors
    (default: EXACT_MAX_WORK // D), else IVF-Flat
    with nprobe raised until measured recall@10 >= TARGET_RECALL. Returns (index, info)."""
    import faiss

    n, dim = vecs.shape
    if threshold is None:
        threshold = EXACT_MAX_WORK // max(dim, 1)
    if n <= threshold:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if n:
            index.add_with_ids(vecs, ids)
        return index, {"index_type": "Flat (exact)", "count": int(n), "recall_at_10": 1.0}
    nlist = int(min(65536, max(1, np.sqrt(n)), max(1, n // 39)))  # FAISS wants >= 39 training points a list
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.own_fields = True  # the IVF index owns (and keeps alive) its quantizer
    quantizer.this.disown()
    rng = np.random.default_rng(seed)
    sample = vecs[rng.choice(n, min(n, 50 * nlist), replace=False)]
    index.train(sample)
    index.add_with_ids(vecs, ids)
    queries = near_queries(vecs, 200, rng)
    exact = exact_top10(vecs, ids, queries)
    recall = 0.0
    for nprobe in NPROBES:
        index.nprobe = nprobe
        recall = recall_at_10(index, vecs, ids, queries, exact)
        if recall >= TARGET_RECALL:
            break
    return index, {"index_type": f"IVF-Flat ({nlist} lists, nprobe {index.nprobe}, exact re-rank)",
                   "count": int(n), "nprobe": int(index.nprobe), "recall_at_10": round(recall, 4)}


def stored_vectors(index) -> tuple[np.ndarray, np.ndarray]:
    """(ids ascending, float32 vectors) held inside a Flat (IDMap2) or IVF-Flat index: what a search of it
    re-ranks against, whatever the database holds now (a build may be adding rows to it)."""
    import faiss

    if hasattr(index, "id_map"):
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        vecs = index.index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32)
    else:
        ivf = faiss.extract_index_ivf(index)
        lists, parts, keys = ivf.invlists, [], []
        for i in range(ivf.nlist):
            n = lists.list_size(i)
            if n:
                keys.append(faiss.rev_swig_ptr(lists.get_ids(i), n).copy())
                parts.append(faiss.rev_swig_ptr(lists.get_codes(i), n * ivf.code_size).copy().view(np.float32))
        ids = np.concatenate(keys).astype(np.int64) if keys else np.zeros(0, np.int64)
        vecs = np.concatenate(parts).reshape(-1, ivf.d) if parts else np.zeros((0, ivf.d), np.float32)
    order = np.argsort(ids, kind="stable")
    return ids[order], np.ascontiguousarray(vecs[order], dtype=np.float32)


def search_ann(index, vecs: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Top-k (id, cosine) for one query: FAISS candidates, re-ranked exactly on the stored vectors."""
    import faiss

    q = np.ascontiguousarray(q, dtype=np.float32).reshape(1, -1)
    exact = isinstance(faiss.downcast_index(index.index) if hasattr(index, "id_map") else index, faiss.IndexFlat)
    _, cand = index.search(q, k if exact else k * RERANK_FACTOR)
    cand = cand[0][cand[0] >= 0]
    if not len(cand):
        return []
    scores = vecs[np.searchsorted(ids, cand)] @ q[0]  # ids are sorted: rows by binary search
    order = np.argsort(-scores)[:k]
    return [(int(cand[i]), float(scores[i])) for i in order]


def near_queries(vecs: np.ndarray, m: int, rng) -> np.ndarray:
    """Queries near (not on) stored vectors, as real queries are."""
    q = vecs[rng.choice(len(vecs), min(m, len(vecs)), replace=False)]
    q = q + rng.normal(0, 0.5 / np.sqrt(q.shape[1]), q.shape).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact_top10(vecs, ids, queries) -> np.ndarray:
    k = min(10, len(vecs))
    top = []
    for i in range(0, len(queries), 50):
        sims = queries[i:i + 50] @ vecs.T
        top.append(ids[np.argpartition(-sims, k - 1, axis=1)[:, :k]])
    return np.concatenate(top)


def recall_at_10(index, vecs, ids, queries, exact_top10) -> float:
    k = exact_top10.shape[1]
    found = [set(i for i, _ in search_ann(index, vecs, ids, q, k)) for q in queries]
    return float(np.mean([len(f & set(e)) / k for f, e in zip(found, exact_top10)]))
