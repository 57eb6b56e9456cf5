"""index_builder's Ray engine against the local engine, on one folder.

    python bench/bench_ray.py [--images 2000] [--workers 1 2] [--scale 1 2 4 8] [--nodes 4] [--node-cpus 2]
                              [--scale-images 512] [--out bench/ray.json]

Folder: N images made from the bundled gallery (emoji renders and photos; flipped, cropped, recoloured
and resized, seeded), 256 px, PNG and JPEG. Model: the bundled mini-clip (offline). Reported:
- local: ``build_index`` (batch 64, 4 decoding threads) into a fresh index;
- ray, 1 and 2 workers: ``build_index_ray`` on a local Ray with all CPUs, each into a fresh index: wall
  time; Ray's start-up (``ray.init``) and time to the first batch (actors start and load the model);
  throughput over the whole job and after the first batch;
- agreement: the same set of paths, and the largest |Δcos| between the engines' vectors of each image
  (1 - cos(local, ray)) and between their scores for 8 text queries;
- scheduling: a local multi-node cluster (ray.cluster_utils.Cluster, NODES × NODE_CPUS virtual CPUs)
  with 1..8 actors over the first SCALE_IMAGES images. All nodes share this machine's cores: a
  simulation of the scheduler on 2 cores, not a speed-up measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _report import report  # noqa: E402  (bench/ is on sys.path when run as a script)
from demo_core.clip.model import ClipModel  # noqa: E402
from demo_core.search.builder import build_index  # noqa: E402
from demo_core.search.index import ImageIndex  # noqa: E402
from demo_core.search.ray_builder import build_index_ray  # noqa: E402

QUERIES = ["a cat", "a red heart", "a smiling face", "a car", "a tree", "a clock", "the moon", "a coffee cup"]


def make_folder(folder: Path, n: int, seed: int = 0) -> None:
    from PIL import Image, ImageOps

    sources = sorted(p for p in (ROOT / "assets/gallery/images").rglob("*") if p.suffix.lower() in {".png", ".jpg"})
    rng = np.random.default_rng(seed)
    for i in range(n):
        im = Image.open(sources[i % len(sources)]).convert("RGB")
        if rng.random() < 0.5:
            im = ImageOps.mirror(im)
        w, h = im.size
        c = rng.uniform(0.75, 1.0)
        x, y = rng.integers(0, int(w * (1 - c)) + 1), rng.integers(0, int(h * (1 - c)) + 1)
        im = im.crop((x, y, x + int(w * c), y + int(h * c))).resize((256, 256))
        arr = np.asarray(im).astype(np.float32) * rng.uniform(0.8, 1.2, 3)
        sub = folder / f"d{i // 500}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(sub / f"img{i:05d}.{'png' if i % 2 else 'jpg'}")


def vectors(out: Path) -> dict[str, np.ndarray]:
    idx = ImageIndex(out, readonly=True)
    ids, vecs = idx.load_vectors()
    by_id = {i: p for p, (i, *_rest) in idx.rows().items()}
    idx.close()
    return {by_id[i]: v for i, v in zip(ids, vecs)}


def agreement(a: dict, b: dict, q: np.ndarray) -> dict:
    paths = sorted(a)
    A, B = np.stack([a[p] for p in paths]), np.stack([b[p] for p in paths])
    return {"same_paths": a.keys() == b.keys(), "paths": len(a),
            "max_1_minus_cos": float(np.max(np.abs(1 - np.sum(A * B, axis=1)))),
            "max_abs_dcos_queries": float(np.max(np.abs(A @ q.T - B @ q.T)))}


def ray_row(name: str, n: int, report_, run, batch: int) -> dict:
    after_first = max(1e-9, run.embed_s - run.first_result_s)
    return {"engine": name, "images": n, "wall_s": round(report_.seconds, 2), "img_s": round(n / report_.seconds, 1),
            "workers": run.workers, "cpus_per_worker": run.cpus_per_worker, "threads_per_worker": run.threads_per_worker,
            "cluster_cpus": run.cluster_cpus, "ray_init_s": round(run.start_s, 2),
            "first_batch_s": round(run.first_result_s, 2), "job_s": round(run.embed_s, 2),
            "img_s_after_first_batch": round(max(0, n - batch) / after_first, 1), "duplicates": run.duplicates}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--scale", type=int, nargs="*", default=[1, 2, 4, 8])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--node-cpus", type=int, default=2)
    ap.add_argument("--scale-images", type=int, default=512)
    ap.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    load0 = round(os.getloadavg()[0], 2)
    clip = ClipModel.load("mini-clip", "cpu")
    q = clip.encode_texts(QUERIES).numpy()
    rows: list[dict] = []

    def emit(row: dict) -> None:
        row["load_avg_1min_after"] = round(os.getloadavg()[0], 2)  # the machine is shared: was it quiet?
        rows.append(row)
        print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        make_folder(tmp / "imgs", args.images)
        print(f"made {args.images} images in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        rep = build_index(tmp / "imgs", tmp / "local", clip, batch_size=64, workers=4, tower="fp32")
        emit({"engine": "local", "images": args.images, "wall_s": round(rep.seconds, 2),
              "img_s": round(args.images / rep.seconds, 1), "indexed": rep.indexed, "reused": rep.reused})
        local = vectors(tmp / "local")
        for w in args.workers:
            rep, run = build_index_ray(tmp / "imgs", tmp / f"ray{w}", clip, workers=w, cpus=args.cpus, batch_size=64,
                                       tower="fp32")
            emit({**ray_row("ray (local Ray)", args.images, rep, run, 64),
                  **agreement(local, vectors(tmp / f"ray{w}"), q)})
        if args.scale:
            emit_scaling(args, tmp, clip, emit)
    report(rows, args.out, model="mini-clip (bundled)", cpus=os.cpu_count(), load_avg_1min_before=load0,
           scaling_note=f"{args.nodes} simulated nodes × {args.node_cpus} CPUs on {os.cpu_count()} real cores")
    return 0


def emit_scaling(args, tmp: Path, clip, emit) -> None:
    """Actors 1..8 on a local multi-node cluster: all its nodes share this machine's cores."""
    import ray
    from ray.cluster_utils import Cluster

    sub = tmp / "scale"
    sub.mkdir()
    files = sorted(p for p in (tmp / "imgs").rglob("img*"))[:args.scale_images]
    for p in files:
        os.link(p, sub / p.name)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.node_cpus, "include_dashboard": False,
                                                            "object_store_memory": 256 * 2**20})
    try:
        for _ in range(args.nodes - 1):
            cluster.add_node(num_cpus=args.node_cpus, object_store_memory=256 * 2**20)
        cluster.wait_for_nodes()
        for k in args.scale:
            rep, run = build_index_ray(sub, tmp / f"scale{k}", clip, address=cluster.address, workers=k, batch_size=32,
                                       tower="fp32")
            emit({**ray_row(f"ray (simulated {args.nodes}-node cluster)", len(files), rep, run, 32),
                  "nodes": args.nodes})
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
