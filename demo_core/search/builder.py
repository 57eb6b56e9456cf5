"""Embedding a folder of images into an ImageIndex, incrementally and safely.

``build_index`` walks the collection, compares it with what the index already holds, and only
embeds what is new or changed: an unchanged file (same size and mtime) is skipped without being
read; a moved or renamed file is recognised by its SHA-256 and keeps its vector; a copy of an
indexed file reuses its vector; deleted files are removed. Each batch is committed on its own, so
a build killed at any point loses at most the batch in flight, and re-running completes it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..errors import ImageError, IndexProblem
from ..images import header_size, load_image
from .index import ImageIndex, now_iso

logger = logging.getLogger(__name__)
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


@dataclass
class ScannedFile:
    rel: str  # '/'-separated path relative to the collection root
    path: Path
    size: int
    mtime: float


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

    def summary_lines(self) -> list[str]:
        lines = [f"indexed {self.indexed}, reused {self.reused}, renamed {self.renamed}, unchanged {self.unchanged}, "
                 f"removed {self.removed}, skipped {len(self.skipped)} in {self.seconds:.1f} s"]
        lines.append(f"index now holds {self.total} images ({self.index_type})")
        return lines


def scan(root: Path, include_hidden: bool = False) -> tuple[list[ScannedFile], list[tuple[str, str]]]:
    """Image files under `root`, recursively. Directory symlinks are not followed (so no loops);
    a file symlink is kept only if it points inside the collection. Returns (files, skipped)."""
    root = root.resolve()
    files, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if not include_hidden:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        dirnames.sort()
        for name in sorted(filenames):
            if not include_hidden and name.startswith("."):
                continue
            if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            try:
                if path.is_symlink():
                    target = path.resolve()
                    if root not in target.parents:
                        skipped.append((rel, "symlink to a file outside the collection"))
                        continue
                st = path.stat()
            except OSError as e:
                skipped.append((rel, f"cannot read ({e.strerror or e})"))
                continue
            files.append(ScannedFile(rel, path, st.st_size, st.st_mtime))
    return files, skipped


def _read(f: ScannedFile):
    """Worker: read the bytes once and hash them. Returns (file, sha256, bytes) or (file, None, error)."""
    try:
        data = f.path.read_bytes()
    except OSError as e:
        return f, None, f"cannot read ({e.strerror or e})"
    sha = hashlib.sha256(data).hexdigest()
    return f, sha, data


def build_index(root: str | Path, out: str | Path, clip, *, batch_size: int = 64, workers: int = 4,
                include_hidden: bool = False, progress: Callable[[int, int], None] | None = None) -> BuildReport:
    """Bring the index in `out` up to date with the images under `root`, embedding with `clip`."""
    t0 = time.time()
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise IndexProblem(f"{root} is not a folder.")
    index = ImageIndex(out, create=True)
    report = BuildReport()
    try:
        index.check_model(clip.spec.spec, clip.embed_dim)
        m = index.manifest()
        if m.get("root") and index.root != root:
            raise IndexProblem(f"{out} indexes {index.root}, not {root}; use another --out for this folder.")
        index.set_root(root)
        index.set_manifest(model=clip.spec.spec, dim=clip.embed_dim, normalized=True,
                           created=m.get("created", now_iso()))

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
        missing_by_sha = {}
        for p, row in missing.items():
            missing_by_sha.setdefault(row[3], []).append(p)

        done = 0
        if progress:
            progress(0, len(todo))
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start:start + batch_size]
                to_embed, images = [], []
                for f, sha, payload in pool.map(_read, chunk):
                    if sha is None:
                        report.skipped.append((f.rel, payload))
                        continue
                    old = known.get(f.rel)
                    if old and old[3] == sha:  # touched, same content
                        index.touch([(f.rel, f.size, f.mtime)])
                        report.unchanged += 1
                        continue
                    if not old and missing_by_sha.get(sha):  # moved/renamed: keep the vector
                        src = missing_by_sha[sha].pop()
                        missing.pop(src, None)
                        index.rename([(src, f.rel, f.size, f.mtime)])
                        report.renamed += 1
                        continue
                    vec = index.vector_of(sha)
                    try:
                        size = header_size(payload)
                        im = None if vec is not None else load_image(payload, draft_size=clip.image_size)
                    except ImageError as e:
                        report.skipped.append((f.rel, str(e)))
                        continue
                    if vec is not None:  # a copy of indexed content
                        index.add([(f.rel, f.size, f.mtime, sha, *size)], vec[None])
                        report.reused += 1
                        continue
                    to_embed.append((f.rel, f.size, f.mtime, sha, *size))
                    images.append(im)
                if images:
                    pixels = list(pool.map(clip.preprocess, images))
                    embs = clip.encode_pixels(torch.stack(pixels)).numpy()
                    index.add(to_embed, embs)  # one transaction per batch
                    report.indexed += len(to_embed)
                done += len(chunk)
                if progress:
                    progress(done, len(todo))
        if missing:
            index.remove(sorted(missing))
            report.removed = len(missing)
        index.set_manifest(updated=now_iso())
        info = index.build_faiss()
        report.index_type = info["index_type"]
        report.total = index.count()
        index.set_manifest(last_build={"indexed": report.indexed, "reused": report.reused, "renamed": report.renamed,
                                       "unchanged": report.unchanged, "removed": report.removed,
                                       "skipped": len(report.skipped)})
        index.write_manifest_json()
    finally:
        index.close()
    report.seconds = time.time() - t0
    logger.info("index %s: %s", out, "; ".join(report.summary_lines()))
    return report

