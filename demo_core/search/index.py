"""A searchable image collection: SQLite metadata + vectors, and a FAISS index derived from them.

Layout of an index folder:
    meta.sqlite   files(id, path, size, mtime, sha256, width, height), vectors(id, emb), manifest(key, value)
    index.faiss   FAISS index over the vectors (ids = files.id); rebuilt from SQLite whenever stale
    manifest.json the manifest again, for people

SQLite is the source of truth and is written in transactions, so a build killed at any moment
leaves a consistent database: a re-run picks up where it stopped. The FAISS file is derived data,
written atomically (temp file + rename) and tagged with the database generation it was made from;
a stale or missing one is rebuilt on open.

Index type follows collection size: exact inner product (Flat) while N·D ≤ ``EXACT_MAX_WORK``
(on the 2-core reference machine exact search then stays near 5 ms a query: 20k vectors of
512-d, 78k of 128-d; see bench/RESULTS.md), and
an inverted-file index (IVF-Flat, √N lists) above it. The build measures recall@10 against
exact search on held-aside queries and raises nprobe until it reaches ``TARGET_RECALL``; both go
into the manifest. ANN candidates are re-ranked exactly against the stored vectors. Past
``compressed.COMPRESSED_MIN_WORK`` the vectors are not held in RAM at all: a compressed IVF-PQ index
in ``compressed-<generation>/`` re-ranks from a float16 copy on disk (see compressed.py).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import IndexProblem
from . import compressed
from .ann import (EXACT_MAX_WORK, NPROBES, RERANK_FACTOR, TARGET_RECALL, build_ann, exact_top10,  # noqa: F401
                  near_queries, recall_at_10, search_ann, stored_vectors)
from .serving import Serving, now_iso  # noqa: F401  (the builder takes now_iso from here)

logger = logging.getLogger(__name__)


SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT UNIQUE NOT NULL,      -- relative to the collection root, '/'-separated
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_sha ON files(sha256);
CREATE TABLE IF NOT EXISTS vectors (id INTEGER PRIMARY KEY, emb BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def stored(rel: str) -> str | bytes:
    """A relative path as the database keeps it: text, or the raw bytes of a name that is not UTF-8 (os.walk
    hands those over with surrogates, which SQLite text cannot hold). Lossless both ways: ``path_of``."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        return os.fsencode(rel)


def path_of(value: str | bytes) -> str:
    """The path `stored` kept, as the str that opens the file (undecodable bytes as surrogates)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


@dataclass
class Hit:
    id: int
    path: str  # relative to the collection root
    score: float  # cosine similarity
    width: int
    height: int


class ImageIndex(Serving):
    """One index folder: open, add/remove/rename rows, rebuild FAISS, search."""

    def __init__(self, folder: str | Path, *, create: bool = False, readonly: bool = False):
        self.folder = Path(folder)
        self.readonly = readonly
        if create:
            self.folder.mkdir(parents=True, exist_ok=True)
        elif not (self.folder / "meta.sqlite").is_file():
            raise IndexProblem(f"No index in {self.folder}: build one with `python index_builder DIR --out {self.folder}`.")
        db_path = (self.folder / "meta.sqlite").resolve()
        if readonly:  # the app only reads: it never changes an index, even a writable one
            self.db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
        else:  # rollback journal: every `with self.db:` block is all-or-nothing on disk
            self.db = sqlite3.connect(db_path, check_same_thread=False)
            self.db.executescript(SCHEMA)
        self._lock = threading.RLock()  # the app searches from several worker threads
        self._root: Path | None = None
        self._faiss = None
        self._vectors: np.ndarray | None = None  # (N, D) float32, row i <-> self._ids[i]
        self._ids: np.ndarray | None = None
        self._compressed: compressed.CompressedIndex | None = None  # the large-collection kind
        self._private: Path | None = None  # where a read-only open had to build one; removed on close
        self._served: dict | None = None  # the generation searches answer from, and when it was built

    # --- manifest -------------------------------------------------------------------------
    def manifest(self) -> dict:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM manifest")}

    def set_manifest(self, **items) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO manifest VALUES (?, ?)",
                                [(k, json.dumps(v)) for k, v in items.items()])

    def _bump_generation(self) -> None:
        gen = self.manifest().get("generation", 0) + 1
        self.db.execute("INSERT OR REPLACE INTO manifest VALUES ('generation', ?)", (json.dumps(gen),))

    @property
    def root(self) -> Path:
        """The collection folder. Stored relative to the index folder, so that a collection and
        its index can move together (the bundled gallery does). Read once when the index is read-only
        (the app asks for it for every result it shows)."""
        if self.readonly and self._root is not None:
            return self._root
        root = self.manifest().get("root")
        if not root:
            raise IndexProblem(f"The index in {self.folder} records no collection folder.")
        self._root = (self.folder / root).resolve()
        return self._root

    def set_root(self, root: Path) -> None:
        self.set_manifest(root=os.path.relpath(root.resolve(), self.folder.resolve()))

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM files").fetchone()[0]

    def check_model(self, spec: str, dim: int) -> None:
        """Refuse to mix embeddings of two models, with the command that fixes it."""
        m = self.manifest()
        if "model" in m and (m["model"] != spec or m.get("dim") != dim):
            raise IndexProblem(
                f"Index built with {m['model']} ({m.get('dim')}-d) but the loaded model is {spec} ({dim}-d); "
                f"rebuild with `python index_builder {self.root if m.get('root') else 'DIR'} --out NEW_FOLDER "
                f"--model {spec}`, or start the app with --clip-model {m['model']}."
            )

    # --- rows ---------------------------------------------------------------------------------
    def rows(self) -> dict[str, tuple[int, int, float, str]]:
        """path -> (id, size, mtime, sha256)"""
        return {path_of(p): (i, s, m, h)
                for i, p, s, m, h in self.db.execute("SELECT id, path, size, mtime, sha256 FROM files")}

    def add(self, items: list[tuple[str, int, float, str, int, int]], embs: np.ndarray) -> None:
        """Insert (path, size, mtime, sha256, w, h) rows with their embeddings, in one transaction.
        A changed file (same path) replaces its old row."""
        with self.db:
            for (path, size, mtime, sha, w, h), e in zip(items, embs):
                old = self.db.execute("SELECT id FROM files WHERE path = ?", (stored(path),)).fetchone()
                if old:
                    self.db.execute("DELETE FROM vectors WHERE id = ?", old)
                    self.db.execute("DELETE FROM files WHERE id = ?", old)
                cur = self.db.execute("INSERT INTO files (path, size, mtime, sha256, width, height) VALUES (?,?,?,?,?,?)",
                                      (stored(path), size, mtime, sha, w, h))
                self.db.execute("INSERT INTO vectors VALUES (?, ?)",
                                (cur.lastrowid, np.asarray(e, np.float32).tobytes()))
            self._bump_generation()

    def rename(self, moves: list[tuple[str, str, int, float]]) -> None:
        """(old path, new path, size, mtime): the same content moved, so the vector is kept."""
        with self.db:
            for old, new, size, mtime in moves:
                self.db.execute("UPDATE files SET path = ?, size = ?, mtime = ? WHERE path = ?",
                                (stored(new), size, mtime, stored(old)))
            self._bump_generation()

    def touch(self, updates: list[tuple[str, int, float]]) -> None:
        """Record a new size/mtime for files whose content hash did not change."""
        with self.db:
            self.db.executemany("UPDATE files SET size = ?, mtime = ? WHERE path = ?",
                                [(s, m, stored(p)) for p, s, m in updates])

    def remove(self, paths: list[str]) -> None:
        with self.db:
            for p in paths:
                row = self.db.execute("SELECT id FROM files WHERE path = ?", (stored(p),)).fetchone()
                if row:
                    self.db.execute("DELETE FROM vectors WHERE id = ?", row)
                    self.db.execute("DELETE FROM files WHERE id = ?", row)
            self._bump_generation()

    def vector_of(self, sha256: str) -> np.ndarray | None:
        row = self.db.execute("SELECT v.emb FROM files f JOIN vectors v ON v.id = f.id WHERE f.sha256 = ? LIMIT 1",
                              (sha256,)).fetchone()
        return np.frombuffer(row[0], np.float32) if row else None

    def load_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        ids, embs = [], []
        for i, blob in self.db.execute("SELECT id, emb FROM vectors ORDER BY id"):
            ids.append(i)
            embs.append(np.frombuffer(blob, np.float32))
        dim = self.manifest().get("dim", 0)
        vecs = np.stack(embs) if embs else np.zeros((0, dim), np.float32)
        return np.asarray(ids, np.int64), np.ascontiguousarray(vecs, dtype=np.float32)

    def write_manifest_json(self) -> None:
        (self.folder / "manifest.json").write_text(json.dumps(self.manifest(), indent=2) + "\n")

    def search(self, query: np.ndarray, k: int = 12) -> list[Hit]:
        """Top-k files by cosine similarity to a normalised query vector (D,)."""
        with self._lock:
            return self._search(query, k)

    def _search(self, query: np.ndarray, k: int) -> list[Hit]:
        self._ensure_faiss()
        if self._compressed is not None:
            pairs = self._compressed.search(query, k)
        elif self._vectors is None or len(self._vectors) == 0:
            return []
        else:
            pairs = search_ann(self._faiss, self._vectors, self._ids, query, k)
        hits = [Hit(i, "", sc, 0, 0) for i, sc in pairs]
        if not hits:
            return []
        meta = {i: (path_of(p), w, h) for i, p, w, h in self.db.execute(
            f"SELECT id, path, width, height FROM files WHERE id IN ({','.join('?' * len(hits))})",
            [h.id for h in hits])}
        return [Hit(h.id, meta[h.id][0], h.score, meta[h.id][1], meta[h.id][2]) for h in hits if h.id in meta]

    def embedding(self, file_id: int) -> np.ndarray | None:
        row = self.db.execute("SELECT emb FROM vectors WHERE id = ?", (file_id,)).fetchone()
        return np.frombuffer(row[0], np.float32) if row else None

    def safe_path(self, rel: str) -> Path:
        """The file `rel` inside the collection, or IndexProblem if it escapes it or is not indexed."""
        root = self.root
        full = (root / rel).resolve()
        if root != full and root not in full.parents:
            raise IndexProblem(f"'{rel}' is outside the indexed collection.")
        if not self.db.execute("SELECT 1 FROM files WHERE path = ?", (stored(rel),)).fetchone():
            raise IndexProblem(f"'{rel}' is not in this index.")
        return full

    def stats(self) -> dict:
        m = self.manifest()
        with self._lock:
            served = dict(self._served or {})
            count = self.served_count() if served else self.count()
        return {"count": count, "model": m.get("model"), "dim": m.get("dim"),
                "generation": served.get("generation", m.get("faiss_generation")),
                "built": served.get("built", m.get("faiss_built") or m.get("updated")),
                "index_type": m.get("index_type"), "recall_at_10": m.get("recall_at_10"),
                "root": str(self.root) if m.get("root") else None, "created": m.get("created"), "updated": m.get("updated")}

    def close(self) -> None:
        """Close the database and drop what searching loaded; remove the private copy a read-only open
        built. Waits for a search in progress (the app closes its indexes while requests may still run)."""
        with self._lock:
            self.db.close()
            self._faiss = self._vectors = self._ids = self._compressed = None
            if self._private is not None:
                shutil.rmtree(self._private, ignore_errors=True)
                self._private = None
