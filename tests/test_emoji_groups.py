"""The judge's vocabulary: shape groups of emoji names and colour words of pixels."""
import pytest
import torch

from demo_core.training.emoji_groups import dominant_colour, glyph_colour, group_of


@pytest.mark.parametrize("name,group", [
    ("red heart", "heart"), ("grinning face", "face"), ("crying cat", "cat"), ("cat face", "cat"),
    ("full moon face", "moon"), ("three-thirty", "clock"), ("alarm clock", "clock"), ("taxi", "car"),
    ("cherry blossom", "flower"), ("thumbs up", "hand"),
    ("smiling face with heart-eyes", None),  # a face and a heart: ambiguous, left out
    ("dog face", None),  # an animal's face is not "a face"
    ("police car light", None), ("palm tree", None), ("person in lotus position", None), ("pizza", None),
])
def test_groups_by_name(name, group):
    assert group_of({"name": name, "aliases": []}) == group


def _solid(rgb, size=16, border=4):
    """A coloured square on white."""
    x = torch.ones(3, size, size)
    x[:, border:-border, border:-border] = torch.tensor(rgb).view(3, 1, 1)
    return x


@pytest.mark.parametrize("rgb,colour", [
    ((0.9, 0.1, 0.1), "red"), ((0.95, 0.85, 0.1), "yellow"), ((0.1, 0.7, 0.2), "green"), ((0.1, 0.3, 0.9), "blue"),
    ((0.55, 0.2, 0.8), "purple"), ((0.95, 0.55, 0.1), "orange"), ((0.05, 0.05, 0.05), "black"),
    ((0.5, 0.5, 0.5), "grey"),
])
def test_dominant_colour_of_the_non_white_pixels(rgb, colour):
    assert dominant_colour(_solid(rgb)) == colour


def test_a_blank_image_has_no_colour_and_a_glyph_is_named_by_its_opaque_pixels():
    assert dominant_colour(torch.ones(3, 16, 16)) is None
    glyph = torch.zeros(4, 16, 16)
    glyph[:3] = torch.tensor([0.1, 0.3, 0.9]).view(3, 1, 1)  # blue everywhere, but only a corner is opaque
    glyph[3, :6, :6] = 1.0
    glyph[:3, 6:, 6:] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1, 1)  # transparent red: ignored
    assert glyph_colour(glyph) == "blue"


def test_each_judge_loads_back_as_its_own_architecture(tmp_path):
    """The second judge is a ConvMixer: judge.json names the architecture, and loading builds that one."""
    import torch

    from demo_core.training.judge import ConvMixerJudge, Judge, load_judge, save_judge

    x = torch.rand(4, 3, 32, 32) * 2 - 1
    for cls, arch in ((Judge, "cnn"), (ConvMixerJudge, "convmixer")):
        torch.manual_seed(0)
        model = cls().eval()
        save_judge(model, tmp_path / arch, {"arch": arch})
        back = load_judge(tmp_path / arch)
        assert type(back) is cls
        with torch.no_grad():
            assert torch.allclose(model(x), back(x), atol=1e-6)
