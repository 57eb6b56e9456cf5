"""Startup: models load once in the background, the UI is up at once and says what it is doing."""
import threading

from tests.conftest import EXAMPLES


def test_ui_builds_while_models_load_and_requests_wait_for_them(monkeypatch):
    import app
    from demo_core.clip.model import ClipModel
    from demo_core.engine import Engine
    from demo_core.images import load_image
    from ui.status import status_line, status_panel

    gate = threading.Event()
    real_load = ClipModel.load

    def slow_load(*args, **kwargs):
        gate.wait(60)  # a big model still downloading / loading
        return real_load(*args, **kwargs)

    monkeypatch.setattr(ClipModel, "load", slow_load)
    engine = Engine("mini-clip", "cpu", background=True)
    assert not engine.ready
    assert status_line(engine).startswith("⏳ loading the CLIP model mini-clip")
    demo = app.build_demo(engine)  # does not wait for the model
    assert demo is not None and not engine.ready
    assert "(loading)" in status_panel(engine)

    answer = {}
    worker = threading.Thread(target=lambda: answer.update(
        r=engine.clip.zero_shot(load_image(EXAMPLES / "cat.png"), ["cat", "dog", "car"])))
    worker.start()  # a request arriving during loading waits, then answers
    gate.set()
    worker.join(60)
    res = answer["r"]
    assert max(zip(res.probs, res.labels))[1] == "cat"
    assert engine.wait_ready(120)
    panel = status_panel(engine)
    import torch

    assert "mini-clip" in panel and "emoji-ddpm" in panel and f"torch {torch.__version__.split('+')[0]}" in panel
    assert "loaded" in panel and "gallery index ready" in panel
    assert "mini-clip (bundled): mini-clip (bundled)" not in panel  # the model is named once
    assert panel.splitlines()[0].replace("|", "").strip()  # the table's header row says what its columns are
    engine.close()
    assert not status_line(engine).startswith("⏳")


def test_a_model_that_fails_to_load_is_logged_and_the_others_still_load(monkeypatch, caplog):
    """Each startup step has its own try: the DDPM failing (with its traceback in the log) does not
    stop the gallery's pairs from being read, and the CLIP tabs work."""
    import logging

    from demo_core.engine import Engine

    def broken(name, device):
        raise RuntimeError(f"the weights of {name} are corrupt")

    monkeypatch.setattr("demo_core.diffusion.reverse_service.load_ddpm", broken)
    with caplog.at_level(logging.ERROR, logger="demo_core.engine"):
        engine = Engine("mini-clip", "cpu")
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1 and "loading the DDPM emoji-ddpm" in failures[0].getMessage()
    assert failures[0].exc_info is not None  # the traceback is in the log
    assert any("⚠️ loading the DDPM emoji-ddpm failed: the weights" in line for line in engine.load_log)
    assert any(line.startswith("gallery pairs read") for line in engine.load_log)  # the next step still ran
    assert engine.clip.name == "mini-clip (bundled)"


def test_a_model_set_loads_once_however_many_requests_ask_at_once_and_a_failure_is_retried():
    import time

    from demo_core.runs import LoadOnce

    calls = []

    def load():
        calls.append(1)
        time.sleep(0.05)  # slow enough that the other threads arrive while it loads
        if len(calls) == 1:
            raise OSError("disk hiccup")
        return object()

    once = LoadOnce(load)
    try:
        once.get()
    except OSError:
        pass
    assert once.loaded is None  # the failure is not kept: the next request tries again
    got = []
    threads = [threading.Thread(target=lambda: got.append(once.get())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 2 and len({id(g) for g in got}) == 1 and once.loaded is got[0]


def test_a_slow_diffusion_model_load_does_not_hold_up_another_model(monkeypatch):
    """A slow load (a hub model) blocks only the requests for that model: another loads and samples
    meanwhile, and each model is still loaded once."""
    import time

    from demo_core.diffusion import reverse_service
    from demo_core.runs import KeptFiles, StopSignals

    release, calls = threading.Event(), []

    def fake_load(name, device):
        calls.append(name)
        if name == "slow/hub-model":
            release.wait(5)
        return f"model {name}"

    monkeypatch.setattr(reverse_service, "load_ddpm", fake_load)
    reverse = reverse_service.ReverseService("cpu", None, StopSignals(), KeptFiles())  # only its DDPM registry
    slow = threading.Thread(target=reverse.ddpm, args=("slow/hub-model",))
    slow.start()
    time.sleep(0.1)  # the slow load is under way
    t0 = time.perf_counter()
    assert reverse.ddpm("emoji-ddpm") == "model emoji-ddpm"
    assert time.perf_counter() - t0 < 1.0  # not behind the 5 s load
    release.set()
    slow.join()
    assert reverse.ddpm("slow/hub-model") == "model slow/hub-model"
    assert sorted(calls) == ["emoji-ddpm", "slow/hub-model"]  # once each
    assert sorted(reverse.loaded()) == ["model emoji-ddpm", "model slow/hub-model"]


def test_the_diffusion_models_share_one_copy_of_the_clip_they_were_trained_on():
    """The app's CLIP (mini-clip-3) is not the one the bundled diffusion models read (mini-clip): that one is
    loaded once for all of them, not once per model."""
    from demo_core.engine import Engine
    from demo_core.registry import BUNDLED_CLIP

    engine = Engine(BUNDLED_CLIP, "cpu")
    try:
        clips = [m.clip for m in engine.loaded_text2img] + [engine.loaded_unclip.clip]
        assert len(clips) == 3 and {c.spec.spec for c in clips} == {"mini-clip"} != {engine.clip.spec.spec}
        assert all(c is clips[0] for c in clips)
    finally:
        engine.close()
