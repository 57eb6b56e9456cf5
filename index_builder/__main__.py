"""python index_builder DIR [--out INDEX_DIR] [--model SPEC] [--batch-size N] [--workers N] [--device D]
                          [--engine local|ray] [--address ADDR] [--cpus N] [--tower KIND]

Embeds every image under DIR with CLIP into a searchable index (FAISS + SQLite). Re-running it
updates the index: only new or changed images are embedded, renamed ones keep their vectors,
deleted ones are removed. It is safe to stop at any moment (Ctrl-C); re-run to continue.
Files that cannot be indexed (damaged, too large, not images, FIFOs, names that are not UTF-8)
are skipped, one `skipped PATH: reason` line each; the build still succeeds.
With --engine ray the embedding runs on Ray Data (a local Ray, or the cluster at --address); the
index and its incremental semantics are the same (needs requirements-scale.txt).
With --tower int8 / onnx / onnx-int8 / bf16 the image tower runs faster on a CPU; it is first
checked against fp32 on up to 64 of the folder's images and used only if it agrees (every cosine
>= 0.99, top-10 neighbour overlap >= 0.9), else the build says so and embeds with fp32. The default,
auto, measures the towers that can run here on that sample and takes the fastest that agrees.
"""
from __future__ import annotations

import argparse
import sqlite3
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python index_builder` runs this folder
TOWERS = ("fp32", "bf16", "int8", "onnx", "onnx-int8")  # demo_core.clip.tower.TOWERS, without importing torch

EXIT_CODES = """exit codes:
  0    the index is up to date (files that could not be indexed are listed as `skipped`)
  1    the index folder cannot be written
  2    bad arguments (a --device this machine lacks, too), or the model cannot be loaded
  3    the index folder cannot be used for DIR (another folder's or another model's index)
  4    another index_builder is writing the same index folder (its pid is named); wait or use another --out
  5    --engine ray: Ray cannot be started or joined, or its job failed (what was embedded is kept)
  130  interrupted (Ctrl-C): what was embedded so far is kept; run the same command to continue"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python index_builder",
        description="Embed a folder of images (recursively: jpg, jpeg, png, webp, gif, bmp, tiff) into a "
                    "CLIP search index that the app's Search tab opens with --index. Re-run to update it.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("dir", help="the image collection (folder) to index")
    ap.add_argument("--out", default=None, help="index folder (default: DIR/.clip-index)")
    ap.add_argument("--model", default=None,
                    help="CLIP spec, as in the app (default: the index's model, else the app's default rules)")
    ap.add_argument("--batch-size", type=int, default=64, help="images per model call (default 64)")
    ap.add_argument("--workers", type=int, default=None,
                    help="local: threads reading and decoding images (default 4); "
                         "ray: actors embedding, each with the model (default: one per 1.25 CPUs of the cluster)")
    ap.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="local (default): this process; ray: Ray Data actors, on this machine or a cluster")
    ap.add_argument("--address", default=None,
                    help="ray: join the Ray cluster at this address (e.g. HEAD_IP:6379 or auto); "
                         "default: start a local Ray")
    ap.add_argument("--cpus", type=int, default=None, help="ray: CPUs of the local Ray it starts (default: all)")
    ap.add_argument("--tower", choices=("auto",) + TOWERS, default="auto",
                    help="image tower on the CPU: auto (default: past 5,000 images to embed, the fastest of onnx, "
                         "onnx-int8 and int8 that agrees with fp32 on 64 of them, else fp32), fp32, bf16, int8 "
                         "(torch dynamic quantization), onnx, onnx-int8 (ONNX Runtime: requirements-scale.txt); "
                         "a named one is checked against fp32 on the folder first")
    ap.add_argument("--device", default=None, help="cuda (or gpu), mps or cpu (default: best available)")
    ap.add_argument("--include-hidden", action="store_true", help="also index hidden files and folders")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:  # before the build started (imports, model loading): nothing to keep
        print("\ninterrupted.", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    root = Path(args.dir).expanduser()
    if not root.is_dir():
        print(f"error: {args.dir} is not a folder", file=sys.stderr)
        return 2
    if args.batch_size < 1 or (args.workers is not None and args.workers < 1) or (args.cpus is not None and args.cpus < 1):
        print("error: --batch-size, --workers and --cpus must be at least 1", file=sys.stderr)
        return 2
    if args.engine == "local" and (args.address or args.cpus):
        print("error: --address and --cpus are for --engine ray", file=sys.stderr)
        return 2
    if args.tower.startswith("onnx"):
        from demo_core.clip.tower import ONNX_HINT, onnx_available

        if not onnx_available():
            print(f"error: {ONNX_HINT}", file=sys.stderr)
            return 2
    if args.engine == "ray":
        from demo_core.search.ray_builder import INSTALL_HINT, ray_available

        if not ray_available():
            print(f"error: {INSTALL_HINT}", file=sys.stderr)
            return 2
        if args.address:  # before the lock and the model: nobody answering there is known in a moment
            from demo_core.errors import ClusterProblem
            from demo_core.search.ray_builder import check_reachable

            try:
                check_reachable(args.address)
            except ClusterProblem as e:
                print(f"error: {e}", file=sys.stderr)
                return 5
    from demo_core.device import pick_device
    from demo_core.errors import DeviceUnavailable

    try:  # before the lock and the model: a device this machine lacks is a bad argument
        pick_device(args.device)
    except DeviceUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out).expanduser() if args.out else root / ".clip-index"

    from PIL import Image

    from demo_core.errors import ClusterProblem, IndexBusy, IndexProblem, UserError
    from demo_core.search.builder import display_name, writer_lock

    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / ".lock", "a"):  # the lock file doubles as the write probe
            pass
    except OSError as e:
        print(f"error: cannot write the index to {display_name(str(out))} ({e.strerror or e})", file=sys.stderr)
        return 1
    # Pillow warns about large images and odd files; each such file gets its own `skipped` line instead.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", module="PIL")
    try:
        with writer_lock(out):  # before loading the model: a second builder on OUT stops at once
            return _build(args, root, out)
    except IndexBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 4
    except sqlite3.DatabaseError as e:
        print(f"error: {display_name(str(out / 'meta.sqlite'))} is not a usable index database ({e}); "
              "use another --out", file=sys.stderr)
        return 3
    except IndexProblem as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except ClusterProblem as e:
        print(f"error: {e}", file=sys.stderr)
        return 5
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _build(args: argparse.Namespace, root: Path, out: Path) -> int:
    """Load the model and build, holding the lock on `out`."""
    from tqdm import tqdm

    from demo_core.clip.model import ClipModel
    from demo_core.registry import resolve_clip_spec
    from demo_core.search.builder import build_index, display_name
    from demo_core.search.index import ImageIndex

    requested = args.model
    if requested is None and (out / "meta.sqlite").exists():
        idx = ImageIndex(out)
        requested = idx.manifest().get("model")
        idx.close()
    resolution = resolve_clip_spec(requested)
    print(f"model: {resolution.reason}", file=sys.stderr)
    clip = ClipModel.load(resolution, args.device)

    bar = tqdm(total=0, unit="img", desc="embedding", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        if args.engine == "ray":
            from demo_core.search.ray_builder import build_index_ray

            report, run = build_index_ray(root, out, clip, address=args.address, workers=args.workers, cpus=args.cpus,
                                          batch_size=args.batch_size, device=args.device,
                                          include_hidden=args.include_hidden, progress=progress, tower=args.tower)
        else:
            report = build_index(root, out, clip, batch_size=args.batch_size, workers=args.workers or 4,
                                 include_hidden=args.include_hidden, progress=progress, tower=args.tower)
    except KeyboardInterrupt:
        print(f"\ninterrupted: what was embedded so far is saved in {out}; run the same command to continue.",
              file=sys.stderr)
        return 130
    finally:
        bar.close()
    for rel, reason in report.skipped:
        print(f"skipped {display_name(rel)}: {reason}", file=sys.stderr)
    for line in report.summary_lines():
        print(line)
    if args.engine == "ray" and run.workers:
        print(f"ray: {run.workers} actors × {run.cpus_per_worker:g} CPU ({run.cluster_cpus:g} in the cluster); "
              f"start {run.start_s:.1f} s, first batch {run.first_result_s:.1f} s, embedding {run.embed_s:.1f} s")
    print(f"index: {out}  (open it with: python app.py --index {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
