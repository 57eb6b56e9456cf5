"""The `text2img` and `text2img_sweep` endpoints on a launched app, with a tiny random conditional model."""
import pytest
import torch

from tests.launched import app_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from demo_core.clip.model import ClipModel
    from demo_core.clip.noised import NoisedImageTower, save_noised_clip
    from demo_core.diffusion.conditional import CondConfig, TextCondUNet, build_unet, save_cond_model
    from demo_core.engine import Engine

    root = tmp_path_factory.mktemp("t2i")
    torch.manual_seed(0)
    model = TextCondUNet(build_unet((8, 16, 16), image_size=16), CondConfig(clip_spec="mini-clip", T=50))
    save_cond_model(model, root / "model", dtype=torch.float32)
    clip = ClipModel.load("mini-clip", "cpu")
    save_noised_clip(NoisedImageTower(clip.model.visual.float(), T=50, image_size=clip.image_size),
                     root / "noised", "mini-clip")
    from demo_core.diffusion.cross_attention import TokenCondUNet, build_token_unet

    save_cond_model(TokenCondUNet(build_token_unet((8, 16, 16), 16, token_width=64), CondConfig(T=50, token_width=64)),
                    root / "tokens", dtype=torch.float32)
    with app_client(Engine("mini-clip", "cpu", text2img_model=[root / "model", root / "tokens"],
                           noised_clip=root / "noised")) as c:
        yield c


def test_prompt_alone_gives_images_first(client):
    out = client.predict("a red heart", api_name="/text2img")  # every other parameter defaulted
    images, status = out[0], out[-1]
    assert len(images) == 4 and all(im["image"] for im in images)  # the default: 4 images
    assert "done" in status and "step 50 of 50" in status  # DDIM-50 by default


def test_each_guidance_method_runs_and_shows_its_pieces(client):
    shows = {"classifier-free guidance": {"ε̂(x_t, ∅)"}, "CLIP guidance (noised CLIP)": {"CLIP score"},
             "none (unconditional)": set()}
    for method, own in shows.items():
        images, _, _, pieces, attention, _, status = client.predict("a smiling face", "", method, 2.0, "DDIM", 5, 1, 2, 0.5,
                                                         api_name="/text2img")
        assert len(images) == 2 and "done" in status and attention == []  # a pooled-only model: no maps
        captions = " | ".join(p["caption"] or "" for p in pieces)
        for piece in {"ε̂(x_t, ∅)", "CLIP score"}:  # each method shows its own pieces and not the others'
            assert (piece in captions) == (piece in own), (method, captions)


def test_the_model_parameter_picks_glides_second_way(client):
    """`model` names the tab's choice: the token model's run shows one cross-attention map per prompt token."""
    images, _, _, _, attention, _, status = client.predict("a red heart", steps=5, n=1, model="tokens",
                                                           api_name="/text2img")
    assert len(images) == 1 and "done" in status
    assert [m["caption"].split("”")[0].lstrip("“") for m in attention] == ["⟨start⟩", "a", "red", "heart", "⟨end⟩"]
    images, _, status = client.predict("a heart", steps=5, model="tokens", api_name="/text2img_sweep")
    assert len(images) == 6


def test_sweep_gives_one_image_per_scale(client):
    images, _, status = client.predict("a heart", "classifier-free guidance", 3.0, "DDIM", 5, 0,
                                       api_name="/text2img_sweep")
    assert [im["caption"] for im in images] == ["scale 0", "scale 1", "scale 2", "scale 3", "scale 5", "scale 8"]


@pytest.mark.parametrize("args,msg", [
    (("",), "Type a prompt"),
    (("a " * 40,), "tokens long"),
    (("a heart", "", "classifier-free guidance", 3.0, "DDIM", 5, 0, 99), "greater than maximum value 8"),
    (("a heart", "", "classifier-free guidance", 3.0, "DDIM", 5, 10**30), "seed"),
])
def test_bad_input_gets_a_plain_message(client, args, msg):
    with pytest.raises(Exception) as e:
        client.predict(*args, api_name="/text2img")
    assert msg in str(e.value)
