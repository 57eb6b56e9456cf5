"""The status line under the title and the Status accordion: device, models and why, indexes,
startup and versions. While the models load, a timer refreshes both each second, then stops."""
from __future__ import annotations

import time

import gradio as gr

from demo_core.diffusion.models import available_ddpms
from demo_core.engine import Engine, versions
from demo_core.errors import UserError


def index_summary(engine: Engine, name: str) -> str:
    """One line about an index: its size, model and type, or why it cannot be used yet."""
    if not name:
        return "No index loaded: build one with `python index_builder DIR` and start the app with `--index`."
    try:
        st = engine.search.stats(name)
    except UserError as e:
        return f"⚠️ {e}"
    if st is None:
        return "⏳ the bundled gallery's index is being prepared…"
    built = f" · generation {st['generation']}, built {_when(st['built'])}" if st.get("generation") is not None else ""
    return (f"**{st['count']}** images · model **{st['model']}** ({st['dim']}-d) · index {st['index_type']} "
            f"· recall@10 vs exact {st['recall_at_10']}{built} · collection `{st['root']}`")


def _when(iso: str | None) -> str:
    """'2026-12-03T07:41:09Z' -> '2026-12-03 07:41 UTC'."""
    return f"{iso[:10]} {iso[11:16]} UTC" if iso and len(iso) >= 16 else "at an unknown time"


def status_line(engine: Engine) -> str:
    line = (f"**CLIP model:** {engine.resolution.reason} · **device:** {engine.device.describe()} "
            f"({engine.device.reason})")
    if engine.load_error:
        return f"⚠️ {engine.load_error} · " + line
    if not engine.ready:
        return f"⏳ {engine.loading or 'loading'}… ({time.time() - engine.started:.0f} s) · " + line
    return line


def status_panel(engine: Engine) -> str:
    """Device, models and why, indexes, startup and versions: what a bug report needs."""
    clip = engine.loaded_clip
    lines = ["| part | state |", "|---|---|",
             f"| device | {engine.device.describe()}: {engine.device.reason} |",
             # the resolution's reason starts with the model's name
             f"| CLIP model | {engine.resolution.reason}{'' if clip else ' (loading)'} |"]
    if clip:
        lines.append(f"| CLIP details | {clip.embed_dim}-d embeddings, {clip.image_size}px input, "
                     f"learned exp(t) = {clip.logit_scale:.2f} |")
    ddpms = ", ".join(f"{m.display} (T={m.T}, {m.schedule})" for m in engine.reverse.loaded()) or "none loaded yet"
    lines.append(f"| diffusion models | {ddpms}; offered: {', '.join(available_ddpms())}; "
                 f"runs now: {engine.running} |")
    for t2i in engine.loaded_text2img:
        lines.append(f"| text to image | {t2i.name} (conditioned on {t2i.clip.name} text embeddings; CLIP guidance "
                     f"{'with the noised CLIP' if t2i.noised is not None else 'off: no noised CLIP for it'}) |")
    uc = engine.loaded_unclip
    if uc:
        lines.append(f"| unCLIP | prior {uc.prior.cfg.width}×{uc.prior.cfg.depth} MLP → decoder "
                     f"(conditioned on {uc.clip.name} image embeddings, T={uc.schedule.T}) |")
    for name in engine.search.names():
        lines.append(f"| index: {name} | {index_summary(engine, name)} |")
    state = ("loaded" if engine.ready else f"loading: {engine.loading}") + \
        (f" · {'; '.join(engine.load_log)}" if engine.load_log else "")
    lines.append(f"| startup | {state} |")
    lines.append("| versions | " + " · ".join(f"{k} {v}" for k, v in versions().items()) + " |")
    return "\n".join(lines)


def build(engine: Engine) -> None:
    """The status line and the Status accordion, refreshed every second until startup is done."""
    line = gr.Markdown(status_line(engine), elem_id="status-line")
    with gr.Accordion("Status: device, models, index, versions", open=False):
        panel = gr.Markdown(status_panel(engine), elem_id="status-panel")
    ticker = gr.Timer(1.0, active=not engine.ready)

    def refresh():
        return status_line(engine), status_panel(engine), gr.Timer(active=not engine.ready)

    gr.on([ticker.tick], refresh, None, [line, panel, ticker], api_visibility="private", show_progress="hidden")
    gr.on(None, refresh, None, [line, panel, ticker], api_visibility="private", show_progress="hidden")  # page load
