"""The reverse process as the Diffusion tab runs it: the models it offers (the text-conditional one guided by
a prompt, then the DDPMs, each loaded once), and runs of DDPM, DDIM, or both interleaved from one seed, with
a stop signal per request and the run's GIF kept in the engine's folder of handed-out files."""
from __future__ import annotations

import threading
import time
from typing import Iterator

from ..errors import InputError
from ..inputs import check_number, check_seed
from ..runs import KeptFiles, LoadOnce, StopSignals
from .models import DdpmModel, available_ddpms, load_ddpm
from .prompted import OLD_TEXT_DDPM, TEXT_DDPM, PromptedDdpm, prompted_ddpm
from .reverse_view import ReverseFrame, ReverseRun, ReverseUpdate, run_reverse
from .text2img_view import Text2ImgService

SAMPLERS = ("DDPM", "DDIM", "DDPM vs DDIM")
MAX_REVERSE_IMAGES = 8  # images one reverse run makes


class ReverseService:
    def __init__(self, device, text2img: Text2ImgService, stops: StopSignals, files: KeptFiles):
        self.device, self._text2img, self._stops, self._files = device, text2img, stops, files
        self._ddpms: dict[str, LoadOnce[DdpmModel]] = {}  # one load-once per model: a slow load blocks only its own
        self._lock = threading.Lock()  # guards the dict only, never held during a load

    def ddpm(self, name: str) -> DdpmModel:
        """A DDPM by spec, loaded once (by the loader thread or the first request that asks)."""
        with self._lock:
            once = self._ddpms.get(name)
            if once is None:
                once = self._ddpms[name] = LoadOnce(lambda: load_ddpm(name, self.device))
        return once.get()

    def loaded(self) -> list[DdpmModel]:
        """The DDPMs loaded so far."""
        return [m for m in (once.loaded for once in list(self._ddpms.values())) if m is not None]

    def models(self) -> list[str]:
        """What the reverse process can run: the text-conditional model (guided by a prompt) when it is
        installed, then the unconditional DDPMs."""
        return ([TEXT_DDPM] if self._text2img.available else []) + available_ddpms()

    def model(self, name: str, prompt: str | None = None, scale: float = 3.0) -> DdpmModel | PromptedDdpm:
        """The model `name` of ``models()``; the text-conditional one guided toward `prompt` at `scale`."""
        if name in (TEXT_DDPM, OLD_TEXT_DDPM):
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
        model = self.model(model_name, prompt, scale)
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
