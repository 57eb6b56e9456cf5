"""Token features of a CLIP that other threads use at the same time."""
import threading

import torch

from demo_core.clip.tokens import encode_tokens


def test_token_features_are_this_calls_even_when_another_thread_runs_the_same_text_tower(bundled_clip, monkeypatch):
    """The diffusion models share one CLIP with search and the prior: a search's batch of texts that runs while a
    prompt's tokens are read must not be taken for the prompt's (seen as a 256-row token tensor in a 4-image run)."""
    alone = encode_tokens(bundled_clip, ["a clock"])
    model = bundled_clip.model
    real = model.encode_text
    other = bundled_clip.tokenizer([f"caption {i}" for i in range(7)]).to(bundled_clip.device.device)

    def encode_text_while_another_thread_does(ids, *args, **kwargs):
        out = real(ids, *args, **kwargs)
        t = threading.Thread(target=lambda: real(other))  # lands after this call's own forward, before it returns
        t.start()
        t.join()
        return out

    monkeypatch.setattr(model, "encode_text", encode_text_while_another_thread_does)
    shared = encode_tokens(bundled_clip, ["a clock"])
    assert shared.tokens.shape == alone.tokens.shape == (1, *alone.tokens.shape[1:])
    assert torch.allclose(shared.tokens, alone.tokens) and torch.allclose(shared.pooled, alone.pooled)
