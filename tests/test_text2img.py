"""Text to image: classifier-free guidance limits, the null condition, CLIP guidance, training resume."""
import copy
import math

import numpy as np
import pytest
import torch

from demo_core.diffusion.conditional import CondConfig, TextCondUNet, build_unet, load_cond_model, save_cond_model
from demo_core.diffusion.ddpm import Schedule, ddpm_step
from demo_core.diffusion.guidance import clip_score_grad
from demo_core.diffusion.text2img import guided_sampler

from tests.test_training import toy_data  # noqa: F401  (fixture: 16 coloured shapes with captions)


def tiny_model(seed=0, embed_dim=16) -> TextCondUNet:
    torch.manual_seed(seed)
    return TextCondUNet(build_unet((8, 16, 16), image_size=16), CondConfig(embed_dim=embed_dim, T=20)).eval()


def _first_step(model, method, scale, cond, negative=None, noised=None, sampler="ddim"):
    s = Schedule.make("linear", 20)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=g)
    step = next(guided_sampler(model, s, x, g, method=method, scale=scale, cond=cond, negative=negative,
                               noised_clip=noised, sampler=sampler, steps=5))
    return s, x, step


def test_cfg_scale_0_is_the_unconditional_and_scale_1_the_conditional_prediction():
    model = tiny_model()
    torch.nn.init.normal_(model.cond_proj[-1].weight, std=0.5)  # a condition that matters
    cond = torch.nn.functional.normalize(torch.randn(16), dim=0)
    _, x, at0 = _first_step(model, "cfg", 0.0, cond)
    _, _, at1 = _first_step(model, "cfg", 1.0, cond)
    k = torch.full((2,), at0.t - 1)
    with torch.no_grad():
        uncond = model(x, k, torch.zeros(2, 16))
        conditional = model(x, k, cond.expand(2, -1))
    assert not torch.allclose(uncond, conditional, atol=1e-4)  # the condition changes the output
    assert torch.allclose(at0.eps, uncond, atol=1e-5)
    assert torch.allclose(at1.eps, conditional, atol=1e-5)
    _, _, at3 = _first_step(model, "cfg", 3.0, cond)  # and w = 3 extrapolates past the conditional
    assert torch.allclose(at3.eps, uncond + 3 * (conditional - uncond), atol=1e-5)


def test_unconditional_sampling_uses_the_null_condition_training_used(toy_data, tiny_clip_folder):  # noqa: F811
    from demo_core.training.emoji_data import EmojiData
    from demo_core.training.banks import caption_bank
    from demo_core.training.emoji_groups import sampling_weights
    from demo_core.training.train_text2img import Text2ImgConfig, make_batch

    cfg = Text2ImgConfig(batch_size=64, p_uncond=0.25, captions_per_emoji=3, image_size=16,
                         clip_spec=f"local-dir:{tiny_clip_folder}")
    data = EmojiData.load(toy_data, split="train")
    bank, captions = caption_bank(data, cfg.clip_spec, per_emoji=3)
    assert bank.shape == (16, 3, 16) and torch.allclose(bank.norm(dim=-1), torch.ones(16, 3), atol=1e-5)
    _, _, _, e = make_batch(data, bank, sampling_weights(data, 0.5), 0, cfg, Schedule.make("linear", 1000))
    dropped = e.norm(dim=-1) == 0
    assert 0.1 < dropped.float().mean() < 0.45  # ~p_uncond of the batch trains on ∅
    model = tiny_model()
    assert torch.equal(model.null(3), torch.zeros(3, 16))  # ∅ at sampling = ∅ in training (zeros)
    _, x, step = _first_step(model, "none", 0.0, None)
    with torch.no_grad():
        assert torch.allclose(step.eps, model(x, torch.full((2,), step.t - 1), torch.zeros(2, 16)), atol=1e-6)


class _TinyNoisedClip(torch.nn.Module):
    """f(x_t, t): a fixed random linear image embedding that depends on t."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.w = torch.nn.Linear(3 * 16 * 16 + 1, 16)

    def forward(self, x, t):
        tt = torch.full((x.shape[0], 1), float(t) / 20)
        return torch.nn.functional.normalize(self.w(torch.cat([x.flatten(1), tt], 1)), dim=-1)


def test_clip_guidance_gradient_is_finite_and_the_guided_mean_follows_the_formula():
    model, noised = tiny_model(), _TinyNoisedClip()
    cond = torch.nn.functional.normalize(torch.randn(16), dim=0)
    s, x, step = _first_step(model, "clip", 50.0, cond, noised=noised, sampler="ddpm")
    assert torch.isfinite(step.grad).all() and step.grad.abs().sum() > 0
    grad, score = clip_score_grad(noised, x, step.t, cond.expand(2, -1))
    assert torch.allclose(step.clip_score, score) and torch.allclose(step.grad, grad)
    # a finite difference along the gradient raises the score by ≈ |grad|²·h
    h = 1e-3
    up = (noised(x + h * grad, step.t) * cond).sum(-1)
    assert torch.allclose(up - score, h * grad.flatten(1).pow(2).sum(1), rtol=0.05)
    # μ̂ = μ + s·Σ·∇ with Σ = β̃_t, then + σ_t·z with the sampler's z (same generator draws)
    g = torch.Generator().manual_seed(0)
    torch.randn(2, 3, 16, 16, generator=g)  # x_T
    z = torch.randn(2, 3, 16, 16, generator=g)
    var = s.posterior_variance(step.t)
    mean = ddpm_step(s, x, step.t, step.eps, None, clip_x0=True)
    assert torch.allclose(step.x_prev, mean + 50.0 * var * grad + math.sqrt(var) * z, atol=1e-5)


def test_ddim_clip_guidance_shifts_eps_by_the_score_gradient_and_ddpm_says_its_eps_is_unguided():
    """DDIM: ε̂' = ε̂ − s·√(1 − ᾱ_t)·∇ (the step uses ε̂'); DDPM shifts the mean instead, so its ε̂ is the
    model's own and the frame says so."""
    from demo_core.diffusion.ddpm import ddim_step
    from demo_core.diffusion.text2img_view import pieces_of

    model, noised = tiny_model(), _TinyNoisedClip()
    cond = torch.nn.functional.normalize(torch.randn(16), dim=0)
    s, x, step = _first_step(model, "clip", 50.0, cond, noised=noised, sampler="ddim")
    with torch.inference_mode():
        eps = model(x, torch.full((2,), step.t - 1), model.null(2))
    grad, _ = clip_score_grad(noised, x, step.t, cond.expand(2, -1))
    guided = eps - 50.0 * math.sqrt(1 - float(s.alpha_bars[step.t])) * grad
    assert torch.allclose(step.eps, guided, atol=1e-5) and step.eps_guided
    assert torch.allclose(step.x_prev, ddim_step(s, x, step.t, step.t - 20 // 5, guided, None, clip_x0=True),
                          atol=1e-5)
    assert "guided ε̂ (what the step uses)" in [c for _, c in pieces_of(step)]
    _, _, ddpm = _first_step(model, "clip", 50.0, cond, noised=noised, sampler="ddpm")
    assert not ddpm.eps_guided
    captions = [c for _, c in pieces_of(ddpm)]
    assert "guided ε̂ (what the step uses)" not in captions and any("unguided" in c for c in captions)


def test_a_guidance_sweep_is_one_run_from_one_noise():
    model = tiny_model()
    torch.nn.init.normal_(model.cond_proj[-1].weight, std=0.5)
    cond = torch.nn.functional.normalize(torch.randn(16), dim=0)
    s = Schedule.make("linear", 20)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 16, 16, generator=g).expand(3, -1, -1, -1).contiguous()
    *_, last = guided_sampler(model, s, x, g, method="cfg", scale=torch.tensor([0.0, 1.0, 1.0]), cond=cond, steps=5)
    assert torch.allclose(last.x_prev[1], last.x_prev[2], atol=1e-5)  # same noise, same scale: same image
    assert not torch.allclose(last.x_prev[0], last.x_prev[1], atol=1e-3)  # another scale: another image


def test_saved_model_loads_back_with_the_same_predictions(tmp_path):
    model = tiny_model()
    save_cond_model(model, tmp_path / "m", dtype=torch.float32)
    back = load_cond_model(tmp_path / "m")
    x, k, e = torch.randn(2, 3, 16, 16), torch.tensor([3, 7]), torch.randn(2, 16)
    with torch.no_grad():
        assert torch.allclose(model(x, k, e), back(x, k, e), atol=1e-6)


@pytest.mark.slow
def test_text2img_training_resumes_bit_equal(toy_data, tiny_clip_folder, tmp_path):  # noqa: F811
    from demo_core.training.train_text2img import Text2ImgConfig, train

    cfg = Text2ImgConfig(steps=4, batch_size=4, warmup=1, checkpoint_every=2, captions_per_emoji=2, image_size=16,
                         block_out_channels=(8, 16, 16), embed_dim=16, clip_spec=f"local-dir:{tiny_clip_folder}")
    train(str(toy_data), str(tmp_path / "full"), cfg)
    train(str(toy_data), str(tmp_path / "split"), copy.deepcopy(cfg), stop_at=2)
    train(str(toy_data), str(tmp_path / "split"), copy.deepcopy(cfg))
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)


@pytest.mark.slow
def test_the_same_trainer_makes_unclips_decoder_conditioned_on_image_embeddings(toy_data, tiny_clip_folder, tmp_path):  # noqa: F811
    from demo_core.training.train_text2img import Text2ImgConfig, train

    cfg = Text2ImgConfig(steps=2, batch_size=4, warmup=1, checkpoint_every=2, captions_per_emoji=2, image_size=16,
                         block_out_channels=(8, 16, 16), embed_dim=16, clip_spec=f"local-dir:{tiny_clip_folder}",
                         condition="image")
    result = train(str(toy_data), str(tmp_path / "dec"), cfg, export=str(tmp_path / "out"))
    assert result["steps"] == 2
    model = load_cond_model(tmp_path / "out")
    assert model.cfg.embed_dim == 16 and model.cfg.condition == "image"


@pytest.mark.parametrize("setting,value,msg", [("scale", float("nan"), "finite"), ("scale", float("inf"), "finite"),
                                               ("inspect", float("nan"), "finite"), ("steps", 2.5, "whole number")])
def test_engine_refuses_non_finite_and_fractional_settings(setting, value, msg, tmp_path):
    from demo_core.diffusion.conditional import CondConfig, TextCondUNet, build_unet, save_cond_model
    from demo_core.engine import Engine
    from demo_core.errors import InputError

    torch.manual_seed(0)
    save_cond_model(TextCondUNet(build_unet((8, 16, 16), image_size=16), CondConfig(T=50)), tmp_path / "m",
                    dtype=torch.float32)
    engine = Engine("mini-clip", "cpu", text2img_model=tmp_path / "m", noised_clip=tmp_path / "none")
    with pytest.raises(InputError, match=msg):
        next(engine.text2img("a heart", **{setting: value}))


def test_stop_ends_the_run_after_its_step_and_keeps_what_was_made(tmp_path):
    from demo_core.diffusion.conditional import CondConfig, TextCondUNet, build_unet, save_cond_model
    from demo_core.engine import Engine

    torch.manual_seed(0)
    save_cond_model(TextCondUNet(build_unet((8, 16, 16), image_size=16), CondConfig(T=50)), tmp_path / "m",
                    dtype=torch.float32)
    engine = Engine("mini-clip", "cpu", text2img_model=tmp_path / "m", noised_clip=tmp_path / "none")
    updates = []
    for u in engine.text2img("a heart", sampler="DDPM", n=2, stop_key="session-a"):
        updates.append(u)
        if len(updates) == 3:
            engine.stop("session-b")  # another session's Stop does nothing here
        if len(updates) == 5:
            engine.stop("session-a")
    final = updates[-1]
    assert final.final and final.stopped and final.index == 4 and final.total == 50
    assert len(final.images) == 2 and engine.running == 0


def test_the_inspect_slider_re_renders_a_finished_runs_step_without_sampling_again(tmp_path):
    """The slider took effect only on the next Generate. A finished run keeps image 1 at the slider's 21 stops;
    `pieces_at` shows any of them, the same pieces a new run inspecting that step shows."""
    from demo_core.diffusion.conditional import CondConfig, TextCondUNet, build_unet, save_cond_model
    from demo_core.diffusion.text2img_view import INSPECT_POSITIONS, pieces_at
    from demo_core.engine import Engine

    torch.manual_seed(0)
    save_cond_model(TextCondUNet(build_unet((8, 16, 16), image_size=16), CondConfig(T=50)), tmp_path / "m",
                    dtype=torch.float32)
    engine = Engine("mini-clip", "cpu", text2img_model=tmp_path / "m", noised_clip=tmp_path / "none")
    try:
        *_, first = engine.text2img("a heart", steps=20, n=2, inspect=0.3)
        assert len(first.kept) == INSPECT_POSITIONS - 1  # 20 steps: the 21 stops fall on 20 distinct steps
        assert all(s.x_t.shape[0] == 1 and s.x_t.device.type == "cpu" for s in first.kept.values())
        *_, again = engine.text2img("a heart", steps=20, n=2, inspect=0.8)
        shown, attention = pieces_at(first.kept, 0.8)
        assert attention == [] and first.attention == []  # a pooled-only model has no cross-attention
        assert [c for _, c in shown] == [c for _, c in again.pieces] and shown[0][1].startswith("x_t (t = ")
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for (a, _), (b, _) in zip(shown, again.pieces))
        assert [c for _, c in pieces_at(first.kept, 0.3)[0]] == [c for _, c in first.pieces]
    finally:
        engine.close()


@pytest.mark.slow
def test_seed_0_no_longer_gives_a_muddy_picture_for_every_prompt():
    """Seed 0's fourth image was a muddy magenta field whatever the prompt: its x_T had a colour cast (green
    mean −0.076) that the emoji models carry into the picture. x_T is drawn with each image's colour mean
    removed; the judge now finds a face in all four pictures of "a smiling face" (bench/muddy_seed.py)."""
    from demo_core.diffusion.samplers import initial_noise
    from demo_core.engine import Engine
    from demo_core.registry import ASSETS
    from demo_core.training.judge import judge_groups, load_judge

    x = initial_noise((4, 3, 32, 32), torch.Generator().manual_seed(0), remove_colour_mean=True)
    assert x.mean((2, 3)).abs().max() < 1e-6 and abs(float(x.std()) - 1) < 0.05
    engine = Engine("mini-clip", "cpu")
    try:
        *_, last = engine.text2img("a smiling face", n=4, seed=0, upsample=False)  # the base model's pictures
        images = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB").resize((32, 32)), np.float32))
                              for im in last.images]).permute(0, 3, 1, 2) / 127.5 - 1
        assert judge_groups(load_judge(ASSETS / "models" / "emoji-judge"), images) == ["face"] * 4
    finally:
        engine.close()
