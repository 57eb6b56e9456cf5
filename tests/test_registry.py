"""Model specs: bundled, local and hub folders load through one code path; no hang offline."""
import shutil
import time

import pytest
import torch
from PIL import Image

from demo_core import registry
from demo_core.clip.model import ClipModel
from demo_core.errors import ModelUnavailable, UserError
from demo_core.registry import parse_clip_spec, resolve_clip_spec


def test_bundled_model_is_a_local_open_clip_folder():
    spec = parse_clip_spec("mini-clip")
    assert spec.kind == "local" and spec.model_name.startswith("local-dir:")
    assert (registry.BUNDLED_MODELS["mini-clip"] / "open_clip_config.json").is_file()
    assert spec.display == "mini-clip (bundled)"


def test_offline_default_falls_back_to_bundled_and_says_why(monkeypatch):
    monkeypatch.delenv("DEMO_CLIP_MODEL", raising=False)
    t0 = time.time()
    res = resolve_clip_spec()
    assert time.time() - t0 < 5
    assert res.fallback and res.spec.spec == registry.BUNDLED_CLIP == "mini-clip-3"
    assert "HF_HUB_OFFLINE" in res.reason and "ViT-B-32/openai" in res.reason


def test_unreachable_hub_times_out_fast(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(constants, "HF_HUB_CACHE", "/nonexistent-cache")
    t0 = time.time()
    res = resolve_clip_spec("ViT-B-32/openai", probe_timeout=1.0)
    assert time.time() - t0 < 3
    assert res.fallback and "did not answer" in res.reason


@pytest.mark.parametrize("bad,msg", [("ViT-Nope-9", "Unknown model"), ("ViT-B-32/nosuchtag", "no pretrained"),
                                     ("hf-hub:justaname", "ORG/NAME"), ("", "Empty")])
def test_bad_specs_explain_themselves(bad, msg):
    with pytest.raises(ModelUnavailable, match=msg):
        parse_clip_spec(bad)


def test_local_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelUnavailable, match="open_clip_config.json"):
        parse_clip_spec(f"local-dir:{tmp_path}")


def test_tiny_random_model_in_hub_format_loads_from_folder(tiny_clip_folder):
    m = ClipModel.load(f"local-dir:{tiny_clip_folder}", "cpu")
    emb = m.encode_images([Image.new("RGB", (50, 70), (10, 200, 30))])
    assert emb.shape == (1, 16)
    from safetensors.torch import load_file  # the folder's weights are what runs, not a fresh init

    saved = load_file(str(tiny_clip_folder / "open_clip_model.safetensors"))
    live = m.model.state_dict()
    assert saved.keys() == live.keys()
    assert all(torch.equal(live[k].to(saved[k].dtype), saved[k]) for k in saved)


def test_hf_hub_spec_loads_from_the_local_hub_cache(tiny_clip_folder, tmp_path, monkeypatch):
    """The same folder placed in a Hugging Face cache as repo test-org/tiny-clip: the hf-hub: spec
    resolves as cached and loads with the hub switched off (no request is made)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snap = cache / "models--test-org--tiny-clip" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_clip_folder, snap)
    (cache / "models--test-org--tiny-clip" / "refs").mkdir()
    (cache / "models--test-org--tiny-clip" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    res = resolve_clip_spec("hf-hub:test-org/tiny-clip")
    assert not res.fallback and "local Hugging Face cache" in res.reason
    from_hub = ClipModel.load(res, "cpu")
    from_dir = ClipModel.load(f"local-dir:{tiny_clip_folder}", "cpu")
    texts = ["a cat", "a car"]
    assert torch.allclose(from_hub.encode_texts(texts), from_dir.encode_texts(texts), atol=1e-6)


def _fake_cache(root, repo: str, files: dict[str, bytes]):
    """A Hugging Face cache holding `files` of `repo` at one snapshot (as huggingface_hub lays it out)."""
    base = root / f"models--{repo.replace('/', '--')}"
    snap = base / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text("0" * 40)
    return snap


def test_a_cached_pretrained_tag_loads_its_cached_file_with_the_tags_settings(tmp_path, monkeypatch):
    """ViT-B-32/openai in the cache: open_clip gets the cached weights file itself (so it makes no
    request) plus what the tag would have set: QuickGELU and OpenAI's preprocessing."""
    import open_clip
    from huggingface_hub import constants

    repo, names = registry._hub_files(parse_clip_spec("ViT-B-32/openai"))
    snap = _fake_cache(tmp_path, repo, {names[0]: b"weights"})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    src = registry.clip_source(parse_clip_spec("ViT-B-32/openai"))
    tag = open_clip.pretrained.get_pretrained_cfg("ViT-B-32", "openai")
    assert src.where == "local cache" and src.pretrained == str(snap / names[0])
    assert src.kwargs["force_quick_gelu"] is True and src.kwargs["image_mean"] == tag["mean"]
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    assert registry.clip_source(parse_clip_spec("ViT-B-32/openai")).where == "hub"


def test_loading_from_the_cache_leaves_the_offline_switch_alone(tiny_clip_folder, tmp_path, monkeypatch):
    """A cached hf-hub model loads with the hub unreachable and HF_HUB_OFFLINE off, and the switch
    is still off afterwards: nothing process-wide is flipped (other threads may be loading)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    _fake_cache(cache, "test-org/tiny-clip", {p.name: p.read_bytes() for p in tiny_clip_folder.iterdir()})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    t0 = time.time()
    model = ClipModel.load("hf-hub:test-org/tiny-clip", "cpu")
    assert time.time() - t0 < 10 and model.embed_dim == 16
    assert constants.HF_HUB_OFFLINE is False


def test_user_errors_are_not_value_errors():
    """`except ValueError` must never turn a bug into a friendly message, nor the reverse."""
    assert not issubclass(UserError, ValueError)
    with pytest.raises(UserError):
        parse_clip_spec("")
