"""The emoji in other art styles: SVG packages aligned to the dataset's names, their licences recorded,
a broken file skipped with one line, and the evaluation model's data free of held-out emoji and style."""
import io
import json
import tarfile

import numpy as np
import pytest

from demo_core.training import emoji_styles
from demo_core.training.emoji_data import EmojiData
from demo_core.training.emoji_styles import HELD_OUT_STYLE, SvgStyle, build_styles

SQUARE = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect x="4" y="4" width="24" height="24" fill="{}"/></svg>'
RECORDS = [
    {"char": "\U0001F415", "name": "dog", "aliases": [], "keywords": ["pet"], "split": "heldout"},
    {"char": "\U0001F408", "name": "cat", "aliases": [], "keywords": ["pet"], "split": "train"},
    {"char": "\u2764\ufe0f", "name": "red heart", "aliases": [], "keywords": ["love"], "split": "train"},
    {"char": "\U0001F44B", "name": "waving hand", "aliases": [], "keywords": ["wave"], "split": "train"},
]


def _tarball(path, files: dict[str, str]):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def dataset(tmp_path):
    """A Noto-format dataset of four emoji, and two tiny packages in the npm layouts."""
    glyphs = np.zeros((len(RECORDS), 24, 24, 4), np.uint8)
    glyphs[:, 4:20, 4:20] = (0, 0, 255, 255)  # noto: blue squares
    np.save(tmp_path / "glyphs.npy", glyphs)
    (tmp_path / "meta.json").write_text(json.dumps(RECORDS))
    tw = _tarball(tmp_path / "tw.tgz", {
        "package/license": "MIT License\nCopyright (c) 2023 Samuel Kopp\n",
        "package/1f415.svg": SQUARE.format("#ff0000"),  # dog, by code point
        "package/2764.svg": SQUARE.format("#00ff00"),  # red heart: the file name drops FE0F
        "package/1f408.svg": "<svg><rect",  # cat: broken
    })
    fl = _tarball(tmp_path / "fl.tgz", {
        "package/LICENSE": "MIT License\nCopyright (c) 2022 Mohammad Abu Mattar\n",
        "package/icons/flat/cat.svg": SQUARE.format("#ffff00"),
        "package/icons/flat/waving-hand-default.svg": SQUARE.format("#ff00ff"),  # skin-tone emoji: -default
        "package/icons/modern/cat.svg": SQUARE.format("#000000"),  # another style's folder: not flat
    })
    body = '<rect x="4" y="4" width="24" height="24" fill="{}"/>'
    ic = _tarball(tmp_path / "ic.tgz", {  # an Iconify icon set: one JSON of SVG bodies, no licence file
        "package/package.json": json.dumps({"name": "@iconify-json/emojione", "license": "CC-BY-4.0"}),
        "package/info.json": json.dumps({"name": "Emoji One", "license": {"title": "CC BY 4.0", "spdx": "CC-BY-4.0"}}),
        "package/icons.json": json.dumps({
            "prefix": "emojione", "width": 32, "height": 32,
            "icons": {"waving-hand": {"body": body.format("#00ffff")},
                      "redheart": {"body": body.format("#0000ff")},  # Unicode name, words run together
                      "cat-face": {"body": "<path d='M"}},  # broken
            "aliases": {"dog": {"parent": "waving-hand"}, "cat": {"parent": "cat-face"}}}),
    })
    styles = (SvgStyle("twemoji", "@twemoji/svg@15.0.0", "package", "codepoints", "package/license", "MIT / CC-BY 4.0"),
              SvgStyle("fluent-flat", "fluentui-emoji@1.3.0", "package/icons/flat", "cldr-name", "package/LICENSE",
                       "MIT"),
              SvgStyle("emojione", "@iconify-json/emojione@1.2.3", "package", "iconify", "package/info.json",
                       "CC-BY 4.0"))
    return tmp_path, styles, {"twemoji": tw, "fluent-flat": fl, "emojione": ic}


def test_styles_align_by_name_record_licences_and_skip_a_broken_svg(dataset, capsys):
    root, styles, tarballs = dataset
    counts = build_styles(root, root / "npm", 24, styles=styles, tarballs=tarballs)
    assert counts == {"twemoji": 2, "fluent-flat": 2, "emojione": 3}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("skipped twemoji/1f408.svg")  # one line for each broken file
    assert err[1].startswith("skipped emojione/cat.svg")

    sources = json.loads((root / "styles" / "sources.json").read_text())
    assert "Samuel Kopp" in sources["twemoji"]["licence_file_text"]
    assert "Mohammad Abu Mattar" in sources["fluent-flat"]["licence_file_text"]
    assert sources["twemoji"]["skipped"] == ["1f408.svg"] and sources["held_out_style"] == HELD_OUT_STYLE
    assert "CC-BY-4.0" in sources["emojione"]["licence_file_text"]  # info.json's and package.json's licences

    def colour(style, name):
        data = EmojiData.load(root, styles=(style,))
        row = [r["name"] for r in data.records].index(name)
        return tuple(round(v) for v in data.glyphs[row, :, 12, 12].tolist())  # RGBA at the centre

    assert colour("twemoji", "dog") == (1, 0, 0, 1)
    assert colour("twemoji", "red heart") == (0, 1, 0, 1)
    assert colour("fluent-flat", "cat") == (1, 1, 0, 1)  # the flat folder, not modern's black cat
    assert colour("fluent-flat", "waving hand") == (1, 0, 1, 1)
    assert colour("emojione", "waving hand") == (0, 1, 1, 1)
    assert colour("emojione", "dog") == (0, 1, 1, 1)  # an alias drawn as its parent
    assert colour("emojione", "red heart") == (0, 0, 1, 1)
    both = EmojiData.load(root, styles=("noto", "twemoji", "fluent-flat"))
    assert len(both) == 4 + 2 + 2 and {r["style"] for r in both.records} == {"noto", "twemoji", "fluent-flat"}
    assert both.emoji_ids.tolist().count(0) == 2  # the dog: noto and twemoji, one emoji


def _every_style(dataset):
    """Build every style of the real set from the fixture's packages, so "seen" and "all" resolve (the
    fluent ones are copies of the flat package, the Iconify ones of the Emoji One set)."""
    root, styles, tarballs = dataset
    by_naming = {"cldr-name": "fluent-flat", "codepoints": "twemoji", "iconify": "emojione"}
    all_styles = tuple(SvgStyle(s.name, s.package, styles[1].folder if s.naming == "cldr-name" else s.folder,
                                s.naming, s.licence_file, s.licence) for s in emoji_styles.STYLES)
    tar = {s.name: tarballs[by_naming[s.naming]] for s in all_styles}
    build_styles(root, root / "npm", 24, styles=all_styles, tarballs=tar)
    return root


def test_evaluation_run_never_sees_a_held_out_emoji_or_the_held_out_style(dataset):
    from demo_core.training.train_clip import TrainConfig, drawings_by_emoji, training_data

    root = _every_style(dataset)

    evaluation = training_data(str(root), TrainConfig(styles="seen", split="train"))
    assert {r["split"] for r in evaluation.records} == {"train"}
    assert HELD_OUT_STYLE not in {r["style"] for r in evaluation.records}
    assert "dog" not in {r["name"] for r in evaluation.records}

    five = training_data(str(root), TrainConfig(styles="seen5", split="train"))  # mini-clip's own data
    assert {r["style"] for r in five.records} == {"noto", "fluent-flat", "fluent-modern", "fluent-high-contrast"}
    assert "emojione" in {r["style"] for r in evaluation.records}

    shipped = training_data(str(root), TrainConfig(styles="all", split="all"))
    assert {r["style"] for r in shipped.records} == set(emoji_styles.ALL_STYLES)
    assert "dog" in {r["name"] for r in shipped.records}
    rows, counts = drawings_by_emoji(shipped)
    assert len(rows) == len(RECORDS) and counts.sum() == len(shipped)  # one row per emoji, all drawings


def test_icons_keep_pictures_of_things_never_a_held_out_name_and_record_their_licence(dataset, capsys):
    """Named icons for concept breadth: UI symbols and held-out emoji names are left out, a broken icon is
    skipped with one line, the licence is recorded, and a CLIP batch takes the asked share of icons."""
    from open_clip.tokenizer import SimpleTokenizer

    from demo_core.training.icon_data import IconSet, build_icons, load_icons
    from demo_core.training.train_clip import TrainConfig, drawings_by_emoji, icon_count, make_batch, training_data

    root, styles, tarballs = dataset
    body = '<rect x="4" y="4" width="16" height="16"/>'
    icons = {f"thing-{i}": {"body": body} for i in "abcdefghij"}
    icons.update({"sitting-cat": {"body": body}, "dog": {"body": body},  # "dog" is a held-out emoji's name
                  "car-off": {"body": body}, "numeric-1": {"body": body}, "broken-kite": {"body": "<path d='M"}})
    tgz = _tarball(root / "gi.tgz", {
        "package/package.json": json.dumps({"license": "CC-BY-3.0"}),
        "package/info.json": json.dumps({"license": {"title": "CC BY 3.0", "spdx": "CC-BY-3.0"}}),
        "package/icons.json": json.dumps({"prefix": "game-icons", "width": 24, "height": 24, "icons": icons}),
    })
    counts = build_icons(root, root / "npm", 24, sets=(IconSet("game-icons", "@iconify-json/game-icons@1.2.4",
                                                                "CC-BY 3.0"),), tarballs={"game-icons": tgz})
    assert counts == {"game-icons": 11}  # ten things and the sitting cat
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("skipped game-icons/broken-kite")
    sources = json.loads((root / "icons" / "sources.json").read_text())
    assert sources["game-icons"]["excluded_as_held_out_names"] == ["dog"]
    assert "CC-BY-3.0" in sources["game-icons"]["licence_file_text"]
    glyphs, records = load_icons(root)
    names = {r["name"] for r in records}
    assert len(glyphs) == 11 and "sitting cat" in names and not names & {"dog", "car off", "numeric 1"}

    cfg = TrainConfig(styles="noto", split="train", batch_size=8, icon_share=0.25)
    data = training_data(str(root), cfg)
    n = icon_count(data)
    assert n == 11 and len(data) == 3 + 11  # the three training emoji, then the icons
    drawings = drawings_by_emoji(data)
    seen = []
    for step in range(3):
        _, tokens = make_batch(data, SimpleTokenizer(context_length=32), step, cfg, drawings, n)
        seen.append(len(tokens))
    assert seen == [3 + 2] * 3  # all three emoji (fewer than the 6 asked) and 25% of 8 icons


def test_cross_style_views_pair_two_styles_of_one_emoji_and_leave_the_first_view_unchanged(dataset):
    """The SLIP-style lever (``train_clip --cross-style``): each row's second view is the same emoji in
    another art style where it has one (else its one drawing again), the first view and captions are what
    the run draws with the lever off, and a step on the combined loss trains."""
    import torch
    from open_clip.tokenizer import SimpleTokenizer

    from demo_core.clip.contrastive import cross_view_step
    from demo_core.clip.mini import MiniClipConfig, build_model
    from demo_core.training.train_clip import (TrainConfig, drawings_by_emoji, make_batch, make_optimizer,
                                               other_drawings, training_data)

    root = _every_style(dataset)
    model_cfg = MiniClipConfig(image_size=32, vision_width=8, embed_dim=16, text_width=32, text_layers=1)
    on = TrainConfig(styles="all", split="all", batch_size=4, cross_style=1.0, model=model_cfg)
    off = TrainConfig(styles="all", split="all", batch_size=4, model=model_cfg)
    data = training_data(str(root), on)
    drawings = drawings_by_emoji(data)
    rows, counts = drawings
    tok = SimpleTokenizer(context_length=32)
    for step in range(4):
        images, tokens, views = make_batch(data, tok, step, on, drawings)
        plain = make_batch(data, tok, step, off, drawings)
        assert torch.equal(images, plain[0]) and torch.equal(tokens, plain[1])
        assert views.shape == images.shape and not torch.equal(views, images)

    # The pairing rule: another style of the same emoji whenever it has one.
    styles_of, ids = [r["style"] for r in data.records], data.emoji_ids
    everyone = torch.arange(len(rows))
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        pick = (torch.rand(len(rows), generator=g) * counts).long()
        first, second = rows[everyone, pick], other_drawings(rows, counts, everyone, pick, g)
        for a, b, n in zip(first.tolist(), second.tolist(), counts.tolist()):
            assert ids[a] == ids[b] and (styles_of[a] != styles_of[b] if n > 1 else a == b)
    assert counts.min() > 1
    noto = drawings_by_emoji(training_data(str(root), TrainConfig(styles="noto", split="all")))
    g = torch.Generator().manual_seed(0)
    one = torch.arange(len(noto[0]))
    assert torch.equal(other_drawings(*noto, one, torch.zeros_like(one), g), noto[0][:, 0])  # one drawing: itself

    model = build_model(model_cfg)
    opt = make_optimizer(model, on)
    images, tokens, views = make_batch(data, tok, 0, on, drawings)
    first = cross_view_step(model, opt, images, views, tokens, 1.0).loss.item()
    for _ in range(5):
        last = cross_view_step(model, opt, images, views, tokens, 1.0).loss.item()
    assert last < first
