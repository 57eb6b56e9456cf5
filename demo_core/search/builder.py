"""Embedding a folder of images into an ImageIndex, incrementally and safely.

``build_index`` walks the collection, compares it with what the index already holds, and only
embeds what is new or changed: an unchanged file (same size and mtime) is skipped without being
read; a moved or renamed file is recognised by its SHA-256 and keeps its vector; a copy of an
indexed file reuses its vector; deleted files are removed. Each batch is committed on its own, so
a build killed at any point loses at most the batch in flight, and re-running completes it.

Hostile folders are expected: only regular files are read (a FIFO named ``x.jpg`` would block a
read forever), a name that is not valid UTF-8 is kept byte for byte (``index.stored``), files over
``MAX_FILE_BYTES`` are not read, and a damaged or oversized image is skipped with its reason; the
build itself goes on. One writer at a time: ``writer_lock`` holds ``OUT/.lock`` for the build.
"""
from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..errors import ImageError, IndexProblem
from ..images import header_size, load_image
from .index import ImageIndex, now_iso
from .prompts import load_text_queries, save_text_queries
from .lock import writer_lock  # noqa: F401  (the CLI and tests take it from here)
from .scan import (IMAGE_EXTENSIONS, MAX_FILE_BYTES, ScannedFile, _read, checked_root, display_name,  # noqa: F401
                   scan, shown_name)

logger = logging.getLogger(__name__)
TOWER_SAMPLE = 64  # images a faster tower is checked on against fp32 before it embeds a build


@dataclass
class BuildReport:
    indexed: int = 0  # embedded now (new or changed)
    reused: int = 0  # copies of indexed content: vector reused
    renamed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0
    index_type: str = ""
    total: int = 0
    tower: str = "fp32"  # the image tower that embedded this build's images (demo_core.clip.tower)
    tower_note: str = ""  # the tower's agreement with fp32 on this folder, when one was asked for

    def summary_lines(self) -> list[str]:
        lines = [f"indexed {self.indexed}, reused {self.reused}, renamed {self.renamed}, unchanged {self.unchanged}, "
                 f"removed {self.removed}, skipped {len(self.skipped)} in {self.seconds:.1f} s"]
        lines.append(f"index now holds {self.total} images ({self.index_type})")
        if self.tower_note:
            lines.append(self.tower_note)
        return lines


def build_index(root: str | Path, out: str | Path, clip, *, batch_size: int = 64, workers: int = 4,
                include_hidden: bool = False, progress: Callable[[int, int], None] | None = None,
                tower: str = "auto") -> BuildReport:
    """Bring the index in `out` up to date with the images under `root`, embedding with `clip`
    (its image tower as `tower`, if that agrees with fp32 on this folder: ``pick_tower``).

    Bad files are skipped and listed in the report, never fatal. Holds ``writer_lock(out)`` throughout.

    Raises:
        IndexProblem: `root` is not a folder, or `out` indexes another folder or another model.
        IndexBusy: another build is writing `out`.
        InputError: `tower` cannot run here (see ``ImageTower``).
    """
    t0 = time.time()
    root = checked_root(root)
    with writer_lock(out), planned_build(root, out, clip.spec.spec, clip.embed_dim, include_hidden, clip) as plan:
        encoder = pick_tower(plan, clip, tower)
        _embed_locally(plan, encoder, batch_size=batch_size, workers=workers, progress=progress)
    plan.report.seconds = time.time() - t0
    logger.info("index %s: %s", out, "; ".join(plan.report.summary_lines()))
    return plan.report


@dataclass
class Plan:
    """What a build has to do, decided from the scan and the index before anything is read: `todo`
    holds the files to read (new, or size/mtime changed); `missing` the indexed paths that are gone
    (moved if their content turns up under a new path, else removed when the build finishes). Both
    engines (local here, Ray in ray_builder.py) read the files in `todo`, then record each one through
    `settle`, `reuse`, `skip` and `index.add`, committing as they go."""
    index: ImageIndex
    report: BuildReport
    todo: list[ScannedFile]
    known: dict[str, tuple[int, int, float, str]]  # path -> (id, size, mtime, sha256), as the build began
    missing: dict[str, tuple[int, int, float, str]]
    missing_by_sha: dict[str, list[str]]

    def settle(self, f: ScannedFile, sha: str) -> bool:
        """Record `f` if the index already holds its content under its own path (touched: new mtime,
        same bytes) or under a vanished path (moved: the row keeps its vector). True when recorded."""
        old = self.known.get(f.rel)
        if old and old[3] == sha:
            self.index.touch([(f.rel, f.size, f.mtime)])
            self.report.unchanged += 1
            return True
        if not old and self.missing_by_sha.get(sha):
            src = self.missing_by_sha[sha].pop()
            self.missing.pop(src, None)
            self.index.rename([(src, f.rel, f.size, f.mtime)])
            self.report.renamed += 1
            return True
        return False

    def reuse(self, f: ScannedFile, sha: str, size: tuple[int, int]) -> bool:
        """Record `f` with the vector of indexed content equal to it (a copy), if there is one."""
        vec = self.index.vector_of(sha)
        if vec is None:
            return False
        self.index.add([(f.rel, f.size, f.mtime, sha, *size)], vec[None])
        self.report.reused += 1
        return True

    def skip(self, rel: str, reason: str) -> None:
        self.report.skipped.append((rel, reason))


def pick_tower(plan: Plan, clip, kind: str, sample: int = TOWER_SAMPLE):
    """What to embed with: `clip` for fp32 or when nothing is to be embedded; else what
    ``tower.choose_tower`` picks after measuring on up to `sample` images spread over the to-do list
    (`kind`, or for "auto" the fastest tower that agrees with fp32, only past AUTO_MIN_IMAGES images to
    embed). Sets plan.report.tower and .tower_note (what was measured, and any fallback)."""
    from ..clip.tower import AUTO_MIN_IMAGES, choose_tower

    if kind == "fp32" or not plan.todo or (kind == "auto" and len(plan.todo) < AUTO_MIN_IMAGES):
        return clip
    ims = []
    for f in plan.todo[::max(1, len(plan.todo) // sample)][:sample]:
        _, sha, payload = _read(f)
        try:
            if sha is not None:
                ims.append(load_image(payload, draft_size=clip.image_size))
        except ImageError:
            continue
    encoder, plan.report.tower, plan.report.tower_note = choose_tower(clip, kind, ims)
    return encoder


@contextlib.contextmanager
def planned_build(root: Path, out: str | Path, spec: str, dim: int, include_hidden: bool, clip=None):
    """Open (or create) the index in `out` for `root` and the model (`spec`, `dim`), scan and plan;
    yield the Plan. On a normal exit, remove what vanished, rebuild FAISS and write the manifest.
    With `clip`, the text queries that tune the index are encoded once (``prompts.save_text_queries``).
    Raises IndexProblem when `out` indexes another folder or another model."""
    index = ImageIndex(out, create=True)
    try:
        index.check_model(spec, dim)
        if clip is not None and load_text_queries(out) is None:
            save_text_queries(out, clip)
        m = index.manifest()
        if m.get("root") and index.root != root:
            raise IndexProblem(f"{out} indexes {index.root}, not {root}; use another --out for this folder.")
        index.set_root(root)
        index.set_manifest(model=spec, dim=dim, normalized=True, created=m.get("created", now_iso()))
        report = BuildReport()
        files, skipped = scan(root, include_hidden)
        report.skipped += skipped
        known = index.rows()  # path -> (id, size, mtime, sha)
        seen = {f.rel for f in files}
        todo = []
        for f in files:
            row = known.get(f.rel)
            if row and row[1] == f.size and abs(row[2] - f.mtime) < 1e-6:
                report.unchanged += 1
            else:
                todo.append(f)
        missing = {p: row for p, row in known.items() if p not in seen}  # candidates for rename/removal
        missing_by_sha: dict[str, list[str]] = {}
        for p, row in missing.items():
            missing_by_sha.setdefault(row[3], []).append(p)
        plan = Plan(index, report, todo, known, missing, missing_by_sha)
        yield plan
        _finish(plan)
    finally:
        index.close()


def _finish(plan: Plan) -> None:
    index, report = plan.index, plan.report
    if plan.missing:
        index.remove(sorted(plan.missing))
        report.removed = len(plan.missing)
    index.set_manifest(updated=now_iso())
    info = index.build_faiss()
    report.index_type = info["index_type"]
    report.total = index.count()
    index.set_manifest(last_build={"indexed": report.indexed, "reused": report.reused, "renamed": report.renamed,
                                   "unchanged": report.unchanged, "removed": report.removed,
                                   "skipped": len(report.skipped), "tower": report.tower})
    index.write_manifest_json()


def _embed_locally(plan: Plan, clip, *, batch_size: int, workers: int,
                   progress: Callable[[int, int], None] | None) -> None:
    """The local engine: threads read, hash and decode a batch, the model embeds it, one commit per batch."""
    pool = ThreadPoolExecutor(max(1, workers))
    todo, done = plan.todo, 0
    try:
        if progress:
            progress(0, len(todo))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            to_embed, images = [], []
            for f, sha, payload in pool.map(_read, chunk):
                if sha is None:
                    plan.skip(f.rel, payload)
                    continue
                if plan.settle(f, sha):
                    continue
                try:
                    size = header_size(payload)
                    if plan.reuse(f, sha, size):  # a copy of indexed content
                        continue
                    im = load_image(payload, draft_size=clip.image_size)
                except ImageError as e:
                    plan.skip(f.rel, str(e))
                    continue
                to_embed.append((f.rel, f.size, f.mtime, sha, *size))
                images.append(im)
            if images:
                pixels = list(pool.map(clip.preprocess, images))
                embs = clip.encode_pixels(torch.stack(pixels)).numpy()
                plan.index.add(to_embed, embs)  # one transaction per batch
                plan.report.indexed += len(to_embed)
            done += len(chunk)
            if progress:
                progress(done, len(todo))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # on Ctrl-C: queued reads are dropped, not waited for
