"""The reverse-process view: a DDPM in diffusers' folder format, streamed and stoppable."""
from types import SimpleNamespace

import pytest
import torch

from demo_core.diffusion import models as ddpm_models
from demo_core.diffusion.models import load_ddpm
from demo_core.diffusion.reverse_view import run_reverse


@pytest.fixture(scope="module")
def tiny_ddpm_folder(tmp_path_factory):
    """A tiny random UNet + DDPMScheduler (T=20) saved as a diffusers DDPMPipeline folder."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                       block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    out = tmp_path_factory.mktemp("tiny-ddpm")
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=20)).save_pretrained(out)
    return out


def test_ddpm_folder_loads_through_from_pretrained(tiny_ddpm_folder):
    m = load_ddpm(str(tiny_ddpm_folder), "cpu")
    assert (m.T, m.schedule, m.sample_size, m.channels) == (20, "linear", 8, 3)
    assert m.eps(torch.zeros(2, 3, 8, 8), 20).shape == (2, 3, 8, 8)


def test_missing_hub_model_offline_is_a_plain_message():
    with pytest.raises(ValueError, match="not in the local Hugging Face cache"):
        load_ddpm("google/ddpm-cifar10-32", "cpu")


def test_ddpm_streams_T_frames_and_ddim_its_steps_from_the_same_noise(tiny_ddpm_folder):
    m = load_ddpm(str(tiny_ddpm_folder), "cpu")
    ddpm = list(run_reverse(m, "DDPM", seed=3, n=2))
    ddim = list(run_reverse(m, "DDIM", seed=3, n=2, ddim_steps=5))
    assert [f.step.t for f in ddpm] == list(range(20, 0, -1))
    assert [f.step.t for f in ddim] == [17, 13, 9, 5, 1]
    assert torch.equal(ddpm[0].step.x_t, ddim[0].step.x_t)  # one seed, one x_T
    assert ddpm[-1].x_t.size == (2 * 128, 128)  # two samples side by side


@pytest.mark.slow
def test_stop_keeps_the_frames_so_far(tiny_ddpm_folder, monkeypatch):
    import app

    monkeypatch.setitem(ddpm_models.BUNDLED_DDPMS, "emoji-ddpm", tiny_ddpm_folder)
    lab = app.Lab("mini-clip", "cpu")
    req = SimpleNamespace(session_hash="s1")
    outs = []
    for i, out in enumerate(lab.sample("emoji-ddpm", "DDPM", 10, 0.0, 0, 2, request=req)):
        outs.append(out)
        if i == 0:
            lab.stop(req)
    status, strip, gif = outs[-1][6], outs[-1][7], outs[-1][8]
    assert "stopped" in status and "step 20 of 20" not in status
    assert len(strip) >= 1 and str(gif).endswith(".gif")
    full = list(lab.sample("emoji-ddpm", "DDPM vs DDIM", 5, 0.0, 0, 1, request=SimpleNamespace(session_hash="s2")))
    assert "done" in full[-1][6] and "step 20 of 20" in full[-1][6] and "step 5 of 5" in full[-1][6]


def test_bundled_emoji_ddpm_turns_noise_into_emoji_on_white():
    """The bundled model, loaded like a hub one, denoises: white background appears, noise goes."""
    from demo_core.diffusion.ddpm import Schedule
    from demo_core.diffusion.samplers import ddim_sampler, initial_noise

    m = load_ddpm("emoji-ddpm", "cpu")
    assert (m.T, m.sample_size) == (1000, 32)
    s = Schedule.make(m.schedule, m.T)
    g = torch.Generator().manual_seed(0)
    x_T = initial_noise((8, 3, 32, 32), g)
    *_, last = ddim_sampler(m.eps, s, x_T, g, steps=20)
    y = last.x_prev.clamp(-1, 1)

    def roughness(z):  # mean absolute difference of vertical neighbours
        return (z[..., 1:, :] - z[..., :-1, :]).abs().mean().item()

    assert (y > 0.8).all(1).float().mean() > 0.18  # emoji are rendered on white: random weights give 13%, this model 23%
    assert roughness(y) < 0.4 * roughness(x_T.clamp(-1, 1))  # random weights: 1.17x, this model: 0.23x
