"""What the tabs share: the two handler wrappers, small helpers for widget values, and the formula
snippets the tabs show beside what they compute.

Every event handler is wrapped once, where it is wired:

- ``handler(fn)``: a ``UserError`` from the engine becomes a ``gr.Error`` with its message (a
  plain toast in the browser, a clear error for an API caller). Any other exception is a bug and
  stays one.
- ``model_handler(fn)``: the same, for a handler that runs a neural network; on a ZeroGPU Space it
  also gets a GPU for the call (``spaces.GPU``; a no-op where the ``spaces`` package is absent).
"""
from __future__ import annotations

import functools
import inspect
import os
import time
from typing import Callable, Iterable, Iterator

import gradio as gr

from demo_core.errors import ImageError, UserError
from demo_core.images import check_readable
from demo_core.registry import ASSETS

try:  # Hugging Face ZeroGPU: a GPU is attached only while a decorated function runs
    import spaces

    _gpu = spaces.GPU
except ImportError:  # everywhere else: a no-op

    def _gpu(fn=None, **_kwargs):
        return fn if fn is not None else (lambda f: f)

EXAMPLES = ASSETS / "examples"

# Light requests (a search over a loaded index, a classification with cached labels: tens of milliseconds)
# share one pool of LIGHT_CONCURRENCY at a time; model runs (diffusion, training) keep the app's default
# of 2 per event. DEMO_LEGACY_QUEUE=1 restores the older serving (every event 2 at a time,
# thumbnails copied into Gradio's cache on every answer), for bench/bench_load.py's before/after.
LEGACY_QUEUE = os.environ.get("DEMO_LEGACY_QUEUE") == "1"
LIGHT_CONCURRENCY = int(os.environ.get("DEMO_LIGHT_CONCURRENCY", 8))
LIGHT = {} if LEGACY_QUEUE else {"concurrency_limit": LIGHT_CONCURRENCY, "concurrency_id": "light"}
FRAME_INTERVAL_S = 0.25  # streamed frames at most 4 a second: each costs encoding and a transfer


def _save_pil_to_cache_once(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Gradio's ``processing_utils.save_pil_to_cache``, except that a file is written once, atomically.

    Gradio names the file by a hash of its bytes, then rewrites it on every call. A streamed run shows the same
    picture again and again (a frame that did not change, the same tile), so the file was truncated and rewritten
    while the browser was still fetching it: "Too little data for declared Content-Length" and a broken picture.
    Same bytes, same path: writing it again is never needed."""
    import tempfile
    from pathlib import Path

    from gradio import processing_utils

    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    path = (folder / f"{name}.{format}").resolve()
    if path.exists():
        os.utime(path)  # Gradio's cache cleaner ages files by ctime, as its save_file_to_cache does
        return str(path)
    fd, staging = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(staging, path)
    return str(path)


def write_images_once() -> None:
    """Make Gradio write each cached image file once (``_save_pil_to_cache_once``); called when the app is built."""
    from gradio import processing_utils

    processing_utils.save_pil_to_cache = _save_pil_to_cache_once


def throttled(updates: Iterable, must_show: Callable = lambda u: u.final) -> Iterator:
    """The updates worth sending to the browser: at most one every FRAME_INTERVAL_S, and every one that
    `must_show` picks (the final answer, which carries every output)."""
    shown = 0.0
    for u in updates:
        if must_show(u) or time.time() - shown > FRAME_INTERVAL_S:
            shown = time.time()
            yield u


def session_key(request) -> str | None:
    """Whose run this is, for the Stop button (None: an API call without a browser session)."""
    return request.session_hash if request else None


def stop_button(button, engine) -> None:
    """Wire a Stop button: this session's running samplers end after their current step, keeping what
    was made so far."""
    def stop(request: gr.Request):
        engine.stop(request.session_hash)

    button.click(handler(stop), None, None, api_visibility="private")
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


def handler(fn: Callable) -> Callable:
    """`fn` with a UserError turned into a gr.Error (generators stay generators, for streaming)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except UserError as e:
                raise gr.Error(str(e)) from None
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            raise gr.Error(str(e)) from None
    return call


def model_handler(fn: Callable, *, duration: int | None = None) -> Callable:
    """``handler(fn)`` that also runs on a GPU on ZeroGPU Spaces (`duration`: its time limit, s)."""
    return _gpu(handler(fn), duration=duration) if duration else _gpu(handler(fn))


FAILED = ("❌ This run failed: the reason is in the message at the top right. What is shown below is from "
          "before it.")


def says_when_it_fails(event, status) -> None:
    """When the run `event` fails, its status line says so: otherwise it kept the previous run's "✅ done"
    beside outputs marked "Error"."""
    event.failure(lambda: FAILED, None, status, api_visibility="private", show_progress="hidden")


def serve_as_is(folder) -> None:
    """Hand out the files in `folder` as they are: Gradio then neither hashes nor copies them into its
    cache on every answer. Only for a private folder of files the app made (every file in it is served)."""
    if not LEGACY_QUEUE:
        gr.set_static_paths([folder])


def drops_unreadable(image: gr.Image) -> None:
    """An uploaded or pasted file that is not an image this app can read is taken off `image`, with a warning
    saying why. Left there, the box would show a broken picture until the next upload. Only the header is read."""
    def check(value):
        path = file_path(value)
        if not path:
            return gr.skip()
        try:
            check_readable(path)
        except ImageError as e:
            gr.Warning(str(e))
            return None
        return gr.skip()

    image.upload(handler(check), image, image, api_visibility="private", preprocess=False)


def file_path(value) -> str | None:
    """An image or file input's path; with preprocessing off, Gradio passes its payload (a dict)."""
    if isinstance(value, dict):
        return value.get("path")
    return value


def seed_box(label: str = "Seed", **kwargs) -> gr.Number:
    """A seed input. Neither ``precision=0`` nor a maximum: Gradio would round a NaN or an infinity sent
    by a script and fail with its own message, or refuse 10³⁰ in its own words; the engine's
    ``check_seed`` (a whole number from 0 to MAX_SEED) says it plainly."""
    return gr.Number(0, minimum=0, step=1, label=label, **kwargs)


def markdown_table(rows: list[tuple[str, str]], *, header: tuple[str, str] = ("", ""),
                   bold: tuple[str, ...] = ()) -> str:
    """(name, value) rows as a two-column Markdown table; rows named in `bold` are bold."""
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    for name, value in rows:
        lines.append(f"| **{name}** | **{value}** |" if name in bold else f"| {name} | {value} |")
    return "\n".join(lines)


ZERO_SHOT_FORMULA = r"""
**What it computes** (the lecture's *create dataset classifier from label text*):
each label becomes prompts from the templates, e.g. `a photo of a {label}`; their text embeddings
are L2-normalised, averaged over templates and normalised again (prompt ensembling, CLIP paper §3.1.4).
Then $p(\text{label}\mid\text{image}) = \operatorname{softmax}_\text{labels}\big(e^{t}\cdot\cos(I_e, T_e)\big)$,
where $e^{t}$ is the model's learned logit scale (inverse temperature, at most 100).
"""

FORWARD_FORMULA = r"""
**Forward process** (closed form): $$x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\quad
\epsilon\sim\mathcal N(0, I),\quad \bar\alpha_t=\prod_{i=1}^{t}(1-\beta_i)$$
Linear: $\beta_t$ from $10^{-4}$ to $0.02$. Cosine (Nichol & Dhariwal): $\bar\alpha(t)=\cos^2\!\big(\tfrac{t/T+s}{1+s}\tfrac{\pi}{2}\big)$,
$s=0.008$, $\beta_t\le 0.999$. Note the square root on the noise term: some slides write $(1-\bar\alpha_t)\epsilon$,
which would add too little noise. SNR$(t)=\bar\alpha_t/(1-\bar\alpha_t)$.
"""

REVERSE_FORMULA = r"""
Each step the model predicts the noise $\hat\epsilon = \epsilon_\theta(x_t, t)$; from it follow the clean
estimate $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon)/\sqrt{\bar\alpha_t}$ and $x_{t-1}$.
**Algorithm 2 as written** (DDPM, $t = T \dots 1$):
$x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\hat\epsilon\big) + \sigma_t z$,
$z\sim\mathcal N(0, I)$ for $t > 1$, else $0$.
**Clipped $\hat x_0$** (what diffusers' schedulers do by default, `clip_sample=True`): the same step written as
the posterior mean $\tilde\mu_t(x_t, \hat x_0)$, with $\hat x_0$ clipped to $[-1, 1]$ first; identical whenever
nothing needs clipping, steadier early on when the model's estimate overshoots.
DDIM takes a shorter, deterministic path ($\eta = 0$) through the same $\hat x_0$ and $\hat\epsilon$.
With the **text-conditional** model (the default) $\hat\epsilon$ is classifier-free guided toward the prompt's
mini-CLIP embedding $c$: $\hat\epsilon = \epsilon_\theta(x_t, t, \varnothing) + w\,\big(\epsilon_\theta(x_t, t, c) -
\epsilon_\theta(x_t, t, \varnothing)\big)$ (GLIDE); the unconditional models have no prompt.
$x_T \sim \mathcal N(0, I)$, with each image's colour mean removed for the bundled emoji models: trained on drawings on white, they carry the noise's colour cast into the picture (one seed's muddy image).
"""

CLIP_PSEUDOCODE = """I_e = l2_normalize(I_f, axis=1)          # image embeddings (B, D)
T_e = l2_normalize(T_f, axis=1)          # caption embeddings (B, D)
logits = np.dot(I_e, T_e.T) * np.exp(t)  # (B, B); exp(t) = 1/τ ≤ 100
labels = np.arange(n)                    # right answers: the diagonal
loss_i = cross_entropy_loss(logits, labels, axis=0)
loss_t = cross_entropy_loss(logits, labels, axis=1)
loss = (loss_i + loss_t) / 2
"""

TEXT2IMG_FORMULA = r"""
**Text conditioning** (GLIDE): the prompt's mini-CLIP text embedding $g(c)$ goes in place of a class
embedding: a learned projection of it is added to the UNet's time embedding. Training replaces it with the
null condition $\varnothing$ (zeros) 15% of the time, so one model is both conditional and unconditional.
**Token conditioning** (GLIDE's second path, in models that have it): the text tower's last-layer token
features $h_1 \dots h_K$ are projected to the keys and values of each attention layer, and every pixel attends
over them, $\mathrm{softmax}(QK^\top/\sqrt{d})\,V$: the maps under the pieces show which word each pixel read.
$\varnothing$ covers both paths (a zero embedding and one zero token).
**Classifier-free guidance**: run the model with and without the prompt and amplify the difference,
$$\hat\epsilon = \epsilon_\theta(x_t,\varnothing) + w\,\big(\epsilon_\theta(x_t,c) - \epsilon_\theta(x_t,\varnothing)\big)$$
$w = 0$ is the unconditional model, $w = 1$ the conditional one, $w > 1$ pushes past it: the samples follow
the prompt more and vary less. (This is GLIDE's and diffusers' $w$; Ho & Salimans write $1 + w$ for it.)
A negative prompt takes the place of $\varnothing$.
$x_T \sim \mathcal N(0, I)$, with each image's colour mean removed for the bundled emoji models: trained on drawings on white, they carry the noise's colour cast into the picture (one seed's muddy image).
**CLIP guidance**: the unconditional model, steered by the gradient of a CLIP score,
$$\hat\mu = \mu_\theta(x_t) + s\,\Sigma_\theta\,\nabla_{x_t}\big(f(x_t, t)\cdot g(c)\big)$$
where $f$ is a CLIP image tower trained on *noisy* images (a plain CLIP cannot read $x_t$: see the plot) and
$g$ the text tower. DDIM has no $\Sigma$: there $\hat\epsilon \leftarrow \hat\epsilon - s\sqrt{1-\bar\alpha_t}\,\nabla$.
**The cascade** (GLIDE, unCLIP; when an upsampler is installed): a second diffusion model draws the 64×64 picture
$\epsilon_\theta(x_t, t, z_s, s)$ given the 32×32 sample, enlarged and stacked onto $x_t$ as three more channels.
In training the 32×32 image is first noised by the forward process, $z_s = \sqrt{\bar\alpha_s}\,x_{32} +
\sqrt{1-\bar\alpha_s}\,\epsilon'$ with $s \le 250$ (noise conditioning augmentation), so the upsampler learns to
redraw rather than copy; here it samples with $s = 0$, which measured best.
"""


def pictures(label: str | None = None, **kw) -> gr.Gallery:
    """A gallery that shows each picture whole: scaled to fit its cell (never cropped to a square), and as tall
    as its rows (a fixed height cut a row of wide cells: a generated heart lost its bottom). Only a gallery
    meant to be scrolled (a long timeline) passes a height."""
    kw.setdefault("height", "auto")
    kw.setdefault("fit_columns", False)  # four pictures in an eight-column gallery stay small, not page-wide
    return gr.Gallery(label=label, object_fit="contain", **kw)


def legend(colours: dict[str, str]) -> str:
    """A plot's legend as HTML under it: a Gradio plot draws its legend on one line, cut at the plot's edge
    when the series do not fit (six curves, or a phone's width); this one wraps. Give the plot the same
    ``color_map`` and ``colors_in_legend=[]``."""
    items = " ".join(f'<span style="white-space:nowrap;margin-right:1em"><span style="color:{c};font-weight:bold">'
                     f'━━</span> {name}</span>' for name, c in colours.items())
    return f'<div style="font-size:var(--text-sm);line-height:1.6">{items}</div>'


# Page-wide CSS, passed to launch(): a gallery is as tall as its pictures (Gradio keeps 320 px at least, an
# empty band under one row), and its captions wrap and are shown whole (Gradio cuts them to one line with
# an ellipsis: "cos 0…").
PAGE_CSS = """
.grid-wrap.fixed-height { min-height: 0 !important; }
.caption-label { white-space: normal !important; max-width: 100% !important; overflow-wrap: anywhere;
                 text-overflow: clip !important; line-height: 1.2; }
"""
