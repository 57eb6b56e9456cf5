"""A compressed, sharded FAISS index for large collections, re-ranked exactly from vectors on disk.

Above ``COMPRESSED_MIN_WORK`` (N·D) an index folder holds, besides SQLite, a folder
``compressed-<generation>/`` made from the stored vectors:

    vectors.npy    float16 (N, D); row i is the vector of ids[i]. Opened as np.memmap, never read whole
    ids.npy        int64 (N,), ascending (SQLite's order)
    index.faiss    IVF + 4-bit product-quantised codes, FAISS ids = file ids (fast-scan layout in RAM)
    lists.ivfdata  the inverted lists, only when they were merged on disk (see ``choose_params``)
    params.json    the parameters chosen, why, and what the build measured (also in the manifest)

Serving memory is the PQ codes and ids (FAISS), the coarse centroids, and the few rows of
vectors.npy that a query re-ranks (``rerank`` candidates, read through the memmap). Search: FAISS
returns ``rerank`` candidates by approximate score; their float16 vectors are read from disk and
scored exactly (cosine to within float16 rounding, |Δ| < 1e-3); the best k are returned.

Build (``build_compressed``), in stages that are timed and recorded: *train* the empty index on a
random sample; *add* the store in shards, each into its own copy of the trained index
(``add_with_ids``; shards are independent, so they could be built elsewhere); *merge* them
(``merge_from`` in RAM, or ``faiss.contrib.ondisk.merge_ondisk`` into lists.ivfdata when the codes
would not fit the memory budget); *tune* nprobe and the re-rank depth on held-aside queries.
Shards are classic IVF-PQ (their lists merge safely: merging fast-scan lists corrupted the heap in
faiss-cpu 1.15); the merged in-RAM index is then converted to the fast-scan layout (SIMD scanning).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import IndexProblem
from .ann import NPROBES, TARGET_RECALL
from .compressed_params import MEMORY_BUDGET, Params, choose_params  # noqa: F401  (tests and the bench use them here)
from .store import VectorStore

logger = logging.getLogger(__name__)

# Above N·D = 2**27 (262k vectors of 512-d, 1M of 128-d) IVF-Flat would hold over 1 GiB of float32
# (two copies: FAISS's and the re-rank's). Measured at 200k×512 (bench/RESULTS.md, "Index at scale"):
# the compressed index answered as fast (p50 0.41 ms against 0.53) at recall@10 0.99 (IVF-Flat 0.999)
# in 47 bytes a vector of RAM against 4,109, and took 3× as long to build (38 s against 11 s).
COMPRESSED_MIN_WORK = int(os.environ.get("DEMO_COMPRESSED_MIN_WORK", 2**27))
RERANK_DEPTHS = (50, 100, 200, 400, 800, 1600, 3200, 6400)
TUNE_QUERIES = 300
MIN_ROWS = 256  # fewer cannot train 8-bit PQ codebooks (256 centroids); exact search is instant there anyway


def use_compressed(n: int, d: int, threshold: int | None = None) -> bool:
    """The compressed kind above `threshold` vectors (default: N·D > COMPRESSED_MIN_WORK), and never
    under MIN_ROWS vectors."""
    return n >= MIN_ROWS and (n > threshold if threshold is not None else n * d > COMPRESSED_MIN_WORK)


def _ivf(index):
    import faiss

    return faiss.extract_index_ivf(index)


def train_index(store: VectorStore, p: Params, seed: int = 0, centre: np.ndarray | None = None):
    """An empty index with the parameters `p`, trained on a random sample of the store, centred on `centre`
    (the vectors' mean: see ``ann.build_ann`` on the modality gap). Queries are not centred: an inner
    product with x − centre ranks as one with x, and the re-rank scores the stored vectors exactly."""
    import faiss

    d = store.vectors.shape[1]
    index = faiss.index_factory(d, p.factory(d), faiss.METRIC_INNER_PRODUCT)
    faiss.downcast_index(_ivf(index)).do_polysemous_training = False  # 10× the time, no use to a re-rank
    sample = store.sample(p.train_size, np.random.default_rng(seed))
    index.train(np.ascontiguousarray(sample - (0 if centre is None else centre), np.float32))
    return index


def add_shard(trained, ids: np.ndarray, vecs: np.ndarray, centre: np.ndarray | None = None):
    """One shard: a copy of the trained index holding these vectors, centred as it was trained (independent
    of other shards)."""
    import faiss

    shard = faiss.clone_index(trained)
    x = vecs if centre is None else vecs - centre
    shard.add_with_ids(np.ascontiguousarray(x, np.float32), np.ascontiguousarray(ids, np.int64))
    return shard


def mean_vector(store: VectorStore, rows: int = 65536) -> np.ndarray:
    """The store's mean vector, read block by block (float64 sums)."""
    total = np.zeros(store.vectors.shape[1], np.float64)
    for _, _, vecs in store.blocks(rows):
        total += vecs.sum(0, dtype=np.float64)
    return (total / max(1, len(store))).astype(np.float32)


def merge_into(index, shard) -> None:
    """Move a shard's lists into `index` (same trained quantizers) in RAM; the shard is left empty."""
    _ivf(index).merge_from(_ivf(shard), 0)
    index.ntotal = _ivf(index).ntotal  # an OPQ wrapper keeps its own count


def merge_on_disk(index, shard_files: list[str], folder: Path) -> None:
    """Merge shard files into the empty `index`, its lists written to ``folder/lists.ivfdata`` and
    memory-mapped: the merged lists never need to fit in RAM."""
    from faiss.contrib.ondisk import merge_ondisk

    merge_ondisk(index, shard_files, str(folder / "lists.ivfdata"))
    index.ntotal = _ivf(index).ntotal


def to_fast_scan(index):
    """The merged IVF-PQ in FAISS's fast-scan layout (same codes, SIMD scanning); it takes over the
    coarse quantizer."""
    import faiss

    ivfpq = faiss.downcast_index(index)
    fast = faiss.IndexIVFPQFastScan(ivfpq)
    ivfpq.own_fields, fast.own_fields = False, True
    return fast


def _set_nprobe(index, nprobe: int) -> None:
    _ivf(index).nprobe = nprobe


def search_store(index, store: VectorStore, q: np.ndarray, k: int, rerank: int) -> list[tuple[int, float]]:
    """Top-k (id, cosine) for one query: `rerank` FAISS candidates, re-ranked on the stored vectors."""
    q = np.ascontiguousarray(q, dtype=np.float32).reshape(1, -1)
    _, cand = index.search(q, max(k, rerank))
    cand = cand[0][cand[0] >= 0]
    if not len(cand):
        return []
    scores = store.rows_of(cand) @ q[0]
    order = np.argsort(-scores)[:k]
    return [(int(cand[i]), float(scores[i])) for i in order]


def tune(index, store: VectorStore, p: Params, seed: int = 0, text_queries: np.ndarray | None = None) -> dict:
    """Set p.nprobe and p.rerank by measurement; returns their recall@10 on the tuning queries.

    For each nprobe, the smallest k' whose recall@10 against exact search reaches TARGET_RECALL + 0.01
    (the margin covers the sampling error of TUNE_QUERIES queries); of those pairs, the fastest
    measured. Larger nprobes stop being tried once one needs no more k' than the nprobe before it
    (more lists did not let the re-rank shrink), or, when none reaches it, once more lists no longer
    raise the best recall. If none reaches it, the pair with the best recall.

    With `text_queries` (see ``prompts``) the queries are both kinds, and the recall a pair must reach is
    that of the worse kind. Returns the chosen pair's recall@10 by kind."""
    from .ann import near_queries

    rng = np.random.default_rng(seed + 1)
    queries = near_queries(store.sample(TUNE_QUERIES, rng), TUNE_QUERIES, rng)
    kind = np.zeros(len(queries), bool)
    if text_queries is not None and len(text_queries):
        queries = np.concatenate([queries, np.asarray(text_queries, np.float32)])
        kind = np.concatenate([kind, np.ones(len(text_queries), bool)])
    exact = store.exact_top(queries, min(10, len(store)))
    k = exact.shape[1]
    by_kind = {"image": ~kind, "text": kind} if kind.any() else {"image": ~kind}
    tried = []  # (reached, -ms or recall, nprobe, rerank, recall)
    before = None  # (reached, k' or best recall) at the previous nprobe
    for nprobe in [n for n in NPROBES if n <= p.nlist] or [p.nlist]:
        _set_nprobe(index, nprobe)
        for rerank in RERANK_DEPTHS:
            t = time.perf_counter()
            found = [{i for i, _ in search_store(index, store, q, k, rerank)} for q in queries]
            ms = (time.perf_counter() - t) * 1000 / len(queries)
            hits = np.array([len(f & set(e)) / k for f, e in zip(found, exact)])
            recalls = {name: float(hits[mask].mean()) for name, mask in by_kind.items()}
            recall = min(recalls.values())
            reached = recall >= TARGET_RECALL + 0.01
            tried.append((reached, -ms if reached else recall, nprobe, rerank, recall, recalls))
            if reached:
                break
        now = (True, rerank) if reached else (False, max(t[4] for t in tried if t[2] == nprobe))
        if reached and (rerank == RERANK_DEPTHS[0] or (before and before[0] and before[1] <= rerank)):
            break
        if not reached and before and not before[0] and now[1] <= before[1] + 0.005:
            break
        before = now
    _, _, p.nprobe, p.rerank, _, recalls = max(tried, key=lambda t: t[:5])
    _set_nprobe(index, p.nprobe)
    return recalls


def build_compressed(folder: str | Path, p: Params | None = None, *, budget: int = MEMORY_BUDGET,
                     seed: int = 0, text_queries: np.ndarray | None = None, centred: bool = True) -> tuple[object, dict]:
    """Build the compressed index over the store in `folder` (written by ``VectorStore.write``).

    Writes index.faiss (and lists.ivfdata) and params.json there; returns (index, manifest entries)."""
    import faiss

    folder = Path(folder)
    store = VectorStore(folder)
    n, d = store.vectors.shape
    p = p or choose_params(n, d, budget)
    seconds = {}
    t = time.perf_counter()
    centre = mean_vector(store) if centred else None
    trained = train_index(store, p, seed, centre)
    seconds["train"] = time.perf_counter() - t
    index, names = faiss.clone_index(trained), []
    seconds["add"] = seconds["merge"] = 0.0
    for start, ids, vecs in store.blocks(p.shard_rows):
        t = time.perf_counter()
        shard = add_shard(trained, ids, vecs, centre)
        seconds["add"] += time.perf_counter() - t
        t = time.perf_counter()
        if p.ondisk:  # each shard goes to disk at once; nothing holds them all
            names.append(str(folder / f"shard-{start}.faiss"))
            faiss.write_index(shard, names[-1])
        else:
            merge_into(index, shard)
        del shard
        seconds["merge"] += time.perf_counter() - t
    if names:
        t = time.perf_counter()
        merge_on_disk(index, names, folder)
        for name in names:
            os.unlink(name)
        seconds["merge"] += time.perf_counter() - t
    if p.fast_scan():
        t = time.perf_counter()
        index = to_fast_scan(index)
        seconds["merge"] += time.perf_counter() - t
    t = time.perf_counter()
    recalls = tune(index, store, p, seed, text_queries)
    recall = recalls["image"]
    seconds["tune"] = time.perf_counter() - t
    faiss.write_index(index, str(folder / "index.faiss"))
    params = {**asdict(p), "factory": p.factory(d), "fast_scan": p.fast_scan(), "bytes_per_vector": p.code_bytes(), "budget": budget,
              "recall_at_10": round(recall, 4), "centred": centred,
              **({"recall_at_10_text": round(recalls["text"], 4)} if "text" in recalls else {}),
              "seconds": {k: round(v, 2) for k, v in seconds.items()}}
    (folder / "params.json").write_text(json.dumps(params, indent=2) + "\n")
    logger.info("compressed index %s: %s, nprobe %d, re-rank %d, recall@10 %.3f (%s)", folder, params["factory"],
                p.nprobe, p.rerank, recall, ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    info = {"index_type": f"IVF-PQ compressed ({p.factory(d)}{' fast-scan' if p.fast_scan() else ''}, nprobe {p.nprobe}, exact re-rank of {p.rerank} "
                          "from float16 on disk)",
            "count": int(n), "nprobe": int(p.nprobe), "recall_at_10": round(recall, 4), "compressed_params": params}
    if "text" in recalls:
        info["recall_at_10_text"] = round(recalls["text"], 4)
    return index, info


class CompressedIndex:
    """A built compressed folder, opened for search: codes in RAM (or lists mapped), vectors mapped."""

    def __init__(self, folder: str | Path):
        import faiss

        self.folder = Path(folder)
        try:
            self.params = json.loads((self.folder / "params.json").read_text())
            flags = faiss.IO_FLAG_ONDISK_SAME_DIR if self.params["ondisk"] else 0
            self.index = faiss.read_index(str(self.folder / "index.faiss"), flags)
        except (OSError, ValueError, RuntimeError) as e:
            raise IndexProblem(f"The compressed index in {self.folder} cannot be read ({e}); "
                               "run index_builder again to rebuild it.") from None
        _set_nprobe(self.index, self.params["nprobe"])
        self.rerank = int(self.params["rerank"])
        self.store = VectorStore(self.folder)

    def search(self, q: np.ndarray, k: int) -> list[tuple[int, float]]:
        return search_store(self.index, self.store, q, k, self.rerank)
