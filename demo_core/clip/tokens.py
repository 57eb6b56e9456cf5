"""The last layer of CLIP's text tower, token by token: what GLIDE's attention layers read.

GLIDE (Nichol et al. 2022): "the last layer of token embeddings (a sequence of K feature vectors) is
separately projected to the dimensionality of each attention layer throughout the diffusion model".
``encode_tokens`` returns that sequence (the text transformer's output after its final LayerNorm,
before the pooling at the end-of-text token and the projection that make the usual text embedding),
with a mask of the real tokens (start, words, end: not the padding) and each token's text, so that a
view can say which word looked where.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import torch

PAD = 0  # open_clip's tokenizers pad with token id 0


@dataclass
class TokenFeatures:
    pooled: torch.Tensor  # (N, D) unit text embeddings (the usual CLIP text embedding)
    tokens: torch.Tensor  # (N, L, W) last-layer token features
    mask: torch.Tensor  # (N, L) bool: True for the caption's own tokens (start, words, end)
    words: list[list[str]]  # each caption's tokens as text, one per True in `mask`


def _final_norm(model) -> torch.nn.Module:
    """The text tower's final LayerNorm (open_clip's CLIP, or CustomTextCLIP's text tower)."""
    for owner in (model, getattr(model, "text", None)):
        if owner is not None and isinstance(getattr(owner, "ln_final", None), torch.nn.Module):
            return owner.ln_final
    raise ValueError("This CLIP's text tower has no final LayerNorm to read token features from.")


def token_text(tokenizer, token_id: int) -> str:
    """One BPE token as a person reads it: "heart" for "heart</w>", "⟨start⟩" and "⟨end⟩" for the markers."""
    word = getattr(tokenizer, "decoder", {}).get(int(token_id), str(int(token_id)))
    if word.startswith("<start_of_text"):
        return "⟨start⟩"
    if word.startswith("<end_of_text"):
        return "⟨end⟩"
    byte_decoder = getattr(tokenizer, "byte_decoder", None)
    if byte_decoder:
        try:
            word = bytearray(byte_decoder[c] for c in word).decode("utf-8", errors="replace")
        except KeyError:
            pass
    return word.replace("</w>", "")


@torch.inference_mode()
def encode_tokens(clip, texts: Sequence[str]) -> TokenFeatures:
    """Captions -> pooled unit embeddings and last-layer token features of `clip` (a ``ClipModel``), on CPU."""
    ids = clip.tokenizer(list(texts)).to(clip.device.device)  # (N, L)
    seen: list[torch.Tensor] = []
    # The model is shared: another thread (a search, the prior's batch) may run the same text tower meanwhile, and a
    # hook sees every call. Forward hooks run in the caller's thread, so keep only this thread's output.
    me = threading.get_ident()
    hook = _final_norm(clip.model).register_forward_hook(
        lambda _m, _i, out: seen.append(out) if threading.get_ident() == me else None)
    try:
        pooled = torch.nn.functional.normalize(clip.model.encode_text(ids).float(), dim=-1).cpu()
    finally:
        hook.remove()
    tokens = seen[-1].float().cpu()  # (N, L, W)
    mask = (ids != PAD).cpu()
    words = [[token_text(clip.tokenizer, i) for i in row[m].tolist()] for row, m in zip(ids.cpu(), mask)]
    return TokenFeatures(pooled, tokens, mask, words)
