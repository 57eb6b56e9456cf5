"""The cascade's upsampler: its conditioning, noise augmentation, save/load, and the Text to image stage."""
import pytest
import torch
import torch.nn.functional as F

from demo_core.diffusion.upsampler import (Upsampler, UpsamplerConfig, build_upsampler, load_upsampler,
                                           save_upsampler, upsample_steps)


def tiny_upsampler(seed=0, low=16, size=32) -> Upsampler:
    torch.manual_seed(seed)
    return build_upsampler(UpsamplerConfig(low_size=low, size=size, T=50), (8, 16, 16, 16)).eval()


class _Oracle(Upsampler):
    """An upsampler whose network knows x_0 is the enlarged condition: ε̂ = (x_t − √ᾱ_t·up(z)) / √(1 − ᾱ_t)."""

    def forward(self, x_t, k, z, s):
        a = self.schedule.alpha_bars[k + 1].view(-1, 1, 1, 1).to(x_t)
        return (x_t - a.sqrt() * self.enlarge(z)) / (1 - a).sqrt()


def test_the_sampler_draws_what_its_condition_says_downsampled_it_is_the_low_resolution_image():
    model = _Oracle(tiny_upsampler().unet, UpsamplerConfig(low_size=16, size=32, T=50))
    g = torch.Generator().manual_seed(0)
    smooth = lambda: F.interpolate(torch.rand(2, 3, 4, 4, generator=g) * 1.6 - 0.8, size=(16, 16), mode="bilinear")  # noqa: E731
    low = smooth()  # a picture, not pixel noise (bicubic overshoots on noise and x̂_0 is clipped)
    frames = list(upsample_steps(model, low, torch.randn(2, 3, 32, 32, generator=g), g, steps=10, aug=0))
    assert len(frames) == 10 and frames[-1].x_prev.shape == (2, 3, 32, 32)
    back = F.interpolate(frames[-1].x_prev, size=(16, 16), mode="area")
    assert (back - low).abs().mean() < 0.05  # bicubic up, area down: close to the input, not equal
    assert (back - smooth()).abs().mean() > 0.2  # and far from another picture


def test_noise_augmentation_is_the_forward_process_at_level_s_and_s0_is_the_image():
    model = tiny_upsampler()
    low, noise = torch.rand(3, 3, 16, 16) * 2 - 1, torch.randn(3, 3, 16, 16)
    s = torch.tensor([0, 10, 50])
    z = model.augment(low, s, noise)
    ab = model.schedule.alpha_bars
    assert torch.equal(z[0], low[0])
    for i in (1, 2):
        assert torch.allclose(z[i], ab[s[i]].sqrt() * low[i] + (1 - ab[s[i]]).sqrt() * noise[i], atol=1e-6)


def test_the_model_reads_both_its_condition_and_the_augmentation_level():
    model = tiny_upsampler()
    for p in model.unet.conv_out.parameters():  # diffusers may start the output layer small: make it speak
        torch.nn.init.normal_(p, std=0.3)
    x, k = torch.randn(1, 3, 32, 32), torch.tensor([20])
    z = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        base = model(x, k, z, torch.tensor([0]))
        assert (model(x, k, -z, torch.tensor([0])) - base).abs().max() > 1e-3
        assert (model(x, k, z, torch.tensor([40])) - base).abs().max() > 1e-3


def test_an_upsampler_saves_and_loads_back(tmp_path):
    model = tiny_upsampler()
    save_upsampler(model, tmp_path / "up", dtype=torch.float32)
    back = load_upsampler(tmp_path / "up")
    assert back.cfg == model.cfg
    x, k, z, s = torch.randn(2, 3, 32, 32), torch.tensor([3, 7]), torch.randn(2, 3, 16, 16), torch.tensor([0, 9])
    with torch.no_grad():
        assert torch.allclose(model(x, k, z, s), back(x, k, z, s), atol=1e-5)


def test_text_to_image_streams_the_base_sample_then_the_upsampled_one_and_the_switch_turns_it_off(tmp_path):
    from demo_core.diffusion.conditional import CondConfig, TextCondUNet, build_unet, save_cond_model
    from demo_core.diffusion.text2img_view import UPSAMPLING
    from demo_core.engine import Engine

    torch.manual_seed(0)
    save_cond_model(TextCondUNet(build_unet((8, 16, 16), image_size=16), CondConfig(T=50)), tmp_path / "m",
                    dtype=torch.float32)
    save_upsampler(tiny_upsampler(low=16, size=32), tmp_path / "up", dtype=torch.float32)
    engine = Engine("mini-clip", "cpu", text2img_model=tmp_path / "m", noised_clip=tmp_path / "none",
                    upsampler=tmp_path / "up")
    try:
        assert engine.text2img_upsamples
        updates = list(engine.text2img("a heart", steps=6, n=2))
        stages = [u.stage for u in updates if not u.final]
        assert stages == [""] * 6 + [UPSAMPLING] * 25  # the base run, then the upsampler's DDIM steps
        final = updates[-1]
        assert final.final and not final.stopped
        assert final.captions == ["image 1 · 32×32 base", "image 1 · 64×64 upsampled",
                                  "image 2 · 32×32 base", "image 2 · 64×64 upsampled"]
        assert all(im.size == (128, 128) for im in final.images)
        off = list(engine.text2img("a heart", steps=6, n=2, upsample=False))
        assert all(u.stage == "" for u in off) and off[-1].captions == ["image 1", "image 2"]
        assert len(off) == 7
    finally:
        engine.close()


def test_unclip_decodes_then_upsamples_and_the_switch_turns_it_off(tmp_path):
    """The bundled prior and decoder (32×32) with a tiny random upsampler to 64×64."""
    from demo_core.diffusion.upsampler import UPSAMPLING
    from demo_core.engine import Engine

    save_upsampler(tiny_upsampler(low=32, size=64), tmp_path / "up", dtype=torch.float32)
    engine = Engine("mini-clip", "cpu", upsampler=tmp_path / "up")
    try:
        assert engine.unclip_upsamples
        updates = list(engine.unclip("a red heart", n=2, steps=4))
        assert [u.stage for u in updates] == ["embeddings"] + ["decoding"] * 4 + [UPSAMPLING] * 25 + ["done"]
        assert updates[-1].x_t.size == (128 * 2, 128)  # the 64×64 pictures, two in a row
        assert len(updates[-1].cos_to_source) == 2 and updates[-1].upsampled  # measured on the upsampled images
        off = list(engine.unclip("a red heart", n=2, steps=4, upsample=False))
        assert UPSAMPLING not in [u.stage for u in off] and not off[-1].upsampled
    finally:
        engine.close()


def test_the_network_predicts_v_and_the_sampler_gets_eps_back():
    """v = √ᾱ·ε − √(1−ᾱ)·x_0: a network that outputs the true v makes forward() return the true ε."""
    model = tiny_upsampler()
    s = model.schedule
    x0, eps = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, 3, 32, 32)
    t = torch.tensor([5, 40])
    ab = s.alpha_bars[t].float().view(-1, 1, 1, 1)
    x_t, v = ab.sqrt() * x0 + (1 - ab).sqrt() * eps, ab.sqrt() * eps - (1 - ab).sqrt() * x0
    model.net = lambda *_: v
    assert model.cfg.prediction == "v"
    assert torch.allclose(model(x_t, t - 1, torch.zeros(2, 3, 16, 16), torch.zeros(2, dtype=torch.long)), eps, atol=1e-5)


@pytest.mark.slow
def test_the_bundled_upsampler_redraws_held_out_emoji_at_64_and_keeps_them():
    """The bundled upsampler on held-out emoji (never trained on), area-downsampled to 32×32: its 64×64 pictures,
    downsampled again, are close to the 32×32 input (mean error measured 0.05–0.08 on 16 held-out renders),
    and far from the other pictures' inputs."""
    import numpy as np
    from PIL import Image

    from demo_core.diffusion.upsampler import BUNDLED_UPSAMPLER, cascade
    from tests.conftest import EXAMPLES

    up = load_upsampler(BUNDLED_UPSAMPLER)
    files = sorted((EXAMPLES / "heldout-emoji").glob("*.png"))
    pics = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
                        for f in files]) / 127.5 - 1  # (N, 3, 128, 128) on white
    low = F.interpolate(pics, size=(32, 32), mode="area")
    with torch.inference_mode():
        *_, last = cascade(up, low, seed=0)
    out = last.x_prev.clamp(-1, 1)
    assert out.shape == (len(files), 3, 64, 64)
    back = F.interpolate(out, size=(32, 32), mode="area")
    err = (back - low).abs().mean(dim=(1, 2, 3))
    assert err.max() < 0.12, err
    assert (back - low.roll(1, 0)).abs().mean() > 3 * err.mean()
