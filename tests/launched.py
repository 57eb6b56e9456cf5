"""The app launched on a free local port for a test module, as a user or a script would reach it."""
from __future__ import annotations

import socket
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def launched_app(engine=None, **launch):
    """Build the whole page over `engine` (default: the app's CLIP offline, registry.BUNDLED_CLIP, on the CPU),
    serve it, yield its URL; then close the server and the engine."""
    import app
    from demo_core.engine import Engine
    from demo_core.registry import BUNDLED_CLIP
    from tests.conftest import EXAMPLES

    engine = engine or Engine(BUNDLED_CLIP, "cpu")
    demo = app.build_demo(engine)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=True,
                        quiet=True, allowed_paths=[str(EXAMPLES)], css=app.PAGE_CSS, **launch)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        engine.close()


@contextmanager
def app_client(engine=None):
    """A gradio_client Client on the launched app."""
    from gradio_client import Client

    with launched_app(engine) as url:
        yield Client(url, verbose=False)
