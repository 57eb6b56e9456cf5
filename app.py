"""CLIP & Diffusion Lab: arguments, the tabs, launch. Each tab is a module in ui/; the work is in demo_core.

    python app.py [--clip-model SPEC] [--device cpu|cuda|mps] [--index FOLDER] [--host H] [--port P]
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline-first: no analytics calls

import gradio as gr  # noqa: E402

from demo_core.engine import Engine  # noqa: E402
from demo_core.errors import UserError  # noqa: E402
from ui import clip_learns, diffusion, search, status, text_to_image, unclip, zero_shot  # noqa: E402
from ui.common import EXAMPLES  # noqa: E402


def build_demo(engine: Engine) -> gr.Blocks:
    """The whole page: title, status, and the tabs in the lecture's order."""
    with gr.Blocks(title="CLIP & Diffusion Lab") as demo:
        gr.Markdown("# CLIP & Diffusion Lab\nSee how CLIP and diffusion models work, on your own images.")
        status.build(engine)
        with gr.Tab("Zero-shot labels", id="zero-shot"):
            zero_shot.build(engine)
        with gr.Tab("Search", id="search"):
            search.build(engine)
        with gr.Tab("Diffusion step by step", id="diffusion"):
            diffusion.build(engine)
        with gr.Tab("Text to image", id="text-to-image"):
            text_to_image.build(engine)
        with gr.Tab("unCLIP", id="unclip"):
            unclip.build(engine)
        with gr.Tab("How CLIP learns", id="clip-learns"):
            clip_learns.build(engine)
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
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for ours in ("app", "demo_core"):  # our own INFO lines; libraries stay at WARNING
        logging.getLogger(ours).setLevel(logging.INFO)
    env_indexes = [p for p in os.environ.get("DEMO_INDEX", "").split(os.pathsep) if p]
    try:
        engine = Engine(args.clip_model, args.device, (args.index or []) + env_indexes, background=True)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    logging.getLogger("app").info("%s (models load in the background)", status.status_line(engine).replace("**", ""))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stopped Space still runs the cleanup below
    try:
        build_demo(engine).queue(default_concurrency_limit=2).launch(
            server_name=args.host, server_port=args.port, show_error=True, allowed_paths=[str(EXAMPLES)])
    finally:
        engine.close()  # the files it handed out


if __name__ == "__main__":
    main()
