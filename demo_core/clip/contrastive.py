"""The contrastive objective of CLIP, written as in the lecture's pseudo-code.

    # scaled pairwise cosine similarities [n, n]
    logits = np.dot(I_e, T_e.T) * np.exp(t)
    # symmetric loss function
    labels = np.arange(n)
    loss_i = cross_entropy_loss(logits, labels, axis=0)
    loss_t = cross_entropy_loss(logits, labels, axis=1)
    loss   = (loss_i + loss_t)/2

Row i of ``logits`` scores image i against every caption of the batch; column j scores caption j
against every image. The B matches sit on the diagonal and the B²−B non-matches off it, so each
row (and each column) is a B-way classification whose right answer is its own index.
``t`` is the learned log-temperature: ``exp(t)`` is clamped at 100 as in the CLIP paper.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MAX_LOGIT_SCALE = 100.0
MAX_LOG_SCALE = math.log(MAX_LOGIT_SCALE)


@dataclass
class ContrastiveOutput:
    logits: torch.Tensor  # (B, B) image rows x text columns, already scaled
    loss_i: torch.Tensor  # image -> text cross-entropy (over each row)
    loss_t: torch.Tensor  # text -> image cross-entropy (over each column)
    loss: torch.Tensor  # (loss_i + loss_t) / 2


def l2_normalize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return F.normalize(x, dim=dim)


def clip_logits(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """``logits = I_e @ T_e.T * exp(t)`` on L2-normalised embeddings; ``logit_scale`` is exp(t)."""
    return l2_normalize(image_emb) @ l2_normalize(text_emb).T * logit_scale


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float) -> ContrastiveOutput:
    """Symmetric cross-entropy over the B x B logits.

    Args:
        image_emb: (B, D) image embeddings (normalised here).
        text_emb: (B, D) text embeddings of the matching captions, in the same order.
        logit_scale: exp(t), the inverse temperature (a scalar tensor or float).
    Returns:
        ContrastiveOutput with the logits, both directional losses and their mean.
    """
    logits = clip_logits(image_emb, text_emb, logit_scale)  # (B, B)
    labels = torch.arange(logits.shape[0], device=logits.device)
    # The pseudo-code's `axis` names the softmax direction: image i's row vs text j's column.
    loss_i = F.cross_entropy(logits, labels)  # softmax over captions, one row per image
    loss_t = F.cross_entropy(logits.T, labels)  # softmax over images, one column per caption
    return ContrastiveOutput(logits, loss_i, loss_t, (loss_i + loss_t) / 2)


def contrastive_step(model, opt, images: torch.Tensor, tokens: torch.Tensor):
    """One optimisation step on the symmetric contrastive loss; then exp(t) is clamped at 100, as in
    the paper. Returns the step's ``ContrastiveOutput``."""
    out = model(images, tokens)
    res = contrastive_loss(out["image_features"], out["text_features"], out["logit_scale"])
    opt.zero_grad(set_to_none=True)
    res.loss.backward()
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, MAX_LOG_SCALE)
    return res


# SLIP's image–image term, at SimCLR's temperature 0.1: two views of one emoji must find each other.
VIEW_LOGIT_SCALE = 10.0


def cross_view_step(model, opt, images: torch.Tensor, views: torch.Tensor, tokens: torch.Tensor, weight: float):
    """One step on CLIP's loss plus a SLIP-style image–image term (Mu et al., 2021), as in the lecture's
    "random transformation" made explicit: ``views[i]`` is another drawing of ``images[i]``'s emoji (another
    art style where it has one). The loss is

        loss = (clip(I1, T) + clip(I2, T)) / 2 + weight * sym_ce(I1 @ I2.T * 10)

    where ``clip`` is ``contrastive_loss`` and ``sym_ce`` is the same symmetric cross-entropy between the two
    image views (B x B, the matches on the diagonal) at a fixed temperature of 0.1. The image term pulls the
    drawings of one emoji together in the embedding space that zero-shot reads, whatever their style.
    Returns the first view's ``ContrastiveOutput`` with ``loss`` the total."""
    b = images.shape[0]
    image_emb = model.encode_image(torch.cat([images, views]))  # (2B, D)
    text_emb = model.encode_text(tokens)  # (B, D)
    scale = model.logit_scale.exp()
    first, second = contrastive_loss(image_emb[:b], text_emb, scale), contrastive_loss(image_emb[b:], text_emb, scale)
    between = contrastive_loss(image_emb[:b], image_emb[b:], VIEW_LOGIT_SCALE)
    loss = (first.loss + second.loss) / 2 + weight * between.loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, MAX_LOG_SCALE)
    return ContrastiveOutput(first.logits, first.loss_i, first.loss_t, loss)
