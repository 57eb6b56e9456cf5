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
from ui.common import EXAMPLES, PAGE_CSS, write_images_once  # noqa: E402


EXAMPLES_CACHE = os.environ.get("GRADIO_EXAMPLES_CACHE", ".gradio/cached_examples")


def examples_cache(engine: Engine) -> str:
    """Gradio keeps example outputs across restarts; keyed by the CLIP that makes them (its spec, and for a
    local folder its config and weights' size), a changed model never shows another model's cached answers."""
    import hashlib
    from pathlib import Path

    spec = engine.resolution.spec
    key = spec.spec
    if spec.kind == "local":
        folder = Path(spec.model_name.removeprefix("local-dir:"))
        key += "".join(f"|{f.name}:{f.stat().st_size}" for f in sorted(folder.glob("open_clip_*")) if f.is_file())
        key += (folder / "open_clip_config.json").read_text() if (folder / "open_clip_config.json").is_file() else ""
    return str(Path(EXAMPLES_CACHE) / hashlib.sha1(key.encode()).hexdigest()[:16])


TABS = (("Zero-shot labels", "zero-shot", zero_shot), ("Search", "search", search),
        ("Diffusion step by step", "diffusion", diffusion), ("Text to image", "text-to-image", text_to_image),
        ("unCLIP", "unclip", unclip), ("How CLIP learns", "clip-learns", clip_learns))  # the lecture's order


def build_demo(engine: Engine) -> gr.Blocks:
    """The whole page: title, status, and the tabs in the lecture's order."""
    os.environ["GRADIO_EXAMPLES_CACHE"] = examples_cache(engine)
    write_images_once()  # streamed pictures: a served file is never rewritten under the browser
    with gr.Blocks(title="CLIP & Diffusion Lab") as demo:
        gr.Markdown("# CLIP & Diffusion Lab\nSee how CLIP and diffusion models work, on your own images.")
        status.build(engine)
        for name, tab_id, tab in TABS:
            with gr.Tab(name, id=tab_id):
                tab.build(engine)
    return demo


def quiet_libraries() -> None:
    """The app's console shows its own lines and real warnings: diffusers' loading chatter (optional
    accelerate, component progress bars) is silenced here, in the app only, never in demo_core."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()


def install_shutdown(engine: Engine, wait_s: float = 5.0) -> None:
    """SIGTERM (how Spaces stops an app) or Ctrl-C, even mid-run: every run is told to stop, the engine
    removes its files and closes its indexes, and the process exits 0 at once. ``os._exit`` skips the
    interpreter's teardown, which would abort in C++ ("terminate called …") while a worker thread is
    still inside torch."""
    def shutdown(signum, _frame):
        logging.getLogger("app").info("stopping (%s)", signal.Signals(signum).name)
        try:
            engine.close(wait_s=wait_s)
        except Exception:
            logging.getLogger("app").exception("closing the engine failed")
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="CLIP & Diffusion Lab: a Gradio app that shows how CLIP and "
                                             "diffusion models work, on your own images.")
    ap.add_argument("--clip-model", default=None,
                    help="CLIP spec: ViT-B-32/openai (default), hf-hub:ORG/NAME, a local open_clip folder, "
                         "or mini-clip-3 (bundled; also mini-clip-2, mini-clip, mini-clip-v1). Env: DEMO_CLIP_MODEL.")
    ap.add_argument("--device", default=None,
                    help="cuda (or gpu), mps or cpu (default: best available). Env: DEMO_DEVICE.")
    ap.add_argument("--index", action="append", default=None, metavar="FOLDER",
                    help="an index folder made by `python index_builder` (repeatable; the first is Search's default). "
                         f"Env: DEMO_INDEX (folders separated by '{os.pathsep}'). The bundled gallery is always offered.")
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for ours in ("app", "demo_core"):  # our own INFO lines; libraries stay at WARNING
        logging.getLogger(ours).setLevel(logging.INFO)
    quiet_libraries()
    env_indexes = [p for p in os.environ.get("DEMO_INDEX", "").split(os.pathsep) if p]
    try:
        engine = Engine(args.clip_model, args.device, (args.index or []) + env_indexes, background=True)
    except UserError as e:  # a bad model spec or device: exit 2, one line (as index_builder)
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.getLogger("app").info("%s (models load in the background)", status.status_line(engine).replace("**", ""))
    install_shutdown(engine)
    try:
        build_demo(engine).queue(default_concurrency_limit=2).launch(
            server_name=args.host, server_port=args.port, show_error=True, allowed_paths=[str(EXAMPLES)], css=PAGE_CSS)
    finally:
        engine.close()  # the files it handed out


if __name__ == "__main__":
    main()
