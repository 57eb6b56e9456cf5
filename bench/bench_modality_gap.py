"""Recall for the queries users send: text queries far from every image vector (the modality gap), against
image-like queries near stored vectors, on the index kind the app builds at each size.

    python bench/bench_modality_gap.py [--sizes 100000,1000000] [--dim 512] [--levers] [--out bench/modality_gap.json]

Data: ``modality_gap.ModalityGap`` (image = gap·u_image + concept + noise, text = gap·u_text + concept + noise,
2,000 concepts), images written in chunks of 100k (chunk i from seed i) as a float16 vector store, as the
builder writes one. The build is the app's rule for that size (``compressed.use_compressed``: IVF-Flat below
N·D = 2^27, the compressed IVF-PQ above), tuned on 300 text queries (seed 2) as index_builder tunes on its
prompts; measured on 1,000 other text queries (seed 3) and 1,000 queries near stored vectors, after 20
warm-up ones: recall@10 against exact search over the store, p50/p95 ms a query, and the serving process's
own memory (RssAnon: without the store's mapped pages). Each stage runs in a fresh process.
``--levers`` also builds without centring and/or without the text tuning queries (the issue's levers).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _report import report  # noqa: E402
from bench_scale import _latency_recall, _mem, stage  # noqa: E402
from modality_gap import ModalityGap  # noqa: E402

CHUNK = 100_000
QUERIES = 1000


def _gen(dim: int) -> ModalityGap:
    return ModalityGap(dim=dim, concepts=2000)


def store_stage(folder: str, n: int, dim: int) -> dict:
    from demo_core.search.store import VectorStore

    g = _gen(dim)

    def chunks():
        for i, start in enumerate(range(0, n, CHUNK)):
            x, _ = g.images(min(CHUNK, n - start), seed=100 + i)
            yield np.arange(start, start + len(x), dtype=np.int64), x

    t = time.perf_counter()
    VectorStore.write(folder, n, dim, chunks())
    return {"store_s": round(time.perf_counter() - t, 1)}


def queries_stage(folder: str, dim: int, out: str) -> dict:
    from demo_core.search.ann import near_queries
    from demo_core.search.store import VectorStore

    store = VectorStore(folder)
    rng = np.random.default_rng(4)
    image = near_queries(store.sample(QUERIES, rng), QUERIES, rng)
    text = _gen(dim).texts(QUERIES, seed=3)
    t = time.perf_counter()
    exact = {k: store.exact_top(q, 10) for k, q in (("text", text), ("image", image))}
    np.savez(out, text=text, image=image, exact_text=exact["text"], exact_image=exact["image"])
    best = float(np.mean([(store.rows_of(e[:1]) @ q)[0] for q, e in zip(text[:200], exact["text"][:200])]))
    return {"exact_s": round(time.perf_counter() - t, 1), "text_cos_to_best_image": round(best, 3)}


def serve_stage(folder: str, dim: int, queries: str, centred: bool, tuned: bool) -> dict:
    """Build as the app would at this size, then serve the held-out queries."""
    from demo_core.search import compressed
    from demo_core.search.ann import build_ann, search_ann
    from demo_core.search.store import VectorStore

    tune_q = _gen(dim).texts(300, seed=2) if tuned else None
    store = VectorStore(folder)
    n = len(store)
    t = time.perf_counter()
    if compressed.use_compressed(n, dim):
        del store
        _, info = compressed.build_compressed(folder, text_queries=tune_q, centred=centred)
        served = compressed.CompressedIndex(folder)
        search = lambda q: [i for i, _ in served.search(q, 10)]  # noqa: E731
    else:
        ids, vecs = np.asarray(store.ids), np.asarray(store.vectors, dtype=np.float32)
        del store
        index, info = build_ann(vecs, ids, threshold=0, text_queries=tune_q, centred=centred)
        search = lambda q: [i for i, _ in search_ann(index, vecs, ids, q, 10)]  # noqa: E731
    build_s = time.perf_counter() - t
    data = np.load(queries)
    out = {"index": info["index_type"], "build_s": round(build_s, 1)}
    for kind in ("text", "image"):
        out.update({f"{kind}_{k}": v for k, v in _latency_recall(search, data[kind], data[f"exact_{kind}"]).items()})
    mem = _mem()
    return {**out, "serve_rss_anon_mb": mem.get("rssanon_mb"), "peak_rss_mb": mem.get("peak_rss_mb")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--levers", action="store_true", help="also build uncentred and/or untuned on text")
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import faiss

    rows = []
    settings = [(True, True)] + ([(False, False), (True, False), (False, True)] if args.levers else [])
    for n in [int(s) for s in args.sizes.split(",")]:
        work = Path(args.work or tempfile.mkdtemp(prefix="bench-gap-")) / f"n{n}"
        work.mkdir(parents=True, exist_ok=True)
        try:
            st = stage(store_stage, str(work / "store"), n, args.dim)
            qs = stage(queries_stage, str(work / "store"), args.dim, str(work / "queries.npz"))
            print(json.dumps({"n": n, **st, **qs}), flush=True)
            for centred, tuned in settings:
                for f in list((work / "store").glob("*.faiss")) + list((work / "store").glob("*.ivfdata")):
                    f.unlink()
                row = {"n": n, "dim": args.dim, "centred": centred, "tuned_on_text": tuned,
                       **stage(serve_stage, str(work / "store"), args.dim, str(work / "queries.npz"), centred, tuned),
                       "text_cos_to_best_image": qs["text_cos_to_best_image"], "store_s": st["store_s"]}
                print(json.dumps(row), flush=True)
                rows.append(row)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    report(rows, args.out, faiss=faiss.__version__, faiss_threads=faiss.omp_get_max_threads(), queries=QUERIES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
