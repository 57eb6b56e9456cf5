"""The lecture's symmetric loss equals open_clip's ClipLoss."""
import math

import pytest
import torch
from open_clip.loss import ClipLoss

from demo_core.clip.contrastive import contrastive_loss, contrastive_step


@pytest.mark.parametrize("batch,dim,scale", [(2, 8, 1.0), (16, 32, 14.3), (64, 128, 100.0)])
def test_loss_equals_open_clip(batch, dim, scale):
    g = torch.Generator().manual_seed(batch)
    img, txt = torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)
    ours = contrastive_loss(img, txt, torch.tensor(scale))
    ref = ClipLoss()(torch.nn.functional.normalize(img, dim=-1), torch.nn.functional.normalize(txt, dim=-1),
                     torch.tensor(scale))
    assert ours.loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    assert ours.logits.shape == (batch, batch)


def test_matched_pairs_give_low_loss_and_shuffled_high():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(8, 64, generator=g)
    matched = contrastive_loss(emb, emb, 50.0)
    shuffled = contrastive_loss(emb, emb[torch.roll(torch.arange(8), 1)], 50.0)
    assert matched.loss.item() < 0.05 < math.log(8) < shuffled.loss.item()
    # Each direction is its own B-way classification: both halves are reported.
    assert matched.loss_i.item() == pytest.approx(matched.loss_t.item(), abs=1e-4)


def test_a_training_step_caps_the_learned_scale_at_100_as_the_paper_does():
    """A model whose exp(t) has grown past 100 is clamped back to exactly 100 by the step."""
    from demo_core.clip.mini import MiniClipConfig, build_model

    torch.manual_seed(0)
    model = build_model(MiniClipConfig(embed_dim=16, image_size=32, vision_layers=(1, 1, 1, 1), vision_width=8,
                                       context_length=8, text_width=16, text_heads=2, text_layers=1))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(250.0))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # the clamp, not the update, moves it
    images, tokens = torch.randn(4, 3, 32, 32), torch.randint(1, 400, (4, 8))
    contrastive_step(model, opt, images, tokens)
    assert model.logit_scale.exp().item() == pytest.approx(100.0, rel=1e-6)
