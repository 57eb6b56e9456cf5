"""The Ray engine of index_builder: the same index as build_index, with the embedding on Ray Data.

The driver plans exactly as the local engine (``builder.planned_build``: scan, compare by size and
mtime, note what vanished); Ray Data embeds only ``plan.todo``::

    from_items(file rows) -> map_batches(Embedder, pool of N actors) -> iter_batches on the driver

Each actor loads the CLIP model once (``ClipModel.load``, the spec the driver resolved) and, per
batch, reads every file with the local engine's safe reader (regular files only, size-capped),
hashes it, reads its header, and decodes and embeds it unless its content is already indexed (the
same bytes under its own path, or under a path that vanished: a rename). The driver records every
result through the same ``Plan`` methods as the local engine and commits one SQLite transaction per
batch, so incremental semantics, bad-file reasons and the index itself are those of the local engine.

Exactly once: Ray Data restarts a killed actor and retries its batch (``max_restarts=-1``,
``max_task_retries=-1``); the driver keeps the first result per path and counts any repeat, and files
that never came back (or whose known content vanished meanwhile) go through a second round, so no
row is doubled or lost. Resumable: what the driver has committed stays committed; a re-run plans
again and skips it as unchanged. A killed driver loses only the batches in flight.

Resources: actors take fractional CPUs, about 80% of the cluster's between them, never a whole
node's: actors holding every CPU starve Ray Data's own tasks and the job hangs without a word.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ClusterProblem, ImageError
from ..images import header_size, load_image
from .ray_cluster import check_reachable, ray_available, start_ray  # noqa: F401  (the CLI takes them from here)
from .builder import BuildReport, Plan, ScannedFile, _read, checked_root, pick_tower, planned_build, writer_lock

logger = logging.getLogger(__name__)
INSTALL_HINT = "the Ray engine needs Ray Data: .venv/bin/pip install -r requirements-scale.txt"
ACTOR_SHARE = 0.8  # of the cluster's CPUs, for all actors together
ROUNDS = 3  # a file still missing after this many Ray jobs is an error
WINDOW = 50_000  # files per Ray job: bounds the driver's rows and Ray's object store on huge collections


@dataclass
class RayRun:
    """How the Ray job went, beside the BuildReport."""
    workers: int = 0
    cpus_per_worker: float = 0.0
    threads_per_worker: int = 0
    cluster_cpus: float = 0.0
    start_s: float = 0.0  # ray.init (a local Ray is started here)
    first_result_s: float = 0.0  # from submitting the job to the first batch back (actors loading the model)
    embed_s: float = 0.0  # the whole Ray job, all rounds
    results: int = 0
    duplicates: int = 0  # results for a path already recorded (a retried batch): ignored
    rounds: int = 0  # Ray jobs run: one per WINDOW files, plus any retry rounds


class Embedder:
    """A Ray Data actor: the CLIP model, loaded once; each call reads, checks and embeds one batch."""

    def __init__(self, spec: str, device: str | None, threads: int, vanished: frozenset, fault: str | None,
                 tower: str = "fp32"):
        import torch

        from ..clip.model import ClipModel
        from ..clip.tower import ImageTower

        torch.set_num_threads(threads)
        self.clip = ClipModel.load(spec, device)
        self.encoder = ImageTower(self.clip, tower)  # the kind the driver checked (pick_tower)
        self.vanished = vanished
        self.pool = ThreadPoolExecutor(max(2, threads))
        self.calls = 0
        self.fault = fault

    def _maybe_die(self) -> None:
        """Test hook (DEMO_RAY_FAULT=kill-actor:N:MARKER): SIGKILL this actor in its N-th call, once."""
        if not self.fault or not self.fault.startswith("kill-actor:"):
            return
        _, n, marker = self.fault.split(":", 2)
        if self.calls == int(n) and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    def _check(self, row: tuple) -> tuple:
        """(rel, path, size, mtime, old sha) -> (sha, (w, h), image or None, reason)."""
        rel, path, size, mtime, old_sha = row
        f, sha, payload = _read(ScannedFile(rel, Path(path), int(size), float(mtime)))
        if sha is None:
            return "", (0, 0), None, payload
        try:
            wh = header_size(payload)
            if sha == old_sha or sha in self.vanished:  # indexed already: the driver keeps its vector
                return sha, wh, None, ""
            return sha, wh, load_image(payload, draft_size=self.clip.image_size), ""
        except ImageError as e:
            return sha, (0, 0), None, str(e)

    def __call__(self, batch: dict) -> dict:
        import torch

        self.calls += 1
        self._maybe_die()
        rows = list(zip(batch["rel"], batch["path"], batch["size"], batch["mtime"], batch["old_sha"]))
        checked = list(self.pool.map(self._check, rows))
        dim = self.clip.embed_dim
        embs = np.zeros((len(rows), dim), np.float32)
        todo = [i for i, c in enumerate(checked) if c[2] is not None]
        if todo:
            pixels = list(self.pool.map(self.clip.preprocess, [checked[i][2] for i in todo]))
            embs[todo] = self.encoder.encode_pixels(torch.stack(pixels)).numpy()
        has = np.zeros(len(rows), bool)
        has[todo] = True
        return {"rel": np.array([r[0] for r in rows], dtype=object),
                "sha": np.array([c[0] for c in checked], dtype=object),
                "width": np.array([c[1][0] for c in checked], np.int64),
                "height": np.array([c[1][1] for c in checked], np.int64),
                "reason": np.array([c[3] for c in checked], dtype=object),
                "has_emb": has, "emb": embs}


def sizing(cluster_cpus: float, workers: int | None, local: bool) -> tuple[int, float, int]:
    """(actors, CPUs each, torch threads each): fractional CPUs, ACTOR_SHARE of the cluster in all."""
    workers = workers or max(1, int(cluster_cpus * ACTOR_SHARE))
    each = max(0.05, min(1.0, math.floor(100 * ACTOR_SHARE * cluster_cpus / workers) / 100))
    threads = max(1, int(cluster_cpus // workers)) if local else max(1, int(each))
    return workers, each, threads


def build_index_ray(root: str | Path, out: str | Path, clip, *, address: str | None = None,
                    workers: int | None = None, cpus: int | None = None, batch_size: int = 64,
                    device: str | None = None, include_hidden: bool = False,
                    progress: Callable[[int, int], None] | None = None, tower: str = "auto") -> tuple[BuildReport, RayRun]:
    """build_index with the embedding on Ray Data (`clip` gives the spec and dimension; actors load their own).

    Raises:
        IndexProblem, IndexBusy: as build_index.
        ClusterProblem: Ray cannot be started or joined, or its job failed (what was committed is kept).
    """
    t0 = time.time()
    root = checked_root(root)
    run = RayRun()
    with writer_lock(out), planned_build(root, out, clip.spec.spec, clip.embed_dim, include_hidden, clip) as plan:
        _leave_out_undecodable(plan)
        if plan.todo:
            pick_tower(plan, clip, tower)  # checked here, once; the actors build plan.report.tower
            t1 = time.time()
            ray = start_ray(address, cpus)
            run.start_s = time.time() - t1
            try:
                _embed_on_ray(ray, plan, clip, run, address=address, workers=workers, batch_size=batch_size,
                              device=device, progress=progress)
            finally:
                ray.shutdown()
    plan.report.seconds = time.time() - t0
    logger.info("index %s (ray): %s", out, "; ".join(plan.report.summary_lines()))
    return plan.report, run


def _leave_out_undecodable(plan: Plan) -> None:
    """Ray Data carries rows as Arrow strings, which must be UTF-8: a file whose name is not is skipped here,
    with the way to index it (the local engine keeps such names byte for byte)."""
    keep = []
    for f in plan.todo:
        try:
            f.rel.encode("utf-8")
            keep.append(f)
        except UnicodeEncodeError:
            plan.skip(f.rel, "the file name is not valid UTF-8, which Ray Data cannot carry; index the folder with "
                      "--engine local (the default) to include it")
    plan.todo[:] = keep


def _embed_on_ray(ray, plan: Plan, clip, run: RayRun, *, address, workers, batch_size, device, progress) -> None:
    """Embed plan.todo on Ray, WINDOW files per Ray job (each job its own actor pool), committing as results come."""
    resources = ray.cluster_resources()
    run.cluster_cpus = float(resources.get("CPU", 1))
    run.workers, run.cpus_per_worker, run.threads_per_worker = sizing(run.cluster_cpus, workers, address is None)
    gpus = float(resources.get("GPU", 0))
    job = dict(spec=clip.spec.spec, device=device, threads=run.threads_per_worker,
               fault=os.environ.get("DEMO_RAY_FAULT"), tower=plan.report.tower)
    if progress:
        progress(0, len(plan.todo))
    t0, done = time.time(), 0
    for start in range(0, len(plan.todo), WINDOW):
        done = _embed_window(ray, plan, plan.todo[start:start + WINDOW], run, job, batch_size=batch_size,
                             gpu_each=min(1.0, gpus / run.workers) if gpus else 0, progress=progress, done=done)
    run.embed_s = time.time() - t0


def _embed_window(ray, plan: Plan, files: list[ScannedFile], run: RayRun, job: dict, *, batch_size: int,
                  gpu_each: float, progress, done: int) -> int:
    """Embed `files` in up to ROUNDS Ray jobs (a file whose batch never came back, or whose indexed copy vanished
    meanwhile, goes again); returns the running count of files recorded."""
    by_rel = {f.rel: f for f in files}
    pending = list(files)
    for attempt in range(ROUNDS):
        if not pending:
            break
        run.rounds += 1
        first = attempt == 0  # later rounds embed everything they are given: no indexed copy to trust
        rows = [{"rel": f.rel, "path": str(f.path), "size": f.size, "mtime": f.mtime,
                 "old_sha": (plan.known.get(f.rel) or (0, 0, 0, ""))[3] if first else ""} for f in pending]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / batch_size)))
        ds = ds.map_batches(Embedder, batch_size=batch_size, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=min(run.workers, math.ceil(len(rows) / batch_size))),
                            num_cpus=run.cpus_per_worker, num_gpus=gpu_each or None,
                            fn_constructor_kwargs=dict(**job, vanished=frozenset(plan.missing_by_sha) if first else frozenset()))
        del rows
        seen: set[str] = set()
        again: list[ScannedFile] = []
        t_job = time.time()
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                if not run.first_result_s:
                    run.first_result_s = time.time() - t_job
                done += _record(plan, batch, by_rel, seen, again, run)
                if progress:
                    progress(done, len(plan.todo))
        except ray.exceptions.RayError as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ClusterProblem(f"the Ray job failed ({first_line}); what was embedded so far is kept: "
                                 "run the same command to continue") from None
        lost = [f for f in pending if f.rel not in seen]
        if lost:
            logger.warning("%d files came back from no Ray batch; embedding them again", len(lost))
        pending = again + lost
    if pending:
        raise ClusterProblem(f"{len(pending)} files were never embedded after {ROUNDS} Ray jobs; "
                             "run the same command to continue")
    return done


def _record(plan: Plan, batch: dict, by_rel: dict, seen: set, again: list, run: RayRun) -> int:
    """Record one batch of results in the index (one transaction for the new vectors); returns how many were new."""
    items, embs, new = [], [], 0
    for i, rel in enumerate(batch["rel"]):
        run.results += 1
        if rel in seen:
            run.duplicates += 1
            continue
        seen.add(rel)
        new += 1
        f, sha = by_rel[rel], batch["sha"][i]
        if batch["reason"][i]:
            plan.skip(rel, batch["reason"][i])
            continue
        if plan.settle(f, sha):
            continue
        size = (int(batch["width"][i]), int(batch["height"][i]))
        if plan.reuse(f, sha, size):
            continue
        if not batch["has_emb"][i]:  # its content was indexed when the job began, and is gone since
            again.append(f)
            new -= 1
            continue
        items.append((rel, f.size, f.mtime, sha, *size))
        embs.append(batch["emb"][i])
    if items:
        plan.index.add(items, np.stack(embs))
        plan.report.indexed += len(items)
    return new
