"""Startup: models load once in the background, the UI is up at once and says what it is doing."""
import threading

from tests.conftest import EXAMPLES


def test_ui_builds_while_models_load_and_requests_wait_for_them(monkeypatch):
    import app

    gate = threading.Event()
    real_load = app.ClipModel.load

    def slow_load(*args, **kwargs):
        gate.wait(60)  # a big model still downloading / loading
        return real_load(*args, **kwargs)

    monkeypatch.setattr(app.ClipModel, "load", slow_load)
    lab = app.Lab("mini-clip", "cpu", background=True)
    assert not lab.ready
    assert lab.status_markdown().startswith("⏳ loading the CLIP model mini-clip")
    demo = app.build_demo(lab)  # does not wait for the model
    assert demo is not None and not lab.ready
    assert "(loading)" in lab.status_panel()

    answer = {}
    worker = threading.Thread(target=lambda: answer.update(
        r=lab.classify(str(EXAMPLES / "cat.png"), "cat, dog, car", "a photo of a {}", True)))
    worker.start()  # a request arriving during loading waits, then answers
    gate.set()
    worker.join(60)
    probs = answer["r"][0]
    assert max(probs, key=probs.get) == "cat"
    assert lab._ready.wait(120)
    panel = lab.status_panel()
    assert "mini-clip" in panel and "emoji-ddpm" in panel and "torch 2.14.1" in panel
    assert "loaded" in panel and "gallery index ready" in panel
    assert not lab.status_markdown().startswith("⏳")
