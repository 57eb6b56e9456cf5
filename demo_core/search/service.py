"""Search as the app serves it: the indexes it was started with and the bundled gallery, opened once,
searched by text (with arithmetic), by image or by an indexed image, with thumbnails in a private folder.

The bundled gallery's policy: a prebuilt index serves when the CLIP asking made it (the app's CLIP,
``index``; the CLIP the bundled diffusion models were conditioned on, ``index-mini-clip``); otherwise the
gallery is embedded once with that CLIP into a cache folder (one per checkout and model, incremental on
later starts). unCLIP shows the gallery images nearest an embedding of *its* CLIP (``nearest``), which
may be another model than the app's.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable

from ..clip.model import ClipModel
from ..errors import IndexProblem, ModelUnavailable
from ..inputs import check_number
from ..registry import ASSETS
from .builder import build_index
from .index import ImageIndex
from .query import Term, image_query_vector, parse_query, text_query_vector
from .results import Results, shown

logger = logging.getLogger(__name__)

BUNDLED_GALLERY = ASSETS / "gallery" / "images"
BUNDLED_INDEX = ASSETS / "gallery" / "index"  # built with registry.BUNDLED_CLIP: the Search tab's offline
# Prebuilt indexes of the gallery, the app's first; index-mini-clip serves unCLIP's nearest images (its CLIP).
BUNDLED_INDEXES = (BUNDLED_INDEX, ASSETS / "gallery" / "index-mini-clip")
GALLERY = "bundled gallery"  # the name the bundled gallery's index is offered under
MAX_RESULTS = 48  # results one search returns (the Results slider's top)
WAIT_S = 900  # how long a request waits for startup to settle the indexes


class SearchService:
    """The app's indexes by name. `clip()` is the active CLIP (waiting while it loads); `ready` is set once
    startup has settled the gallery's index; `closing` once the app shuts down."""

    def __init__(self, indexes: list[str] | None, clip: Callable[[], ClipModel], ready: threading.Event,
                 closing: threading.Event, thumbnails: Path):
        # The indexes named at startup come first, in their order: the first is the Search tab's default
        # (and the search endpoints'); the bundled gallery stays on offer after them.
        self._folders: dict[str, Path | None] = {str(f): Path(f) for f in indexes or []}
        if (BUNDLED_INDEX / "meta.sqlite").exists():
            self._folders.setdefault(GALLERY, None)  # None: the bundled gallery's, not settled yet
        self._clip, self._ready, self._closing = clip, ready, closing
        self._opened: dict[str, ImageIndex] = {}
        self._other_spaces: dict[str, ImageIndex] = {}  # the gallery embedded by another CLIP (unCLIP's)
        self._lock = threading.Lock()
        self.thumbnail_folder = thumbnails  # made once per image, handed out as they are

    # --- which indexes ---------------------------------------------------------------------------
    @property
    def has_gallery(self) -> bool:
        return GALLERY in self._folders

    def settle_gallery(self, clip: ClipModel | None) -> None:
        """At startup: which folder serves the bundled gallery for the active CLIP."""
        if clip is None:
            raise ModelUnavailable("no CLIP model to search it with")
        self._folders[GALLERY] = self.gallery_folder(clip)

    def gallery_folder(self, clip: ClipModel) -> Path:
        """A prebuilt gallery index that `clip` made; otherwise the gallery is embedded once with `clip`
        into a cache folder (incremental on later starts)."""
        for folder in BUNDLED_INDEXES:
            if not (folder / "meta.sqlite").exists():
                continue
            idx = ImageIndex(folder, readonly=True)
            try:
                idx.check_model(clip.spec.spec, clip.embed_dim)
                return folder
            except IndexProblem:
                pass
            finally:
                idx.close()
        safe = "".join(c if c.isalnum() else "-" for c in clip.spec.spec)
        # one cache per checkout too: two copies of the app on one machine must not share (and refuse) it
        where = hashlib.sha1(str(BUNDLED_GALLERY.resolve()).encode()).hexdigest()[:8]
        cache = Path(os.environ.get("DEMO_CACHE", Path(tempfile.gettempdir()) / "clip-lab")) / f"gallery-{safe}-{where}"
        logger.info("embedding the bundled gallery with %s into %s", clip.name, cache)
        build_index(BUNDLED_GALLERY, cache, clip)
        return cache

    def names(self) -> list[str]:
        return list(self._folders)

    def _open(self, name: str) -> ImageIndex | None:
        """The named index, opened once; None while the bundled gallery's is being prepared."""
        if name not in self._folders:
            raise IndexProblem(f"Unknown index '{name}'. Choose one of: {', '.join(self._folders) or 'none'}.")
        folder = self._folders[name]
        if folder is None:
            if self._ready.is_set():
                raise IndexProblem("The bundled gallery's index is not available (the status panel says why).")
            return None
        with self._lock:
            if self._closing.is_set():  # an index opened now would outlive close()
                raise IndexProblem("The app is shutting down.")
            if name not in self._opened:
                self._opened[name] = ImageIndex(folder, readonly=True)
            return self._opened[name]

    def stats(self, name: str) -> dict | None:
        """The index's figures (count, model, dim, index type, recall, generation, root); None while the
        bundled gallery's index is being prepared."""
        idx = self._open(name)
        return idx.stats() if idx else None

    def index(self, name: str) -> ImageIndex:
        """The named index, checked against the active CLIP; waits for startup to settle it."""
        self._ready.wait(WAIT_S)
        idx = self._open(name)
        clip = self._clip()
        idx.check_model(clip.spec.spec, clip.embed_dim)
        return idx

    # --- searching ----------------------------------------------------------------------------
    def text(self, query: str, index_name: str, k: int) -> tuple[list[Term], Results]:
        """Text search with arithmetic (`cat + 2:dog - grass`): the parsed terms and the k best results
        (their ``note`` says why some are missing; CollectionMissing when the collection folder is gone)."""
        k = _results(k)
        terms = parse_query(query)
        idx = self.index(index_name)
        return terms, self._found(idx, idx.search(text_query_vector(self._clip(), terms), k))

    def image(self, image, index_name: str, k: int) -> Results:
        """The k images nearest to an image (a path)."""
        k = _results(k)
        idx = self.index(index_name)
        return self._found(idx, idx.search(image_query_vector(self._clip(), image), k))

    def more_like(self, index_name: str, file_id: int, k: int) -> Results:
        """The k images nearest to an indexed one, by its stored vector ("more like this")."""
        k = _results(k)
        file_id = check_number(file_id, "The image id", 0, 2**63 - 1, integer=True)
        idx = self.index(index_name)
        vec = idx.embedding(file_id)
        if vec is None:
            raise IndexProblem("That image is no longer in the index; search again.")
        return self._found(idx, idx.search(vec, k))

    def nearest(self, clip: ClipModel, vec, k: int) -> Results:
        """The k gallery images nearest an embedding in `clip`'s space (unCLIP's); [] without the gallery."""
        if not self.has_gallery:
            return Results()
        with self._lock:
            if self._closing.is_set():
                raise IndexProblem("The app is shutting down.")
            if clip.spec.spec not in self._other_spaces:
                self._other_spaces[clip.spec.spec] = ImageIndex(self.gallery_folder(clip), readonly=True)
            idx = self._other_spaces[clip.spec.spec]
        return self._found(idx, idx.search(vec.numpy(), k))

    def _found(self, idx: ImageIndex, hits) -> Results:
        return shown(idx, hits, self.thumbnail_folder)

    def close(self) -> None:
        """Close every index opened (their SQLite handles, and the private copies a read-only open built)."""
        with self._lock:
            opened = list(self._opened.values()) + list(self._other_spaces.values())
            self._opened.clear()
            self._other_spaces.clear()
        for idx in opened:
            idx.close()


def _results(k) -> int:
    """How many results a search returns: a whole number from 1 to MAX_RESULTS."""
    return check_number(k, "The number of results", 1, MAX_RESULTS, integer=True)
