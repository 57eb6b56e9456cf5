"""unCLIP's prior: unit image embeddings of the right shape, candidates chosen by closeness, slerp."""
import torch
import torch.nn.functional as F

from demo_core.diffusion.prior import DiffusionPrior, PriorConfig, load_prior, save_prior, slerp


def _prior():
    torch.manual_seed(0)
    return DiffusionPrior(PriorConfig(embed_dim=16, width=32, depth=1, T=20)).eval()


def test_prior_gives_unit_image_embeddings_one_per_text():
    text = F.normalize(torch.randn(3, 16), dim=-1)
    out = _prior().sample(text, torch.Generator().manual_seed(0), steps=5, guidance=2.0)
    assert out.shape == (3, 16)
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-5)


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
