"""unCLIP, the DALL·E 2 design: text → prior → image embedding → decoder, image variations and interpolation
(API endpoints `unclip`, `unclip_compare`, `variations` and `interpolate`)."""
from __future__ import annotations


import gradio as gr
import pandas as pd

from demo_core.diffusion.unclip import MAX_IMAGES, MAX_POINTS, UnclipUpdate
from demo_core.diffusion.upsampler import UPSAMPLING
from demo_core.engine import Engine
from ui.common import (EXAMPLES, LATEX, drops_unreadable, file_path, legend, model_handler, pictures, says_when_it_fails,
                       seed_box, serve_as_is, session_key, stop_button, throttled)

EXAMPLE_PICTURES = sorted((EXAMPLES / "heldout-emoji").glob("*.png"))  # held-out emoji on white (never trained on)
EXAMPLE_PICTURES += [EXAMPLES / "cat.png"]  # and one on a soft background, as the other tabs show it

UNCLIP_FORMULA = r"""
**unCLIP** (DALL·E 2): CLIP is trained and frozen. A **prior** turns the caption's text embedding into an
*image* embedding, $\hat z_{img} = \mathrm{prior}(z_{txt})$ (a diffusion model in the 128-d embedding space
that predicts the clean embedding); a **decoder** (a DDPM, the GLIDE UNet with the image embedding in place of
a class embedding) turns it into pixels, with classifier-free guidance
$\hat\epsilon = \hat\epsilon(x_t,\varnothing) + w\,(\hat\epsilon(x_t, z_{img}) - \hat\epsilon(x_t,\varnothing))$.
The decoder needs only an image embedding, so any picture can be encoded and decoded again: **variations**.
With an upsampler installed, a second diffusion model (the cascade, as in DALL·E 2's 64 → 256 → 1024) redraws
each 32×32 image at 64×64, conditioned on it (trained on it noised to level $s \le 250$,
$z_s = \sqrt{\bar\alpha_s}\,x_{32} + \sqrt{1-\bar\alpha_s}\,\epsilon'$; sampled at $s = 0$).
"""


def _status(u: UnclipUpdate, what: str) -> str:
    if u.stage == "embeddings":
        return f"{what}: embeddings ready · decoding… ({u.elapsed_s:.1f} s)"
    stage = f"{UPSAMPLING}: " if u.stage == UPSAMPLING or u.upsampled else ""
    line = f"{what}: {stage}t = {u.t}, step {u.index + 1} of {u.total} · {u.elapsed_s:.1f} s"
    if u.final:
        line = ("⏹ stopped, what was made is kept · " if u.stopped else "✅ done · ") + line
    return line


def _embedding_plot(u: UnclipUpdate, name: str) -> pd.DataFrame:
    """The embeddings as curves over their 128 dimensions: the text's (or the source picture's) and the first condition."""
    rows = []
    first = u.text if u.text is not None else u.source
    series = [("text embedding" if u.text is not None else "source picture's embedding", first),
              (name, u.condition[0] if u.condition is not None else None)]
    for label, vec in series:
        if vec is not None:
            rows += [{"dimension": i, "value": float(v), "embedding": label} for i, v in enumerate(vec)]
    return pd.DataFrame(rows)


def _captioned(u: UnclipUpdate, prefix: str) -> list:
    if u.captions:
        return list(zip(u.images, u.captions))
    labels = u.labels or [f"{prefix} {i + 1}" for i in range(len(u.images))]
    return [(im, f"{lab} · cos {c:.2f}") for im, lab, c in zip(u.images, labels, u.cos_to_source)]


# The modality-gap plot's curves (unclip.modality_gap): what each cosine compares.
GAP_COLOURS = {"text–image pair": "#1f77b4", "same image": "#ff7f0e", "image–image": "#d62728", "text–text": "#2ca02c"}

def _upload(label: str, height: int, elem_id: str) -> gr.Image:
    """A picture the user uploads or pastes (kept as a file path)."""
    image = gr.Image(label=label, type="filepath", height=height, sources=["upload", "clipboard"], elem_id=elem_id)
    drops_unreadable(image)
    return image


def _embedding_and_xt(label: str) -> tuple[gr.LinePlot, gr.Image]:
    """A row of the embedding's curve and the decoder's x_t (the variations and interpolation sub-tabs)."""
    with gr.Row():
        return (gr.LinePlot(x="dimension", y="value", color="embedding", label=label),
                gr.Image(label="x_t", interactive=False, format="jpeg"))


def build(engine: Engine) -> None:
    def stream(updates, what: str, prefix: str, plot_name: str, extra=lambda u: ()):
        for u in throttled(updates, lambda u: u.stage == "embeddings" or u.final):
            whole = u.stage == "embeddings" or u.final  # the final answer carries every output (API callers)
            yield (_captioned(u, prefix) if u.final else gr.skip(),
                   _embedding_plot(u, plot_name) if whole else gr.skip(),
                   u.x_t if u.x_t is not None else gr.skip(), _status(u, what), *extra(u))

    def unclip(prompt: str, n: int = 4, seed: int = 0, scale: float = 3.0, prior_scale: float = 1.0,
               steps: int = 50, upsample: bool = True, request: gr.Request = None):
        """Text → prior → decoder, streaming; the first output is the list of images (captioned with their
        mini-CLIP cosine to the prior's embedding), then the embeddings, x_t, status, cosines and nearest real images."""
        def extra(u: UnclipUpdate):
            if u.stage != "embeddings" and not u.final:  # decoding, upsampling
                return gr.skip(), gr.skip()
            cos = ", ".join(f"{c:.2f}" for c in u.cos_to_text)
            return (f"cos(text embedding, prior's image embedding) per image: **{cos}**",
                    [(str(f.thumbnail), f"{f.name} · {f.score:.2f}") for f in u.nearest])

        yield from stream(engine.unclip(prompt, n=n, seed=seed, scale=scale, prior_guidance=prior_scale, steps=steps,
                                        upsample=bool(upsample), stop_key=session_key(request)),
                          "unCLIP", "image", "prior's image embedding (image 1)", extra)

    def compare(prompt: str, seed: int = 0, scale: float = 3.0, steps: int = 50, upsample: bool = True,
                request: gr.Request = None):
        """Why a prior: the decoder fed the prior's image embeddings, then the text embedding itself, same seed.
        Outputs: the images with the prior, the images without, status."""
        made, line = {}, ""
        for key, what in (("prior", "with the prior"), ("no prior", "the text embedding fed directly")):
            for u in engine.unclip(prompt, n=4, seed=seed, scale=scale, steps=steps, use_prior=key == "prior",
                                   upsample=bool(upsample), stop_key=session_key(request)):
                line = _status(u, what)
                if u.final:
                    made[key] = _captioned(u, key)
                elif u.index % 10 == 0:
                    yield gr.skip(), gr.skip(), line
            if u.stopped:
                break
        yield made.get("prior", []), made.get("no prior", []), line

    def variations(image, n: int = 4, seed: int = 0, scale: float = 3.0, steps: int = 50, upsample: bool = True,
                   request: gr.Request = None):
        """Variations of a picture: its image embedding decoded from n seeds. The first output is the list of
        images (captioned with their mini-CLIP cosine to the picture), then the embedding, x_t and status."""
        yield from stream(engine.variations(file_path(image), n=n, seed=seed, scale=scale, steps=steps,
                                            upsample=bool(upsample), stop_key=session_key(request)),
                          "Variations", "variation", "decoded from")

    def interpolate(image_a, image_b=None, prompt_b: str = "", points: int = 7, seed: int = 0, scale: float = 3.0,
                    steps: int = 50, upsample: bool = True, request: gr.Request = None):
        """Slerp from picture A to picture B (or to a prompt's prior embedding), one seed for the strip.
        The first output is the list of images, captioned with u and each picture's mini-CLIP cosine to A and
        to B. Picture B and a prompt together are refused: the path has one far end."""
        yield from stream(engine.interpolate(file_path(image_a), file_path(image_b), prompt_b, points=points, seed=seed,
                                             scale=scale, steps=steps, upsample=bool(upsample),
                                             stop_key=session_key(request)),
                          "Interpolation", "point", "first point")


    def gap_plot():
        engine.wait_ready()
        return pd.DataFrame(engine.modality_gap())

    if not engine.unclip_available:
        gr.Markdown("The unCLIP models are not installed here (`assets/models/emoji-prior`, `emoji-decoder`).")
        return
    serve_as_is(engine.search.thumbnail_folder)
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("### unCLIP: text → prior → image embedding → decoder\n" + UNCLIP_FORMULA, latex_delimiters=LATEX)
        with gr.Column(scale=1):
            gap = gr.LinePlot(x="cosine", y="share", color="pairs", label="Why a prior: the modality gap. "
                              "Cosines on the gallery's (image, caption) pairs", elem_id="u-gap",
                              color_map=GAP_COLOURS, colors_in_legend=[])
            gr.HTML(legend(GAP_COLOURS), elem_id="u-gap-legend")
    with gr.Row():
        w = gr.Slider(0, 10, value=3, step=0.5, label="Decoder guidance w", scale=1)
        steps = gr.Slider(5, 200, value=50, step=5, label="DDIM steps", scale=1)
        seed = seed_box(scale=1)
        halt = gr.Button("Stop", variant="stop", scale=1, elem_id="u-stop")
    up = gr.Checkbox(True, label="Upsample to 64×64: the cascade's second stage (a diffusion model conditioned on the "
                     "decoder's 32×32 image)", visible=engine.unclip_upsamples,
                     elem_id="u-upsample")
    with gr.Tab("Text → image"):
        with gr.Row():
            prompt = gr.Textbox("a red heart", label="Prompt", elem_id="u-prompt", scale=3)
            n = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Images", scale=1)
            prior_w = gr.Slider(0, 5, value=1, step=0.25, label="Prior guidance (1 = conditional)", scale=1)
        with gr.Row():
            run = gr.Button("Generate through the prior", variant="primary", elem_id="u-run")
            why = gr.Button("Why a prior: decode the text embedding directly", elem_id="u-why")
        status = gr.Markdown(elem_id="u-status")
        with gr.Row():
            emb = gr.LinePlot(x="dimension", y="value", color="embedding",
                              label="Stage 1 → 2: the text embedding and the prior's image embedding")
            cos = gr.Markdown()
        nearest = pictures(label="What the prior imagines: the real gallery images nearest its embedding (FAISS)",
                           columns=6, elem_id="u-nearest")
        with gr.Row():
            x_t = gr.Image(label="Stage 3, the decoder: x_t", interactive=False, format="jpeg", elem_id="u-xt")
            images = pictures(label="Decoded images", columns=4, elem_id="u-images")
        with gr.Row():
            with_prior = pictures(label="Decoder fed the prior's image embedding", columns=4,
                                  elem_id="u-with-prior")
            without = pictures(label="Decoder fed the text embedding (no prior)", columns=4,
                               elem_id="u-without-prior")
    with gr.Tab("Image variations"):
        with gr.Row():
            picture = _upload("Your picture", 200, "u-picture")
            with gr.Column():
                n_var = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Variations")
                run_var = gr.Button("Make variations", variant="primary", elem_id="u-run-var")
                var_status = gr.Markdown(elem_id="u-var-status")
        gr.Examples([[str(p)] for p in EXAMPLE_PICTURES if p.exists()], [picture], label="Held-out emoji (never trained on)")
        var_emb, var_xt = _embedding_and_xt("The picture's embedding")
        var_images = pictures(label="Variations (cos: mini-CLIP cosine to your picture)", columns=8,
                              elem_id="u-variations")
    with gr.Tab("Interpolation"):
        with gr.Row():
            pic_a, pic_b = _upload("Picture A", 180, "u-pic-a"), _upload("Picture B", 180, "u-pic-b")
            with gr.Column():
                prompt_b = gr.Textbox("", label="…or instead of B, a prompt (through the prior)")
                points = gr.Slider(2, MAX_POINTS, value=7, step=1, label="Points on the path")
                run_int = gr.Button("Interpolate (slerp, one seed)", variant="primary", elem_id="u-run-int")
                int_status = gr.Markdown(elem_id="u-int-status")
        pairs = [(a, b) for a, b in zip(EXAMPLE_PICTURES[::2], EXAMPLE_PICTURES[1::2]) if a.exists() and b.exists()]
        gr.Examples([[str(a), str(b)] for a, b in pairs], [pic_a, pic_b], label="Two held-out emoji")
        int_emb, int_xt = _embedding_and_xt("A's embedding")
        strip = pictures(label="The path from A to B (u, then each picture's mini-CLIP cosine to A and to B)",
                         columns=MAX_POINTS, elem_id="u-strip")

    gr.on(None, model_handler(gap_plot), None, gap, api_visibility="private", show_progress="hidden")  # on page load
    runs = [
        (run.click(model_handler(unclip, duration=120), [prompt, n, seed, w, prior_w, steps, up],
                   [images, emb, x_t, status, cos, nearest], api_name="unclip"), status),
        (why.click(model_handler(compare, duration=120), [prompt, seed, w, steps, up], [with_prior, without, status],
                   api_name="unclip_compare"), status),
        (run_var.click(model_handler(variations, duration=120), [picture, n_var, seed, w, steps, up],
                       [var_images, var_emb, var_xt, var_status], api_name="variations", preprocess=False), var_status),
        (run_int.click(model_handler(interpolate, duration=120), [pic_a, pic_b, prompt_b, points, seed, w, steps, up],
                       [strip, int_emb, int_xt, int_status], api_name="interpolate", preprocess=False), int_status),
    ]
    for event, its_status in runs:
        says_when_it_fails(event, its_status)
    stop_button(halt, engine)
