"""Diffusion step by step: the forward process on your image (API `forward`), the reverse process
of a DDPM streamed step by step (API `sample`), and toy 2-D diffusion trained live (API `toy2d`)."""
from __future__ import annotations


import gradio as gr
import numpy as np
import pandas as pd

from demo_core.diffusion import forward_view, toy2d
from demo_core.diffusion.models import hub_note
from demo_core.diffusion.prompted import OLD_TEXT_DDPM, TEXT_DDPM
from demo_core.diffusion.reverse_view import ReverseUpdate
from demo_core.engine import SAMPLERS, Engine
from demo_core.images import load_image
from demo_core.inputs import check_seed
from ui.common import (EXAMPLES, FORWARD_FORMULA, LATEX, REVERSE_FORMULA, drops_unreadable, file_path, handler, legend,
                       model_handler, pictures, says_when_it_fails, seed_box, session_key, stop_button, throttled)

LITERAL, CLIPPED = "Algorithm 2 as written", "clip x̂₀ to [−1, 1] (DDIM: ε̂ from the clipped x̂₀)"


def forward(image, t: int, schedule: str, T: int, seed: int = 0):
    """x_t of the image at step t, strips over t for both schedules, and the schedule curves."""
    v = forward_view.explore(load_image(file_path(image)), t, schedule, T, seed)
    ab = v.alpha_bar
    info = (f"**{v.schedule}**, T = {v.T}, t = {v.t}: ᾱ_t = {ab:.4f} · signal √ᾱ_t = {ab ** 0.5:.3f} · "
            f"noise √(1−ᾱ_t) = {(1 - ab) ** 0.5:.3f}" + (f" · SNR = {ab / (1 - ab):.3g}" if v.t else ""))
    end = v.signal_at_T[v.schedule]
    if end > 0.05:  # x_T is meant to be pure noise; here it is not
        info += (f"\n\n⚠️ At T = {v.T} the {v.schedule} schedule ends at √ᾱ_T = {end:.2f}: x_T still shows the "
                 "image. DDPM's linear β range (10⁻⁴ → 0.02) was chosen for T = 1000; Improved DDPM scales it by "
                 "1000/T, and the cosine schedule reaches noise at any T (the SNR plot's last point shows it).")
    curves = pd.DataFrame(v.curves)
    snr = curves["curve"].str.startswith("log10")
    return v.x_t, info, v.strips["linear"], v.strips["cosine"], curves[~snr], curves[snr]


DEFAULT_PROMPT = "a clock"  # the judge: 0.85 of its pictures are clocks (bench/reverse_default_eval.py)
# The schedules' curves (forward_view.curves): linear dark, cosine light, one hue per quantity.
CURVE_COLOURS = {"ᾱ_t (linear)": "#1f3b73", "signal √ᾱ_t (linear)": "#c05600", "noise √(1−ᾱ_t) (linear)": "#8b1e3f",
                 "ᾱ_t (cosine)": "#7fa7dc", "signal √ᾱ_t (cosine)": "#f4a261", "noise √(1−ᾱ_t) (cosine)": "#e76f8d"}
SNR_COLOURS = {"log10 SNR(t) (linear)": "#1f3b73", "log10 SNR(t) (cosine)": "#7fa7dc"}
FWD_TIMES = (0, toy2d.T_TOY // 8, toy2d.T_TOY // 4, toy2d.T_TOY)  # the forward plot's diffusion times
FWD_COLOURS = dict(zip((f"t = {t}" for t in FWD_TIMES), ("#1f3b73", "#3d6fb6", "#7fa7dc", "#c9d9ee")))


def toy(shape: str, drawing, steps: int, seed: int):
    """Train a small ε-MLP on 2-D points live, then stream DDPM sampling as scatter plots.

    `drawing` is the canvas undecoded (bytes or a path, see ``drawing_source``): it is decoded only
    for "my drawing", and only within ``toy2d.MAX_DRAWING_PIXELS``."""
    def frame(cloud, label):
        return pd.DataFrame({"x": cloud[:, 0].numpy(), "y": cloud[:, 1].numpy(), "series": label})

    seed = check_seed(seed)
    if shape == "my drawing":
        if drawing is None:
            raise gr.Error("Draw a shape first (or pick one of the named distributions).")
        canvas = np.asarray(load_image(drawing, max_pixels=toy2d.MAX_DRAWING_PIXELS))  # strokes dark on white
        pts = toy2d.points_from_image(toy2d.drawing_to_gray(canvas), seed=seed)
    else:
        pts = toy2d.make_points(shape, seed=seed)
    # The forward cloud: the most diffused first, so that the shape (t = 0) is drawn on top of the noise.
    fwd = pd.concat([frame(toy2d.forward_points(pts[:400], t, seed), f"t = {t}") for t in reversed(FWD_TIMES)])
    data = frame(pts[:800], "data")
    # Every frame holds both series under fixed names: the browser's plot keeps the colour categories of
    # its first frame, so a series that appears later (or is renamed each frame) is never drawn. Until
    # sampling starts, "samples" are the points of pure noise that sampling will start from.
    start = frame(toy2d.start_points(800, seed), "samples")
    model, trained = None, 0
    for item in toy2d.train(pts, steps=steps, seed=seed):
        if isinstance(item, toy2d.TrainProgress):
            trained = item.steps
            yield (pd.concat([data, start]), fwd,
                   f"training ε-MLP: step {item.step}/{item.steps}, loss {item.loss:.3f} (samples: x_T, pure noise)")
        else:
            model = item
    for st in toy2d.sample(model, n=800, seed=seed):
        if st.index % 10 == 0 or st.t == 1:
            shown = pd.concat([data, frame(st.x_prev, "samples")])
            yield shown, fwd, f"sampling: samples at t = {st.t - 1}, step {st.index + 1} of {st.total}"
    yield gr.skip(), gr.skip(), (f"✅ done: trained {trained} steps; 800 samples from N(0, I) denoised in "
                                 f"{toy2d.T_TOY} steps (cosine schedule)")


def drawing_source(value, pad: gr.Sketchpad):
    """The drawing's composite canvas, undecoded: the bytes the browser sent as a blob, or the path of
    a file a script uploaded; None when there is none.

    The toy event skips Gradio's preprocessing, which would decode the background, every layer and the
    composite of whatever was sent, at any size, even when the drawing is not used (a 76 KB PNG of
    20000×20000 pixels cost 41 s and 5 GB). The browser's blobs wait in the pad until an event takes
    them, so they are taken here whether or not the drawing is used."""
    if not isinstance(value, dict):
        return None
    if value.get("id") is not None:
        blobs = pad.blob_storage.pop(value["id"], None)
        return blobs.composite if blobs is not None else None
    return file_path(value.get("composite"))


def _outputs(u: ReverseUpdate) -> tuple:
    """The nine reverse-process widgets from one update (strip and GIF only at the end)."""
    names = list(u.latest)  # the samplers, the leading one first
    a = u.latest[names[0]]
    b = u.latest[names[1]] if len(names) == 2 else None
    status = " · ".join(f"**{nm}**: t = {fr.step.t}, step {fr.step.index + 1} of {fr.step.total}"
                        for nm, fr in u.latest.items() if fr is not None) + f" · {u.elapsed_s:.1f} s"
    if u.final:
        status = ("⏹ stopped, frames so far kept · " if u.stopped else "✅ done · ") + status
    return (a.x_t if a else None, a.eps_hat if a else None, a.x0_hat if a else None,
            b.x_t if b else None, b.eps_hat if b else None, b.x0_hat if b else None, status,
            u.strip[::-1] if u.final else gr.skip(),  # newest first: the result opens the timeline, not noise
            str(u.gif) if u.final and u.gif else gr.skip())


def build(engine: Engine) -> None:
    def sample(prompt: str = DEFAULT_PROMPT, model_name: str = "", sampler: str = "DDIM", ddim_steps: int = 50,
               eta: float = 0.0, seed: int = 0, n: int = 4, x0_rule: str = CLIPPED, scale: float = 3.0,
               request: gr.Request = None):
        """Stream a reverse process: x_t, ε̂ and x̂_0 per step (DDPM, DDIM, or both from one seed). The default
        model is the text-conditional one, guided toward `prompt`; the unconditional ones ignore it."""
        model_name = model_name or (engine.reverse.models() or [""])[0]
        note = hub_note(engine.reverse.ddpm(model_name)) if model_name not in (TEXT_DDPM, OLD_TEXT_DDPM) else None  # the run encodes the prompt
        if note:
            gr.Info(note)
        for u in throttled(engine.reverse.sample(model_name, sampler, ddim_steps=ddim_steps, eta=eta, seed=seed, n=n,
                                         clip_x0=x0_rule != LITERAL, prompt=prompt, scale=scale,
                                         stop_key=session_key(request))):
            yield _outputs(u)

    gr.Markdown("### Forward process: watch noise destroy an image\nPick an image, then drag *t*.")
    with gr.Row():
        with gr.Column(scale=2):
            f_image = gr.Image(label="Image", type="filepath", sources=["upload", "webcam", "clipboard"],
                               value=str(EXAMPLES / "cat.png") if (EXAMPLES / "cat.png").exists() else None,
                               elem_id="f-image", height=256)
            drops_unreadable(f_image)
            f_sched = gr.Radio(list(forward_view.SCHEDULES), value="linear", label="Schedule")
            f_T = gr.Slider(10, 4000, value=1000, step=10, label="T (number of steps)",
                            info="the linear β range 10⁻⁴ → 0.02 was chosen for T = 1000; at small T it ends short of noise")
            f_t = gr.Slider(0, 1000, value=250, step=1, label="t", elem_id="f-t")
            f_run = gr.Button("Show x_t", variant="primary", elem_id="f-run")
        with gr.Column(scale=2):
            f_xt = gr.Image(label="x_t", interactive=False, elem_id="f-xt", height=256)
            f_info = gr.Markdown(elem_id="f-info")
            gr.Markdown(FORWARD_FORMULA, latex_delimiters=LATEX)
    f_lin = pictures(label="linear schedule: x_t across t", columns=7, elem_id="f-lin")
    f_cos = pictures(label="cosine schedule: x_t across t", columns=7, elem_id="f-cos")
    with gr.Row():
        with gr.Column():  # each plot with its legend under it
            f_plot = gr.LinePlot(x="t", y="value", color="curve", label="ᾱ_t, signal and noise", elem_id="f-plot",
                                 color_map=CURVE_COLOURS, colors_in_legend=[])
            gr.HTML(legend(CURVE_COLOURS))
        with gr.Column():
            f_snr = gr.LinePlot(x="t", y="value", color="curve", label="log10 SNR(t)", elem_id="f-snr",
                                color_map=SNR_COLOURS, colors_in_legend=[])
            gr.HTML(legend(SNR_COLOURS))
    f_in, f_out = [f_image, f_t, f_sched, f_T], [f_xt, f_info, f_lin, f_cos, f_plot, f_snr]
    fwd = handler(forward)
    f_run.click(fwd, f_in, f_out, api_name="forward", preprocess=False)
    gr.on([f_t.release, f_sched.change], fwd, f_in, f_out, api_visibility="private", preprocess=False)
    f_T.release(lambda T, t: gr.Slider(maximum=int(T), value=min(int(t), int(T))), [f_T, f_t], f_t,
                api_visibility="private").then(fwd, f_in, f_out, api_visibility="private", preprocess=False)

    gr.Markdown("### Reverse process: denoise pure noise into an image, step by step\n" + REVERSE_FORMULA,
                latex_delimiters=LATEX)
    models = engine.reverse.models()
    with gr.Row():  # the model first and wide enough for its whole name
        r_model = gr.Dropdown(models, value=models[0] if models else None, label="Model", scale=2,
                              elem_id="r-model")
        r_prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt (the text-conditional model)", scale=3,
                              elem_id="r-prompt")
        r_scale = gr.Slider(0, 10, value=3, step=0.5, scale=2, elem_id="r-scale",
                            label="Guidance scale w (0 = unconditional, 1 = conditional)")
    with gr.Row():
        r_sampler = gr.Radio(list(SAMPLERS), value="DDIM", label="Sampler", scale=2)
        r_steps = gr.Slider(5, 250, value=50, step=5, label="DDIM steps", scale=1)
        r_eta = gr.Slider(0, 1, value=0, step=0.1, label="DDIM η", scale=1)
        r_seed = seed_box(scale=1)
        r_n = gr.Slider(1, 8, value=4, step=1, label="Images", scale=1)
    r_rule = gr.Radio([LITERAL, CLIPPED], value=CLIPPED, label="x̂₀ in each step", elem_id="r-rule")
    with gr.Row():
        r_run = gr.Button("Sample", variant="primary", elem_id="r-run")
        r_stop = gr.Button("Stop", variant="stop", elem_id="r-stop")
    r_status = gr.Markdown(elem_id="r-status")
    with gr.Row():
        r_xt = gr.Image(label="x_t (first sampler)", interactive=False, format="jpeg", elem_id="r-xt")
        r_eps = gr.Image(label="predicted noise ε̂", interactive=False, format="jpeg")
        r_x0 = gr.Image(label="predicted clean x̂₀", interactive=False, format="jpeg")
    with gr.Row(visible=False) as r_second:  # only while comparing DDPM with DDIM
        r_xt2 = gr.Image(label="x_t (DDIM, when comparing)", interactive=False, format="jpeg")
        r_eps2 = gr.Image(label="ε̂ (DDIM)", interactive=False, format="jpeg")
        r_x02 = gr.Image(label="x̂₀ (DDIM)", interactive=False, format="jpeg")
    r_strip = pictures(label="Timeline, newest first: x_t from the result back to pure noise (scroll to scrub)",
                       columns=10, height=220, elem_id="r-strip")
    r_gif = gr.File(label="Download the run as a GIF", height=80, elem_id="r-gif")
    r_model.change(lambda m: [gr.Textbox(interactive=m == TEXT_DDPM), gr.Slider(interactive=m == TEXT_DDPM)],
                   r_model, [r_prompt, r_scale], api_visibility="private", show_progress="hidden")
    sampled = r_run.click(model_handler(sample), [r_prompt, r_model, r_sampler, r_steps, r_eta, r_seed, r_n, r_rule,
                                                  r_scale],
                          [r_xt, r_eps, r_x0, r_xt2, r_eps2, r_x02, r_status, r_strip, r_gif], api_name="sample")
    says_when_it_fails(sampled, r_status)
    r_sampler.change(lambda s: gr.Row(visible=s == "DDPM vs DDIM"), r_sampler, r_second, api_visibility="private",
                     show_progress="hidden")
    stop_button(r_stop, engine)

    gr.Markdown("### Toy 2-D diffusion: train a model live and watch points denoise\n"
                "A small MLP learns ε̂(x_t, t) for 2-D points in seconds (Algorithm 1); then 800 points "
                "of pure noise are pulled back onto the shape (Algorithm 2). Right: the forward process "
                "on the same points.")
    with gr.Row():
        with gr.Column(scale=1):
            d_shape = gr.Radio(["swiss roll", "two moons", "rings", "my drawing"], value="two moons",
                               label="Distribution")
            d_draw = gr.Sketchpad(label="Draw a shape (for 'my drawing')", type="numpy", height=220)
            d_steps = gr.Slider(200, toy2d.MAX_STEPS, value=1500, step=100, label="Training steps", elem_id="d-steps")
            d_seed = seed_box()
            d_run = gr.Button("Train and sample", variant="primary", elem_id="d-run")
        with gr.Column(scale=2):
            d_status = gr.Markdown(elem_id="d-status")
            with gr.Row():
                # The colours are named in the labels: the plots' own legends are cut off below the canvas.
                d_plot = gr.ScatterPlot(x="x", y="y", color="series", label="data (grey) and samples (orange)",
                                        x_lim=[-2.5, 2.5], y_lim=[-2.5, 2.5], colors_in_legend=[],
                                        color_map={"data": "#9aa5b1", "samples": "#e4572e"}, elem_id="d-plot")
                d_fwd = gr.ScatterPlot(x="x", y="y", color="series", colors_in_legend=[],
                                       label=f"forward process q(x_t | x_0): t = {', '.join(map(str, FWD_TIMES))} "
                                             "(dark → pale)", x_lim=[-3, 3], y_lim=[-3, 3],
                                       color_map=FWD_COLOURS, elem_id="d-fwd")
    def toy_run(shape: str, drawing, steps: int, seed: int):
        """Train on the chosen distribution (or the drawing), then stream sampling."""
        yield from toy(shape, drawing_source(drawing, d_draw), steps, seed)

    toy_event = d_run.click(model_handler(toy_run, duration=120), [d_shape, d_draw, d_steps, d_seed],
                            [d_plot, d_fwd, d_status], api_name="toy2d", preprocess=False)
    says_when_it_fails(toy_event, d_status)
