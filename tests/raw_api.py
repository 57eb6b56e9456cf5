"""Calling a launched app the way a hostile script can: raw JSON over HTTP, not through gradio_client.

gradio_client refuses to send NaN or infinity (its JSON encoder is strict), but the server's JSON
parser accepts the literals ``NaN``, ``Infinity`` and ``-Infinity``; and the browser's private events
(e.g. "more like this", whose click position arrives as ``event_data``) are reachable by number.
``call`` sends whatever it is given and returns ``(True, outputs)`` or ``(False, message)``.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx


def upload(base: str, path: str | Path) -> dict:
    """Upload a file; the FileData payload to put in `data`."""
    with open(path, "rb") as f:
        r = httpx.post(f"{base}gradio_api/upload", files={"files": (Path(path).name, f)}, timeout=60)
    r.raise_for_status()
    return {"path": r.json()[0], "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def fn_index(base: str, api_name: str | None = None, *, trigger: str | None = None) -> int:
    """The number of an event: by its api_name, or the first private one wired to `trigger`
    (e.g. "select") of some component."""
    config = httpx.get(f"{base}config", timeout=30).json()
    for i, dep in enumerate(config["dependencies"]):
        if api_name and dep.get("api_name") == api_name:
            return dep.get("id", i)
        if trigger and any(t[1] == trigger for t in dep.get("targets", [])):
            return dep.get("id", i)
    raise LookupError(api_name or trigger)


def call(base: str, data: list, *, api_name: str | None = None, index: int | None = None, event_data=None,
         session: str | None = None, timeout: float = 300) -> tuple[bool, object]:
    """Join the queue with raw JSON (NaN allowed) and wait for the end of the event. Calls with the same
    `session` share the session's state (e.g. the ids of the last search's results)."""
    session = session or uuid.uuid4().hex[:10]
    body = {"data": data, "fn_index": index if index is not None else fn_index(base, api_name),
            "session_hash": session, "event_data": event_data, "trigger_id": None}
    r = httpx.post(f"{base}gradio_api/queue/join", content=json.dumps(body),  # json.dumps writes NaN as NaN
                   headers={"Content-Type": "application/json"}, timeout=30)
    if r.status_code != 200:
        return False, r.text
    with httpx.stream("GET", f"{base}gradio_api/queue/data", params={"session_hash": session},
                      timeout=timeout) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("msg") == "process_completed":
                out = msg.get("output") or {}
                if msg.get("success"):
                    return True, out.get("data")
                return False, out.get("error") or ""
            if msg.get("msg") == "unexpected_error":
                return False, msg.get("message", "")
    return False, "the stream ended without a result"
