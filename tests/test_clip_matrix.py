"""The "How CLIP learns" tab's engine: the B×B matrix, the lecture's pseudo-code, and live training."""
import numpy as np
import pytest
import torch

from demo_core.clip import matrix as clip_matrix
from demo_core.clip.matrix import batch_matrix, caption_order, gallery_pairs, pick_pairs, train_live, user_pairs
from demo_core.errors import InputError
from tests.conftest import EXAMPLES


def _pseudocode_loss(I_f: np.ndarray, T_f: np.ndarray, t: float) -> float:
    """The lecture's numpy pseudo-code, literally, with numpy's meaning of `axis`."""
    def l2_normalize(x, axis):
        return x / np.linalg.norm(x, axis=axis, keepdims=True)

    def cross_entropy_loss(logits, labels, axis):
        top = logits.max(axis=axis, keepdims=True)
        log_softmax = logits - top - np.log(np.exp(logits - top).sum(axis=axis, keepdims=True))
        return -np.mean(log_softmax[labels, labels])  # the right answer of row/column k is k

    I_e = l2_normalize(I_f, axis=1)
    T_e = l2_normalize(T_f, axis=1)
    logits = np.dot(I_e, T_e.T) * np.exp(t)
    n = len(I_f)
    labels = np.arange(n)
    loss_i = cross_entropy_loss(logits, labels, axis=0)
    loss_t = cross_entropy_loss(logits, labels, axis=1)
    return (loss_i + loss_t) / 2


@pytest.mark.parametrize("B,D,scale", [(2, 8, 1.0), (8, 32, 14.3), (16, 64, 100.0)])
def test_matrix_loss_is_the_pseudocode_and_open_clips_ClipLoss(B, D, scale):
    from open_clip.loss import ClipLoss

    g = torch.Generator().manual_seed(B)
    I_f, T_f = torch.randn(B, D, generator=g, dtype=torch.float64), torch.randn(B, D, generator=g, dtype=torch.float64)
    m = batch_matrix(I_f, T_f, scale)
    ref = ClipLoss()(torch.nn.functional.normalize(I_f.float(), dim=1), torch.nn.functional.normalize(T_f.float(), dim=1),
                     torch.tensor(scale))
    assert m.loss == pytest.approx(ref.item(), rel=1e-5)
    assert m.loss == pytest.approx(_pseudocode_loss(I_f.numpy(), T_f.numpy(), np.log(scale)), rel=1e-5)
    assert torch.allclose(m.p_image_to_text.sum(1), torch.ones(B), atol=1e-5)  # rows sum to 1
    assert torch.allclose(m.p_text_to_image.sum(0), torch.ones(B), atol=1e-5)  # columns sum to 1
    assert m.cosine.abs().max() <= 1 + 1e-6


def test_shuffled_captions_leave_no_true_pair_on_the_diagonal():
    for B in range(2, 17):
        assert caption_order(B, 0) == list(range(B))
        perm = caption_order(B, 3)
        assert sorted(perm) == list(range(B)) and all(p != i for i, p in enumerate(perm))


def test_bundled_clip_scores_true_pairs_above_shuffled_ones(bundled_clip):
    pairs = pick_pairs(gallery_pairs(), 8, 0)
    assert len({p.caption for p in pairs}) == 8
    images = bundled_clip.encode_images([p.image for p in pairs])
    true = batch_matrix(images, bundled_clip.encode_texts([p.caption for p in pairs]), bundled_clip.logit_scale)
    perm = caption_order(8, 1)
    wrong = batch_matrix(images, bundled_clip.encode_texts([pairs[j].caption for j in perm]), bundled_clip.logit_scale)
    assert true.cosine.diagonal().mean() > wrong.cosine.diagonal().mean()
    assert wrong.loss > true.loss + 2
    assert true.accuracy[0] >= 0.5 > wrong.accuracy[0]


def test_bad_batch_sizes_are_refused_in_words():
    with pytest.raises(InputError, match="between 2 and 16"):
        pick_pairs(gallery_pairs(), 17, 0)


@pytest.mark.slow
def test_live_training_makes_the_shown_matrix_diagonal():
    pool = gallery_pairs()
    shown = pick_pairs(pool, 6, 1)
    frames = list(train_live(shown, pool, steps=60, every=20, seed=0))
    assert [f.step for f in frames] == [0, 20, 40, 60]
    first, last = frames[0].matrix, frames[-1].matrix
    assert last.loss < 0.5 * first.loss
    assert last.accuracy == (1.0, 1.0)
    assert last.p_image_to_text.diagonal().mean() > 0.8
    img = clip_matrix.render_heatmap(last.p_image_to_text, [p.image for p in shown], [p.caption for p in shown], "t")
    assert img.size[0] > 6 * 40 and img.size[1] > 6 * 40


def test_the_users_own_pairs_are_checked_in_words():
    paths = [str(EXAMPLES / "cat.png"), str(EXAMPLES / "dog.png")]
    pairs = user_pairs(paths, "a cat\n\n  a dog  \n")
    assert [p.caption for p in pairs] == ["a cat", "a dog"] and pairs[0].image.mode == "RGB"
    with pytest.raises(InputError, match="2 images but 1 captions"):
        user_pairs(paths, "a cat")
    with pytest.raises(InputError, match="the same"):
        user_pairs(paths, "a pet\na pet")
    with pytest.raises(InputError, match="between 2 and 16 images"):
        user_pairs(paths[:1], "a cat")


def test_heatmap_titles_are_drawn_whole_below_the_label_badge():
    """"→" came out as a missing-glyph box (Pillow's own font has none), and the UI's label badge covered the
    title. Labels now use a font that has the glyph (or ASCII where none does), under a blank band."""
    import numpy as np
    from PIL import Image, ImageFont

    from demo_core.clip.matrix import render_heatmap
    from demo_core.images import drawable, label_font

    pillow = ImageFont.load_default(size=12)
    assert drawable("image → text", pillow) == "image -> text"  # never the box
    font = label_font(12)
    shown = drawable("image → text", font)
    assert shown in ("image → text", "image -> text")
    assert bytes(font.getmask(shown)) != bytes(font.getmask("image \U0010fffd text"))
    thumbs = [Image.new("RGB", (8, 8), c) for c in ("red", "blue", "green")]
    img = np.asarray(render_heatmap(torch.eye(3), thumbs, ["a cat", "a dog", "a car"], "image → text: rows"))
    assert (img[:38] == 255).all()  # nothing under the badge
    assert (img[40:56] < 128).any()  # the title, just below it
