"""Search: text (with arithmetic), image and "more like this" queries over an indexed collection
(API endpoints `search` and `search_image`)."""
from __future__ import annotations

import gradio as gr

from demo_core.engine import MAX_RESULTS, Engine, Found, Results
from ui.common import LIGHT, drops_unreadable, file_path, handler, model_handler, pictures, serve_as_is
from ui.status import index_summary


def _results(found: list[Found]) -> tuple[list, list[int]]:
    """Gallery items (thumbnail, "score · name": the score first, so a long name never hides it) and the
    results' index ids, for "more like this"."""
    return [(str(f.thumbnail), f"{f.score:.3f} · {f.name}") for f in found], [f.id for f in found]


def _noted(details: str, found: Results) -> str:
    """The details line, with the note on hits that could not be shown: in the answer itself (an API
    caller sees it there) and as a warning toast in the browser."""
    if not found.note:
        return details
    gr.Warning(found.note)
    return f"{details}\n\n⚠️ {found.note}"


def build(engine: Engine) -> None:
    def search(query: str, index_name: str, k: int):
        """Text search (with arithmetic: `cat + 2:dog - grass`). Returns (results, details, hit ids)."""
        terms, found = engine.search.text(query, index_name, k)
        items, ids = _results(found)
        shown = " ".join(f"{'+' if t.weight >= 0 else '−'} {abs(t.weight):g}·“{t.text}”" for t in terms).lstrip("+ ")
        return items, _noted(f"query vector = normalise({shown}) · {len(items)} results from {index_name}", found), ids

    def search_image(image, index_name: str, k: int):
        """Image search: the images nearest to an uploaded one. Returns (results, details, hit ids)."""
        found = engine.search.image(file_path(image), index_name, k)
        items, ids = _results(found)
        return items, _noted(f"{len(items)} images nearest to the uploaded one, from {index_name}", found), ids

    def more_like(ids: list[int], index_name: str, k: int, evt: gr.SelectData):
        """Clicking a result searches with that image's stored vector ("more like this")."""
        i = evt.index
        if not ids or not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(ids):
            raise gr.Error("Click one of the results first.")
        found = engine.search.more_like(index_name, ids[i], k)
        items, new_ids = _results(found)
        # a new list: the large preview of the clicked result closes (it would show another picture now)
        return (gr.Gallery(value=items, selected_index=None),
                _noted(f"more like result #{i + 1} · {len(items)} results", found), new_ids)

    def stats(name: str) -> str:
        engine.wait_ready()  # the bundled gallery's index is settled by the loader
        return index_summary(engine, name)

    names = engine.search.names()  # the first named with --index / DEMO_INDEX, else the bundled gallery
    with gr.Row():
        index_pick = gr.Dropdown(names, value=names[0] if names else None, label="Index", scale=2, elem_id="s-index")
        k = gr.Slider(1, MAX_RESULTS, value=12, step=1, label="Results", scale=1)
    summary = gr.Markdown(index_summary(engine, names[0] if names else ""))
    with gr.Row():
        with gr.Column(scale=3):
            query = gr.Textbox(label="Text query (arithmetic: cat + 2:dog - grass)", value="cat and dog",
                               elem_id="s-query")
            search_btn = gr.Button("Search", variant="primary", elem_id="s-run")
        with gr.Column(scale=2):
            qimage = gr.Image(label="…or search by image", type="filepath", height=160,
                              sources=["upload", "clipboard"], elem_id="s-image")
            drops_unreadable(qimage)
            image_btn = gr.Button("Search by image", elem_id="s-run-image")
    details = gr.Markdown()
    results = pictures(label="Results (click one for more like it)", columns=6, height="auto",
                       elem_id="s-results")
    hit_ids = gr.State([])
    outputs = [results, details, hit_ids]
    gr.on(None, handler(stats), index_pick, summary, api_visibility="private", show_progress="hidden")  # load, pick
    serve_as_is(engine.search.thumbnail_folder)
    for event in (search_btn.click(model_handler(search), [query, index_pick, k], outputs, api_name="search", **LIGHT),
                  query.submit(model_handler(search), [query, index_pick, k], outputs, api_visibility="private",
                               **LIGHT),
                  image_btn.click(model_handler(search_image), [qimage, index_pick, k], outputs,
                                  api_name="search_image", preprocess=False, **LIGHT)):
        # a rebuild seen by this search shows in the summary (its size, generation and build time)
        event.then(handler(stats), index_pick, summary, api_visibility="private", show_progress="hidden")
    results.select(handler(more_like), [hit_ids, index_pick, k], outputs, api_visibility="private", **LIGHT)
