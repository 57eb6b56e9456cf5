"""What the engine keeps for runs in flight: a stop signal per request, the files it hands out, and
the models a run needs, loaded once on first use."""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import weakref
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

KEPT_GIFS = 8
T = TypeVar("T")
_GLOBAL_RNG = threading.Lock()


def seeded(seed: int, make: Callable[[], T]) -> T:
    """``make()`` with torch's global RNG seeded by `seed`, as one step no other request can interleave
    with, and the global RNG restored afterwards. Modules initialise their weights from the global RNG,
    so two requests that seeded it one after the other would otherwise build each other's models."""
    import torch

    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


class LoadOnce(Generic[T]):
    """``load()``'s result, made once by whichever thread asks first; the others wait for it. A failed
    load raises to the caller that asked and is tried again by the next one."""

    def __init__(self, load: Callable[[], T]):
        self._load = load
        self._value: T | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> T | None:
        """The value if it has been made, without waiting."""
        return self._value

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._load()
            return self._value


class ModelService(Generic[T]):
    """A tab's bundled models, loaded once: by the engine's loader at startup or by the first request that
    needs them. ``clip_for(spec)`` gives the CLIP its models were trained on: the app's when it is that one,
    else one the engine loads once and shares among its services (so no CLIP is loaded twice). A service
    says which files it needs (``required``) and how to load them (``_load``)."""

    def __init__(self, device, clip_for: Callable[[str], object]):
        self.device = device
        self._clip_for = clip_for
        self._once: LoadOnce[T] = LoadOnce(self._load)

    def required(self) -> list[Path]:
        raise NotImplementedError

    def _load(self) -> T:
        raise NotImplementedError

    @property
    def available(self) -> bool:
        return all(p.exists() for p in self.required())

    @property
    def loaded(self) -> T | None:
        return self._once.loaded

    def models(self) -> T:
        return self._once.get()


class StopSignals:
    """One stop event per running request, forgotten when the request ends.

    A run registers under its key (the browser session); ``stop(key)`` sets the events of that
    key's runs. A run without a key (an API call without a session) gets an event nobody else can
    set: it ends when its caller stops reading."""

    def __init__(self):
        self._lock = threading.Lock()
        self._events: dict[str, list[threading.Event]] = {}

    @contextmanager
    def watch(self, key: str | None) -> Iterator[threading.Event]:
        event = threading.Event()
        if key is None:  # nobody else can stop it by key, but stop_all (shutdown) still reaches it
            key = f"private-{id(event)}"
        with self._lock:
            self._events.setdefault(key, []).append(event)
        try:
            yield event
        finally:
            with self._lock:
                self._events[key].remove(event)
                if not self._events[key]:
                    del self._events[key]

    def stop(self, key: str | None) -> None:
        with self._lock:
            for event in self._events.get(key, []):
                event.set()

    def stop_all(self) -> None:
        """Every run ends after its current step (the app is shutting down)."""
        with self._lock:
            for events in self._events.values():
                for event in events:
                    event.set()

    def __len__(self) -> int:
        """How many runs are registered now."""
        with self._lock:
            return sum(len(events) for events in self._events.values())


class KeptFiles:
    """Files written for the UI to hand out, in one temporary folder: only the newest `keep` stay
    (Gradio copies a returned file into its own cache at once), and the folder is removed when the
    engine is closed, collected or the process ends."""

    def __init__(self, keep: int = KEPT_GIFS):
        self.folder = Path(tempfile.mkdtemp(prefix="clip-lab-files-"))
        self._keep = keep
        self._files: deque[Path] = deque()
        self._lock = threading.Lock()
        self._remove = weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)

    def write(self, data: bytes, *, prefix: str, suffix: str) -> Path:
        with self._lock:
            fd, name = tempfile.mkstemp(dir=self.folder, prefix=prefix, suffix=suffix)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self._files.append(Path(name))
            while len(self._files) > self._keep:
                self._files.popleft().unlink(missing_ok=True)
            return Path(name)

    def close(self) -> None:
        self._remove()
