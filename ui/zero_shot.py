"""Zero-shot labels: an image and typed labels in, label probabilities out (API endpoint `classify`)."""
from __future__ import annotations

import contextlib
import io

import gradio as gr

from demo_core.clip.model import DEFAULT_TEMPLATES, parse_labels, parse_templates
from demo_core.engine import Engine
from demo_core.images import load_image
from ui.common import EXAMPLES, LATEX, LIGHT, ZERO_SHOT_FORMULA, drops_unreadable, file_path, model_handler

EXAMPLE_LABELS = [
    ("cat.png", "cat, dog, car, tree, pizza"),
    ("dog.png", "cat, dog, bird, fish"),
    ("automobile.png", "car, bus, train, boat, bicycle"),
    ("palm_tree.png", "tree, flower, house, sun"),
    ("train.png", "train, car, airplane, boat"),
    ("bird.png", "bird, cat, fish, monkey"),
]


def build(engine: Engine) -> None:
    def classify(image, labels_text: str, templates_text: str, ensemble: bool):
        """Zero-shot classify one image. Returns (label probabilities, table rows, details)."""
        labels, notes = parse_labels(labels_text)  # the text first: cheap to check, before any decoding
        templates = parse_templates(templates_text)
        if not isinstance(ensemble, bool):  # the event skips Gradio's preprocessing: a script sends anything
            raise gr.Error("Ensemble must be true or false.")
        pil = load_image(file_path(image))
        for note in notes:
            gr.Warning(note)
        clip = engine.clip
        res = clip.zero_shot(pil, labels, templates, ensemble=ensemble)
        order = sorted(range(len(labels)), key=lambda i: -res.probs[i])
        rows = [[res.labels[i], round(res.cosines[i], 4), round(res.probs[i], 4)] for i in order]
        used = res.templates if len(res.templates) <= 3 else res.templates[:3] + ["…"]
        details = (f"logit scale e^t = **{res.logit_scale:.2f}** (temperature {res.temperature:.4f}) · "
                   f"{len(labels)} labels × {len(res.templates)} template(s): {', '.join(f'`{t}`' for t in used)} · "
                   f"model: {clip.name}")
        if notes:
            details += "\n\n" + " ".join(notes)
        return {res.labels[i]: res.probs[i] for i in order}, rows, details

    def classify_example(image, labels_text: str):
        return classify(image, labels_text, "\n".join(DEFAULT_TEMPLATES), True)

    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Image", type="filepath", sources=["upload", "webcam", "clipboard"],
                             elem_id="zs-image")
            drops_unreadable(image)
            labels = gr.Textbox(label="Labels (comma or new line between them)", value="cat, dog, car", lines=2,
                                elem_id="zs-labels")
            with gr.Accordion("Prompt templates", open=False):
                templates = gr.Textbox(label="One template per line; {} is where the label goes",
                                       value="\n".join(DEFAULT_TEMPLATES), lines=6, elem_id="zs-templates")
                ensemble = gr.Checkbox(label="Ensemble: average over all templates (off: first template only)",
                                       value=True)
            run = gr.Button("Classify", variant="primary", elem_id="zs-run")
        with gr.Column():
            probs = gr.Label(label="Probabilities", num_top_classes=10, elem_id="zs-probs")
            table = gr.Dataframe(headers=["label", "cosine", "probability"], label="Raw scores", interactive=False)
            details = gr.Markdown()
    gr.Markdown(ZERO_SHOT_FORMULA, latex_delimiters=LATEX)
    examples = [[str(EXAMPLES / f), text] for f, text in EXAMPLE_LABELS if (EXAMPLES / f).exists()]
    if examples:
        with contextlib.redirect_stdout(io.StringIO()):  # Gradio prints where it will cache; the console is ours
            gr.Examples(examples, inputs=[image, labels], label="Examples",
                        fn=model_handler(classify_example), outputs=[probs, table, details], cache_examples=True,
                        cache_mode="lazy", api_visibility="private")
    run.click(model_handler(classify), [image, labels, templates, ensemble], [probs, table, details],
              api_name="classify", preprocess=False, **LIGHT)
