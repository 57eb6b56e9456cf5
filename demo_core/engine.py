"""The engine behind the UI: models loaded once in the background, the search indexes, per-request
stop signals and the files it hands out, behind a small public API.

Stateless work (the forward process, toy 2-D diffusion, the B×B matrix) lives in its own modules
and is called directly; the ``Engine`` holds what has state:

- the CLIP model and the DDPMs, loaded once by a background thread so the page is up at once; a
  request that needs a model still loading waits for it. Each model loads in its own ``try``: a
  failure is logged with its traceback, shown in the status panel, and the rest still load;
- the search indexes, opened once, and the bundled gallery's policy: its prebuilt index serves
  when it was made by the active CLIP, else the gallery is embedded once with the active CLIP;
- the reverse process: DDPM and DDIM interleaved from one seed, a stop signal per request, and
  its GIFs in a temporary folder that keeps only the newest few and is removed at exit.

No Gradio here: the UI turns ``UserError`` into messages and engine results into widgets.
"""
from __future__ import annotations

import hashlib
import logging
import os
import platform
import tempfile
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, Iterator

from .clip import matrix
from .clip.model import ClipModel
from .device import pick_device
from .diffusion.models import BUNDLED_DDPMS, DdpmModel, available_ddpms, load_ddpm
from .diffusion.reverse_view import ReverseFrame, ReverseRun, ReverseUpdate, run_reverse
from .diffusion.prompted import TEXT_DDPM, PromptedDdpm, prompted_ddpm
from .diffusion.text2img_view import (BUNDLED_NOISED_CLIP, BUNDLED_TEXT2IMG, Text2ImgModels, Text2ImgService,
                                      Text2ImgUpdate, run_text2img)
from .diffusion.unclip import (BUNDLED_DECODER, BUNDLED_PRIOR, UnclipModels, UnclipService, UnclipUpdate,
                               run_interpolation, run_unclip, run_variations)
from .errors import IndexProblem, InputError, ModelUnavailable
from .inputs import check_number, check_seed
from .registry import ASSETS, resolve_clip_spec
from .runs import KeptFiles, LoadOnce, StopSignals
from .search.builder import build_index
from .search.index import ImageIndex
from .search.query import Term, image_query_vector, parse_query, text_query_vector
from .search.results import Found, Results, shown  # noqa: F401  (Found: the UI takes it from here)

logger = logging.getLogger(__name__)

BUNDLED_GALLERY = ASSETS / "gallery" / "images"
BUNDLED_INDEX = ASSETS / "gallery" / "index"
GALLERY = "bundled gallery"  # the name the bundled gallery's index is offered under
SAMPLERS = ("DDPM", "DDIM", "DDPM vs DDIM")
WAIT_S = 900  # how long a request waits for a model that is still loading
MAX_RESULTS = 48  # results one search returns (the Results slider's top)
MAX_REVERSE_IMAGES = 8  # images one reverse run makes


def versions() -> dict[str, str]:
    """The versions a bug report needs."""
    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "not installed"

    return {"Python": platform.python_version(), **{name: ver(pkg) for name, pkg in (
        ("torch", "torch"), ("open_clip", "open_clip_torch"), ("diffusers", "diffusers"), ("gradio", "gradio"),
        ("faiss", "faiss-cpu"), ("spaces", "spaces"))}}


class Engine:
    """Device, models, indexes and runs. Requests may arrive from several threads at once."""

    def __init__(self, clip_spec: str | None = None, device: str | None = None, indexes: list[str] | None = None,
                 *, background: bool = False, text2img_model: str | Path = BUNDLED_TEXT2IMG,
                 noised_clip: str | Path = BUNDLED_NOISED_CLIP, unclip_prior: str | Path = BUNDLED_PRIOR,
                 unclip_decoder: str | Path = BUNDLED_DECODER):
        """Pick the device and the CLIP spec now (fast: a hub probe times out in seconds), then load
        the models once: in a background thread when `background` (the UI comes up at once and
        shows progress), else before returning (raising ModelUnavailable if the CLIP fails)."""
        self.device = pick_device(device)
        self.resolution = resolve_clip_spec(clip_spec)
        self.started = time.time()
        self.loading = f"loading the CLIP model {self.resolution.spec.spec}"  # the loader's step; "" when done
        self.load_log: list[str] = []  # what it did, with the time since start
        self.load_error: str | None = None  # why the CLIP could not be loaded
        # The indexes named at startup come first, in their order: the first is the Search tab's default
        # (and the search endpoints'); the bundled gallery stays on offer after them.
        self._index_folders: dict[str, Path | None] = {str(f): Path(f) for f in indexes or []}
        if (BUNDLED_INDEX / "meta.sqlite").exists():
            self._index_folders.setdefault(GALLERY, None)  # None: the bundled gallery's, not settled yet
        self._indexes: dict[str, ImageIndex] = {}
        self._ddpms: dict[str, LoadOnce[DdpmModel]] = {}  # one load-once per model: a slow load blocks only its own
        self._clip: ClipModel | None = None
        self._ddpm_lock = threading.Lock()  # guards the dict only, never held during a load
        self._index_lock = threading.Lock()
        self._clip_ready, self._ready = threading.Event(), threading.Event()
        self._stops = StopSignals()
        self._closing = threading.Event()
        self._loader: threading.Thread | None = None
        self._text2img = Text2ImgService(self.device, lambda: self._clip, text2img_model, noised_clip)
        self._unclip = UnclipService(self.device, lambda: self._clip, unclip_prior, unclip_decoder)
        self._unclip_index: ImageIndex | None = None  # the bundled gallery in the unCLIP CLIP's space
        self._files = KeptFiles()
        # Search thumbnails: made once per image, in the engine's private folder, handed out as they are
        self.thumbnail_folder = self._files.folder / "thumbnails"
        if background:
            self._loader = threading.Thread(target=self._load, name="model-loader", daemon=True)
            self._loader.start()
        else:
            self._load()
            if self.load_error:
                raise ModelUnavailable(self.load_error)

    # --- loading -----------------------------------------------------------------------------
    def _load(self) -> None:
        """Load what startup loads, each in its own try: a failure is logged and the rest go on."""
        steps: list[tuple[str, str, Callable[[], object]]] = [
            (f"loading the CLIP model {self.resolution.spec.spec}", "CLIP loaded", self._load_clip)]
        if GALLERY in self._index_folders:
            steps.append(("preparing the bundled gallery's index", "gallery index ready", self._settle_gallery_index))
        steps += [(f"loading the DDPM {name}", f"DDPM {name} loaded", lambda name=name: self.ddpm(name))
                  for name in available_ddpms() if name in BUNDLED_DDPMS]
        if self._text2img.available:
            steps.append(("loading the text-to-image models", "text-to-image models loaded", self._text2img.models))
        if self._unclip.available:
            steps.append(("loading the unCLIP prior and decoder", "unCLIP models loaded", self._unclip.models))
        steps.append(("reading the gallery's image–caption pairs", "gallery pairs read", matrix.gallery_pairs))
        for doing, done, load in steps:
            if self._closing.is_set():  # the app is shutting down: leave the rest unloaded
                break
            self.loading = doing
            try:
                load()
                self.load_log.append(f"{done} ({time.time() - self.started:.1f} s)")
            except Exception as e:  # noqa: BLE001 - logged with its traceback; the next model still loads
                logger.exception("startup: %s failed", doing)
                self.load_log.append(f"⚠️ {doing} failed: {e}")
        self.loading = ""
        self._ready.set()

    def _load_clip(self) -> None:
        try:
            self._clip = ClipModel.load(self.resolution, self.device)
        except Exception as e:
            self.load_error = f"The CLIP model could not be loaded: {e}"
            raise
        finally:
            self._clip_ready.set()  # requests waiting for the CLIP go on: with it, or with load_error

    @property
    def ready(self) -> bool:
        """Has the background loader finished (whatever failed is in load_log)?"""
        return self._ready.is_set()

    def wait_ready(self, timeout: float = WAIT_S) -> bool:
        return self._ready.wait(timeout)

    @property
    def clip(self) -> ClipModel:
        """The loaded CLIP; waits while it is still loading."""
        if not self._clip_ready.wait(WAIT_S):
            raise ModelUnavailable("The CLIP model is still loading; try again in a moment.")
        if self._clip is None:
            raise ModelUnavailable(self.load_error or "The CLIP model is not loaded.")
        return self._clip

    @property
    def loaded_clip(self) -> ClipModel | None:
        """The CLIP if it has loaded, without waiting."""
        return self._clip

    def ddpm(self, name: str) -> DdpmModel:
        """A DDPM by spec, loaded once (by the loader thread or the first request that asks)."""
        with self._ddpm_lock:
            once = self._ddpms.get(name)
            if once is None:
                once = self._ddpms[name] = LoadOnce(lambda: load_ddpm(name, self.device))
        return once.get()

    def loaded_ddpms(self) -> list[DdpmModel]:
        return [m for m in (once.loaded for once in list(self._ddpms.values())) if m is not None]

    def close(self, wait_s: float = 120) -> None:
        """Stop every run after its current step and the background loader after its current model (a
        thread still inside torch when the interpreter exits can abort it), waiting at most `wait_s`;
        close every index opened (their SQLite handles, and the private copies a read-only open had to
        build) and remove the files handed out (also done at exit)."""
        self._closing.set()
        self._stops.stop_all()
        if self._loader is not None and self._loader is not threading.current_thread():
            self._loader.join(timeout=wait_s)
        with self._index_lock:
            opened = list(self._indexes.values()) + ([self._unclip_index] if self._unclip_index else [])
            self._indexes.clear()
            self._unclip_index = None
        for idx in opened:
            idx.close()
        self._files.close()

    # --- search ------------------------------------------------------------------------------
    def _settle_gallery_index(self) -> None:
        if self._clip is None:
            raise ModelUnavailable("no CLIP model to search it with")
        self._index_folders[GALLERY] = self._gallery_index_folder()

    def _gallery_index_folder(self, clip: ClipModel | None = None) -> Path:
        """The prebuilt gallery index when `clip` (default: the active CLIP) made it; otherwise the
        gallery is embedded once with that CLIP into a cache folder (incremental on later starts)."""
        clip = clip or self.clip
        idx = ImageIndex(BUNDLED_INDEX, readonly=True)
        try:
            idx.check_model(clip.spec.spec, clip.embed_dim)
            return BUNDLED_INDEX
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

    def index_names(self) -> list[str]:
        return list(self._index_folders)

    def _open_index(self, name: str) -> ImageIndex | None:
        """The named index, opened once; None while the bundled gallery's is being prepared."""
        if name not in self._index_folders:
            raise IndexProblem(f"Unknown index '{name}'. Choose one of: {', '.join(self._index_folders) or 'none'}.")
        folder = self._index_folders[name]
        if folder is None:
            if self.ready:
                raise IndexProblem("The bundled gallery's index is not available (the status panel says why).")
            return None
        with self._index_lock:
            if self._closing.is_set():  # an index opened now would outlive close()
                raise IndexProblem("The app is shutting down.")
            if name not in self._indexes:
                self._indexes[name] = ImageIndex(folder, readonly=True)
            return self._indexes[name]

    def index_stats(self, name: str) -> dict | None:
        """The index's figures (count, model, dim, index type, recall, root); None while the
        bundled gallery's index is being prepared."""
        idx = self._open_index(name)
        return idx.stats() if idx else None

    def index(self, name: str) -> ImageIndex:
        """The named index, checked against the active CLIP; waits for startup to settle it."""
        self.wait_ready()
        idx = self._open_index(name)
        idx.check_model(self.clip.spec.spec, self.clip.embed_dim)
        return idx

    def search_text(self, query: str, index_name: str, k: int) -> tuple[list[Term], Results]:
        """Text search with arithmetic (`cat + 2:dog - grass`): the parsed terms and the k best results
        (their ``note`` says why some are missing; CollectionMissing when the collection folder is gone)."""
        k = _results(k)
        terms = parse_query(query)
        idx = self.index(index_name)
        return terms, self._found(idx, idx.search(text_query_vector(self.clip, terms), k))

    def search_image(self, image, index_name: str, k: int) -> Results:
        """The k images nearest to an image (a path)."""
        k = _results(k)
        idx = self.index(index_name)
        return self._found(idx, idx.search(image_query_vector(self.clip, image), k))

    def more_like(self, index_name: str, file_id: int, k: int) -> Results:
        """The k images nearest to an indexed one, by its stored vector ("more like this")."""
        k = _results(k)
        file_id = check_number(file_id, "The image id", 0, 2**63 - 1, integer=True)
        idx = self.index(index_name)
        vec = idx.embedding(file_id)
        if vec is None:
            raise IndexProblem("That image is no longer in the index; search again.")
        return self._found(idx, idx.search(vec, k))

    def _found(self, idx: ImageIndex, hits) -> Results:
        return shown(idx, hits, self.thumbnail_folder)

    # --- the reverse process -------------------------------------------------------------------
    def reverse_models(self) -> list[str]:
        """What the reverse process can run: the text-conditional model (guided by a prompt) when it is
        installed, then the unconditional DDPMs."""
        return ([TEXT_DDPM] if self._text2img.available else []) + available_ddpms()

    def reverse_model(self, name: str, prompt: str | None = None, scale: float = 3.0) -> DdpmModel | PromptedDdpm:
        """The model `name` of ``reverse_models``; the text-conditional one guided toward `prompt` at `scale`."""
        if name == TEXT_DDPM:
            return prompted_ddpm(self._text2img.models(), prompt, scale)
        return self.ddpm(name)

    def sample(self, model_name: str, sampler: str, *, ddim_steps: int = 50, eta: float = 0.0, seed: int = 0,
               n: int = 4, clip_x0: bool = True, prompt: str | None = None, scale: float = 3.0,
               stop_key: str | None = None) -> Iterator[ReverseUpdate]:
        """Stream a reverse process, one update per step: DDPM, DDIM, or both from one seed (DDPM
        leads; DDIM takes a step whenever its share done falls behind). `prompt` and `scale` guide the
        text-conditional model (``TEXT_DDPM``). ``stop(stop_key)`` ends the run after the current step; the
        last update (``final``) keeps what was made."""
        if sampler not in SAMPLERS:
            raise InputError(f"Unknown sampler '{sampler}': use one of {', '.join(SAMPLERS)}.")
        eta = check_number(eta, "DDIM η", 0, 1)
        seed = check_seed(seed)
        n = check_number(n, "The number of images", 1, MAX_REVERSE_IMAGES, integer=True)
        model = self.reverse_model(model_name, prompt, scale)
        names = ["DDPM", "DDIM"] if sampler == "DDPM vs DDIM" else [sampler]
        if "DDIM" in names:  # DDPM alone takes all T steps and ignores the setting
            ddim_steps = check_number(ddim_steps, f"DDIM steps for {model.display}", 1, model.T, integer=True)
        else:
            ddim_steps = model.T
        runs = {nm: ReverseRun() for nm in names}
        gens = {nm: run_reverse(model, nm, seed=seed, n=n, ddim_steps=ddim_steps, eta=eta, clip_x0=bool(clip_x0),
                                run=runs[nm]) for nm in names}
        latest: dict[str, ReverseFrame | None] = dict.fromkeys(names)
        done = lambda f: (f.step.index + 1) / f.step.total  # noqa: E731 - share of the run done
        t0 = time.time()
        with self._stops.watch(stop_key) as stop:
            try:
                for frame in gens[names[0]]:
                    latest[names[0]] = frame
                    if len(names) == 2:
                        while latest[names[1]] is None or done(latest[names[1]]) < done(frame):
                            nxt = next(gens[names[1]], None)
                            if nxt is None:
                                break
                            latest[names[1]] = nxt
                    yield ReverseUpdate(dict(latest), time.time() - t0)
                    if stop.is_set():
                        break
            finally:
                for g in gens.values():
                    g.close()
            stopped = stop.is_set()
        data = runs[names[0]].gif()
        gif = self._files.write(data, prefix=f"reverse-{names[0]}-seed{seed}-", suffix=".gif") if data else None
        strip = [(im, f"{nm} t={t}") for nm in names for t, im in runs[nm].kept]
        yield ReverseUpdate(dict(latest), time.time() - t0, final=True, stopped=stopped, strip=strip, gif=gif)

    def text2img(self, prompt: str, *, stop_key: str | None = None, **settings) -> Iterator[Text2ImgUpdate]:
        """Stream a guided text-to-image run (``run_text2img``); ``stop(stop_key)`` ends it after its step."""
        models = self._text2img.models()
        with self._stops.watch(stop_key) as stop:
            yield from run_text2img(models, prompt, stop=stop, **settings)

    @property
    def loaded_text2img(self) -> Text2ImgModels | None:
        return self._text2img.loaded

    # --- unCLIP --------------------------------------------------------------------------------
    def unclip(self, prompt: str, *, stop_key: str | None = None, **settings) -> Iterator[UnclipUpdate]:
        """Stream text → prior → decoder (``run_unclip``), with the real gallery images nearest the prior's output."""
        models = self._unclip.models()
        with self._stops.watch(stop_key) as stop:
            yield from run_unclip(models, prompt, nearest=self._unclip_nearest, stop=stop, **settings)

    def variations(self, image, *, stop_key: str | None = None, **settings) -> Iterator[UnclipUpdate]:
        """Stream variations of a picture (``run_variations``)."""
        models = self._unclip.models()
        with self._stops.watch(stop_key) as stop:
            yield from run_variations(models, image, stop=stop, **settings)

    def interpolate(self, image_a, image_b=None, prompt_b: str | None = None, *, stop_key: str | None = None,
                    **settings) -> Iterator[UnclipUpdate]:
        """Stream a slerp strip between two pictures, or a picture and a prompt (``run_interpolation``)."""
        models = self._unclip.models()
        with self._stops.watch(stop_key) as stop:
            yield from run_interpolation(models, image_a, image_b, prompt_b, stop=stop, **settings)

    def modality_gap(self) -> list[dict]:
        """The unCLIP CLIP's modality-gap histogram on the gallery's true pairs (``UnclipService.gap_rows``)."""
        return self._unclip.gap_rows(matrix.gallery_pairs())

    def _unclip_nearest(self, vec, k: int) -> Results:
        """The k gallery images nearest an embedding in the unCLIP CLIP's space; [] without the gallery."""
        if GALLERY not in self._index_folders:
            return Results()
        with self._index_lock:
            if self._closing.is_set():
                raise IndexProblem("The app is shutting down.")
            if self._unclip_index is None:
                self._unclip_index = ImageIndex(self._gallery_index_folder(self._unclip.models().clip), readonly=True)
        return self._found(self._unclip_index, self._unclip_index.search(vec.numpy(), k))

    @property
    def unclip_available(self) -> bool:
        return self._unclip.available

    @property
    def loaded_unclip(self) -> UnclipModels | None:
        return self._unclip.loaded

    def stop(self, key: str | None) -> None:
        """The Stop button: that session's running samplers end after their current step."""
        self._stops.stop(key)

    @property
    def running(self) -> int:
        """How many reverse runs are registered for stopping now (0 when none is running)."""
        return len(self._stops)


def _results(k) -> int:
    """How many results a search returns: a whole number from 1 to MAX_RESULTS."""
    return check_number(k, "The number of results", 1, MAX_RESULTS, integer=True)
