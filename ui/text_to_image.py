"""Text to image the GLIDE way: a text-conditional emoji DDPM with classifier-free guidance, or the
unconditional model steered by a noised CLIP (API `text2img`, and `text2img_sweep` for a guidance sweep)."""
from __future__ import annotations


import gradio as gr
import pandas as pd

from demo_core.diffusion.text2img_view import METHODS, SWEEP_SCALES, Text2ImgUpdate, noised_clip_curve, pieces_at
from demo_core.engine import Engine
from ui.common import (LATEX, TEXT2IMG_FORMULA, handler, model_handler, pictures, says_when_it_fails, seed_box,
                       session_key, stop_button, throttled)



def _status(u: Text2ImgUpdate) -> str:
    line = (f"{u.stage}: " if u.stage else "") + f"t = {u.t}, step {u.index + 1} of {u.total} · {u.elapsed_s:.1f} s"
    if u.final:
        line = ("⏹ stopped, what was made is kept · " if u.stopped else "✅ done · ") + line
    return line


def _scores(u: Text2ImgUpdate):
    if not u.clip_scores:
        return gr.skip()
    return pd.DataFrame({"t": [t for t, _ in u.clip_scores], "CLIP score": [v for _, v in u.clip_scores]})


# The scale's range follows the method: CFG's w is a few units; CLIP guidance's s multiplies a cosine's
# gradient (small per pixel), so hundreds are needed to steer (measured: bench/RESULTS.md).
SCALE_LABEL = {"cfg": "Guidance scale w (0 = unconditional, 1 = conditional)",
               "clip": "CLIP guidance scale s", "none": "Guidance scale (unused without guidance)"}
SCALE_RANGE = {"cfg": (20, 3, 0.5), "clip": (1000, 300, 10), "none": (20, 0, 0.5)}  # max, default, step


def _scale_for(method: str):
    key = METHODS.get(method, "cfg")
    maximum, value, step = SCALE_RANGE[key]
    return gr.Slider(maximum=maximum, value=value, step=step, label=SCALE_LABEL[key])


def _pairing(engine: Engine):
    """Keep the chosen guidance and model compatible: CLIP guidance needs a model whose CLIP has a noised CLIP.
    Choosing CLIP guidance switches to such a model; choosing a model without one switches to classifier-free
    guidance; each says so."""
    def on_method(method: str, model: str):
        if METHODS.get(method) != "clip" or engine.text2img_model_guides_with_clip(model):
            return gr.skip()
        able = [name for _, name in engine.text2img_models if engine.text2img_model_guides_with_clip(name)]
        if not able:
            gr.Warning("CLIP guidance needs a noised CLIP, and none is installed here.")
            return gr.skip()
        gr.Info(f"CLIP guidance: switched to the model {able[0]}, whose CLIP has a noised CLIP.")
        return able[0]

    def on_model(model: str, method: str):
        if METHODS.get(method) != "clip" or engine.text2img_model_guides_with_clip(model):
            return gr.skip()
        gr.Info(f"{model} has no noised CLIP for its CLIP: switched to classifier-free guidance.")
        return "classifier-free guidance"
    return on_method, on_model


def build(engine: Engine) -> None:
    choices = engine.text2img_models
    default_model = choices[0][1] if choices else ""

    def text2img(prompt: str, negative: str = "", method: str = "classifier-free guidance", scale: float = 3.0,
                 sampler: str = "DDIM", steps: int = 50, seed: int = 0, n: int = 4, inspect: float = 0.3,
                 upsample: bool = True, model: str = default_model, request: gr.Request = None):
        """Generate images from a prompt, streaming x_t and x̂₀; the first output is the list of images (with the
        upsampler on: each 32×32 base sample beside its 64×64 upsampled one). `model`: a name from the tab's
        model choice (pooled embedding only, or pooled + tokens with cross-attention maps)."""
        for u in throttled(engine.text2img(prompt, model=model, negative=negative, method=METHODS.get(method, method),
                                           scale=scale, sampler=sampler, steps=steps, seed=seed, n=n, inspect=inspect,
                                           upsample=bool(upsample), stop_key=session_key(request))):
            yield (list(zip(u.images, u.captions)) if u.final else gr.skip(),
                   u.x_t, u.x0_hat, u.pieces, u.attention, _scores(u), _status(u), u.kept if u.final else gr.skip())

    def reinspect(inspect: float, kept: dict):
        """The inspect slider on a finished run: its pieces and attention maps at that step, from what it kept."""
        if not kept:
            return gr.skip(), gr.skip()
        return pieces_at(kept, inspect)

    def sweep(prompt: str, method: str = "classifier-free guidance", scale: float = 3.0, sampler: str = "DDIM",
              steps: int = 50, seed: int = 0, model: str = default_model, request: gr.Request = None):
        """The same seed at guidance scales 0, 1, 2, 3, 5 and 8 side by side (CLIP guidance: multiples of the scale)."""
        method = METHODS.get(method, method)
        if method == "none":
            raise gr.Error("A guidance sweep needs guidance: choose classifier-free or CLIP guidance.")
        unit = float(scale) if method == "clip" else 1.0
        labels = [f"scale {w * unit:g}" for w in SWEEP_SCALES]
        for u in throttled(engine.text2img(prompt, model=model, method=method, scale=scale, sampler=sampler,
                                           steps=steps, seed=seed, sweep=True, stop_key=session_key(request))):
            yield ([(im, lab) for im, lab in zip(u.images, labels)] if u.final else gr.skip(), u.x_t,
                   "Sweep: " + _status(u))

    with gr.Row():
        with gr.Column(scale=3):
            gr.Markdown("### Text to image: where CLIP steers diffusion\n" + TEXT2IMG_FORMULA, latex_delimiters=LATEX)
        with gr.Column(scale=2):
            curve = noised_clip_curve()
            gr.LinePlot(pd.DataFrame(curve) if curve else None, x="t", y="accuracy", color="tower",
                        y_lim=[0, 1], label="Why a noised CLIP: held-out zero-shot accuracy of x_t over 8 shape groups "
                        "(chance 0.125)", elem_id="t2i-noised-plot")
    with gr.Row():
        prompt = gr.Textbox("a red heart", label="Prompt", elem_id="t2i-prompt", scale=3)
        negative = gr.Textbox("", label="Negative prompt (replaces ∅ in classifier-free guidance)", scale=2)
    model = gr.Radio(choices, value=default_model or None, label="Model: how the prompt enters the UNet (GLIDE's two "
                     "ways)", visible=len(choices) > 1, elem_id="t2i-model")
    with gr.Row():
        method = gr.Radio(list(METHODS), value="classifier-free guidance", label="Guidance", scale=3)
        scale = gr.Slider(0, 20, value=3, step=0.5, label=SCALE_LABEL["cfg"], elem_id="t2i-scale", scale=2)
    with gr.Row():
        sampler = gr.Radio(["DDIM", "DDPM"], value="DDIM", label="Sampler", scale=1)
        steps = gr.Slider(5, 250, value=50, step=5, label="DDIM steps", scale=1)
        seed = seed_box(scale=1)
        n = gr.Slider(1, 8, value=4, step=1, label="Images", scale=1)
        inspect = gr.Slider(0, 1, value=0.3, step=0.05, label="Inspect the step at (0 = first, 1 = last)", scale=1)
    upsample = gr.Checkbox(True, label="Upsample to 64×64: the cascade's second stage, a diffusion model conditioned on "
                           "the 32×32 sample", visible=engine.text2img_upsamples,
                           elem_id="t2i-upsample")
    with gr.Row():
        run = gr.Button("Generate", variant="primary", elem_id="t2i-run")
        run_sweep = gr.Button("Guidance sweep (0, 1, 2, 3, 5, 8)", elem_id="t2i-sweep")
        halt = gr.Button("Stop", variant="stop", elem_id="t2i-stop")
    status = gr.Markdown(elem_id="t2i-status")
    with gr.Row():
        x_t = gr.Image(label="x_t", interactive=False, format="jpeg", elem_id="t2i-xt")
        x0 = gr.Image(label="predicted clean x̂₀", interactive=False, format="jpeg")
    images = pictures(label="Generated images", columns=8, elem_id="t2i-images")
    pieces = pictures(label="Inside one step: the pieces of the guided prediction (image 1)", columns=7,
                      elem_id="t2i-pieces")
    attention = pictures(label="Cross-attention at the inspected step: which word of the prompt looked where "
                         "(image 1; each map stretched from its own least to its most)", columns=8,
                         visible=engine.text2img_model_reads_tokens(default_model), elem_id="t2i-attention")
    scores = gr.LinePlot(x="t", y="CLIP score", label="CLIP guidance: noised-CLIP score f(x_t, t)·g(c) over the run",
                         height=220)
    swept = pictures(label="Guidance sweep: one seed, rising scale", columns=6, elem_id="t2i-swept")
    method.change(handler(_scale_for), method, scale, api_visibility="private")
    model.change(handler(lambda name: gr.update(visible=engine.text2img_model_reads_tokens(name))), model, attention,
                 api_visibility="private")
    on_method, on_model = _pairing(engine)
    method.change(handler(on_method), [method, model], model, api_visibility="private")
    model.change(handler(on_model), [model, method], method, api_visibility="private")
    kept = gr.State({})  # the last run's inspectable steps (image 1), so the slider needs no new run
    generated = run.click(model_handler(text2img, duration=120),
                          [prompt, negative, method, scale, sampler, steps, seed, n, inspect, upsample, model],
                          [images, x_t, x0, pieces, attention, scores, status, kept], api_name="text2img")
    inspect.release(handler(reinspect), [inspect, kept], [pieces, attention], api_visibility="private",
                    show_progress="hidden")
    swept_run = run_sweep.click(model_handler(sweep, duration=120),
                                [prompt, method, scale, sampler, steps, seed, model],
                                [swept, x_t, status], api_name="text2img_sweep")
    for event in (generated, swept_run):
        says_when_it_fails(event, status)
    stop_button(halt, engine)
