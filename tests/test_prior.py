"""unCLIP's prior: unit image embeddings of the right shape, candidates chosen by closeness, slerp."""
import torch
import torch.nn.functional as F

from demo_core.diffusion.prior import DiffusionPrior, PriorConfig, load_prior, save_prior, slerp


def _prior():
    torch.manual_seed(0)
    return DiffusionPrior(PriorConfig(embed_dim=16, width=32, depth=1, T=20)).eval()


class _Oracle(DiffusionPrior):
    """A prior whose network predicts a known ẑ_0: `target` given the text, `uncond` given the null text."""

    def __init__(self, target, uncond):
        super().__init__(PriorConfig(embed_dim=16, width=32, depth=1, T=20))
        self.target, self.uncond = target, uncond

    def forward(self, z_t, t, text):
        return (self.uncond if bool((text == 0).all()) else self.target).expand_as(z_t)


def test_prior_sampling_steps_from_the_predicted_z0_and_guides_it():
    """With a network that predicts ẑ_0 exactly, every DDIM step (ẑ_0 → ε̂ → z_prev) lands on it, so the
    sample is normalise(ẑ_0); with guidance w, ẑ_0 is ẑ_u + w(ẑ_c − ẑ_u), a hand computation."""
    g = torch.Generator().manual_seed(0)
    target, uncond = torch.randn(16, generator=g), torch.randn(16, generator=g)
    text = F.normalize(torch.randn(3, 16, generator=g), dim=-1)
    prior = _Oracle(target, uncond).eval()
    plain = prior.sample(text, torch.Generator().manual_seed(1), steps=5)
    assert plain.shape == (3, 16)
    assert torch.allclose(plain, F.normalize(target, dim=0).expand(3, -1), atol=1e-5)
    guided = prior.sample(text, torch.Generator().manual_seed(1), steps=5, guidance=3.0)
    assert torch.allclose(guided, F.normalize(uncond + 3.0 * (target - uncond), dim=0).expand(3, -1), atol=1e-5)
    assert not torch.allclose(guided, plain, atol=1e-2)


def test_with_two_candidates_the_one_closer_to_the_text_is_kept():
    prior, text = _prior(), F.normalize(torch.randn(4, 16), dim=-1)
    both = prior.sample(text.repeat_interleave(2, 0), torch.Generator().manual_seed(1), steps=5)  # the same draws
    best = prior.sample(text, torch.Generator().manual_seed(1), steps=5, candidates=2)
    pairs = both.view(4, 2, 16)
    expected = pairs[torch.arange(4), (pairs * text[:, None]).sum(-1).argmax(1)]
    assert torch.allclose(best, expected, atol=1e-5)


def test_saved_prior_loads_back(tmp_path):
    prior = _prior()
    save_prior(prior, tmp_path / "p")
    back = load_prior(tmp_path / "p")
    z, t, c = torch.randn(2, 16), torch.tensor([3, 9]), torch.randn(2, 16)
    with torch.no_grad():
        assert torch.allclose(prior(z, t, c), back(z, t, c))


def test_slerp_endpoints_are_the_inputs_and_the_path_stays_on_the_sphere():
    a, b = F.normalize(torch.randn(16), dim=0), F.normalize(torch.randn(16), dim=0)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    mid = slerp(a, b, 0.5)
    assert abs(float(mid.norm()) - 1) < 1e-5
    assert abs(float(mid @ a) - float(mid @ b)) < 1e-5  # halfway: equally close to both
