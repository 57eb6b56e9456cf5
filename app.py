"""CLIP & Diffusion Lab: the Gradio UI. Layout and wiring only; the work is in demo_core.

    python app.py [--clip-model SPEC] [--device cpu|cuda|mps] [--host H] [--port P]
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline-first: no analytics calls

import gradio as gr

from demo_core.clip.model import DEFAULT_TEMPLATES, ClipModel, InputError, parse_labels, parse_templates
from demo_core.device import pick_device
from demo_core.diffusion.ddpm import Schedule
from demo_core.clip import matrix as clip_matrix
from demo_core.diffusion import forward_view, toy2d
from demo_core.diffusion.models import BUNDLED_DDPMS, available_ddpms, hub_note, load_ddpm
from demo_core.diffusion.reverse_view import ReverseRun, run_reverse
from demo_core.images import ImageError, load_image
from demo_core.search.builder import build_index
from demo_core.registry import ASSETS, resolve_clip_spec
from demo_core.search.index import ImageIndex, IndexProblem
from demo_core.search.query import image_query_vector, parse_query, text_query_vector, thumbnail

try:  # Hugging Face ZeroGPU: a GPU is attached only while a decorated function runs
    import spaces

    gpu = spaces.GPU
except ImportError:  # everywhere else: a no-op

    def gpu(fn=None, **_kwargs):
        return fn if fn is not None else (lambda f: f)

EXAMPLES = ASSETS / "examples"
FRAME_INTERVAL_S = 0.25  # streamed frames at most 4 a second: each costs encoding and a transfer
BUNDLED_INDEX = ASSETS / "gallery" / "index"
BUNDLED_GALLERY = ASSETS / "gallery" / "images"
ZERO_SHOT_EXAMPLES = [
    ("cat.png", "cat, dog, car, tree, pizza"),
    ("dog.png", "cat, dog, bird, fish"),
    ("automobile.png", "car, bus, train, boat, bicycle"),
    ("palm_tree.png", "tree, flower, house, sun"),
    ("train.png", "train, car, airplane, boat"),
    ("bird.png", "bird, cat, fish, monkey"),
]
FORMULA = r"""
**What it computes** (the lecture's *create dataset classifier from label text*):
each label becomes prompts from the templates, e.g. `a photo of a {label}`; their text embeddings
are L2-normalised, averaged over templates and normalised again (prompt ensembling, CLIP paper §3.1.4).
Then $p(\text{label}\mid\text{image}) = \operatorname{softmax}_\text{labels}\big(e^{t}\cdot\cos(I_e, T_e)\big)$,
where $e^{t}$ is the model's learned logit scale (inverse temperature, at most 100).
"""


CLIP_PSEUDOCODE = """I_e = l2_normalize(I_f, axis=1)          # image embeddings (B, D)
T_e = l2_normalize(T_f, axis=1)          # caption embeddings (B, D)
logits = np.dot(I_e, T_e.T) * np.exp(t)  # (B, B); exp(t) = 1/τ ≤ 100
labels = np.arange(n)                    # right answers: the diagonal
loss_i = cross_entropy_loss(logits, labels, axis=0)
loss_t = cross_entropy_loss(logits, labels, axis=1)
loss = (loss_i + loss_t) / 2
"""
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


class Lab:
    """The engine objects the UI talks to: device, CLIP model and why it was chosen."""

    def __init__(self, clip_spec: str | None = None, device: str | None = None, indexes: list[str] | None = None,
                 background: bool = False):
        """Pick the device and the CLIP spec now (fast: a hub probe times out in seconds), then load the
        models once: in a background thread when `background` (the UI comes up at once and shows
        progress), else before returning. Requests wait for what they need; nothing loads per request."""
        self.device = pick_device(device)
        self.resolution = resolve_clip_spec(clip_spec)
        self.index_folders: dict[str, Path | None] = {}
        if (BUNDLED_INDEX / "meta.sqlite").exists():
            self.index_folders["bundled gallery"] = None  # settled once the CLIP is loaded
        for folder in indexes or []:
            self.index_folders[str(folder)] = Path(folder)
        self._indexes: dict[str, ImageIndex] = {}
        self._ddpms: dict = {}
        self._ddpm_lock = threading.Lock()
        self._stop: dict[str, threading.Event] = {}
        self._gallery_pairs = None
        self._clip: ClipModel | None = None
        self._clip_ready, self._ready = threading.Event(), threading.Event()
        self.load_error: str | None = None
        self.loading = "starting"
        self.load_log: list[str] = []
        self._t0 = time.time()
        if background:
            threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        else:
            self._load()
            if self.load_error:
                raise ValueError(self.load_error)

    def _load(self) -> None:
        def mark(what: str):
            self.load_log.append(f"{what} ({time.time() - self._t0:.1f} s)")

        try:
            self.loading = f"loading the CLIP model {self.resolution.spec.spec}"
            self._clip = ClipModel.load(self.resolution, self.device)
            mark(f"CLIP {self._clip.name} loaded")
        except Exception as e:  # noqa: BLE001 - shown in the status panel and on every request
            self.load_error = f"The CLIP model could not be loaded: {e}"
        finally:
            self._clip_ready.set()
        try:
            if self._clip is not None and "bundled gallery" in self.index_folders:
                self.loading = "preparing the bundled gallery's index"
                folder = self._bundled_gallery_index()
                if folder:
                    self.index_folders["bundled gallery"] = folder
                    mark("gallery index ready")
            for name in available_ddpms():
                if name in BUNDLED_DDPMS:
                    self.loading = f"loading the DDPM {name}"
                    self._ddpm(name)
                    mark(f"DDPM {name} loaded")
            self.loading = "reading the gallery's image–caption pairs"
            self._gallery_pairs = clip_matrix.gallery_pairs()
        except Exception as e:  # noqa: BLE001 - the CLIP tabs still work; say what failed
            self.load_log.append(f"⚠️ {e}")
        finally:
            self.loading = ""
            self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def clip(self) -> ClipModel:
        """The loaded CLIP; waits while it is still loading."""
        if not self._clip_ready.wait(timeout=900):
            raise gr.Error("The CLIP model is still loading; try again in a moment.")
        if self._clip is None:
            raise gr.Error(self.load_error or "The CLIP model is not loaded.")
        return self._clip

    def _bundled_gallery_index(self) -> Path | None:
        """The prebuilt gallery index when it matches the active model; otherwise the gallery is
        embedded once with the active model into a cache folder (incremental on later starts)."""
        if not (BUNDLED_INDEX / "meta.sqlite").exists():
            return None
        idx = ImageIndex(BUNDLED_INDEX, readonly=True)
        try:
            idx.check_model(self.clip.spec.spec, self.clip.embed_dim)
            return BUNDLED_INDEX
        except IndexProblem:
            pass
        finally:
            idx.close()
        safe = "".join(c if c.isalnum() else "-" for c in self.clip.spec.spec)
        cache = Path(os.environ.get("DEMO_CACHE", Path(tempfile.gettempdir()) / "clip-lab")) / f"gallery-{safe}"
        print(f"embedding the bundled gallery with {self.clip.name} into {cache} …", flush=True)
        build_index(BUNDLED_GALLERY, cache, self.clip)
        return cache

    # --- search -----------------------------------------------------------------------------
    def index(self, name: str) -> ImageIndex:
        self._ready.wait(timeout=900)  # the bundled gallery's folder is settled by the loader
        if name not in self.index_folders or self.index_folders[name] is None:
            raise gr.Error(f"Unknown index '{name}'. Choose one of: {', '.join(self.index_folders) or 'none'}.")
        if name not in self._indexes:
            try:
                self._indexes[name] = ImageIndex(self.index_folders[name], readonly=True)
            except IndexProblem as e:
                raise gr.Error(str(e)) from None
        idx = self._indexes[name]
        try:
            idx.check_model(self.clip.spec.spec, self.clip.embed_dim)
        except IndexProblem as e:
            raise gr.Error(str(e)) from None
        return idx

    def index_stats(self, name: str) -> str:
        if not name:
            return "No index loaded: build one with `python index_builder DIR` and start the app with `--index`."
        if name in self.index_folders and self.index_folders[name] is None:
            return "⏳ the bundled gallery's index is being prepared…" if not self.ready else \
                "⚠️ the bundled gallery's index is not available."
        try:
            idx = self._indexes.get(name) or ImageIndex(self.index_folders[name], readonly=True)
            self._indexes[name] = idx
            st = idx.stats()
        except (IndexProblem, KeyError) as e:
            return f"⚠️ {e}"
        return (f"**{st['count']}** images · model **{st['model']}** ({st['dim']}-d) · index {st['index_type']} "
                f"· recall@10 vs exact {st['recall_at_10']} · collection `{st['root']}`")

    def _gallery(self, idx: ImageIndex, hits) -> tuple[list, list[int]]:
        items = []
        for h in hits:
            try:
                items.append((str(thumbnail(idx, h)), f"{Path(h.path).name} · {h.score:.3f}"))
            except (IndexProblem, ImageError, OSError):
                continue  # a file deleted since indexing: left out, not an error
        return items, [h.id for h in hits]

    def search(self, query: str, index_name: str, k: int):
        """Text search (with arithmetic: `cat + 2:dog - grass`). Returns (gallery, details, hit ids)."""
        try:
            terms = parse_query(query)
        except InputError as e:
            raise gr.Error(str(e)) from None
        idx = self.index(index_name)
        hits = idx.search(text_query_vector(self.clip, terms), int(k))
        items, ids = self._gallery(idx, hits)
        shown = " ".join(f"{'+' if t.weight >= 0 else '−'} {abs(t.weight):g}·“{t.text}”" for t in terms).lstrip("+ ")
        return items, f"query vector = normalise({shown}) · {len(items)} results from {index_name}", ids

    def search_image(self, image, index_name: str, k: int):
        """Image search: the images nearest to an uploaded one. Returns (gallery, details, hit ids)."""
        try:
            vec = image_query_vector(self.clip, _file_path(image))
        except ImageError as e:
            raise gr.Error(str(e)) from None
        idx = self.index(index_name)
        items, ids = self._gallery(idx, idx.search(vec, int(k)))
        return items, f"{len(items)} images nearest to the uploaded one, from {index_name}", ids

    # --- diffusion: forward explorer ------------------------------------------------------------
    def forward(self, image, t: int, schedule: str, T: int, seed: int = 0):
        """x_t of the image at step t, strips over t for both schedules, and the schedule curves."""
        try:
            pil = load_image(_file_path(image))
        except ImageError as e:
            raise gr.Error(str(e)) from None
        T = int(T)
        if not 2 <= T <= 10_000:
            raise gr.Error("T must be between 2 and 10000.")
        t = max(0, min(int(t), T))
        try:
            s = Schedule.make(schedule, T)
        except ValueError as e:
            raise gr.Error(str(e)) from None
        x0 = forward_view.to_model_range(pil)
        xt = forward_view.to_image(forward_view.noisy(x0, s, t, int(seed)))
        ab = float(s.alpha_bars[t])
        info = (f"**{schedule}**, T = {T}, t = {t}: ᾱ_t = {ab:.4f} · signal √ᾱ_t = {ab ** 0.5:.3f} · "
                f"noise √(1−ᾱ_t) = {(1 - ab) ** 0.5:.3f}" + (f" · SNR = {ab / (1 - ab):.3g}" if t else ""))
        lin = forward_view.strip(x0, Schedule.make("linear", T), int(seed))
        cos = forward_view.strip(x0, Schedule.make("cosine", T), int(seed))
        curves, snr = _forward_plots(T)
        return xt, info, lin, cos, curves, snr

    # --- diffusion: reverse process ---------------------------------------------------------------
    def _ddpm(self, name: str):
        with self._ddpm_lock:  # loaded once, by the loader thread or the first request
            if name not in self._ddpms:
                try:
                    self._ddpms[name] = load_ddpm(name, self.device)
                except ValueError as e:
                    raise gr.Error(str(e)) from None
            return self._ddpms[name]

    def stop(self, request: gr.Request):
        """The Stop button: the running sampler ends after its current step and keeps its frames."""
        self._stop.setdefault(request.session_hash or "api", threading.Event()).set()

    def sample(self, model_name: str, sampler: str, ddim_steps: int, eta: float, seed: int, n: int,
               request: gr.Request = None):
        """Stream a reverse process: x_t, ε̂ and x̂_0 per step (DDPM, DDIM, or both from one seed)."""
        model = self._ddpm(model_name)
        key = (request.session_hash if request else None) or "api"
        stop = self._stop.setdefault(key, threading.Event())
        stop.clear()
        names = ["DDPM", "DDIM"] if sampler == "DDPM vs DDIM" else [sampler]
        runs = {nm: ReverseRun(nm) for nm in names}
        gens = {nm: run_reverse(model, nm, seed=int(seed), n=int(n), ddim_steps=int(ddim_steps), eta=float(eta),
                                run=runs[nm]) for nm in names}
        note = hub_note(model)
        if note:
            gr.Info(note)
        last = {nm: None for nm in names}
        t0, shown = time.time(), 0.0
        lead = names[0]  # DDPM leads; DDIM advances when its fraction done lags behind
        try:
            for frame in gens[lead]:
                last[lead] = frame
                if len(names) == 2:
                    other = names[1]
                    while last[other] is None or (last[other].step.index + 1) / last[other].step.total < \
                            (frame.step.index + 1) / frame.step.total:
                        nxt = next(gens[other], None)
                        if nxt is None:
                            break
                        last[other] = nxt
                done = frame.step.index + 1 == frame.step.total
                if stop.is_set() or done or time.time() - shown > FRAME_INTERVAL_S:
                    shown = time.time()
                    yield self._reverse_outputs(last, names, t0, final=False)
                if stop.is_set():
                    break
        finally:
            for g in gens.values():
                g.close()
        yield self._reverse_outputs(last, names, t0, final=True, runs=runs, stopped=stop.is_set())

    def _reverse_outputs(self, last, names, t0, *, final, runs=None, stopped=False):
        a = last[names[0]]
        b = last[names[1]] if len(names) == 2 else None
        lines = []
        for nm in names:
            fr = last[nm]
            if fr is not None:
                lines.append(f"**{nm}**: t = {fr.step.t}, step {fr.step.index + 1} of {fr.step.total}")
        status = " · ".join(lines) + f" · {time.time() - t0:.1f} s"
        if final:
            status = ("⏹ stopped, frames so far kept · " if stopped else "✅ done · ") + status
        strip, gif = gr.skip(), gr.skip()
        if final and runs:
            strip = [(im, f"{nm} t={t}") for nm in names for t, im in runs[nm].kept]
            data = runs[names[0]].gif()
            if data:
                f = tempfile.NamedTemporaryFile(prefix="reverse-", suffix=".gif", delete=False)
                f.write(data)
                f.close()
                gif = f.name
        return (a.x_t if a else None, a.eps_hat if a else None, a.x0_hat if a else None,
                b.x_t if b else None, b.eps_hat if b else None, b.x0_hat if b else None, status, strip, gif)

    # --- diffusion: toy 2-D -------------------------------------------------------------------------
    def toy(self, shape: str, drawing, steps: int, seed: int):
        """Train a small ε-MLP on 2-D points live, then stream DDPM sampling as scatter plots."""
        import pandas as pd

        seed = int(seed)
        try:
            if shape == "my drawing":
                pts = toy2d.points_from_image(_drawing_gray(drawing), seed=seed)
            else:
                pts = toy2d.make_points(shape, seed=seed)
        except ValueError as e:
            raise gr.Error(str(e)) from None

        def frame(cloud, label):
            return pd.DataFrame({"x": cloud[:, 0].numpy(), "y": cloud[:, 1].numpy(), "series": label})

        fwd = pd.concat([frame(toy2d.forward_points(pts[:600], t, seed), f"t={t}")
                         for t in (0, toy2d.T_TOY // 8, toy2d.T_TOY // 4, toy2d.T_TOY)])
        data = frame(pts[:800], "data")
        model = None
        for item in toy2d.train(pts, steps=int(steps), seed=seed):
            if isinstance(item, toy2d.TrainProgress):
                yield data, fwd, f"training ε-MLP: step {item.step}/{item.steps}, loss {item.loss:.3f}"
            else:
                model = item
        for st in toy2d.sample(model, n=800, seed=seed):
            if st.index % 10 == 0 or st.t == 1:
                shown = pd.concat([data.assign(series="data"), frame(st.x_prev, f"samples (t={st.t - 1})")])
                yield shown, fwd, f"sampling: t = {st.t}, step {st.index + 1} of {st.total}"
        yield gr.skip(), gr.skip(), (f"✅ done: trained {int(steps)} steps; 800 samples from N(0, I) denoised in "
                                     f"{toy2d.T_TOY} steps (cosine schedule)")

    # --- how CLIP learns ------------------------------------------------------------------------------
    def _matrix_pairs(self, source: str, B: int, seed: int, files, captions_text: str) -> list:
        """The batch: B gallery pairs picked by seed, or the user's images with one caption per line."""
        if source != "my images":
            if self._gallery_pairs is None:
                self._gallery_pairs = clip_matrix.gallery_pairs()
            return clip_matrix.pick_pairs(self._gallery_pairs, int(B), int(seed))
        paths = [_file_path(f) for f in (files or [])]
        captions = [c.strip() for c in (captions_text or "").splitlines() if c.strip()]
        if not clip_matrix.MIN_B <= len(paths) <= clip_matrix.MAX_B:
            raise InputError(f"Upload between {clip_matrix.MIN_B} and {clip_matrix.MAX_B} images "
                             f"(you gave {len(paths)}).")
        if len(captions) != len(paths):
            raise InputError(f"Type one caption per line, one for each image: {len(paths)} images but "
                             f"{len(captions)} captions.")
        if len(set(captions)) != len(captions):
            raise InputError("Two captions are the same; each image needs its own caption.")
        return [clip_matrix.Pair(load_image(p), c, Path(p).name) for p, c in zip(paths, captions)]

    def clip_matrix(self, source: str, B: int, seed: int, files, captions_text: str, temperature: float,
                    shuffle: int):
        """The B×B matrix of one batch under the loaded CLIP: cosines, both softmaxes and the loss."""
        try:
            pairs = self._matrix_pairs(source, B, seed, files, captions_text)
        except (InputError, ImageError, ValueError) as e:
            raise gr.Error(str(e)) from None
        order = clip_matrix.caption_order(len(pairs), int(shuffle or 0))
        captions = [pairs[j].caption for j in order]
        images = [p.image for p in pairs]
        scale = 1.0 / float(temperature) if temperature and temperature > 0 else self.clip.logit_scale
        m = clip_matrix.batch_matrix(self.clip.encode_images(images), self.clip.encode_texts(captions), scale)
        thumbs = [im.copy() for im in images]
        cos = clip_matrix.render_heatmap(m.cosine, thumbs, captions, "cosine similarity cos(I_e[i], T_e[j])")
        rows = clip_matrix.render_heatmap(m.p_image_to_text, thumbs, captions,
                                          "image → text: softmax along each row", 0.0, 1.0)
        cols = clip_matrix.render_heatmap(m.p_text_to_image, thumbs, captions,
                                          "text → image: softmax down each column", 0.0, 1.0)
        acc_i, acc_t = m.accuracy
        state = "captions **shuffled**: the diagonal holds wrong pairs" if order != list(range(len(pairs))) \
            else "captions in order: the diagonal holds the true pairs"
        summary = (f"**B = {m.B}** ({state}) · temperature τ = {1 / m.logit_scale:.4f}, "
                   f"exp(t) = {m.logit_scale:.2f}\n\n"
                   f"| | value |\n|---|---|\n| loss_i (image → text, over rows) | {m.loss_i:.4f} |\n"
                   f"| loss_t (text → image, over columns) | {m.loss_t:.4f} |\n"
                   f"| **loss = (loss_i + loss_t) / 2** | **{m.loss:.4f}** |\n"
                   f"| chance level, log B | {math.log(m.B):.4f} |\n"
                   f"| rows whose top caption is their own | {acc_i:.0%} |\n"
                   f"| columns whose top image is their own | {acc_t:.0%} |")
        return cos, rows, cols, summary

    def clip_train_live(self, source: str, B: int, seed: int, files, captions_text: str, steps: int):
        """Train a tiny CLIP from scratch and stream the shown batch's image→text matrix and the loss."""
        import pandas as pd

        try:
            pairs = self._matrix_pairs(source, B, seed, files, captions_text)
        except (InputError, ImageError, ValueError) as e:
            raise gr.Error(str(e)) from None
        if self._gallery_pairs is None:
            self._gallery_pairs = clip_matrix.gallery_pairs()
        thumbs = [p.image.copy() for p in pairs]
        captions = [p.caption for p in pairs]
        curve, t0 = [], time.perf_counter()
        for f in clip_matrix.train_live(pairs, self._gallery_pairs, steps=int(steps), seed=int(seed)):
            curve += [{"step": f.step, "loss": f.loss, "series": "training batch"},
                      {"step": f.step, "loss": f.matrix.loss, "series": "the shown pairs"}]
            heat = clip_matrix.render_heatmap(f.matrix.p_image_to_text, thumbs, captions,
                                              f"tiny CLIP after {f.step} steps: softmax along each row", 0.0, 1.0)
            done = int(20 * f.step / f.steps)
            yield (heat, pd.DataFrame(curve),
                   f"{'▓' * done}{'░' * (20 - done)} step {f.step}/{f.steps} · batch loss {f.loss:.3f} · "
                   f"shown pairs' loss {f.matrix.loss:.3f} · {time.perf_counter() - t0:.0f} s")

    def more_like(self, ids: list[int], index_name: str, k: int, evt: gr.SelectData):
        """Clicking a result searches with that image's stored vector ("more like this")."""
        if not ids or evt.index is None or evt.index >= len(ids):
            raise gr.Error("Click one of the results first.")
        idx = self.index(index_name)
        vec = idx.embedding(ids[evt.index])
        items, new_ids = self._gallery(idx, idx.search(vec, int(k)))
        return items, f"more like result #{evt.index + 1} · {len(items)} results", new_ids

    def status_markdown(self) -> str:
        line = (f"**CLIP model:** {self.resolution.reason} · **device:** {self.device.describe()} "
                f"({self.device.reason})")
        if self.load_error:
            return f"⚠️ {self.load_error} · " + line
        if not self.ready:
            return f"⏳ {self.loading or 'loading'}… ({time.time() - self._t0:.0f} s) · " + line
        return line

    def status_panel(self) -> str:
        """Device, models and why, indexes, and versions: what a bug report needs."""
        import platform
        from importlib.metadata import PackageNotFoundError, version

        def ver(pkg):
            try:
                return version(pkg)
            except PackageNotFoundError:
                return "not installed"

        clip = self._clip
        lines = ["| | |", "|---|---|",
                 f"| device | {self.device.describe()}: {self.device.reason} |",
                 f"| CLIP model | {clip.name if clip else '(loading)'}: {self.resolution.reason} |"]
        if clip:
            lines.append(f"| CLIP details | {clip.embed_dim}-d embeddings, {clip.image_size}px input, "
                         f"learned exp(t) = {clip.logit_scale:.2f} |")
        ddpms = ", ".join(f"{m.display} (T={m.T}, {m.schedule})" for m in self._ddpms.values()) or "none loaded yet"
        lines.append(f"| diffusion models | {ddpms}; offered: {', '.join(available_ddpms())} |")
        for name, folder in self.index_folders.items():
            lines.append(f"| index: {name} | {self.index_stats(name) if folder else '(being prepared)'} |")
        state = ("loaded" if self.ready else f"loading: {self.loading}") + \
            (f" · {'; '.join(self.load_log)}" if self.load_log else "")
        lines.append(f"| startup | {state} |")
        lines.append(f"| versions | Python {platform.python_version()} · torch {ver('torch')} · "
                     f"open_clip {ver('open_clip_torch')} · diffusers {ver('diffusers')} · gradio {ver('gradio')} "
                     f"· faiss {ver('faiss-cpu')} · spaces {ver('spaces')} |")
        return "\n".join(lines)

    def refresh_status(self):
        """Timer tick while loading: update the status line and panel, then stop ticking."""
        return self.status_markdown(), self.status_panel(), gr.Timer(active=not self.ready)

    def classify(self, image, labels_text: str, templates_text: str, ensemble: bool):
        """Zero-shot classify one image. Returns (label probabilities, table rows, details)."""
        try:
            pil = load_image(_file_path(image))
            labels, notes = parse_labels(labels_text)
            templates = parse_templates(templates_text)
        except (ImageError, InputError) as e:
            raise gr.Error(str(e)) from None
        for note in notes:
            gr.Warning(note)
        res = self.clip.zero_shot(pil, labels, templates, ensemble=ensemble)
        order = sorted(range(len(labels)), key=lambda i: -res.probs[i])
        rows = [[res.labels[i], round(res.cosines[i], 4), round(res.probs[i], 4)] for i in order]
        used = res.templates if len(res.templates) <= 3 else res.templates[:3] + ["…"]
        details = (
            f"logit scale e^t = **{res.logit_scale:.2f}** (temperature {res.temperature:.4f}) · "
            f"{len(labels)} labels × {len(res.templates)} template(s): {', '.join(f'`{t}`' for t in used)} · "
            f"model: {self.clip.name}"
        )
        if notes:
            details += "\n\n" + " ".join(notes)
        return {res.labels[i]: res.probs[i] for i in order}, rows, details


FORWARD_FORMULA = r"""
**Forward process** (closed form): $$x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\quad
\epsilon\sim\mathcal N(0, I),\quad \bar\alpha_t=\prod_{i=1}^{t}(1-\beta_i)$$
Linear: $\beta_t$ from $10^{-4}$ to $0.02$. Cosine (Nichol & Dhariwal): $\bar\alpha(t)=\cos^2\!\big(\tfrac{t/T+s}{1+s}\tfrac{\pi}{2}\big)$,
$s=0.008$, $\beta_t\le 0.999$. Note the square root on the noise term: some slides write $(1-\bar\alpha_t)\epsilon$,
which would add too little noise. SNR$(t)=\bar\alpha_t/(1-\bar\alpha_t)$.
"""


def _forward_plots(T: int):
    import pandas as pd

    df = pd.DataFrame(forward_view.curves(int(T)))
    snr = df["curve"].str.startswith("log10")
    return df[~snr], df[snr]


def _drawing_gray(value):
    """A Sketchpad value (dict with a 'composite' RGBA array) -> greyscale (H, W); strokes are dark."""
    import numpy as np

    img = value.get("composite") if isinstance(value, dict) else value
    if img is None:
        raise ValueError("Draw a shape first (or pick one of the named distributions).")
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[2] == 4:  # transparent canvas: strokes are where alpha is
        return np.where(arr[..., 3] > 0, arr[..., :3].mean(-1), 255.0)
    return arr.mean(-1) if arr.ndim == 3 else arr


def _file_path(value):
    """An image input arrives as gradio's file payload (dict) when preprocessing is off."""
    if isinstance(value, dict):
        return value.get("path")
    return value


def build_demo(lab: Lab) -> gr.Blocks:
    with gr.Blocks(title="CLIP & Diffusion Lab") as demo:
        gr.Markdown("# CLIP & Diffusion Lab\nSee how CLIP and diffusion models work, on your own images.")
        status_line = gr.Markdown(lab.status_markdown(), elem_id="status-line")
        with gr.Accordion("Status: device, models, index, versions", open=False):
            status_panel = gr.Markdown(lab.status_panel(), elem_id="status-panel")
        ticker = gr.Timer(1.0, active=not lab.ready)
        ticker.tick(lab.refresh_status, None, [status_line, status_panel, ticker], api_visibility="private",
                    show_progress="hidden")
        demo.load(lab.refresh_status, None, [status_line, status_panel, ticker], api_visibility="private",
                  show_progress="hidden")
        with gr.Tab("Zero-shot labels", id="zero-shot"):
            with gr.Row():
                with gr.Column():
                    image = gr.Image(label="Image", type="filepath", sources=["upload", "webcam", "clipboard"],
                                     elem_id="zs-image")
                    labels = gr.Textbox(label="Labels (comma or new line between them)", value="cat, dog, car",
                                        lines=2, elem_id="zs-labels")
                    with gr.Accordion("Prompt templates", open=False):
                        templates = gr.Textbox(label="One template per line; {} is where the label goes",
                                               value="\n".join(DEFAULT_TEMPLATES), lines=6, elem_id="zs-templates")
                        ensemble = gr.Checkbox(label="Ensemble: average over all templates "
                                                     "(off: first template only)", value=True)
                    run = gr.Button("Classify", variant="primary", elem_id="zs-run")
                with gr.Column():
                    probs = gr.Label(label="Probabilities", num_top_classes=10, elem_id="zs-probs")
                    table = gr.Dataframe(headers=["label", "cosine", "probability"], label="Raw scores",
                                         interactive=False)
                    details = gr.Markdown()
            gr.Markdown(FORMULA, latex_delimiters=LATEX)
            examples = [[str(EXAMPLES / f), lab_] for f, lab_ in ZERO_SHOT_EXAMPLES if (EXAMPLES / f).exists()]
            if examples:
                gr.Examples(examples, inputs=[image, labels], label="Examples (held-out emoji the model never saw)",
                            fn=lambda im, lb: lab.classify(im, lb, "\n".join(DEFAULT_TEMPLATES), True),
                            outputs=[probs, table, details], cache_examples=True, cache_mode="lazy",
                            api_visibility="private")
            run.click(gpu(lab.classify), [image, labels, templates, ensemble], [probs, table, details],
                      api_name="classify", preprocess=False)
        with gr.Tab("Search", id="search"):
            names = list(lab.index_folders)
            with gr.Row():
                index_pick = gr.Dropdown(names, value=names[0] if names else None, label="Index", scale=2,
                                         elem_id="s-index")
                k = gr.Slider(1, 48, value=12, step=1, label="Results", scale=1)
            stats = gr.Markdown(lab.index_stats(names[0]) if names else lab.index_stats(""))
            with gr.Row():
                with gr.Column(scale=3):
                    query = gr.Textbox(label="Text query (arithmetic: cat + 2:dog - grass)", value="cat and dog",
                                       elem_id="s-query")
                    search_btn = gr.Button("Search", variant="primary", elem_id="s-run")
                with gr.Column(scale=2):
                    qimage = gr.Image(label="…or search by image", type="filepath", height=160,
                                      sources=["upload", "clipboard"], elem_id="s-image")
                    image_btn = gr.Button("Search by image", elem_id="s-run-image")
            s_details = gr.Markdown()
            results = gr.Gallery(label="Results (click one for more like it)", columns=6, height="auto",
                                 elem_id="s-results")
            hit_ids = gr.State([])
            index_pick.change(lab.index_stats, index_pick, stats, api_visibility="private")
            demo.load(lambda name: (lab._ready.wait(900), lab.index_stats(name))[1], index_pick, stats,
                      api_visibility="private", show_progress="hidden")
            search_btn.click(gpu(lab.search), [query, index_pick, k], [results, s_details, hit_ids], api_name="search")
            query.submit(lab.search, [query, index_pick, k], [results, s_details, hit_ids], api_visibility="private")
            image_btn.click(gpu(lab.search_image), [qimage, index_pick, k], [results, s_details, hit_ids],
                            api_name="search_image", preprocess=False)
            results.select(lab.more_like, [hit_ids, index_pick, k], [results, s_details, hit_ids], api_visibility="private")
        with gr.Tab("Diffusion step by step", id="diffusion"):
            gr.Markdown("### Forward process: watch noise destroy an image\nPick an image, then drag *t*.")
            with gr.Row():
                with gr.Column(scale=2):
                    f_image = gr.Image(label="Image", type="filepath", sources=["upload", "webcam", "clipboard"],
                                       value=str(EXAMPLES / "cat.png") if (EXAMPLES / "cat.png").exists() else None,
                                       elem_id="f-image", height=256)
                    f_sched = gr.Radio(["linear", "cosine"], value="linear", label="Schedule")
                    f_T = gr.Slider(10, 4000, value=1000, step=10, label="T (number of steps)")
                    f_t = gr.Slider(0, 1000, value=250, step=1, label="t", elem_id="f-t")
                    f_run = gr.Button("Show x_t", variant="primary", elem_id="f-run")
                with gr.Column(scale=2):
                    f_xt = gr.Image(label="x_t", interactive=False, elem_id="f-xt", height=256)
                    f_info = gr.Markdown(elem_id="f-info")
                    gr.Markdown(FORWARD_FORMULA, latex_delimiters=LATEX)
            f_lin = gr.Gallery(label="linear schedule: x_t across t", columns=7, height=200, elem_id="f-lin")
            f_cos = gr.Gallery(label="cosine schedule: x_t across t", columns=7, height=200, elem_id="f-cos")
            with gr.Row():
                f_plot = gr.LinePlot(x="t", y="value", color="curve", label="ᾱ_t, signal and noise", height=300)
                f_snr = gr.LinePlot(x="t", y="value", color="curve", label="log10 SNR(t)", height=300)
            f_inputs = [f_image, f_t, f_sched, f_T]
            f_outputs = [f_xt, f_info, f_lin, f_cos, f_plot, f_snr]
            f_run.click(lab.forward, f_inputs, f_outputs, api_name="forward", preprocess=False)
            f_t.release(lab.forward, f_inputs, f_outputs, api_visibility="private", preprocess=False)
            f_sched.change(lab.forward, f_inputs, f_outputs, api_visibility="private", preprocess=False)
            f_T.release(lambda T, t: gr.Slider(maximum=int(T), value=min(int(t), int(T))), [f_T, f_t], f_t,
                        api_visibility="private").then(lab.forward, f_inputs, f_outputs, api_visibility="private",
                                                       preprocess=False)
            gr.Markdown("### Reverse process: denoise pure noise into an image, step by step\n"
                        "DDPM runs Algorithm 2 for t = T … 1; DDIM takes a shorter, deterministic path (η = 0). "
                        "Each step the model predicts the noise ε̂; from it follow the clean estimate "
                        "$\\hat x_0$ and $x_{t-1}$.", latex_delimiters=LATEX)
            models = available_ddpms()
            with gr.Row():
                r_model = gr.Dropdown(models, value=models[0] if models else None, label="Model", scale=2)
                r_sampler = gr.Radio(["DDPM", "DDIM", "DDPM vs DDIM"], value="DDIM", label="Sampler", scale=2)
                r_steps = gr.Slider(5, 250, value=50, step=5, label="DDIM steps", scale=1)
                r_eta = gr.Slider(0, 1, value=0, step=0.1, label="DDIM η", scale=1)
                r_seed = gr.Number(0, precision=0, label="Seed", scale=1)
                r_n = gr.Slider(1, 8, value=4, step=1, label="Images", scale=1)
            with gr.Row():
                r_run = gr.Button("Sample", variant="primary", elem_id="r-run")
                r_stop = gr.Button("Stop", variant="stop", elem_id="r-stop")
            r_status = gr.Markdown(elem_id="r-status")
            with gr.Row():
                r_xt = gr.Image(label="x_t (first sampler)", interactive=False, format="jpeg", elem_id="r-xt")
                r_eps = gr.Image(label="predicted noise ε̂", interactive=False, format="jpeg")
                r_x0 = gr.Image(label="predicted clean x̂₀", interactive=False, format="jpeg")
            with gr.Row():
                r_xt2 = gr.Image(label="x_t (DDIM, when comparing)", interactive=False, format="jpeg")
                r_eps2 = gr.Image(label="ε̂ (DDIM)", interactive=False, format="jpeg")
                r_x02 = gr.Image(label="x̂₀ (DDIM)", interactive=False, format="jpeg")
            r_strip = gr.Gallery(label="Timeline: x_t as it was denoised (scroll to scrub)", columns=10, height=220,
                                 elem_id="r-strip")
            r_gif = gr.File(label="Download the run as a GIF", height=80)
            run_event = r_run.click(gpu(lab.sample), [r_model, r_sampler, r_steps, r_eta, r_seed, r_n],
                                    [r_xt, r_eps, r_x0, r_xt2, r_eps2, r_x02, r_status, r_strip, r_gif],
                                    api_name="sample")
            r_stop.click(lab.stop, None, None, api_visibility="private")
            gr.Markdown("### Toy 2-D diffusion: train a model live and watch points denoise\n"
                        "A small MLP learns ε̂(x_t, t) for 2-D points in seconds (Algorithm 1); then 800 points "
                        "of pure noise are pulled back onto the shape (Algorithm 2). Right: the forward process "
                        "on the same points.")
            with gr.Row():
                with gr.Column(scale=1):
                    d_shape = gr.Radio(["swiss roll", "two moons", "rings", "my drawing"], value="two moons",
                                       label="Distribution")
                    d_draw = gr.Sketchpad(label="Draw a shape (for 'my drawing')", type="numpy", height=220)
                    d_steps = gr.Slider(200, 4000, value=1500, step=100, label="Training steps")
                    d_seed = gr.Number(0, precision=0, label="Seed")
                    d_run = gr.Button("Train and sample", variant="primary", elem_id="d-run")
                with gr.Column(scale=2):
                    d_status = gr.Markdown(elem_id="d-status")
                    with gr.Row():
                        d_plot = gr.ScatterPlot(x="x", y="y", color="series", label="data and samples",
                                                height=360, x_lim=[-2.5, 2.5], y_lim=[-2.5, 2.5])
                        d_fwd = gr.ScatterPlot(x="x", y="y", color="series", label="forward process q(x_t | x_0)",
                                               height=360, x_lim=[-3, 3], y_lim=[-3, 3])
            d_run.click(lab.toy, [d_shape, d_draw, d_steps, d_seed], [d_plot, d_fwd, d_status], api_name="toy2d")
        with gr.Tab("How CLIP learns", id="clip-learns"):
            gr.Markdown("### One batch of B image–caption pairs, scored every way at once\n"
                        "Row *i* is image *i* against every caption; column *j* is caption *j* against every "
                        "image. The B true pairs sit on the diagonal (red boxes), the B²−B wrong ones off it. "
                        "Training pushes the diagonal up and everything else down.")
            with gr.Row():
                with gr.Column(scale=1):
                    m_source = gr.Radio(["gallery", "my images"], value="gallery", label="Pairs from",
                                        elem_id="m-source")
                    m_B = gr.Slider(clip_matrix.MIN_B, clip_matrix.MAX_B, value=8, step=1, label="B (gallery pairs)")
                    m_seed = gr.Number(0, precision=0, label="Seed (which gallery pairs)")
                    with gr.Accordion("My images and captions", open=False):
                        m_files = gr.File(label="Images (2–16)", file_count="multiple", file_types=["image"],
                                          elem_id="m-files")
                        m_caps = gr.Textbox(label="Captions, one per line, in the same order", lines=4,
                                            elem_id="m-caps")
                    m_temp = gr.Slider(0.01, 1.0, value=round(1 / lab._clip.logit_scale, 4) if lab._clip else 0.03,
                                       step=0.001,
                                       label="Temperature τ = 1 / exp(t) (the model's learned value to start)")
                    m_shuffle = gr.Number(0, precision=0, visible=False)
                    with gr.Row():
                        m_run = gr.Button("Show the matrix", variant="primary", elem_id="m-run")
                        m_shuffle_btn = gr.Button("Shuffle captions", elem_id="m-shuffle")
                        m_order_btn = gr.Button("Put captions back", elem_id="m-order")
                with gr.Column(scale=1):
                    m_summary = gr.Markdown(elem_id="m-summary")
                    gr.Markdown("The lecture's pseudo-code, computed exactly as written:\n```python\n"
                                + CLIP_PSEUDOCODE + "```")
            m_cos = gr.Image(label="cosine similarities", interactive=False, elem_id="m-cos", format="png")
            with gr.Row():
                m_rows = gr.Image(label="image → text (rows sum to 1)", interactive=False, format="png")
                m_cols = gr.Image(label="text → image (columns sum to 1)", interactive=False, format="png")
            demo.load(lambda: gr.Slider(value=round(1 / lab.clip.logit_scale, 4)), None, m_temp,
                      api_visibility="private", show_progress="hidden")  # the model's own τ, once loaded
            m_inputs = [m_source, m_B, m_seed, m_files, m_caps, m_temp, m_shuffle]
            m_outputs = [m_cos, m_rows, m_cols, m_summary]
            m_files.upload(lambda: "my images", None, m_source, api_visibility="private")  # uploading = using them
            m_run.click(gpu(lab.clip_matrix), m_inputs, m_outputs, api_name="clip_matrix")
            m_temp.release(lab.clip_matrix, m_inputs, m_outputs, api_visibility="private")
            m_shuffle_btn.click(lambda k: int(k or 0) + 1, m_shuffle, m_shuffle, api_visibility="private").then(
                lab.clip_matrix, m_inputs, m_outputs, api_visibility="private")
            m_order_btn.click(lambda: 0, None, m_shuffle, api_visibility="private").then(
                lab.clip_matrix, m_inputs, m_outputs, api_visibility="private")
            gr.Markdown("### Train a tiny CLIP live\nA tiny CLIP (4.6 M parameters, 3.2 M of them its token-embedding table) starts from random weights and "
                        "learns from the gallery's pairs with the loss above (AdamW, 32×32 images). Every "
                        "training batch holds the pairs shown above plus random others, so you can watch "
                        "their matrix turn diagonal while the loss falls.")
            with gr.Row():
                m_steps = gr.Slider(50, 600, value=300, step=50, label="Training steps")
                m_train = gr.Button("Train a tiny CLIP", variant="primary", elem_id="m-train")
            m_status = gr.Markdown(elem_id="m-status")
            with gr.Row():
                m_live = gr.Image(label="the shown pairs, as the tiny CLIP sees them", interactive=False,
                                  elem_id="m-live", format="png")
                m_curve = gr.LinePlot(x="step", y="loss", color="series", label="contrastive loss", height=360)
            m_train.click(gpu(lab.clip_train_live), [m_source, m_B, m_seed, m_files, m_caps, m_steps],
                          [m_live, m_curve, m_status], api_name="clip_train")
    return demo


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="CLIP & Diffusion Lab: a Gradio app that shows how CLIP and "
                                             "diffusion models work, on your own images.")
    ap.add_argument("--clip-model", default=None,
                    help="CLIP spec: ViT-B-32/openai (default), hf-hub:ORG/NAME, a local open_clip folder, "
                         "or mini-clip (bundled). Env: DEMO_CLIP_MODEL.")
    ap.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available). Env: DEMO_DEVICE.")
    ap.add_argument("--index", action="append", default=None, metavar="FOLDER",
                    help="an index folder made by `python index_builder` (repeatable). Env: DEMO_INDEX "
                         f"(folders separated by '{os.pathsep}'). The bundled gallery is always offered.")
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    args = ap.parse_args(argv)
    try:
        env_indexes = [p for p in os.environ.get("DEMO_INDEX", "").split(os.pathsep) if p]
        lab = Lab(args.clip_model, args.device, (args.index or []) + env_indexes, background=True)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    print(lab.status_markdown().replace("**", ""), "(models load in the background)", flush=True)
    demo = build_demo(lab)
    demo.queue(default_concurrency_limit=2).launch(server_name=args.host, server_port=args.port, show_error=True,
                                                   allowed_paths=[str(Path(EXAMPLES))])


if __name__ == "__main__":
    main()
