"""Mini-CLIP training: resumable with identical results, and the loss goes down."""
import json

import numpy as np
import pytest
import torch

from demo_core.clip.mini import MiniClipConfig, build_model
from demo_core.training.train_clip import TrainConfig, export_checkpoint, train


@pytest.fixture
def toy_data(tmp_path):
    """16 coloured-shape 'emoji' with captions naming colour and shape (no font needed)."""
    colours = {"red": (255, 0, 0), "green": (0, 180, 0), "blue": (0, 0, 255), "yellow": (240, 220, 0)}
    glyphs, records = [], []
    yy, xx = np.mgrid[:32, :32]
    shapes = {"square": np.ones((32, 32), bool), "disc": (yy - 16) ** 2 + (xx - 16) ** 2 < 150,
              "bar": abs(xx - 16) < 5, "band": abs(yy - 16) < 5}
    for cname, rgb in colours.items():
        for sname, mask in shapes.items():
            g = np.zeros((32, 32, 4), np.uint8)
            g[mask] = (*rgb, 255)
            glyphs.append(g)
            records.append({"char": "?", "name": f"{cname} {sname}", "aliases": [], "keywords": [cname, sname],
                            "split": "train"})
    np.save(tmp_path / "glyphs.npy", np.stack(glyphs))
    (tmp_path / "meta.json").write_text(json.dumps(records))
    return tmp_path


def _cfg(steps):
    return TrainConfig(steps=steps, batch_size=8, lr=3e-3, warmup=2, checkpoint_every=2, styles="noto",
                       model=MiniClipConfig(embed_dim=16, image_size=32, vision_layers=(1, 1, 1, 1),
                                            vision_width=8, context_length=16, text_width=16, text_heads=2,
                                            text_layers=1))


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(toy_data, tmp_path):
    full = train(str(toy_data), str(tmp_path / "full"), _cfg(6))
    train(str(toy_data), str(tmp_path / "split"), _cfg(6), stop_at=4)  # "killed" after step 4
    resumed = train(str(toy_data), str(tmp_path / "split"), _cfg(6))  # re-run resumes at 4
    assert resumed["steps"] == full["steps"] == 6
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["model"]
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k


def test_snapshots_are_the_run_at_their_step_and_resume_from_there(toy_data, tmp_path):
    """--snapshot-every keeps step{N}.pt: the model at step N, from which the run can be scored or resumed."""
    import dataclasses
    import shutil

    cfg = dataclasses.replace(_cfg(4), snapshot_every=2)
    train(str(toy_data), str(tmp_path / "full"), cfg)
    assert sorted(p.name for p in (tmp_path / "full").glob("step*.pt")) == ["step2.pt", "step4.pt"]
    snap = torch.load(tmp_path / "full" / "step2.pt", weights_only=False)
    train(str(toy_data), str(tmp_path / "short"), _cfg(4), stop_at=2)
    short = torch.load(tmp_path / "short" / "checkpoint.pt", weights_only=False)
    assert snap["step"] == 2
    for k in short["model"]:
        assert torch.allclose(snap["model"][k].float(), short["model"][k].float(), atol=1e-6), k
    (tmp_path / "again").mkdir()
    shutil.copy(tmp_path / "full" / "step2.pt", tmp_path / "again" / "checkpoint.pt")
    assert train(str(toy_data), str(tmp_path / "again"), cfg)["steps"] == 4
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "again" / "checkpoint.pt", weights_only=False)["model"]
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k


def test_checkpoint_exports_as_a_loadable_open_clip_folder(toy_data, tmp_path):
    from demo_core.clip.model import ClipModel

    train(str(toy_data), str(tmp_path / "run"), _cfg(2))
    summary = export_checkpoint(str(tmp_path / "run"), str(tmp_path / "export"))
    assert summary["steps"] == 2
    config = json.loads((tmp_path / "export" / "open_clip_config.json").read_text())
    assert config["model_cfg"]["text_cfg"]["vocab_size"] == 49408  # open_clip's CLIP BPE tokenizer
    model = ClipModel.load(f"local-dir:{tmp_path / 'export'}", "cpu")
    emb = model.encode_texts(["red square", "blue disc"])
    assert emb.shape == (2, 16)
    # the export is the checkpoint's model (in fp16): same temperature, same text embeddings
    trained = build_model(_cfg(2).model)
    trained.load_state_dict(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"])
    assert model.logit_scale == pytest.approx(trained.logit_scale.exp().item(), rel=1e-3)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(trained.eval().encode_text(model.tokenizer(["red square", "blue disc"])), dim=-1)
    assert torch.allclose(emb, ref, atol=2e-2)


def test_ema_lever_leaves_the_raw_run_alone_and_exports_the_average(toy_data, tmp_path):
    """--ema keeps a moving average beside the raw weights: the raw run is the run without the lever, the
    export (at the end and --export-only) is the average, and --export-weights raw gives the raw weights."""
    import dataclasses

    from demo_core.clip.model import ClipModel
    from demo_core.training.train_clip import ema_update

    plain = train(str(toy_data), str(tmp_path / "plain"), _cfg(6))
    cfg = dataclasses.replace(_cfg(6), ema=0.9)
    result = train(str(toy_data), str(tmp_path / "ema"), cfg, export=str(tmp_path / "ema-out"))
    assert result["weights"] == "ema" and plain["final_loss"] == result["final_loss"]
    a = torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "ema" / "checkpoint.pt", weights_only=False)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # the average differs from the last weights, BatchNorm statistics included
    assert any(not torch.allclose(b["ema"][k].float(), b["model"][k].float()) for k in b["model"] if "running_mean" in k)
    assert not torch.allclose(b["ema"]["text_projection"], b["model"]["text_projection"])

    def text_emb(folder):
        clip = ClipModel.load(f"local-dir:{folder}", "cpu")
        return clip.encode_texts(["red square", "blue disc"])

    assert export_checkpoint(str(tmp_path / "ema" / "checkpoint.pt"), str(tmp_path / "avg"))["weights"] == "ema"
    assert export_checkpoint(str(tmp_path / "ema"), str(tmp_path / "raw"), weights="raw")["weights"] == "raw"
    export_checkpoint(str(tmp_path / "plain"), str(tmp_path / "plain-out"))
    assert torch.allclose(text_emb(tmp_path / "avg"), text_emb(tmp_path / "ema-out"))
    assert torch.allclose(text_emb(tmp_path / "raw"), text_emb(tmp_path / "plain-out"))
    assert not torch.allclose(text_emb(tmp_path / "avg"), text_emb(tmp_path / "raw"), atol=1e-3)
    # --init from that run starts from its average (what was exported and scored), not its raw weights
    train(str(toy_data), str(tmp_path / "next"), dataclasses.replace(_cfg(1), lr=0.0, init=str(tmp_path / "ema")))
    start = torch.load(tmp_path / "next" / "checkpoint.pt", weights_only=False)["model"]
    assert torch.equal(start["text_projection"], b["ema"]["text_projection"])

    # the rule: early steps follow the model (d = 1/10 at step 0), later ones the decay
    ema, model = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    start = ema.weight.detach().clone()
    ema_update(ema, model, 0.99, step=0)
    assert torch.allclose(ema.weight, 0.1 * start + 0.9 * model.weight)
    before = ema.weight.detach().clone()
    ema_update(ema, model, 0.99, step=10_000)
    assert torch.allclose(ema.weight, 0.99 * before + 0.01 * model.weight)


# --- emoji DDPM (demo_core.training.train_ddpm) ---

def _ddpm_cfg(steps):
    from demo_core.training.train_ddpm import DdpmConfig

    return DdpmConfig(steps=steps, batch_size=4, warmup=1, T=50, block_out_channels=(8, 16, 16),
                      ema_decay=0.9, checkpoint_every=2)


def test_debiased_ema_forgets_the_random_initial_weights():
    from demo_core.training.loop import debias_ema

    init, target, ema, d = torch.randn(5), torch.full((5,), 0.5), None, 0.999
    ema = init.clone()
    for _ in range(300):  # weights jump to `target` and stay: the EMA is still 74% init
        ema.lerp_(target, 1 - d)
    assert (ema - target).abs().max() > 0.1
    fixed = debias_ema({"w": ema}, {"w": init}, d, 300)["w"]
    assert torch.allclose(fixed, target, atol=1e-5)


@pytest.mark.slow
def test_ddpm_training_resumes_identically_and_exports_a_loadable_pipeline(toy_data, tmp_path):
    from demo_core.diffusion.models import load_ddpm
    from demo_core.training.train_ddpm import train as train_ddpm

    full = train_ddpm(str(toy_data), str(tmp_path / "full"), _ddpm_cfg(4), export=str(tmp_path / "export"))
    train_ddpm(str(toy_data), str(tmp_path / "split"), _ddpm_cfg(4), stop_at=2)
    train_ddpm(str(toy_data), str(tmp_path / "split"), _ddpm_cfg(4))
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == full["steps"] == 4
    for k in a["ema"]:
        assert torch.allclose(a["ema"][k].float(), b["ema"][k].float(), atol=1e-5), k

    model = load_ddpm(str(tmp_path / "export"), "cpu")  # the from_pretrained path hub models take
    assert (model.T, model.schedule, model.sample_size) == (50, "linear", 32)
    x = torch.randn(2, 3, 32, 32)
    assert model.eps(x, 50).shape == x.shape
    # the export is the de-biased EMA: far from the raw EMA, which after 4 steps of d=0.9 is 66% init
    raw = a["ema"]["conv_in.weight"].float()
    exported = model.unet.conv_in.weight.float()
    assert not torch.allclose(exported, raw, atol=1e-3)


def test_shape_levers_reach_the_model_and_survive_a_resume():
    from dataclasses import asdict

    cfg = TrainConfig(embed_dim=48, vision_width=24, text_layers=2)
    assert (cfg.model.embed_dim, cfg.model.vision_width, cfg.model.text_layers) == (48, 24, 2)
    again = TrainConfig(**asdict(cfg))  # what a checkpoint's config rebuilds
    assert again.model == cfg.model and TrainConfig().model.embed_dim == 128


def test_export_only_of_a_missing_run_is_one_line_and_exit_2(tmp_path, capsys):
    from demo_core.training.train_clip import TrainConfig, export_checkpoint, train
    from demo_core.training.loop import training_cli

    rc = training_cli(["--run", str(tmp_path / "nowhere"), "--export", str(tmp_path / "out"), "--export-only"],
                      prog="train_clip", doc="x", run_default="data/runs/x", export_help="x", config_cls=TrainConfig,
                      train=train, export_checkpoint=export_checkpoint)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: no checkpoint to export") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cached_tokenizer_gives_the_bpe_tokens_in_order():
    """Training keeps each caption's tokens (BPE on the CPU would set a GPU step's pace); the tokens are the same."""
    from open_clip.tokenizer import SimpleTokenizer

    from demo_core.training.train_clip import CachedTokenizer

    bpe = SimpleTokenizer(context_length=16)
    cached = CachedTokenizer(bpe)
    first = ["a cat", "an emoji of a dog", "a cat", "grinning face with big eyes"]
    second = ["grinning face with big eyes", "a red car", "a cat"]
    assert torch.equal(cached(first), bpe(first))
    assert torch.equal(cached(second), bpe(second))
    assert len(cached.cache) == 4


def test_a_device_this_machine_lacks_is_one_line_and_exit_2(toy_data, tmp_path, capsys, monkeypatch):
    from demo_core.training.loop import training_cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = training_cli(["--data", str(toy_data), "--run", str(tmp_path / "run"), "--steps", "2", "--device", "cuda"],
                      prog="train_clip", doc="x", run_default="data/runs/x", export_help="x", config_cls=TrainConfig,
                      train=train, export_checkpoint=export_checkpoint, options={"device": {}})
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: Device 'cuda' was asked for, but no CUDA GPU") and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batches_on_a_gpu_are_the_cpu_batches(toy_data):
    """The random draws stay on the CPU generator, so a run on a GPU trains on the batches a CPU run would."""
    import dataclasses

    from open_clip.tokenizer import SimpleTokenizer

    from demo_core.training.train_clip import make_batch, training_data

    cfg = dataclasses.replace(_cfg(2), cross_style=1.0)
    data = training_data(str(toy_data), cfg)
    tok = SimpleTokenizer(context_length=16)
    cpu = make_batch(data, tok, 3, cfg)
    data.glyphs = data.glyphs.cuda()
    gpu = make_batch(data, tok, 3, cfg)
    assert gpu[0].is_cuda and torch.equal(cpu[1], gpu[1])
    for a, b in zip(cpu[::2], gpu[::2]):
        assert torch.allclose(a, b.cpu(), atol=1e-4)
