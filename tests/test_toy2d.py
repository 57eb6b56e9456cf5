"""Toy 2-D diffusion: a few seconds of training pull noise onto the shape."""
import numpy as np
import pytest
import torch

from demo_core.diffusion import toy2d
from demo_core.errors import InputError


def chamfer(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean nearest-neighbour distance both ways: how well one point cloud covers another."""
    d = torch.cdist(a, b)
    return float((d.min(1).values.mean() + d.min(0).values.mean()) / 2)


@pytest.mark.slow
def test_trained_mlp_samples_land_on_the_shape():
    pts = toy2d.make_points("two moons", 2000)
    *progress, model = list(toy2d.train(pts, steps=800))
    assert progress[-1].step == 800 and progress[-1].loss < progress[0].loss
    frames = list(toy2d.sample(model, n=600))
    assert [f.t for f in frames][:3] == [toy2d.T_TOY, toy2d.T_TOY - 1, toy2d.T_TOY - 2] and frames[-1].t == 1
    final, noise = frames[-1].x_prev, frames[0].x_t
    assert chamfer(final, pts) < 0.5 * chamfer(noise, pts)


def test_points_from_a_drawing_and_forward_diffusion():
    img = np.full((100, 100), 255, np.uint8)
    img[40:60, 10:90] = 0  # a horizontal bar
    pts = toy2d.points_from_image(img, 500)
    assert pts[:, 0].std() > 3 * pts[:, 1].std()  # wide, flat, as drawn
    assert torch.equal(toy2d.forward_points(pts, 0), pts)
    assert toy2d.forward_points(pts, toy2d.T_TOY).std() == pytest.approx(1.0, abs=0.15)  # pure noise at T
    with pytest.raises(InputError, match="dark pixels"):
        toy2d.points_from_image(np.full((50, 50), 255, np.uint8))


def test_a_drawing_on_a_transparent_canvas_becomes_dark_strokes_on_white():
    canvas = np.zeros((40, 40, 4), np.uint8)  # Gradio's Sketchpad: transparent, strokes opaque
    canvas[10:30, 18:22] = (20, 20, 20, 255)
    gray = toy2d.drawing_to_gray(canvas)
    assert gray[20, 20] < 128 and gray[5, 5] == 255  # the stroke is dark, the untouched canvas white
    pts = toy2d.points_from_image(gray, 300)
    assert pts[:, 1].std() > 3 * pts[:, 0].std()  # a vertical bar, as drawn
    with pytest.raises(InputError, match="Draw a shape"):
        toy2d.drawing_to_gray(None)


def test_concurrent_runs_with_different_seeds_each_reproduce_their_own_result():
    """Two requests at once must not reseed each other: each equals its single-request result."""
    import sys
    import threading

    from demo_core.diffusion import toy2d

    points = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))

    def first_weights(seed):
        run = toy2d.train(points, steps=1, batch=8, seed=seed)
        next(run)  # one step done
        model = next(run)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    alone = {seed: first_weights(seed) for seed in (1, 2)}
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, so an unguarded global seed races
    try:
        results, errors = {}, []

        def worker(seed, rep):
            try:
                results[(seed, rep)] = first_weights(seed)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(seed, rep)) for rep in range(6) for seed in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors
    for (seed, _), w in results.items():
        assert torch.equal(w, alone[seed]), f"seed {seed} got another request's weights"


def test_every_frame_of_the_toy_plot_holds_both_series_under_fixed_names():
    """The browser's scatter plot keeps the colour categories of its first frame: a series that appears later
    (the samples) or is renamed each frame ("samples (t=…)") was never drawn. Every frame now holds "data" and
    "samples"; the first frame's samples are the noise that sampling starts from, the last one's land on the
    shape; the forward plot draws the shape (t = 0) last, on top of the noise."""
    from ui.diffusion import toy

    frames = [f for f in toy("two moons", None, 200, 3) if not isinstance(f[0], type(None))]
    plots = [f[0] for f in frames if hasattr(f[0], "columns")]
    assert len(plots) > 5 and all(sorted(p["series"].unique()) == ["data", "samples"] for p in plots)
    first, last = plots[0], plots[-1]
    start = toy2d.start_points(800, 3).numpy()
    assert np.allclose(first[first.series == "samples"][["x", "y"]].to_numpy(), start, atol=1e-6)
    data = torch.tensor(last[last.series == "data"][["x", "y"]].to_numpy())
    samples = torch.tensor(last[last.series == "samples"][["x", "y"]].to_numpy())
    near = torch.cdist(samples, data).min(1).values.median().item()
    assert near < 0.6 * torch.cdist(torch.tensor(start), data).min(1).values.median().item()  # 200 steps: closer
    fwd = frames[0][1]
    assert list(dict.fromkeys(fwd["series"]))[-1] == "t = 0"
