"""Prompt adherence of the text-to-image model, judged by a classifier that did not guide it.

    python bench/text2img_eval.py --out bench/text2img.json --grid assets/models/emoji-text2img/samples.png

For one prompt per shape group (``emoji_groups.GROUP_PROMPTS``) × SEEDS seeds, at each guidance
scale: the fraction of samples the judge (``assets/models/emoji-judge``) puts in the prompt's
group, for classifier-free guidance and for CLIP guidance with the noised CLIP. Colour: "a {c}
heart" for five colours, judged by the dominant hue of the non-white pixels. Diversity: the mean
pairwise RMS pixel distance between the samples of one prompt (in [0, 1] units). Time: seconds
per sampling step, guided vs unguided, measured in this run. DDIM-50 throughout, x̂_0 clipped.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo_core.clip.model import ClipModel  # noqa: E402
from demo_core.clip.noised import load_noised_clip  # noqa: E402
from demo_core.diffusion.conditional import batch_cond, load_cond_model  # noqa: E402
from demo_core.diffusion.samplers import initial_noise  # noqa: E402
from demo_core.diffusion.text2img_models import noised_clip_for  # noqa: E402
from demo_core.diffusion.text2img_view import prompt_condition  # noqa: E402
from demo_core.diffusion.ddpm import Schedule  # noqa: E402
from demo_core.diffusion.text2img import guided_sampler  # noqa: E402
from demo_core.training.emoji_groups import GROUP_PROMPTS, dominant_colour  # noqa: E402
from demo_core.training.judge import judge_groups, load_judge  # noqa: E402

COLOUR_PROMPTS = {c: f"a {c} heart" for c in ("red", "yellow", "green", "blue", "purple")}


RAW_NOISE = False  # --raw-noise: x_T as drawn (the figures before the app removed its colour mean)


def sample(model, s, cond, scales, seeds, *, method, noised=None, steps=50):
    """Images (len(scales), len(seeds), 3, H, W) in [-1, 1]: every scale from the same seeds' noise, drawn
    as the app draws it (``initial_noise`` with the colour mean removed) unless RAW_NOISE."""
    size = model.unet.config.sample_size
    noise = torch.cat([initial_noise((1, 3, size, size), torch.Generator().manual_seed(sd),
                                     remove_colour_mean=not RAW_NOISE) for sd in seeds])
    x = noise.repeat(len(scales), 1, 1, 1)  # (S*N, 3, H, W), scale-major
    w = torch.tensor(scales, dtype=torch.float32).repeat_interleave(len(seeds))
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    *_, last = guided_sampler(model, s, x, g, method=method, scale=w, cond=cond, noised_clip=noised, steps=steps)
    per_step = (time.perf_counter() - t0) / steps / x.shape[0]
    return last.x_prev.clamp(-1, 1).view(len(scales), len(seeds), *x.shape[1:]), per_step


def diversity(images: torch.Tensor) -> float:
    """Mean pairwise RMS distance between images (N, 3, H, W) in [-1, 1], in [0, 1] pixel units."""
    x = (images.flatten(1) + 1) / 2
    d = torch.cdist(x, x) / x.shape[1] ** 0.5
    n = x.shape[0]
    return float(d.sum() / (n * (n - 1)))


@torch.inference_mode()
def condition_effect(model, s, clip, ts=(900, 500, 100), n=16) -> dict:
    """How much the prompt changes the prediction: mean ‖ε̂(x_t, c) − ε̂(x_t, ∅)‖ / ‖ε̂(x_t, ∅)‖ over the
    group prompts, on pure-noise-started x_t = √ᾱ_t·0 + √(1−ᾱ_t)·ε (no data needed), at a few t."""
    g = torch.Generator().manual_seed(0)
    size = model.unet.config.sample_size
    conds = [prompt_condition(model, clip, p)[0] for p in GROUP_PROMPTS.values()]
    out = {}
    for t in ts:
        x = (1 - s.alpha_bars[t]).sqrt().float() * torch.randn(n, 3, size, size, generator=g)
        k = torch.full((n,), t - 1)
        e0 = model(x, k, model.null(n))
        rel = [float(((model(x, k, batch_cond(c, n)) - e0).flatten(1).norm(dim=1) / e0.flatten(1).norm(dim=1)).mean())
               for c in conds]
        out[f"t={t}"] = round(sum(rel) / len(rel), 4)
    return out


def first_frame(model_path: str, noised_path: str, repeats: int = 5) -> dict:
    """Seconds from asking for a run (the Generate click's handler) to its first streamed update, in-process,
    models loaded: median of `repeats`, for CFG (4 images, DDIM-50) and CLIP guidance."""
    from demo_core.device import pick_device
    from demo_core.diffusion.text2img_view import load_text2img, run_text2img

    models = load_text2img(model_path, noised_path, device=pick_device("cpu"))
    out = {}
    for method in ("cfg", "clip") if models.noised is not None else ("cfg",):
        times = []
        for i in range(repeats):
            t0 = time.perf_counter()
            run = run_text2img(models, "a red heart", method=method, seed=i)
            next(run)
            times.append(time.perf_counter() - t0)
            run.close()
        out[method] = round(sorted(times)[len(times) // 2], 4)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "assets/models/emoji-text2img"))
    ap.add_argument("--judge", default=str(ROOT / "assets/models/emoji-judge"))
    ap.add_argument("--judge2", default=str(ROOT / "assets/models/emoji-judge-2"),
                    help="the second judge (another architecture and split), when present")
    ap.add_argument("--noised-clip", default=str(ROOT / "assets/models/noised-mini-clip"),
                    help="the noised CLIP for CLIP guidance (used only when trained for the model's CLIP)")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--cfg-scales", default="0,1,2,3,5,8")
    ap.add_argument("--clip-scales", default="0,100,300,1000")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the figures here as JSON")
    ap.add_argument("--raw-noise", action="store_true", help="x_T as drawn, colour mean kept (the old figures)")
    ap.add_argument("--grid", default=None, help="write a sample grid (prompts × CFG scales) here as PNG")
    args = ap.parse_args(argv)
    global RAW_NOISE
    RAW_NOISE = args.raw_noise
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_cond_model(args.model)
    s = Schedule.make(model.cfg.schedule, model.cfg.T)
    clip = ClipModel.load(model.cfg.clip_spec, device="cpu")
    judge = load_judge(args.judge)
    judge_meta = json.loads((Path(args.judge) / "judge.json").read_text())
    judge2 = load_judge(args.judge2) if (Path(args.judge2) / "judge.json").exists() else None
    noised = None
    folder = noised_clip_for(model.cfg.clip_spec, args.noised_clip)  # as the app chooses it
    if folder is not None:
        noised = load_noised_clip(folder, clip.model.visual)
    else:
        print(f"CLIP guidance not measured: no noised CLIP for {model.cfg.clip_spec} in {args.noised_clip}", flush=True)
    seeds = list(range(args.seeds))
    cfg_scales = [float(v) for v in args.cfg_scales.split(",")]
    clip_scales = [float(v) for v in args.clip_scales.split(",")]
    res = {"model": args.model, "seeds": args.seeds, "sampler": f"DDIM-{args.steps}",
           "judge_heldout": judge_meta["heldout"], "chance": round(1 / len(GROUP_PROMPTS), 3),
           "cfg": {"scales": cfg_scales, "shape": [], "colour": [], "diversity": []},
           "clip": {"scales": clip_scales, "shape": []} if noised else None, "time_per_image_step_s": {}}
    grid_rows = []
    shape_hits = {m: torch.zeros(len(sc)) for m, sc in (("cfg", cfg_scales), ("clip", clip_scales), ("cfg2", cfg_scales))}
    div = torch.zeros(len(cfg_scales))
    for group, prompt in GROUP_PROMPTS.items():
        cond = prompt_condition(model, clip, prompt)[0]
        imgs, res["time_per_image_step_s"]["cfg"] = sample(model, s, cond, cfg_scales, seeds, method="cfg",
                                                           steps=args.steps)
        grid_rows.append(imgs[:, 0])
        for i in range(len(cfg_scales)):
            shape_hits["cfg"][i] += sum(g == group for g in judge_groups(judge, imgs[i]))
            if judge2 is not None:
                shape_hits["cfg2"][i] += sum(g == group for g in judge_groups(judge2, imgs[i]))
            div[i] += diversity(imgs[i])
        if noised is not None:
            imgs, res["time_per_image_step_s"]["clip"] = sample(model, s, cond, clip_scales, seeds, method="clip",
                                                                noised=noised, steps=args.steps)
            for i in range(len(clip_scales)):
                shape_hits["clip"][i] += sum(g == group for g in judge_groups(judge, imgs[i]))
        print(group, "done", flush=True)
    n = len(GROUP_PROMPTS) * len(seeds)
    res["cfg"]["shape"] = [round(float(h) / n, 3) for h in shape_hits["cfg"]]
    if judge2 is not None:
        res["cfg"]["shape_second_judge"] = [round(float(h) / n, 3) for h in shape_hits["cfg2"]]
    res["cfg"]["diversity"] = [round(float(d) / len(GROUP_PROMPTS), 4) for d in div]
    if noised is not None:
        res["clip"]["shape"] = [round(float(h) / n, 3) for h in shape_hits["clip"]]
    colour_hits = torch.zeros(len(cfg_scales))
    for colour, prompt in COLOUR_PROMPTS.items():
        cond = prompt_condition(model, clip, prompt)[0]
        imgs, _ = sample(model, s, cond, cfg_scales, seeds, method="cfg", steps=args.steps)
        grid_rows.append(imgs[:, 0])
        for i in range(len(cfg_scales)):
            colour_hits[i] += sum(dominant_colour((im + 1) / 2) == colour for im in imgs[i])
    res["cfg"]["colour"] = [round(float(h) / (len(COLOUR_PROMPTS) * len(seeds)), 3) for h in colour_hits]
    cond = prompt_condition(model, clip, "a heart")[0]
    _, res["time_per_image_step_s"]["none"] = sample(model, s, cond, [0.0], seeds, method="none", steps=args.steps)
    res["condition_effect"] = condition_effect(model, s, clip)
    res["first_frame_s"] = first_frame(args.model, args.noised_clip)
    res["prompts"] = {"shape": GROUP_PROMPTS, "colour": COLOUR_PROMPTS}
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    if args.grid:
        import torchvision

        grid = torch.stack(grid_rows, 0).flatten(0, 1)  # rows: prompts, columns: CFG scales (seed 0)
        grid = torchvision.utils.make_grid((grid + 1) / 2, nrow=len(cfg_scales), padding=2, pad_value=1.0)
        torchvision.utils.save_image(torch.nn.functional.interpolate(grid[None], scale_factor=2)[0], args.grid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
