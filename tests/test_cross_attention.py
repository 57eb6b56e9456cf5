"""GLIDE's token conditioning: cross-attention to the caption's tokens, its null condition, guidance limits
and the attention maps the view draws."""
import pytest
import torch

from demo_core.diffusion.conditional import CondConfig, load_cond_model, save_cond_model
from demo_core.diffusion.cross_attention import TokenCond, TokenCondUNet, build_token_unet
from demo_core.diffusion.ddpm import Schedule
from demo_core.diffusion.text2img import guided_sampler

from tests.test_text2img import tiny_model
from tests.test_training import toy_data  # noqa: F401  (fixture: 16 coloured shapes with captions)

D, W = 16, 8


def tiny_token_model(seed=0) -> TokenCondUNet:
    torch.manual_seed(seed)
    model = TokenCondUNet(build_token_unet((8, 16, 16), 16, token_width=W),
                          CondConfig(embed_dim=D, T=20, token_width=W)).eval()
    torch.nn.init.normal_(model.cond_proj[-1].weight, std=0.5)
    for name, p in model.unet.named_parameters():  # diffusers starts some output layers at zero: make both paths matter
        if "attn2.to_out" in name or "proj_out" in name:
            torch.nn.init.normal_(p, std=0.3)
    return model


def a_prompt(seed=1, length=4, real=3) -> TokenCond:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(1, length, dtype=torch.bool)
    mask[0, :real] = True
    return TokenCond(torch.nn.functional.normalize(torch.randn(1, D, generator=g), dim=-1),
                     torch.randn(1, length, W, generator=g) * 3, mask)


def _first(model, method, scale, cond):
    s = Schedule.make("linear", 20)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=g)
    step = next(guided_sampler(model, s, x, g, method=method, scale=scale, cond=cond, sampler="ddim", steps=5))
    return x, step, torch.full((2,), step.t - 1)


def test_the_null_condition_silences_both_paths_and_is_what_w0_and_unconditional_runs_use():
    model, c = tiny_token_model(), a_prompt()
    x, at0, k = _first(model, "cfg", 0.0, c)
    _, plain, _ = _first(model, "none", 0.0, None)
    with torch.no_grad():
        null = model(x, k, model.null(2))
        tokens_only = model(x, k, TokenCond(torch.zeros(2, D), c.tokens.expand(2, -1, -1), c.mask.expand(2, -1)))
        pooled_only = model(x, k, TokenCond(c.pooled.expand(2, -1), model.null(2).tokens, model.null(2).mask))
    assert torch.allclose(at0.eps, null, atol=1e-5) and torch.allclose(plain.eps, null, atol=1e-5)
    # each path on its own changes the prediction: ∅ has to cover both
    assert (tokens_only - null).abs().max() > 1e-3
    assert (pooled_only - null).abs().max() > 1e-3


def test_w1_is_the_conditional_prediction_with_both_paths_and_w3_extrapolates():
    model, c = tiny_token_model(), a_prompt()
    x, at1, k = _first(model, "cfg", 1.0, c)
    _, at3, _ = _first(model, "cfg", 3.0, c)
    with torch.no_grad():
        cond, null = model(x, k, c.batch(2)), model(x, k, model.null(2))
    assert torch.allclose(at1.eps, cond, atol=1e-5)
    assert torch.allclose(at3.eps, null + 3 * (cond - null), atol=1e-4)


def test_the_pooled_only_model_keeps_its_limits_and_shows_no_attention():
    model = tiny_model()
    torch.nn.init.normal_(model.cond_proj[-1].weight, std=0.5)
    cond = torch.nn.functional.normalize(torch.randn(16), dim=0)
    x, at1, k = _first(model, "cfg", 1.0, cond)
    with torch.no_grad():
        assert torch.allclose(at1.eps, model(x, k, cond.expand(2, -1)), atol=1e-5)
    assert at1.attention is None


def test_attention_maps_sum_to_one_over_the_real_tokens_and_ignore_the_padding():
    model, c = tiny_token_model(), a_prompt(length=6, real=4)
    _, step, _ = _first(model, "cfg", 3.0, c)
    maps = step.attention  # (B, L, S, S) of the conditional half
    assert maps.shape == (2, 6, 8, 8)  # 16×16 images: cross-attention at 8×8 and 4×4, shown at 8×8
    assert torch.allclose(maps.sum(1), torch.ones(2, 8, 8), atol=1e-4)
    assert maps[:, 4:].abs().max() < 1e-4  # padding gets no weight
    assert maps[:, :4].std() > 1e-3  # and the words are not all looked at alike


def test_recording_the_maps_does_not_change_the_prediction():
    from diffusers.models.attention_processor import AttnProcessor

    model, c = tiny_token_model(), a_prompt()
    x, k = torch.randn(2, 3, 16, 16), torch.tensor([3, 15])
    e = c.batch(2)
    with torch.no_grad():
        plain = model(x, k, e)
        recorded, _ = model.attention_maps(model, x, k, e)
        model.unet.set_attn_processor(AttnProcessor())  # diffusers' own attention
        reference = model(x, k, e)
    assert torch.allclose(plain, reference, atol=1e-5) and torch.allclose(recorded, reference, atol=1e-5)


def test_a_token_model_saves_and_loads_back(tmp_path):
    model, c = tiny_token_model(), a_prompt()
    save_cond_model(model, tmp_path / "m", dtype=torch.float32)
    back = load_cond_model(tmp_path / "m")
    assert isinstance(back, TokenCondUNet) and back.cfg.token_width == W
    x, k = torch.randn(2, 3, 16, 16), torch.tensor([3, 7])
    with torch.no_grad():
        assert torch.allclose(model(x, k, c.batch(2)), back(x, k, c.batch(2)), atol=1e-5)


def test_training_batches_drop_both_paths_together(toy_data, tiny_clip_folder):  # noqa: F811
    from demo_core.training.banks import caption_bank, token_bank
    from demo_core.training.emoji_data import EmojiData
    from demo_core.training.emoji_groups import sampling_weights
    from demo_core.training.train_text2img import Text2ImgConfig, make_batch

    cfg = Text2ImgConfig(batch_size=64, p_uncond=0.25, captions_per_emoji=3, image_size=16, token_width=16,
                         clip_spec=f"local-dir:{tiny_clip_folder}")
    data = EmojiData.load(toy_data, split="train")
    bank, captions = caption_bank(data, cfg.clip_spec, per_emoji=3)
    tokens = token_bank(captions, cfg.clip_spec)
    assert tokens[0].shape[:2] == (16, 3) and tokens[0].shape[-1] == 16
    _, _, _, e = make_batch(data, bank, sampling_weights(data, 0.5), 0, cfg, Schedule.make("linear", 1000), tokens)
    dropped = e.pooled.norm(dim=-1) == 0
    assert 0.1 < dropped.float().mean() < 0.45
    assert e.tokens[dropped].abs().max() == 0 and e.mask[dropped].sum(1).eq(1).all()  # ∅ is one zero token
    kept = ~dropped
    assert e.tokens[kept].abs().amax(dim=(1, 2)).gt(0).all() and e.mask[kept].sum(1).ge(3).all()  # start, word, end


def test_text_to_image_with_a_token_model_shows_which_word_looked_where(tmp_path):
    """Through the engine: a run of a (tiny, random) token model on mini-CLIP's tokens shows one map per token
    of the prompt at the inspected step, and the inspect slider re-renders them from what the run kept."""
    from demo_core.diffusion.text2img_view import pieces_at
    from demo_core.engine import Engine

    torch.manual_seed(0)
    model = TokenCondUNet(build_token_unet((8, 16, 16), 16, token_width=64),
                          CondConfig(T=50, token_width=64))
    save_cond_model(model, tmp_path / "m", dtype=torch.float32)
    engine = Engine("mini-clip", "cpu", text2img_model=tmp_path / "m", noised_clip=tmp_path / "none")
    try:
        *_, final = engine.text2img("a red heart", steps=10, n=2, inspect=0.5)
        captions = [c for _, c in final.attention]
        assert [c.split("”")[0].lstrip("“") for c in captions] == ["⟨start⟩", "a", "red", "heart", "⟨end⟩"]
        shares = [float(c.split(": ")[1].split("%")[0]) for c in captions]
        assert abs(sum(shares) - 100) <= 3  # the maps share all the attention (rounded percentages)
        assert all(im.size == (128, 128) for im, _ in final.attention)
        _, again = pieces_at(final.kept, 0.9)
        assert [c for _, c in again] != [] and len(again) == 5
        *_, plain = engine.text2img("", method="none", steps=5, n=1)
        assert plain.attention == []  # no prompt, nothing to attend to
    finally:
        engine.close()


def _noised_clip(tmp_path, clip_spec: str, T: int):
    """A noised CLIP (untrained FiLM path) for `clip_spec`'s image tower, saved under tmp_path."""
    from demo_core.clip.model import ClipModel
    from demo_core.clip.noised import NoisedImageTower, save_noised_clip

    clip = ClipModel.load(clip_spec, "cpu")
    folder = tmp_path / f"noised-{clip_spec}"
    save_noised_clip(NoisedImageTower(clip.model.visual.float(), T=T, image_size=clip.image_size), folder, clip_spec)
    return folder, clip


def test_a_noised_clip_trained_for_another_clip_does_not_guide(tmp_path, caplog):
    """A noised CLIP trained on mini-clip-v1's image tower must not steer a model conditioned on mini-clip
    (its scores live in another embedding space): CLIP guidance is off, and the log says why."""
    from demo_core.device import pick_device
    from demo_core.diffusion.text2img_view import load_text2img

    model = TokenCondUNet(build_token_unet((8, 16, 16), 16, token_width=64),
                          CondConfig(T=50, token_width=64, clip_spec="mini-clip"))
    save_cond_model(model, tmp_path / "m", dtype=torch.float32)
    v1, _ = _noised_clip(tmp_path, "mini-clip-v1", T=50)
    with caplog.at_level("WARNING"):
        models = load_text2img(tmp_path / "m", v1, device=pick_device("cpu"))
    assert models.noised is None and "trained for mini-clip-v1" in caplog.text


def test_each_model_takes_the_noised_clip_of_its_own_clip(tmp_path):
    """With noised CLIPs for two CLIPs installed, a model conditioned on mini-clip is guided by mini-clip's;
    the bundled one is mini-clip's."""
    from demo_core.device import pick_device
    from demo_core.diffusion.text2img_models import BUNDLED_NOISED_CLIPS, Text2ImgService, noised_clip_for
    from demo_core.diffusion.text2img_view import load_text2img

    save_cond_model(TokenCondUNet(build_token_unet((8, 16, 16), 16, token_width=64),
                                  CondConfig(T=50, token_width=64, clip_spec="mini-clip")), tmp_path / "m",
                    dtype=torch.float32)
    v1, _ = _noised_clip(tmp_path, "mini-clip-v1", T=40)
    mini, clip = _noised_clip(tmp_path, "mini-clip", T=50)
    models = load_text2img(tmp_path / "m", [v1, mini], device=pick_device("cpu"), clip=clip)
    assert models.noised is not None and models.noised.T == 50  # mini-clip's, not v1's (T = 40)

    def service(noised):
        return Text2ImgService(pick_device("cpu"), lambda spec: clip, tmp_path / "m", noised)

    assert service([v1, mini]).guides_with_clip()  # read from configs
    assert not service([v1]).guides_with_clip()
    assert noised_clip_for("mini-clip", BUNDLED_NOISED_CLIPS) is not None  # the default models can be CLIP-guided


def test_the_diffusion_tab_denoises_toward_a_prompt_with_a_token_model(tmp_path):
    """Diffusion step by step's prompted model reads the prompt's tokens too when the model has them."""
    from demo_core.device import pick_device
    from demo_core.diffusion.prompted import prompted_ddpm
    from demo_core.diffusion.text2img_view import load_text2img

    torch.manual_seed(0)
    model = TokenCondUNet(build_token_unet((8, 16, 16), 16, token_width=64), CondConfig(T=50, token_width=64))
    save_cond_model(model, tmp_path / "m", dtype=torch.float32)
    models = load_text2img(tmp_path / "m", tmp_path / "none", device=pick_device("cpu"), upsampler_path=tmp_path)
    a, b = prompted_ddpm(models, "a red heart", 3.0), prompted_ddpm(models, "a blue car", 3.0)
    assert isinstance(a.cond, TokenCond)
    x = torch.randn(2, 3, 16, 16)
    assert a.eps(x, 10).shape == x.shape and (a.eps(x, 10) - b.eps(x, 10)).abs().max() > 0


def test_the_tab_offers_both_of_glides_ways_and_runs_the_one_chosen(tmp_path):
    """Text to image with a pooled-only and a token model installed: both are offered (the first the default),
    the chosen one runs (only the token model has attention maps), an unknown name and CLIP guidance without a
    noised CLIP for the model's CLIP get plain messages."""
    from demo_core.diffusion.conditional import TextCondUNet, build_unet
    from demo_core.engine import Engine
    from demo_core.errors import InputError, ModelUnavailable

    torch.manual_seed(0)
    save_cond_model(TextCondUNet(build_unet((8, 16, 16), image_size=16), CondConfig(T=50)), tmp_path / "pooled",
                    dtype=torch.float32)
    save_cond_model(TokenCondUNet(build_token_unet((8, 16, 16), 16, token_width=64), CondConfig(T=50, token_width=64)),
                    tmp_path / "tokens", dtype=torch.float32)
    engine = Engine("mini-clip", "cpu", text2img_model=[tmp_path / "pooled", tmp_path / "tokens"],
                    noised_clip=tmp_path / "none", upsampler=tmp_path / "none")
    try:
        assert [name for _, name in engine.text2img_models] == ["pooled", "tokens"]
        assert "cross-attention" in engine.text2img_models[1][0] and "cross" not in engine.text2img_models[0][0]
        assert engine.text2img_model_reads_tokens("tokens") and not engine.text2img_model_reads_tokens("pooled")
        *_, default = engine.text2img("a red heart", steps=5, n=1)
        *_, tokens = engine.text2img("a red heart", model="tokens", steps=5, n=1)
        assert default.attention == [] and len(tokens.attention) == 5  # ⟨start⟩ a red heart ⟨end⟩
        with pytest.raises(InputError, match="use one of pooled, tokens"):
            next(engine.text2img("a red heart", model="glide-xl"))
        with pytest.raises(ModelUnavailable, match="Choose classifier-free guidance"):
            next(engine.text2img("a red heart", model="tokens", method="clip"))
    finally:
        engine.close()
