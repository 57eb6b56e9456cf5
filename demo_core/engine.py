"""The engine behind the UI: a small composition of the device, the models loaded once in the
background, and one service per kind of work, each owning its state:

- the CLIP model and the other bundled models, loaded once by a background thread so the page is up
  at once; a request that needs a model still loading waits for it. Each model loads in its own
  ``try``: a failure is logged with its traceback, shown in the status panel, and the rest still load;
- ``search`` (``search.service.SearchService``): the indexes, opened once, and the bundled gallery;
- ``reverse`` (``diffusion.reverse_service.ReverseService``): the Diffusion tab's models and runs;
- text to image and unCLIP (``Text2ImgService``, ``UnclipService``), streamed here with a stop signal
  per request; the files handed out (GIFs, thumbnails) live in one private folder removed at exit.

Stateless work (the forward process, toy 2-D diffusion, the B×B matrix) lives in its own modules
and is called directly. No Gradio here: the UI turns ``UserError`` into messages and engine results
into widgets.
"""
from __future__ import annotations

import logging
import platform
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .clip import matrix
from .clip.model import ClipModel
from .device import pick_device
from .diffusion.models import BUNDLED_DDPMS, available_ddpms
from .diffusion.reverse_service import MAX_REVERSE_IMAGES, SAMPLERS, ReverseService  # noqa: F401  (the UI's)
from .diffusion.upsampler import BUNDLED_UPSAMPLER
from .diffusion.text2img_models import BUNDLED_NOISED_CLIPS, BUNDLED_TEXT2IMGS, Text2ImgModels, Text2ImgService
from .diffusion.text2img_view import Text2ImgUpdate, run_text2img
from .diffusion.unclip import (BUNDLED_DECODER, BUNDLED_PRIOR, UnclipModels, UnclipService, UnclipUpdate,
                               run_interpolation, run_unclip, run_variations)
from .errors import InputError, ModelUnavailable
from .registry import resolve_clip_spec
from .runs import KeptFiles, LoadOnce, StopSignals
from .search.results import Found, Results  # noqa: F401  (Found: the UI takes it from here)
from .search.service import BUNDLED_INDEX, GALLERY, MAX_RESULTS, SearchService  # noqa: F401  (the UI's)

logger = logging.getLogger(__name__)

WAIT_S = 900  # how long a request waits for a model that is still loading


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
                 *, background: bool = False,
                 text2img_model: str | Path | Sequence[str | Path] = BUNDLED_TEXT2IMGS,
                 noised_clip: str | Path | Sequence[str | Path] = BUNDLED_NOISED_CLIPS, unclip_prior: str | Path = BUNDLED_PRIOR,
                 unclip_decoder: str | Path = BUNDLED_DECODER, upsampler: str | Path = BUNDLED_UPSAMPLER):
        """Pick the device and the CLIP spec now (fast: a hub probe times out in seconds), then load
        the models once: in a background thread when `background` (the UI comes up at once and
        shows progress), else before returning (raising ModelUnavailable if the CLIP fails).
        `text2img_model` is one model folder or several (the Text to image tab's choices, the first
        installed one the default)."""
        self.device = pick_device(device)
        self.resolution = resolve_clip_spec(clip_spec)
        self.started = time.time()
        self.loading = f"loading the CLIP model {self.resolution.spec.spec}"  # the loader's step; "" when done
        self.load_log: list[str] = []  # what it did, with the time since start
        self.load_error: str | None = None  # why the CLIP could not be loaded
        self._clip: ClipModel | None = None
        self._clip_ready, self._ready = threading.Event(), threading.Event()
        self._stops = StopSignals()
        self._closing = threading.Event()
        self._loader: threading.Thread | None = None
        self._files = KeptFiles()
        paths = [text2img_model] if isinstance(text2img_model, (str, Path)) else list(text2img_model)
        self._other_clips: dict[str, LoadOnce[ClipModel]] = {}  # CLIPs the diffusion models read, if not the app's
        self._other_clips_lock = threading.Lock()
        services = [Text2ImgService(self.device, self._clip_for, p, noised_clip, upsampler) for p in paths]
        self._t2i = {s.name: s for s in services if s.available} or {services[0].name: services[0]}
        self._text2img = next(iter(self._t2i.values()))  # the default: also the Diffusion tab's prompted model
        self._unclip = UnclipService(self.device, self._clip_for, unclip_prior, unclip_decoder, upsampler)
        self.search = SearchService(indexes, lambda: self.clip, self._ready, self._closing,
                                    self._files.folder / "thumbnails")
        self.reverse = ReverseService(self.device, self._text2img, self._stops, self._files)
        if background:
            self._loader = threading.Thread(target=self._load, name="model-loader", daemon=True)
            self._loader.start()
        else:
            self._load()
            if self.load_error:
                raise ModelUnavailable(self.load_error)

    # --- loading -----------------------------------------------------------------------------
    def _clip_for(self, spec: str | None) -> ClipModel | None:
        """The CLIP `spec` names, for the models trained on it: the app's when it is that one (None while the
        app's is not loaded yet), else loaded once and shared by every service that asks for it."""
        if spec is None or spec == self.resolution.spec.spec:
            return self._clip
        with self._other_clips_lock:
            once = self._other_clips.setdefault(spec, LoadOnce(lambda: ClipModel.load(spec, self.device)))
        return once.get()

    def _load(self) -> None:
        """Load what startup loads, each in its own try: a failure is logged and the rest go on."""
        steps: list[tuple[str, str, Callable[[], object]]] = [
            (f"loading the CLIP model {self.resolution.spec.spec}", "CLIP loaded", self._load_clip)]
        if self.search.has_gallery:
            steps.append(("preparing the bundled gallery's index", "gallery index ready",
                          lambda: self.search.settle_gallery(self._clip)))
        steps += [(f"loading the DDPM {name}", f"DDPM {name} loaded", lambda name=name: self.reverse.ddpm(name))
                  for name in available_ddpms() if name in BUNDLED_DDPMS]
        for name, service in self._t2i.items():
            if service.available:
                steps.append((f"loading the text-to-image model {name}", f"text-to-image model {name} loaded",
                              service.models))
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

    def close(self, wait_s: float = 120) -> None:
        """Stop every run after its current step and the background loader after its current model (a
        thread still inside torch when the interpreter exits can abort it), waiting at most `wait_s`;
        close every index opened (their SQLite handles, and the private copies a read-only open had to
        build) and remove the files handed out (also done at exit)."""
        self._closing.set()
        self._stops.stop_all()
        if self._loader is not None and self._loader is not threading.current_thread():
            self._loader.join(timeout=wait_s)
        self.search.close()
        self._files.close()

    # --- text to image, unCLIP ---------------------------------------------------------------
    def text2img(self, prompt: str, *, model: str | None = None, stop_key: str | None = None,
                 **settings) -> Iterator[Text2ImgUpdate]:
        """Stream a guided text-to-image run (``run_text2img``) of `model` (a name from ``text2img_models``; None:
        the default); ``stop(stop_key)`` ends it after its step."""
        models = self._text2img_service(model).models()
        with self._stops.watch(stop_key) as stop:
            yield from run_text2img(models, prompt, stop=stop, **settings)

    def _text2img_service(self, model: str | None) -> Text2ImgService:
        if not model:
            return self._text2img
        if model not in self._t2i:
            raise InputError(f"Unknown text-to-image model '{model}': use one of {', '.join(self._t2i)}.")
        return self._t2i[model]

    @property
    def text2img_models(self) -> list[tuple[str, str]]:
        """The installed text-to-image models as (description, name), the default first."""
        return [(s.describe(), name) for name, s in self._t2i.items() if s.available]

    def text2img_model_reads_tokens(self, model: str | None) -> bool:
        """Whether `model` cross-attends to the prompt's tokens (so it has attention maps)."""
        return model in self._t2i and self._t2i[model].reads_tokens() if model else self._text2img.reads_tokens()

    def text2img_model_guides_with_clip(self, model: str | None) -> bool:
        """Whether `model` can be CLIP-guided: a noised CLIP for its CLIP is installed."""
        return model in self._t2i and self._t2i[model].guides_with_clip() if model else self._text2img.guides_with_clip()

    @property
    def loaded_text2img(self) -> list[Text2ImgModels]:
        """The text-to-image models loaded so far, the default first."""
        return [m for m in (s.loaded for s in self._t2i.values()) if m is not None]

    @property
    def text2img_upsamples(self) -> bool:
        """Whether an upsampler (the cascade's second stage) is installed for text to image."""
        return (self._text2img.upsampler_path / "upsampler_config.json").exists()

    @property
    def text2img_reads_tokens(self) -> bool:
        """Whether the default text-to-image model also cross-attends to the prompt's tokens (it has attention maps)."""
        return self._text2img.reads_tokens()

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
        return self.search.nearest(self._unclip.models().clip, vec, k)

    @property
    def unclip_available(self) -> bool:
        return self._unclip.available

    @property
    def unclip_upsamples(self) -> bool:
        """Whether an upsampler (the cascade's second stage) is installed for unCLIP's decoder."""
        return (self._unclip.upsampler_path / "upsampler_config.json").exists()

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


