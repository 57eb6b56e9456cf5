"""The vector store that a compressed index re-ranks from: float16 vectors and their ascending ids in
two .npy files, opened as np.memmap (never read whole). Written once per build, in chunks."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import IndexProblem

CHUNK_BYTES = 128 * 2**20  # float32 bytes per block when streaming the store (shards, exact search)


class VectorStore:
    """float16 vectors and their ascending ids on disk, memory-mapped (never loaded whole)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        try:
            self.vectors = np.load(self.folder / "vectors.npy", mmap_mode="r")
            self.ids = np.load(self.folder / "ids.npy", mmap_mode="r")
        except (OSError, ValueError) as e:
            raise IndexProblem(f"The vector store in {self.folder} cannot be read ({e}); "
                               "run index_builder again to rebuild it.") from None

    @staticmethod
    def write(folder: str | Path, n: int, d: int, chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> "VectorStore":
        """Write N (ids, vectors) rows, given in ascending-id chunks, to `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        vecs = np.lib.format.open_memmap(folder / "vectors.npy", mode="w+", dtype=np.float16, shape=(n, d))
        ids = np.lib.format.open_memmap(folder / "ids.npy", mode="w+", dtype=np.int64, shape=(n,))
        at, last = 0, -(2**63)
        for cid, cvec in chunks:
            if len(cid) and (cid[0] <= last or np.any(np.diff(cid) <= 0)):
                raise ValueError("vector store ids must be ascending")
            ids[at:at + len(cid)], vecs[at:at + len(cid)] = cid, cvec
            at += len(cid)
            last = cid[-1] if len(cid) else last
        if at != n:
            raise ValueError(f"vector store: {at} rows given, {n} expected")
        vecs.flush()
        ids.flush()
        del vecs, ids
        return VectorStore(folder)

    def __len__(self) -> int:
        return len(self.ids)

    def blocks(self, rows: int | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(start row, ids, float32 vectors) in blocks of `rows`, read in order."""
        rows = rows or max(1024, CHUNK_BYTES // (4 * self.vectors.shape[1]))
        for s in range(0, len(self), rows):
            yield s, np.asarray(self.ids[s:s + rows]), np.asarray(self.vectors[s:s + rows], dtype=np.float32)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """float32 vectors of `ids` (which must be stored), read from disk in file order."""
        pos = np.searchsorted(self.ids, ids)
        order = np.argsort(pos)
        out = np.empty((len(ids), self.vectors.shape[1]), np.float32)
        out[order] = self.vectors[pos[order]]
        return out

    def sample(self, m: int, rng) -> np.ndarray:
        pos = np.sort(rng.choice(len(self), min(m, len(self)), replace=False))
        return np.asarray(self.vectors[pos], dtype=np.float32)

    def exact_top(self, queries: np.ndarray, k: int = 10, rows: int | None = None) -> np.ndarray:
        """Exact top-k ids by inner product: chunked brute force over the whole store, `rows` at a time."""
        best_s = np.full((len(queries), 0), -np.inf, np.float32)
        best_i = np.zeros((len(queries), 0), np.int64)
        for _, ids, vecs in self.blocks(rows):
            s = queries @ vecs.T
            top = np.argpartition(-s, min(k, s.shape[1]) - 1, axis=1)[:, :k]  # this block's best first
            s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], axis=1)
            i = np.concatenate([best_i, ids[top]], axis=1)
            top = np.argpartition(-s, min(k, s.shape[1]) - 1, axis=1)[:, :k]
            best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
        return np.take_along_axis(best_i, np.argsort(-best_s, axis=1), 1)
