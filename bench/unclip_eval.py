"""unCLIP against GLIDE, judged by a classifier that guided neither; variations of held-out emoji; the prior.

    python bench/unclip_eval.py --out bench/unclip.json --grid assets/models/emoji-decoder/samples.png

1. Same prompts, same seeds, same guidance scale w, DDIM-50: shape adherence (the judge's group equals
   the prompt's, over ``GROUP_PROMPTS`` × seeds), colour adherence ("a {c} heart", dominant hue of the
   non-white pixels) and diversity (mean pairwise RMS pixel distance within a prompt, [0, 1] units) for
   - GLIDE: the text-conditional model with classifier-free guidance;
   - unCLIP: text → prior (2 candidates) → decoder;
   - no prior: the decoder fed the text embedding itself.
2. Variations of held-out emoji (never trained on) in the judge's groups: each emoji rendered on white
   (scale 0.9, centred), encoded by mini-CLIP, decoded from `--variations` seeds. Reported: the share of
   variations the judge puts in the source's group (and the judge on the sources themselves, its
   ceiling), the mini-CLIP cosine of each variation to its source's embedding (and, as a floor, to
   another held-out emoji's), and diversity.
3. The prior on held-out (caption, render) pairs (``train_prior.evaluate``) and the modality gap.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.text2img_eval import COLOUR_PROMPTS, diversity  # noqa: E402
from demo_core.clip.mini import OPENAI_MEAN, OPENAI_STD  # noqa: E402
from demo_core.clip.model import ClipModel  # noqa: E402
from demo_core.diffusion.conditional import load_cond_model  # noqa: E402
from demo_core.diffusion.ddpm import Schedule  # noqa: E402
from demo_core.diffusion.prior import load_prior  # noqa: E402
from demo_core.diffusion.cross_attention import TokenCond, TokenCondUNet  # noqa: E402
from demo_core.diffusion.text2img import guided_sampler  # noqa: E402
from demo_core.diffusion.text2img_view import prompt_condition  # noqa: E402
from demo_core.training.emoji_data import EmojiData, augment_batch  # noqa: E402
from demo_core.training.emoji_groups import GROUP_PROMPTS, dominant_colour, group_of  # noqa: E402
from demo_core.training.judge import judge_groups, load_judge  # noqa: E402
from demo_core.training.train_prior import PriorTrainConfig, banks, evaluate  # noqa: E402

MODELS = ROOT / "assets" / "models"


@torch.inference_mode()
def decode(model, s, cond: torch.Tensor, seeds: list[int], scale: float, steps: int, *, paired: bool = False
           ) -> torch.Tensor:
    """Images in [-1, 1]: each condition (C, D) from each seed's noise, cond-major (C·len(seeds) images);
    with `paired`, condition i from seed i only (len(seeds) images)."""
    size = model.unet.config.sample_size
    noise = torch.stack([torch.randn(3, size, size, generator=torch.Generator().manual_seed(sd)) for sd in seeds])
    if isinstance(cond, TokenCond):  # a token model's prompt: one condition for every seed
        x, c = noise, cond.batch(len(seeds))
    else:
        x = noise if paired else noise.repeat(len(cond), 1, 1, 1)
        c = cond if paired else cond.repeat_interleave(len(seeds), 0)
    *_, last = guided_sampler(model, s, x, torch.Generator().manual_seed(0), method="cfg", scale=scale, cond=c,
                              steps=steps)
    return last.x_prev.clamp(-1, 1)


def methods(args, clip):
    """name -> (model, schedule, prompt -> (len(seeds), D) conditions)."""
    glide = load_cond_model(args.glide)
    decoder = load_cond_model(args.decoder)
    prior = load_prior(args.prior)

    def through_prior(text: torch.Tensor, n: int) -> torch.Tensor:
        return prior.sample(text.expand(n, -1), torch.Generator().manual_seed(0), candidates=2)

    sg, sd = (Schedule.make(m.cfg.schedule, m.cfg.T) for m in (glide, decoder))
    def glide_cond(e: torch.Tensor, n: int, prompt: str):
        if isinstance(glide, TokenCondUNet):  # pooled and token features, as the app conditions it
            return prompt_condition(glide, clip, prompt)[0]
        return e.expand(n, -1)

    return {"GLIDE (text-conditional, CFG)": (glide, sg, glide_cond),
            "unCLIP (prior → decoder)": (decoder, sd, lambda e, n, _: through_prior(e, n)),
            "no prior (decoder fed the text embedding)": (decoder, sd, lambda e, n, _: e.expand(n, -1))}


def adherence(args, clip, judge, grid_rows: list) -> dict:
    seeds = list(range(args.seeds))
    out = {}
    for name, (model, s, conds) in methods(args, clip).items():
        shape = colour = div = 0.0
        row = []
        for group, prompt in GROUP_PROMPTS.items():
            e = clip.encode_texts([prompt])[0]
            c = conds(e, len(seeds), prompt)  # one condition per seed (the prior draws one per seed)
            imgs = decode(model, s, c, seeds, args.scale, args.steps, paired=True)
            shape += sum(g == group for g in judge_groups(judge, imgs))
            div += diversity(imgs)
            row.append(imgs[0])
        for col, prompt in COLOUR_PROMPTS.items():
            e = clip.encode_texts([prompt])[0]
            c = conds(e, len(seeds), prompt)
            imgs = decode(model, s, c, seeds, args.scale, args.steps, paired=True)
            colour += sum(dominant_colour((im + 1) / 2) == col for im in imgs)
        grid_rows.append(torch.stack(row))
        out[name] = {"shape": round(shape / (len(GROUP_PROMPTS) * len(seeds)), 3),
                     "colour": round(colour / (len(COLOUR_PROMPTS) * len(seeds)), 3),
                     "diversity": round(div / len(GROUP_PROMPTS), 4)}
        print(name, out[name], flush=True)
    return out


@torch.inference_mode()
def variations(args, clip, judge) -> dict:
    data = EmojiData.load(args.data, split="heldout")
    keep = [i for i, r in enumerate(data.records) if group_of(r)]
    groups = [group_of(data.records[i]) for i in keep]
    g = torch.Generator().manual_seed(0)
    src = augment_batch(data.glyphs[keep], clip.image_size, g, scale_range=(0.9, 0.9), max_angle=0.0,
                        background="white")  # (E, 3, S, S) in [0, 1], centred
    mean, std = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    e_src = clip.encode_pixels((src - mean) / std)  # (E, D)
    decoder = load_cond_model(args.decoder)
    s = Schedule.make(decoder.cfg.schedule, decoder.cfg.T)
    seeds = list(range(args.variations))
    hits = cos = cos_other = div = 0.0
    per_group: dict[str, list[float]] = {}
    source_hits = sum(a == b for a, b in zip(judge_groups(judge, src * 2 - 1), groups))
    for i, group in enumerate(groups):
        imgs = decode(decoder, s, e_src[i : i + 1], seeds, args.scale, args.steps)  # (V, 3, H, W)
        same = sum(x == group for x in judge_groups(judge, imgs))
        hits += same
        per_group.setdefault(group, []).append(same / len(seeds))
        pix = torch.nn.functional.interpolate((imgs + 1) / 2, size=clip.image_size, mode="bilinear", antialias=True)
        e_var = clip.encode_pixels((pix - mean) / std)
        cos += float((e_var @ e_src[i]).mean())
        cos_other += float((e_var @ e_src[(i + 1) % len(groups)]).mean())
        div += diversity(imgs)
    n = len(groups)
    return {"emoji": n, "variations_each": len(seeds),
            "same_group_as_source": round(hits / (n * len(seeds)), 3),
            "same_group_balanced (mean over groups)": round(sum(sum(v) / len(v) for v in per_group.values())
                                                           / len(per_group), 3),
            "same_group_by_group": {k: [round(sum(v) / len(v), 3), len(v)] for k, v in sorted(per_group.items())},
            "judge_on_the_sources (ceiling)": round(source_hits / n, 3),
            "cos_to_source": round(cos / n, 4), "cos_to_another_emoji (floor)": round(cos_other / n, 4),
            "diversity": round(div / n, 4)}


def prior_figures(args) -> dict:
    cfg = PriorTrainConfig()
    text, image = banks(args.data, "heldout", cfg)
    figures = evaluate(load_prior(args.prior), text, image, cfg.seed)
    true = torch.nn.functional.normalize(image.mean(1), dim=-1)
    off = ~torch.eye(len(true), dtype=torch.bool)
    figures["modality_gap"] = {"text–image, true pairs": round(float((text[:, 0] * true).sum(-1).mean()), 4),
                               "text–image, different emoji": round(float((text[:, 0] @ true.T)[off].mean()), 4),
                               "image–image, different emoji": round(float((true @ true.T)[off].mean()), 4),
                               "text–text, different emoji": round(float((text[:, 0] @ text[:, 0].T)[off].mean()), 4)}
    return figures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--glide", default=str(MODELS / "emoji-text2img-tokens"), help="GLIDE: the app's default text-to-image model")
    ap.add_argument("--decoder", default=str(MODELS / "emoji-decoder"))
    ap.add_argument("--prior", default=str(MODELS / "emoji-prior"))
    ap.add_argument("--judge", default=str(MODELS / "emoji-judge"))
    ap.add_argument("--data", default=str(ROOT / "data" / "emoji"))
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--variations", type=int, default=4)
    ap.add_argument("--scale", type=float, default=3.0, help="classifier-free guidance w, the same for all")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: adherence,variations,prior")
    ap.add_argument("--out", default=None, help="write the figures here as JSON")
    ap.add_argument("--grid", default=None, help="write a grid (methods × shape prompts, seed 0) here as PNG")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    skip = set(args.skip.split(","))
    clip = ClipModel.load("mini-clip", device="cpu")
    judge = load_judge(args.judge)
    res = {"sampler": f"DDIM-{args.steps}", "scale": args.scale, "seeds": args.seeds,
           "chance": round(1 / len(GROUP_PROMPTS), 3), "prompts": {"shape": GROUP_PROMPTS, "colour": COLOUR_PROMPTS}}
    grid_rows: list[torch.Tensor] = []
    if "adherence" not in skip:
        res["adherence"] = adherence(args, clip, judge, grid_rows)
    if "variations" not in skip:
        res["variations"] = variations(args, clip, judge)
        print(res["variations"], flush=True)
    if "prior" not in skip:
        res["prior_heldout"] = prior_figures(args)
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    if args.grid and grid_rows:
        import torchvision

        grid = torchvision.utils.make_grid((torch.cat(grid_rows) + 1) / 2, nrow=len(GROUP_PROMPTS), padding=2,
                                           pad_value=1.0)
        torchvision.utils.save_image(torch.nn.functional.interpolate(grid[None], scale_factor=2)[0], args.grid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
