"""A prompt for a text tower: stripped, checked against the tokenizer's context, or a plain InputError."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:
    from .model import ClipModel


def prompt_tokens(clip: "ClipModel", prompt: str) -> int:
    """How many of the tokenizer's context positions `prompt` takes, start and end tokens included."""
    encode = getattr(clip.tokenizer, "encode", None)
    if encode is None:  # a tokenizer without a plain encode (e.g. a hub one): count what it kept
        return int((clip.tokenizer([prompt])[0] != 0).sum())
    return len(encode(prompt)) + 2


def check_prompt(clip: "ClipModel", prompt, *, what: str = "prompt", required: bool = True) -> str | None:
    """The prompt stripped, or an InputError that says what to type. Empty and optional -> None."""
    if prompt is not None and not isinstance(prompt, str):
        raise InputError(f"The {what} must be text.")
    prompt = (prompt or "").strip()
    if not prompt:
        if required:
            raise InputError("Type a prompt, e.g. 'a red heart' or 'a smiling face'.")
        return None
    context = int(getattr(clip.tokenizer, "context_length", 77))
    n = prompt_tokens(clip, prompt)
    if n > context:
        raise InputError(f"The {what} is {n - 2} tokens long; {clip.name} reads at most {context - 2}. Shorten it.")
    return prompt
