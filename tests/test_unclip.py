"""unCLIP through the engine with tiny random models: the three stages, variations, interpolation, the
decoder's guidance limits, plain messages for bad input, and the decoder's warm start."""
import pytest
import torch

from demo_core.errors import ImageError, InputError, ModelUnavailable
from tests.conftest import EXAMPLES

PICTURE = EXAMPLES / "cat.png"


def make_unclip_models(root, T: int = 50):
    """A tiny random prior and image-conditioned decoder on mini-CLIP's 128-d embeddings, saved as folders."""
    from demo_core.diffusion.conditional import CondConfig, TextCondUNet, build_unet, save_cond_model
    from demo_core.diffusion.prior import DiffusionPrior, PriorConfig, save_prior

    torch.manual_seed(0)
    decoder = TextCondUNet(build_unet((8, 16, 16), image_size=16), CondConfig(T=T, condition="image"))
    save_cond_model(decoder, root / "decoder", dtype=torch.float32)
    save_prior(DiffusionPrior(PriorConfig(width=32, depth=1, T=T)), root / "prior")
    return root / "prior", root / "decoder"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from demo_core.engine import Engine

    prior, decoder = make_unclip_models(tmp_path_factory.mktemp("unclip"))
    eng = Engine("mini-clip", "cpu", unclip_prior=prior, unclip_decoder=decoder, noised_clip="/nonexistent")
    yield eng
    eng.close()


def _final(updates):
    updates = list(updates)
    assert updates[-1].final
    return updates


def test_text_goes_through_the_prior_to_nearest_gallery_images_and_decoded_images(engine):
    updates = _final(engine.unclip("a red heart", n=3, steps=5, seed=1))
    first, last = updates[0], updates[-1]
    assert first.stage == "embeddings" and first.x_t is None  # the embeddings come before any decoding
    assert first.text.shape == (128,) and first.condition.shape == (3, 128)
    from demo_core.diffusion.unclip import prior_embeddings

    drawn = prior_embeddings(engine.loaded_unclip, first.text, 3, 1)  # the prior's draws for this text and seed
    assert torch.allclose(first.condition, drawn, atol=1e-5)
    assert len(first.cos_to_text) == 3 and all(-1 <= c <= 1 for c in first.cos_to_text)
    assert len(first.nearest) == 6 and first.nearest[0].score >= first.nearest[-1].score  # real gallery images
    assert [u.index for u in updates[1:]] == [0, 1, 2, 3, 4, 4]  # every DDIM step streamed, then the final
    assert len(last.images) == 3 and last.images[0].size == (128, 128) and len(last.cos_to_source) == 3


def test_without_the_prior_the_decoder_is_fed_the_text_embedding(engine):
    first = next(engine.unclip("a red heart", n=2, steps=5, use_prior=False))
    assert torch.allclose(first.condition, first.text.expand(2, -1)) and first.cos_to_text == [1.0, 1.0]


def test_variations_decode_the_pictures_own_embedding_from_different_seeds(engine):
    from demo_core.images import load_image

    updates = _final(engine.variations(str(PICTURE), n=3, steps=5))
    source = engine.loaded_unclip.clip.encode_images([load_image(PICTURE)])[0]
    assert torch.allclose(updates[0].source, source, atol=1e-5)
    assert torch.allclose(updates[-1].condition, source.expand(3, -1), atol=1e-5)
    images = updates[-1].images
    assert len(images) == 3 and images[0].tobytes() != images[1].tobytes()  # each from its own noise


def test_interpolation_ends_at_both_pictures_with_one_noise(engine):
    from demo_core.images import load_image

    updates = _final(engine.interpolate(str(PICTURE), str(EXAMPLES / "dog.png"), points=4, steps=5, scale=0.0))
    clip = engine.loaded_unclip.clip
    a, b = clip.encode_images([load_image(PICTURE), load_image(EXAMPLES / "dog.png")])
    cond, last = updates[-1].condition, updates[-1]
    assert torch.allclose(cond[0], a, atol=1e-5) and torch.allclose(cond[-1], b, atol=1e-5)
    assert last.labels == ["u = 0.00", "u = 0.33", "u = 0.67", "u = 1.00"]
    # each caption gives the decoded picture's cosine to A and to B (not to its own point on the path)
    emb = clip.encode_images(last.images)
    for caption, e in zip(last.captions, emb):
        assert caption.endswith(f"· A {float(e @ a):.2f} · B {float(e @ b):.2f}"), caption
    # w = 0 ignores the embedding: one shared x_T then gives the same image all along the strip
    assert len({im.tobytes() for im in last.images}) == 1


def test_interpolation_towards_a_prompt_goes_through_the_prior(engine):
    from demo_core.diffusion.unclip import prior_embeddings

    last = _final(engine.interpolate(str(PICTURE), None, "a yellow face", points=3, steps=5, seed=4))[-1]
    models = engine.loaded_unclip
    text = models.clip.encode_texts(["a yellow face"])[0]
    far_end = prior_embeddings(models, text, 1, 4)[0]  # the prior's image embedding for the prompt, same seed
    assert torch.allclose(last.condition[-1], far_end, atol=1e-5)
    assert float(far_end @ text) < 0.99  # it is the prior's answer, not the text embedding itself
    assert len(last.images) == 3


def test_interpolation_refuses_picture_b_and_a_prompt_together(engine):
    from demo_core.errors import InputError

    with pytest.raises(InputError, match="not both"):
        _final(engine.interpolate(str(PICTURE), str(EXAMPLES / "dog.png"), "a yellow face", points=3, steps=5))


def test_decoder_guidance_limits(engine):
    """w = 0 is the unconditional decoder (the embedding is ignored); w = 1 follows the embedding."""
    from demo_core.diffusion.unclip import _noise, decode

    models = engine.loaded_unclip
    e = torch.nn.functional.normalize(torch.randn(2, 128, generator=torch.Generator().manual_seed(3)), dim=-1)
    x_T = _noise(models, 1, 0)

    def image(cond, w):
        return list(decode(models, cond[None], x_T, 0, scale=w, steps=5))[-1].images[0].tobytes()

    null = torch.zeros(128)
    assert image(e[0], 0.0) == image(e[1], 0.0) == image(null, 1.0)
    assert image(e[0], 1.0) != image(e[1], 1.0)


@pytest.mark.parametrize("call,msg", [
    (lambda e: e.variations(None), "No image given"),
    (lambda e: e.variations(str(EXAMPLES.parent / "models" / "mini-clip" / "open_clip_config.json")), "not an image"),
    (lambda e: e.interpolate(str(PICTURE)), "second picture, or a prompt"),
    (lambda e: e.unclip(""), "Type a prompt"),
    (lambda e: e.unclip("a heart", scale=float("nan")), "finite"),
    (lambda e: e.unclip("a heart", n=99), "between 1 and 8"),
    (lambda e: e.interpolate(str(PICTURE), str(PICTURE), points=1), "between 2 and 9"),
])
def test_bad_input_gets_a_plain_message(engine, call, msg):
    with pytest.raises((ImageError, InputError), match=msg):
        next(call(engine))


def test_a_text_conditioned_model_is_not_taken_for_the_decoder(tmp_path):
    from demo_core.device import pick_device
    from demo_core.diffusion.conditional import CondConfig, TextCondUNet, build_unet, save_cond_model
    from demo_core.diffusion.unclip import load_unclip

    prior, _ = make_unclip_models(tmp_path)
    save_cond_model(TextCondUNet(build_unet((8, 16, 16), image_size=16), CondConfig(T=50)), tmp_path / "glide")
    with pytest.raises(ModelUnavailable, match="not on image embeddings"):
        load_unclip(prior, tmp_path / "glide", device=pick_device("cpu"))


def test_decoder_training_can_start_from_the_glide_models_weights(tmp_path):
    from demo_core.diffusion.conditional import CondConfig, TextCondUNet, build_unet, save_cond_model
    from demo_core.training.train_text2img import Text2ImgConfig, initial_model

    torch.manual_seed(5)
    glide = TextCondUNet(build_unet((8, 16, 16), image_size=16), CondConfig(T=50))
    save_cond_model(glide, tmp_path / "glide", dtype=torch.float32)
    cfg = Text2ImgConfig(image_size=16, block_out_channels=(8, 16, 16), T=50, condition="image",
                         init=str(tmp_path / "glide"))
    start = initial_model(cfg)
    assert start.cfg.condition == "image"
    assert all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), glide.state_dict().values()))
    with pytest.raises(ValueError, match="another architecture"):
        initial_model(Text2ImgConfig(image_size=16, block_out_channels=(8, 16, 32), T=50, init=str(tmp_path / "glide")))


def test_modality_gap_plot_rows_cover_each_kind_of_pair(engine):
    rows = engine.modality_gap()
    kinds = {r["pairs"] for r in rows}
    assert kinds == {"text–image pair", "same image", "image–image", "text–text"}
    for kind in kinds:
        assert abs(sum(r["share"] for r in rows if r["pairs"] == kind) - 1) < 1e-4
    mean = {k: sum(r["cosine"] * r["share"] for r in rows if r["pairs"] == k) for k in kinds}
    # mini-CLIP: another view of the same picture is closer than its own caption is (the gap a prior bridges)
    assert mean["same image"] > mean["text–image pair"]
