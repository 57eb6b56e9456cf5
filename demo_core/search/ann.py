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


def build_ann(vecs: np.ndarray, ids: np.ndarray, *, threshold: int | None = None, seed: int = 0,
              text_queries: np.ndarray | None = None, centred: bool = True):
    """FAISS index over normalised `vecs` (N, D) with `ids`: Flat up to `threshold` vectors
    (default: EXACT_MAX_WORK // D), else IVF-Flat with nprobe raised until measured recall@10 >= TARGET_RECALL
    for image-like queries (near stored vectors) and, when given, for `text_queries` (the modality gap: see
    ``prompts``). Returns (index, info).

    The coarse quantizer is trained on, and assigns, the *centred* vectors (x − mean): CLIP's image
    vectors fill one narrow cone, whose shared direction otherwise dominates every centroid, so a text
    query's list ranking is mostly noise (recall@10 0.52 at nprobe 8 on the modality-gap bench, 0.95
    centred). The lists hold the vectors themselves (``add_core`` with the centred assignment), so scores
    stay exact inner products and queries are not changed."""
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
    centre = vecs.mean(0, dtype=np.float64).astype(np.float32) if centred else np.zeros(dim, np.float32)
    index.train(np.ascontiguousarray(vecs[rng.choice(n, min(n, 50 * nlist), replace=False)] - centre))
    for start in range(0, n, 65536):  # assign by the centred vector, store the vector itself
        x = np.ascontiguousarray(vecs[start:start + 65536])
        _, lists = index.quantizer.search(np.ascontiguousarray(x - centre), 1)
        index.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(np.ascontiguousarray(ids[start:start + 65536])),
                       faiss.swig_ptr(np.ascontiguousarray(lists[:, 0])))
    kinds = {"image": near_queries(vecs, 200, rng)}
    if text_queries is not None and len(text_queries):
        kinds["text"] = np.ascontiguousarray(text_queries, dtype=np.float32)
    exact = {kind: exact_top10(vecs, ids, q) for kind, q in kinds.items()}
    recalls = {}
    for nprobe in [p for p in NPROBES if p <= nlist] or [nlist]:
        index.nprobe = nprobe
        recalls = {kind: recall_at_10(index, vecs, ids, q, exact[kind]) for kind, q in kinds.items()}
        if min(recalls.values()) >= TARGET_RECALL:
            break
    info = {"index_type": f"IVF-Flat ({nlist} lists{', centred' if centred else ''}, nprobe {index.nprobe}, "
                          "exact re-rank)",
            "count": int(n), "nprobe": int(index.nprobe), "recall_at_10": round(recalls["image"], 4)}
    if "text" in recalls:
        info["recall_at_10_text"] = round(recalls["text"], 4)
    return index, info


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
