"""The reverse-process view: a DDPM in diffusers' folder format, streamed and stoppable."""
import numpy as np
import pytest
import torch

from demo_core.diffusion import models as ddpm_models
from demo_core.diffusion.ddpm import Schedule
from demo_core.diffusion.models import load_ddpm
from demo_core.diffusion.reverse_view import run_reverse
from demo_core.diffusion.samplers import ddpm_sampler, initial_noise
from demo_core.runs import KeptFiles, StopSignals
from demo_core.errors import InputError, ModelUnavailable


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


def test_a_hub_model_that_cannot_load_is_not_offered(monkeypatch):
    """Offline and not cached, the hub DDPM is left out of the dropdown; once cached, it is offered."""
    from demo_core.diffusion import models

    assert models.available_ddpms() == ["emoji-ddpm"]  # tests run with HF_HUB_OFFLINE=1 and an empty cache
    monkeypatch.setattr(models, "cached_file", lambda repo, names: f"/cache/{repo}/model_index.json")
    assert models.available_ddpms() == ["emoji-ddpm", "google/ddpm-cifar10-32"]


def test_missing_hub_model_offline_is_a_plain_message():
    with pytest.raises(ModelUnavailable, match="not in the local Hugging Face cache"):
        load_ddpm("google/ddpm-cifar10-32", "cpu")


def test_ddpm_streams_T_frames_and_ddim_its_steps_from_the_same_noise(tiny_ddpm_folder):
    m = load_ddpm(str(tiny_ddpm_folder), "cpu")
    ddpm = list(run_reverse(m, "DDPM", seed=3, n=2))
    ddim = list(run_reverse(m, "DDIM", seed=3, n=2, ddim_steps=5))
    assert [f.step.t for f in ddpm] == list(range(20, 0, -1))
    assert [f.step.t for f in ddim] == [17, 13, 9, 5, 1]
    assert torch.equal(ddpm[0].step.x_t, ddim[0].step.x_t)  # one seed, one x_T
    assert ddpm[-1].x_t.size == (2 * 128, 128)  # two samples side by side


def test_the_view_offers_algorithm_2_as_written_and_the_clipped_variant(tiny_ddpm_folder):
    """clip_x0=False is the literal Algorithm 2 line; True clips x̂_0 (DDPMScheduler's default clip_sample), which
    changes a random model's trajectory, whose x̂_0 overshoots [-1, 1]."""
    m = load_ddpm(str(tiny_ddpm_folder), "cpu")
    literal = list(run_reverse(m, "DDPM", seed=3, n=2, clip_x0=False))
    clipped = list(run_reverse(m, "DDPM", seed=3, n=2, clip_x0=True))
    s = Schedule.make(m.schedule, m.T)
    x_T = initial_noise((2, 3, 8, 8), torch.Generator().manual_seed(3))
    *_, last = ddpm_sampler(m.eps, s, x_T, torch.Generator().manual_seed(4), clip_x0=False)
    assert torch.equal(literal[-1].step.x_prev, last.x_prev)
    assert clipped[0].step.x0_hat.abs().max() > 1  # the estimate overshoots: clipping matters
    assert not torch.allclose(literal[-1].step.x_prev, clipped[-1].step.x_prev, atol=1e-3)


def test_stop_signals_are_per_request_and_forgotten_when_it_ends():
    stops = StopSignals()
    with stops.watch("session-a") as a, stops.watch("session-b") as b, stops.watch(None) as api:
        assert len(stops) == 3  # a keyless API run is counted too
        stops.stop("session-a")
        stops.stop(None)  # nobody can stop a keyless run by key
        assert a.is_set() and not b.is_set() and not api.is_set()
        stops.stop_all()  # shutting down reaches every run
        assert b.is_set() and api.is_set()
    assert len(stops) == 0  # nothing kept once the runs end


def test_kept_files_keep_the_newest_few_and_go_at_close():
    files = KeptFiles(keep=2)
    paths = [files.write(bytes([i]), prefix="run-", suffix=".gif") for i in range(4)]
    assert [p.exists() for p in paths] == [False, False, True, True]
    assert paths[3].read_bytes() == bytes([3]) and paths[3].parent == files.folder
    files.close()
    assert not files.folder.exists()


@pytest.fixture(scope="module")
def engine(tiny_ddpm_folder):
    from demo_core.engine import Engine

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(ddpm_models.BUNDLED_DDPMS, "emoji-ddpm", tiny_ddpm_folder)
        e = Engine("mini-clip", "cpu")
    yield e
    e.close()


@pytest.mark.slow
def test_stop_keeps_the_frames_so_far_and_only_stops_its_own_session(engine):
    run = engine.reverse.sample("emoji-ddpm", "DDPM", seed=0, n=2, stop_key="s1")
    other = engine.reverse.sample("emoji-ddpm", "DDIM", ddim_steps=5, seed=0, n=1, stop_key="s2")
    first = next(run)
    next(other)
    assert engine.running == 2 and not first.final
    engine.stop("s1")
    *_, last = run
    assert last.final and last.stopped and last.latest["DDPM"].step.index + 1 < 20
    assert len(last.strip) >= 1 and last.gif.suffix == ".gif" and last.gif.exists()
    *_, done = other  # the other session's run went on to the end
    assert done.final and not done.stopped and done.latest["DDIM"].step.index + 1 == 5
    assert engine.running == 0  # no stop signal left behind


@pytest.mark.slow
def test_ddpm_vs_ddim_interleaves_both_to_the_end(engine):
    updates = list(engine.reverse.sample("emoji-ddpm", "DDPM vs DDIM", ddim_steps=5, seed=0, n=1))
    assert len(updates) == 21  # one per DDPM step, then the final one
    half = updates[9].latest  # DDPM half done: DDIM has done its share too, not more than one step ahead
    assert half["DDPM"].step.index + 1 == 10 and half["DDIM"].step.index + 1 == 3
    last = updates[-1]
    assert last.final and last.latest["DDPM"].step.index + 1 == 20 and last.latest["DDIM"].step.index + 1 == 5
    assert {caption.split()[0] for _, caption in last.strip} == {"DDPM", "DDIM"}


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


@pytest.mark.slow
def test_the_timeline_opens_on_the_result_not_on_noise(engine):
    """The strip was oldest first: the gallery opened on frames of pure noise and the result needed scrolling."""
    import re

    from ui.diffusion import _outputs

    *_, last = engine.reverse.sample("emoji-ddpm", "DDIM", ddim_steps=10, seed=0, n=1)
    strip = _outputs(last)[7]
    ts = [int(re.search(r"t\s*=\s*(\d+)", caption).group(1)) for _, caption in strip]
    assert len(ts) >= 5 and ts == sorted(ts) and ts[0] == min(ts)  # newest (smallest t) first


@pytest.mark.slow
def test_the_default_reverse_model_is_the_text_conditional_one_guided_by_the_prompt(engine):
    """Diffusion step by step denoises into a picture of the prompt: its default model is Text to image's
    default model with classifier-free guidance, the same sampling as Text to image (same seed, same pictures)."""
    from demo_core.diffusion.prompted import OLD_TEXT_DDPM, TEXT_DDPM

    assert engine.reverse.models()[0] == TEXT_DDPM and "emoji-ddpm" in engine.reverse.models()
    *_, reverse = engine.reverse.sample(TEXT_DDPM, "DDIM", ddim_steps=10, seed=3, n=2, prompt="a cat face", scale=3)
    *_, t2i = engine.text2img("a cat face", steps=10, seed=3, n=2, scale=3, upsample=False)  # the base run
    assert np.array_equal(np.asarray(reverse.latest["DDIM"].x_t), np.asarray(t2i.x_t))
    *_, other = engine.reverse.sample(TEXT_DDPM, "DDIM", ddim_steps=10, seed=3, n=2, prompt="a clock", scale=3)
    assert not np.array_equal(np.asarray(other.latest["DDIM"].x_t), np.asarray(t2i.x_t))  # the prompt steers
    with pytest.raises(InputError, match="Type a prompt"):
        next(engine.reverse.sample(TEXT_DDPM, "DDIM", prompt="  "))
    *_, old = engine.reverse.sample(OLD_TEXT_DDPM, "DDIM", ddim_steps=10, seed=3, n=2, prompt="a clock", scale=3)
    assert np.array_equal(np.asarray(old.latest["DDIM"].x_t), np.asarray(other.latest["DDIM"].x_t))  # its old name
