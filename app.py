"""CLIP & Diffusion Lab: the Gradio UI. Layout and wiring only; the work is in demo_core.

    python app.py [--clip-model SPEC] [--device cpu|cuda|mps] [--host H] [--port P]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import gradio as gr

from demo_core.clip import DEFAULT_TEMPLATES, ClipModel, InputError, parse_labels, parse_templates
from demo_core.device import pick_device
from demo_core.images import ImageError, load_image
from demo_core.registry import ASSETS, resolve_clip_spec

EXAMPLES = ASSETS / "examples"
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
each label becomes prompts from the templates, e.g. `a photo of a {label}.`; their text embeddings
are L2-normalised, averaged over templates and normalised again (prompt ensembling, CLIP paper §3.1.4).
Then $p(\text{label}\mid\text{image}) = \operatorname{softmax}_\text{labels}\big(e^{t}\cdot\cos(I_e, T_e)\big)$,
where $e^{t}$ is the model's learned logit scale (inverse temperature, at most 100).
"""


LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


class Lab:
    """The engine objects the UI talks to: device, CLIP model and why it was chosen."""

    def __init__(self, clip_spec: str | None = None, device: str | None = None):
        self.device = pick_device(device)
        self.resolution = resolve_clip_spec(clip_spec)
        self.clip = ClipModel.load(self.resolution, self.device)

    def status_markdown(self) -> str:
        return (f"**CLIP model:** {self.resolution.reason} · **device:** {self.device.describe()} "
                f"({self.device.reason})")

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


def _file_path(value):
    """An image input arrives as gradio's file payload (dict) when preprocessing is off."""
    if isinstance(value, dict):
        return value.get("path")
    return value


def build_demo(lab: Lab) -> gr.Blocks:
    with gr.Blocks(title="CLIP & Diffusion Lab") as demo:
        gr.Markdown("# CLIP & Diffusion Lab\nSee how CLIP and diffusion models work, on your own images.")
        gr.Markdown(lab.status_markdown(), elem_id="status-line")
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
                gr.Examples(examples, inputs=[image, labels], label="Examples (held-out emoji the model never saw)")
            run.click(lab.classify, [image, labels, templates, ensemble], [probs, table, details],
                      api_name="classify", preprocess=False)
    return demo


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="CLIP & Diffusion Lab: a Gradio app that shows how CLIP and "
                                             "diffusion models work, on your own images.")
    ap.add_argument("--clip-model", default=None,
                    help="CLIP spec: ViT-B-32/openai (default), hf-hub:ORG/NAME, a local open_clip folder, "
                         "or mini-clip (bundled). Env: DEMO_CLIP_MODEL.")
    ap.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available). Env: DEMO_DEVICE.")
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    args = ap.parse_args(argv)
    try:
        lab = Lab(args.clip_model, args.device)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    print(lab.status_markdown().replace("**", ""), flush=True)
    demo = build_demo(lab)
    demo.queue(default_concurrency_limit=2).launch(server_name=args.host, server_port=args.port, show_error=True,
                                                   allowed_paths=[str(Path(EXAMPLES))])


if __name__ == "__main__":
    main()
