"""How CLIP learns: the B×B matrix of one batch under the loaded CLIP (API `clip_matrix`), and a
tiny CLIP trained live on it (API `clip_train`)."""
from __future__ import annotations

import time

import gradio as gr
import pandas as pd

from demo_core.clip import matrix
from demo_core.engine import Engine
from demo_core.inputs import MAX_SEED, check_number
from ui.common import (CLIP_PSEUDOCODE, file_path, handler, markdown_table, model_handler, says_when_it_fails,
                       seed_box)


def build(engine: Engine) -> None:
    def clip_matrix(source: str, B: int, seed: int, files, captions_text: str, temperature: float, shuffle: int):
        """The B×B matrix of one batch under the loaded CLIP: cosines, both softmaxes and the loss."""
        scale = matrix.logit_scale_for(temperature, engine.clip.logit_scale)
        pairs = matrix.batch_pairs(source, B, seed, [file_path(f) for f in files or []], captions_text)
        v = matrix.view_batch(engine.clip, pairs, shuffle or 0, scale)
        m = v.matrix
        state = "captions **shuffled**: the diagonal holds wrong pairs" if v.shuffled \
            else "captions in order: the diagonal holds the true pairs"
        summary = (f"**B = {m.B}** ({state}) · temperature τ = {1 / m.logit_scale:.4f}, exp(t) = {m.logit_scale:.2f}"
                   "\n\n" + markdown_table(matrix.loss_rows(m), header=("", "value"),
                                           bold=("loss = (loss_i + loss_t) / 2",)))
        return v.cosine, v.rows, v.columns, summary

    def clip_train(source: str, B: int, seed: int, files, captions_text: str, steps: int):
        """Train a tiny CLIP from scratch and stream the shown batch's image→text matrix and the loss."""
        pairs = matrix.batch_pairs(source, B, seed, [file_path(f) for f in files or []], captions_text)
        thumbs = [p.image.copy() for p in pairs]
        captions = [p.caption for p in pairs]
        curve, t0 = [], time.perf_counter()
        for f in matrix.train_live(pairs, matrix.gallery_pairs(), steps=steps, seed=seed):
            curve += [{"step": f.step, "loss": f.loss, "series": "training batch"},
                      {"step": f.step, "loss": f.matrix.loss, "series": "the shown pairs"}]
            heat = matrix.render_heatmap(f.matrix.p_image_to_text, thumbs, captions,
                                         f"tiny CLIP after {f.step} steps: softmax along each row", 0.0, 1.0)
            done = int(20 * f.step / f.steps)
            yield (heat, pd.DataFrame(curve),
                   f"{'▓' * done}{'░' * (20 - done)} step {f.step}/{f.steps} · batch loss {f.loss:.3f} · "
                   f"shown pairs' loss {f.matrix.loss:.3f} · {time.perf_counter() - t0:.0f} s")

    def next_shuffle(k) -> int:
        """The shuffle button: the next derangement of the captions."""
        return check_number(k or 0, "The shuffle", 0, MAX_SEED - 1, integer=True) + 1

    def learned_temperature():
        return gr.Slider(value=round(1 / engine.clip.logit_scale, 4))

    gr.Markdown("### One batch of B image–caption pairs, scored every way at once\n"
                "Row *i* is image *i* against every caption; column *j* is caption *j* against every "
                "image. The B true pairs sit on the diagonal (red boxes), the B²−B wrong ones off it. "
                "Training pushes the diagonal up and everything else down.")
    loaded = engine.loaded_clip
    with gr.Row():
        with gr.Column(scale=1):
            m_source = gr.Radio(["gallery", "my images"], value="gallery", label="Pairs from", elem_id="m-source")
            m_B = gr.Slider(matrix.MIN_B, matrix.MAX_B, value=8, step=1, label="B (gallery pairs)")
            m_seed = seed_box("Seed (which gallery pairs)")
            with gr.Accordion("My images and captions", open=False):
                m_files = gr.File(label="Images (2–16)", file_count="multiple", file_types=["image"],
                                  elem_id="m-files")
                m_caps = gr.Textbox(label="Captions, one per line, in the same order", lines=4, elem_id="m-caps")
            m_temp = gr.Slider(matrix.MIN_TEMPERATURE, 1.0, value=round(1 / loaded.logit_scale, 4) if loaded else 0.03,
                               step=0.001,
                               label="Temperature τ = 1 / exp(t) (the model's learned value to start)")
            m_shuffle = gr.Number(0, minimum=0, step=1, visible=False)
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
    gr.on(None, handler(learned_temperature), None, m_temp, api_visibility="private",
          show_progress="hidden")  # the model's own τ, once it has loaded
    m_inputs = [m_source, m_B, m_seed, m_files, m_caps, m_temp, m_shuffle]
    m_outputs = [m_cos, m_rows, m_cols, m_summary]
    show = model_handler(clip_matrix)
    m_files.upload(lambda: "my images", None, m_source, api_visibility="private")  # uploading = using them
    m_run.click(show, m_inputs, m_outputs, api_name="clip_matrix")
    m_temp.release(show, m_inputs, m_outputs, api_visibility="private")
    m_shuffle_btn.click(handler(next_shuffle), m_shuffle, m_shuffle, api_visibility="private").then(
        show, m_inputs, m_outputs, api_visibility="private")
    m_order_btn.click(lambda: 0, None, m_shuffle, api_visibility="private").then(
        show, m_inputs, m_outputs, api_visibility="private")

    gr.Markdown("### Train a tiny CLIP live\nA tiny CLIP (4.6 M parameters, 3.2 M of them its token-embedding "
                "table) starts from random weights and learns from the gallery's pairs with the loss above "
                "(AdamW, 32×32 images). Every training batch holds the pairs shown above plus random others, "
                "so you can watch their matrix turn diagonal while the loss falls.")
    with gr.Row():
        m_steps = gr.Slider(50, matrix.MAX_LIVE_STEPS, value=300, step=50, label="Training steps", elem_id="m-steps")
        m_train = gr.Button("Train a tiny CLIP", variant="primary", elem_id="m-train")
    m_status = gr.Markdown(elem_id="m-status")
    with gr.Row():
        m_live = gr.Image(label="the shown pairs, as the tiny CLIP sees them", interactive=False,
                          elem_id="m-live", format="png")
        m_curve = gr.LinePlot(x="step", y="loss", color="series", label="contrastive loss")
    trained = m_train.click(model_handler(clip_train, duration=180), [m_source, m_B, m_seed, m_files, m_caps, m_steps],
                            [m_live, m_curve, m_status], api_name="clip_train")
    says_when_it_fails(trained, m_status)
