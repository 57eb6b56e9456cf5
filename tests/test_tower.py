"""Faster image towers (demo_core.clip.tower) and index_builder --tower: the vectors a faster tower
gives agree with fp32, the agreement measure sees when they do not, and a build uses a tower only
after checking it on the folder."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from demo_core.clip import tower as tower_mod
from demo_core.clip.tower import ImageTower, agreement, agrees, onnx_available
from demo_core.errors import InputError
from demo_core.search.builder import build_index
from demo_core.search.index import ImageIndex
from tests.conftest import EXAMPLES, ROOT

needs_onnx = pytest.mark.skipif(not onnx_available(), reason="onnxruntime is not installed (requirements-scale.txt)")
GALLERY = ROOT / "assets" / "gallery" / "images"


@pytest.fixture(scope="module")
def tiny_vit():
    """A small open_clip ViT (the ViT-B-32 family: patch embedding, MultiheadAttention, MLP Linears),
    randomly initialised, as a ClipModel."""
    import open_clip

    from demo_core.clip.model import ClipModel
    from demo_core.device import pick_device
    from demo_core.registry import parse_clip_spec

    torch.manual_seed(0)
    model = open_clip.CLIP(embed_dim=32, vision_cfg={"image_size": 64, "patch_size": 16, "width": 64, "layers": 2,
                                                     "head_width": 32, "mlp_ratio": 4},
                           text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1})
    pre = open_clip.image_transform(64, is_train=False)
    return ClipModel(model, pre, open_clip.get_tokenizer("ViT-B-32"), parse_clip_spec("ViT-B-32"), pick_device("cpu"))


def _pixels(clip, n=24):
    from PIL import Image

    paths = sorted(GALLERY.rglob("*.jpg"))[:n] + sorted(GALLERY.rglob("*.png"))[:n]
    return torch.stack([clip.preprocess(Image.open(p).convert("RGB")) for p in paths[:n]])


def test_agreement_counts_cosines_and_shared_neighbours():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 16)).astype(np.float32)
    same = agreement(a, a * 3)  # scale does not matter: cosines
    assert same["cos_min"] == pytest.approx(1.0, abs=1e-6) and same["overlap_at_10"] == 1.0 and same["images"] == 40
    noisy = agreement(a, a + rng.normal(0, 0.5, a.shape).astype(np.float32))
    assert noisy["cos_min"] < 0.99 and noisy["overlap_at_10"] < 0.9 and not agrees(noisy)
    shuffled = agreement(a, a[::-1])  # every image given another's vector
    assert shuffled["cos_mean"] < 0.5 and shuffled["overlap_at_10"] < 0.5


def test_int8_tower_quantizes_a_vits_linears_and_agrees_with_fp32(tiny_vit):
    tw = ImageTower(tiny_vit, "int8")
    quantized = [m for m in tw._visual.modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
    assert len(quantized) == 2 * 2  # each block's MLP: c_fc and c_proj
    x = _pixels(tiny_vit)
    ref, fast = tiny_vit.encode_pixels(x).numpy(), tw.encode_pixels(x).numpy()
    assert fast.shape == ref.shape and np.allclose(np.linalg.norm(fast, axis=1), 1, atol=1e-5)
    stats = agreement(ref, fast)
    assert stats["cos_min"] > 0.99 and stats["cos_min"] < 1.0  # int8: close, not identical
    assert type(tiny_vit.model.visual.transformer.resblocks[0].mlp.c_fc) is torch.nn.Linear  # the model itself untouched


def test_int8_on_a_convolutional_tower_is_refused_in_plain_words(bundled_clip):
    with pytest.raises(InputError, match="no Linear layers for int8"):
        ImageTower(bundled_clip, "int8")
    with pytest.raises(InputError, match="Unknown tower"):
        ImageTower(bundled_clip, "fp8")


@needs_onnx
@pytest.mark.parametrize("which", ["tiny_vit", "bundled_clip"])
def test_onnx_tower_gives_fp32s_vectors(which, request, tmp_path):
    clip = request.getfixturevalue(which)
    tw = ImageTower(clip, "onnx", workdir=tmp_path)
    assert (tmp_path / "visual.onnx").stat().st_size > 10_000
    x = _pixels(clip, 5)  # a batch size the export never saw: the batch axis is free
    stats = agreement(clip.encode_pixels(x).numpy(), tw.encode_pixels(x).numpy())
    assert stats["cos_min"] > 0.9999
    q = ImageTower(clip, "onnx-int8", workdir=tmp_path)
    assert (tmp_path / "visual-int8.onnx").stat().st_size < (tmp_path / "visual.onnx").stat().st_size
    assert agreement(clip.encode_pixels(x).numpy(), q.encode_pixels(x).numpy())["cos_min"] > 0.99


@needs_onnx
def test_a_build_checks_the_tower_on_the_folder_then_embeds_with_it(bundled_clip, tmp_path):
    ref = build_index(EXAMPLES, tmp_path / "fp32", bundled_clip, batch_size=4, workers=1)
    report = build_index(EXAMPLES, tmp_path / "onnx", bundled_clip, batch_size=4, workers=1, tower="onnx")
    assert report.tower == "onnx" and report.total == ref.total
    assert report.tower_note.startswith("tower onnx: least cosine to fp32 1.0000") and "instead" not in report.tower_note
    assert report.tower_note in report.summary_lines()
    a, b = (ImageIndex(tmp_path / n, readonly=True) for n in ("fp32", "onnx"))
    (ia, va), (ib, vb) = a.load_vectors(), b.load_vectors()
    assert np.array_equal(ia, ib) and np.max(np.abs(va - vb)) < 1e-4
    assert json.loads((tmp_path / "onnx" / "manifest.json").read_text())["last_build"]["tower"] == "onnx"
    again = build_index(EXAMPLES, tmp_path / "onnx", bundled_clip, tower="onnx")  # nothing new: no check, no export
    assert again.indexed == 0 and again.tower == "fp32" and not again.tower_note


@needs_onnx
def test_a_tower_that_disagrees_on_the_folder_is_not_used(bundled_clip, tmp_path, monkeypatch):
    monkeypatch.setattr(tower_mod, "MIN_COS", 1.5)  # no tower can reach it: the check must refuse
    report = build_index(EXAMPLES, tmp_path / "idx", bundled_clip, batch_size=4, workers=1, tower="onnx-int8")
    assert report.tower == "fp32" and report.total > 0
    assert report.tower_note.endswith("under 1.5 / 0.9: embedded with fp32 instead")


@pytest.mark.slow  # a subprocess CLI run (the fast set keeps test_cli_over_the_hostile_corpus for the wiring)
def test_the_cli_refuses_a_tower_the_model_cannot_use_in_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "index_builder"), str(EXAMPLES), "--out", str(tmp_path / "idx"),
                           "--model", "mini-clip", "--tower", "int8"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: mini-clip (bundled)'s image tower has no Linear layers for int8 to speed up "
                      "(a CLIP-ResNet is convolutions); try the onnx tower."]


@needs_onnx
def test_auto_takes_the_fastest_tower_that_agrees_and_says_what_it_measured(bundled_clip, tmp_path, monkeypatch):
    monkeypatch.setattr(tower_mod, "AUTO_MIN_IMAGES", 1)  # 13 images to embed count as a large build here
    monkeypatch.setattr(tower_mod, "AUTO_MIN_GAIN", 0.0)  # any agreeing tower beats fp32: no timing noise in the test
    report = build_index(EXAMPLES, tmp_path / "auto", bundled_clip, batch_size=4, workers=1)
    assert report.tower in ("onnx", "onnx-int8")  # int8 cannot run on a CLIP-ResNet and is left out, not an error
    assert report.tower_note.startswith(f"tower auto: {report.tower}, ") and "onnx " in report.tower_note
    assert "int8 " not in report.tower_note.replace("onnx-int8", "")
    monkeypatch.setattr(tower_mod, "MIN_COS", 1.5)
    report = build_index(EXAMPLES, tmp_path / "none", bundled_clip, batch_size=4, workers=1)
    assert report.tower == "fp32" and report.tower_note.startswith("tower auto: fp32 (on 13 images of this folder: onnx ")
    assert report.tower_note.count("(disagrees)") == 2


def test_auto_leaves_small_builds_on_fp32_without_measuring(bundled_clip, tmp_path):
    report = build_index(EXAMPLES, tmp_path / "idx", bundled_clip, batch_size=4, workers=1)
    assert report.tower == "fp32" and report.tower_note == "" and report.indexed > 0


@pytest.mark.slow  # a subprocess CLI run (the fast set keeps test_cli_over_the_hostile_corpus for the wiring)
def test_without_onnx_runtime_the_cli_says_how_to_install_it(tmp_path):
    code = ("import sys, runpy; sys.modules['onnxruntime'] = None; "
            f"sys.argv = ['index_builder', {str(EXAMPLES)!r}, '--out', {str(tmp_path / 'idx')!r}, '--tower', 'onnx-int8']; "
            f"runpy.run_path({str(ROOT / 'index_builder')!r}, run_name='__main__')")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and not (tmp_path / "idx").exists()
    assert done.stderr.strip().splitlines() == [
        "error: the onnx towers need ONNX Runtime: .venv/bin/pip install -r requirements-scale.txt"]


@needs_onnx
def test_a_tower_that_cannot_be_built_is_a_plain_error_and_auto_skips_it(bundled_clip, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::weird' to ONNX is not supported")

    monkeypatch.setattr(tower_mod, "_onnx_session", broken)
    with pytest.raises(InputError, match=rf"The onnx tower cannot be built for {bundled_clip.spec.spec} .*aten::weird.*--tower fp32"):
        ImageTower(bundled_clip, "onnx")
    monkeypatch.setattr(tower_mod, "AUTO_MIN_IMAGES", 1)
    report = build_index(EXAMPLES, tmp_path / "idx", bundled_clip, batch_size=4, workers=1)
    assert report.tower == "fp32" and report.tower_note.endswith("(on 13 images of this folder: no other tower can run here)")
