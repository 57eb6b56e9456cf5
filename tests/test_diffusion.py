"""The DDPM/DDIM math against diffusers' schedulers, and the lecture's errata."""
import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from demo_core.diffusion.ddpm import Schedule, ddim_timesteps, predict_x0, q_sample
from demo_core.diffusion.samplers import ddim_sampler, ddpm_sampler, initial_noise

DIFFUSERS_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def _float64(ref):
    """Run diffusers' step math in float64 on its own betas' exact values. diffusers stores betas
    in float32 (compared with ours, to 1e-6, in the test above); recomputing them here in float64
    lets the trajectory comparison check the *step* math, not float32 rounding of β."""
    T = ref.config.num_train_timesteps
    exact = {"linear": torch.linspace(ref.config.beta_start, ref.config.beta_end, T, dtype=torch.float64),
             "squaredcos_cap_v2": Schedule.make("cosine", T).betas[1:]}[ref.config.beta_schedule]
    assert torch.allclose(exact.float(), ref.betas, atol=1e-6)
    ref.betas = exact
    ref.alphas = 1.0 - ref.betas
    ref.alphas_cumprod = torch.cumprod(ref.alphas, dim=0)
    if hasattr(ref, "final_alpha_cumprod"):
        ref.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return ref


def toy_eps_model(x: torch.Tensor, t: int) -> torch.Tensor:
    """A fixed, non-trivial 'model' so that whole trajectories can be compared."""
    return 0.3 * torch.tanh(x) + 0.05 * math.sin(t / 7.0) * torch.ones_like(x)


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("T", [10, 100, 1000])
def test_alpha_bar_and_posterior_variance_match_diffusers(name, T):
    s = Schedule.make(name, T)
    ref = DDPMScheduler(num_train_timesteps=T, beta_schedule=DIFFUSERS_SCHEDULE[name])
    assert torch.allclose(s.betas[1:].float(), ref.betas, atol=1e-6)
    assert torch.allclose(s.alpha_bars[1:].float(), ref.alphas_cumprod, atol=1e-6)
    ref.set_timesteps(T)
    for t in [2, T // 2, T]:
        assert s.posterior_variance(t) == pytest.approx(float(ref._get_variance(t - 1)), abs=1e-6)


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("T,clip", [(50, False), (50, True), (1000, False)])
@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_ddpm_trajectory_matches_diffusers(name, T, clip, variance):
    s = Schedule.make(name, T)
    shape = (2, 3, 4, 4)
    x = initial_noise(shape, torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = [st.x_prev for st in ddpm_sampler(toy_eps_model, s, x, torch.Generator().manual_seed(1),
                                             variance=variance, clip_x0=clip)]
    ref = DDPMScheduler(num_train_timesteps=T, beta_schedule=DIFFUSERS_SCHEDULE[name], clip_sample=clip,
                        variance_type="fixed_small" if variance == "beta_tilde" else "fixed_large")
    ref = _float64(ref)
    ref.set_timesteps(T)
    g = torch.Generator().manual_seed(1)
    y = x.clone()
    for k, step in zip(ref.timesteps, ours):
        y = ref.step(toy_eps_model(y, int(k) + 1), k, y, generator=g).prev_sample  # diffusers counts k = t - 1
        assert torch.allclose(step, y, atol=1e-5), int(k)
    assert len(ours) == T


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("T,steps,eta", [(1000, 50, 0.0), (1000, 20, 1.0), (100, 10, 0.5)])
def test_ddim_trajectory_matches_diffusers(name, T, steps, eta):
    s = Schedule.make(name, T)
    x = initial_noise((2, 3, 4, 4), torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = list(ddim_sampler(toy_eps_model, s, x, torch.Generator().manual_seed(3), steps=steps, eta=eta))
    ref = DDIMScheduler(num_train_timesteps=T, beta_schedule=DIFFUSERS_SCHEDULE[name], clip_sample=False,
                        set_alpha_to_one=True)
    ref = _float64(ref)
    ref.set_timesteps(steps)
    assert [st.t for st in ours] == [int(k) + 1 for k in ref.timesteps]
    g = torch.Generator().manual_seed(3)
    y = x.clone()
    for k, step in zip(ref.timesteps, ours):
        y = ref.step(toy_eps_model(y, int(k) + 1), k, y, eta=eta, generator=g).prev_sample
        assert torch.allclose(step.x_prev, y, atol=1e-5), int(k)


def test_ddim_with_x0_clipping_matches_diffusers_clipped_model_output():
    """Our clipped DDIM step equals diffusers' with clip_sample=True and use_clipped_model_output=True
    (ε̂ recomputed from the clipped x̂₀), and differs from diffusers' default (the unclipped ε̂)."""
    from demo_core.diffusion.ddpm import ddim_step

    s = Schedule.make("linear", 1000)
    x = 3 * initial_noise((2, 3, 4, 4), torch.Generator().manual_seed(0), dtype=torch.float64)  # x̂₀ needs clipping
    ref = _float64(DDIMScheduler(num_train_timesteps=1000, clip_sample=True, set_alpha_to_one=True))
    ref.set_timesteps(20)
    y, worst_default = x.clone(), 0.0
    for k in ref.timesteps:
        t = int(k) + 1
        t_prev = t - 1000 // 20
        eps = toy_eps_model(y, t)
        ours = ddim_step(s, y, t, t_prev, eps, None, clip_x0=True)
        theirs = ref.step(eps, k, y, eta=0.0, use_clipped_model_output=True).prev_sample
        default = ref.step(eps, k, y, eta=0.0).prev_sample
        assert torch.allclose(ours, theirs, atol=1e-6), t
        worst_default = max(worst_default, (ours - default).abs().max().item())
        y = theirs
    assert worst_default > 1e-2  # the label must not call this "diffusers' default"


def test_erratum_forward_noise_uses_sqrt_one_minus_alpha_bar():
    s = Schedule.make("linear", 1000)
    x0, eps = torch.zeros(10_000), torch.randn(10_000, generator=torch.Generator().manual_seed(0))
    t = 500
    xt = q_sample(s, x0, t, eps)
    # variance of x_t given x_0 = 0 is 1 - ᾱ_t; the slide's (1 - ᾱ_t)·ε would give (1 - ᾱ_t)².
    assert xt.var().item() == pytest.approx(1 - float(s.alpha_bars[t]), rel=0.05)
    assert abs(xt.var().item() - (1 - float(s.alpha_bars[t])) ** 2) > 0.05
    assert torch.allclose(predict_x0(s, xt, t, eps), x0, atol=1e-5)


def test_erratum_reverse_loop_runs_T_to_1():
    s = Schedule.make("linear", 10)
    frames = list(ddpm_sampler(toy_eps_model, s, torch.zeros(1, 2), torch.Generator().manual_seed(0)))
    assert [f.t for f in frames] == list(range(10, 0, -1))  # T, T-1, ..., 1: every step, none skipped
    assert [f.index for f in frames] == list(range(10)) and frames[-1].total == 10
    assert ddim_timesteps(1000, 4) == [751, 501, 251, 1]


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_erratum_posterior_mean_coefficient_uses_alpha_t(name):
    """q(x_{t-1} | x_t, x_0) = N(c0·x_0 + ct·x_t, β̃_t) must agree with the forward marginals:
    averaging over x_t ~ q(x_t | x_0) has to give back q(x_{t-1} | x_0) = N(√ᾱ_{t-1}·x_0, 1 − ᾱ_{t-1}).
    Mean:      c0 + ct·√ᾱ_t = √ᾱ_{t-1}.
    Variance:  ct²·(1 − ᾱ_t) + β̃_t = 1 − ᾱ_{t-1}.
    The slide's coefficient √ᾱ_t(1 − ᾱ_{t-1})/(1 − ᾱ_t) breaks both."""
    s = Schedule.make(name, 1000)
    for t in (2, 10, 300, 999):
        c0, ct = s.posterior_mean_coefs(t)
        ab, ab_prev = float(s.alpha_bars[t]), float(s.alpha_bars[t - 1])
        assert c0 + ct * math.sqrt(ab) == pytest.approx(math.sqrt(ab_prev), rel=1e-9)
        assert ct**2 * (1 - ab) + s.posterior_variance(t) == pytest.approx(1 - ab_prev, rel=1e-9)
        slide_ct = math.sqrt(ab) * (1 - ab_prev) / (1 - ab)
        assert c0 + slide_ct * math.sqrt(ab) != pytest.approx(math.sqrt(ab_prev), rel=1e-6)


def test_cosine_schedule_caps_beta_and_keeps_more_signal_early():
    lin, cos = Schedule.make("linear", 1000), Schedule.make("cosine", 1000)
    assert float(cos.betas.max()) <= 0.999
    assert float(cos.alpha_bars[500]) > float(lin.alpha_bars[500])  # cosine destroys information more slowly


def test_sampler_can_be_cancelled_between_steps_keeping_frames():
    s = Schedule.make("linear", 100)
    gen = ddpm_sampler(toy_eps_model, s, torch.randn(1, 3, 8, 8), torch.Generator().manual_seed(0))
    kept = []
    for frame in gen:
        kept.append(frame)
        if len(kept) == 7:
            gen.close()  # the Stop button
            break
    assert len(kept) == 7 and kept[-1].t == 94 and kept[-1].total == 100
    assert torch.isfinite(kept[-1].x_prev).all()


def test_sampler_is_seeded_and_batched():
    s = Schedule.make("cosine", 50)
    x = initial_noise((3, 2), torch.Generator().manual_seed(5))
    a = list(ddpm_sampler(toy_eps_model, s, x, torch.Generator().manual_seed(9)))[-1].x_prev
    b = list(ddpm_sampler(toy_eps_model, s, x, torch.Generator().manual_seed(9)))[-1].x_prev
    assert torch.equal(a, b) and a.shape == (3, 2)
    assert not torch.allclose(a[0], a[1])
