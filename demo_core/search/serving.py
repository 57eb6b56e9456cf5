"""How an ``ImageIndex`` is searched: the FAISS index (or the compressed kind) derived from its database, built,
written atomically and tagged with the generation it was made from, and the generation a read-only open
serves (the newest *complete* one, so a build in progress is never half seen). A mixin of ``ImageIndex``:
it uses the index's database, folder, manifest and lock."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from . import compressed
from .ann import build_ann, stored_vectors
from .prompts import load_text_queries

logger = logging.getLogger("demo_core.search.index")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Serving:
    # --- FAISS --------------------------------------------------------------------------------
    def build_faiss(self, *, threshold: int | None = None, compressed_threshold: int | None = None) -> dict:
        """(Re)build index.faiss from the stored vectors; returns the manifest entries it set.
        Above `compressed_threshold` vectors (default: compressed.use_compressed's rule) the compressed kind."""
        import faiss

        if compressed.use_compressed(self.count(), self.manifest().get("dim", 0), compressed_threshold):
            return self._build_compressed()
        gen = self.manifest().get("generation", 0)  # read before the vectors: a later write makes it stale
        ids, vecs = self.load_vectors()
        index, info = build_ann(vecs, ids, threshold=threshold, text_queries=load_text_queries(self.folder))
        self._faiss, self._vectors, self._ids, self._compressed = index, vecs, ids, None
        info.setdefault("recall_at_10_text", None)
        info.update(faiss_generation=gen, faiss_built=now_iso())
        self._served = {"generation": gen, "built": info["faiss_built"]}
        if self.manifest().get("compressed"):
            info["compressed"] = info["compressed_params"] = None
        if self.readonly:
            return info  # searchable in memory; the folder is left as it was
        tmp = self.folder / "index.faiss.tmp"
        faiss.write_index(index, str(tmp))
        os.replace(tmp, self.folder / "index.faiss")
        self.set_manifest(**info)
        self.write_manifest_json()
        self._remove_compressed(keep=None)
        return info

    def _vector_chunks(self, rows: int = 16384):
        """(ids, float32 vectors) from SQLite in ascending-id chunks: never all in RAM."""
        cur = self.db.execute("SELECT id, emb FROM vectors ORDER BY id")
        while batch := cur.fetchmany(rows):
            yield (np.fromiter((i for i, _ in batch), np.int64, len(batch)),
                   np.frombuffer(b"".join(e for _, e in batch), np.float32).reshape(len(batch), -1))

    def _build_compressed(self) -> dict:
        """The compressed kind, in a new ``compressed-<generation>/`` folder (a private temporary one when
        read-only); the manifest switches to it in one transaction, so a killed build leaves the old one."""
        m = self.manifest()
        gen = m.get("generation", 0)
        if self.readonly:
            self._private = self._private or Path(tempfile.mkdtemp(prefix="clip-lab-index-"))
        base = self._private if self.readonly else self.folder
        sub = base / f"compressed-{gen}"
        shutil.rmtree(sub, ignore_errors=True)  # what a killed build left
        compressed.VectorStore.write(sub, self.count(), m.get("dim", 0), self._vector_chunks())
        _, info = compressed.build_compressed(sub, text_queries=load_text_queries(self.folder))
        self._compressed = compressed.CompressedIndex(sub)
        self._faiss = self._vectors = self._ids = None
        info.update(faiss_generation=gen, compressed=sub.name, faiss_built=now_iso())
        self._served = {"generation": gen, "built": info["faiss_built"]}
        if not self.readonly:
            self.set_manifest(**info)
            self.write_manifest_json()
            self._remove_compressed(keep=sub.name)
            (self.folder / "index.faiss").unlink(missing_ok=True)
        return info

    def _remove_compressed(self, keep: str | None) -> None:
        for old in self.folder.glob("compressed-*"):
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)

    def _ensure_faiss(self) -> None:
        """Have in memory the newest *complete* generation: the one whose FAISS file (or compressed folder)
        the manifest names as built (``faiss_generation``).

        While a build runs, the database's ``generation`` moves ahead of it row batch by row batch; the app
        (read-only) keeps answering from the last complete build, and picks up the next one at the first
        search after the builder writes it. Vectors are read back from the FAISS file itself, never from the
        database, so the ids and vectors searched always belong to one generation. A writable index (the
        builder's own) rebuilds when stale. Only an index with no complete build at all (a first build
        still running, or killed) is searched as its database stands, with a warning."""
        import faiss

        m = self.manifest()
        gen, built = m.get("generation", 0), m.get("faiss_generation")
        loaded = self._served["generation"] if self._served else None
        if loaded is not None and loaded == (built if self.readonly else gen):
            return
        complete = built is not None and (
            (self.folder / m["compressed"]).is_dir() if m.get("compressed") else (self.folder / "index.faiss").exists())
        if not self.readonly and (built != gen or not complete):
            logger.info("index %s: %s FAISS file, rebuilding it from the database", self.folder,
                        "stale" if complete else "no")
            self.build_faiss()
            return
        if not complete:
            if loaded is not None and loaded == gen:
                return
            logger.warning("index %s: no build has finished; searching the %d images stored so far "
                           "(run index_builder again to finish it)", self.folder, self.count())
            self.build_faiss()
            return
        if m.get("compressed"):
            self._compressed = compressed.CompressedIndex(self.folder / m["compressed"])
            self._faiss = self._vectors = self._ids = None
        else:
            self._faiss = faiss.read_index(str(self.folder / "index.faiss"))
            if "nprobe" in m:
                faiss.extract_index_ivf(self._faiss).nprobe = m["nprobe"]
            self._ids, self._vectors = stored_vectors(self._faiss)
            self._compressed = None
        self._served = {"generation": built, "built": m.get("faiss_built") or m.get("updated")}
        if loaded is not None:
            logger.info("index %s: now searching generation %s (%d images)", self.folder, built, self.served_count())

    def served_count(self) -> int:
        if self._compressed is not None:
            return int(self._compressed.index.ntotal)
        return 0 if self._ids is None else len(self._ids)

