"""Image towers for embedding a collection faster on a CPU, and the check that
keeps them honest.

A tower turns preprocessed pixels (B, 3, H, W) into L2-normalised embeddings (B, D), like
``ClipModel.encode_pixels``. Kinds (``TOWERS``):

  fp32       the model as loaded (the reference)
  bf16       the same modules under CPU autocast to bfloat16 (matrix units where the CPU has them:
             AMX, AVX-512 BF16)
  int8       torch dynamic quantization: every ``nn.Linear`` of the image tower holds int8 weights,
             activations are quantized per batch (``torch.ao.quantization.quantize_dynamic``);
             convolutions, attention's fused input projection and the final projection stay fp32
  onnx       the image tower exported to ONNX and run by ONNX Runtime (fp32, graph optimisations)
  onnx-int8  that graph with int8 weights (``onnxruntime.quantization.quantize_dynamic``)

int8 arithmetic changes the vectors. ``agreement`` measures by how much against fp32: the cosine of
each image's two vectors, and how many of each image's 10 nearest neighbours in the collection stay
the same. index_builder checks it on a sample of the folder before it embeds with a faster tower
and falls back to fp32 below ``MIN_COS`` / ``MIN_OVERLAP`` (bench/bench_tower.py measures it at
length; bench/RESULTS.md, "Faster image towers").
"""
from __future__ import annotations

import copy
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

logger = logging.getLogger(__name__)

TOWERS = ("fp32", "bf16", "int8", "onnx", "onnx-int8")
MIN_COS = 0.99  # the least cosine to fp32 that any one image may have
MIN_OVERLAP = 0.9  # the least mean top-10 neighbour overlap with fp32
AUTO = ("onnx", "onnx-int8", "int8")  # what "auto" tries; bf16 left out: 0.64× fp32 on ViT-B-32 here (bench/RESULTS.md)
AUTO_MIN_GAIN = 1.15  # "auto" leaves fp32 only for a tower this much faster on the sample (timing noise)
AUTO_MIN_IMAGES = 5000  # fewer to embed: exporting and timing the towers (~30 s for ViT-B-32) costs more
# than they save (break-even ~1,500 ViT-B-32 images here; mini-clip's builds are decoding-bound: bench/RESULTS.md)
ONNX_HINT = "the onnx towers need ONNX Runtime: .venv/bin/pip install -r requirements-scale.txt"


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class ImageTower:
    """`clip`'s image tower as `kind`; ``encode_pixels`` as ``ClipModel.encode_pixels``."""

    def __init__(self, clip, kind: str = "fp32", workdir: str | Path | None = None):
        if kind not in TOWERS:  # (ImageTower is one kind; "auto" is choose_tower's)
            raise InputError(f"Unknown tower {kind!r}; choose one of {', '.join(TOWERS)}.")
        if kind != "fp32" and clip.device.device.type != "cpu":
            raise InputError(f"The {kind} tower runs on the CPU only; use --device cpu, or fp32 on "
                             f"{clip.device.device.type}.")
        if kind.startswith("onnx") and not onnx_available():
            raise InputError(ONNX_HINT)
        self.clip, self.kind = clip, kind
        self.preprocess, self.image_size, self.embed_dim = clip.preprocess, clip.image_size, clip.embed_dim
        self._session = self._visual = None
        self._tmp = None
        try:
            if kind == "int8":
                self._visual = _int8_visual(clip)
            elif kind.startswith("onnx"):
                if workdir is None:
                    self._tmp = tempfile.TemporaryDirectory(prefix="tower-")
                    workdir = self._tmp.name
                self._session = _onnx_session(clip, Path(workdir), quantize=kind == "onnx-int8")
        except InputError:
            raise
        except Exception as e:  # an architecture the exporter or quantizer cannot take: the user picks another
            logger.exception("building the %s tower of %s failed", kind, clip.name)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise InputError(f"The {kind} tower cannot be built for {clip.name} ({first}); use --tower fp32.") from None

    @torch.inference_mode()
    def encode_pixels(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "fp32":
            return self.clip.encode_pixels(x)
        x = x.float().cpu()
        if self.kind == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = self.clip.model.visual(x)
        elif self._visual is not None:
            y = self._visual(x)
        else:
            y = torch.from_numpy(self._session.run(None, {"pixels": x.numpy()})[0])
        return torch.nn.functional.normalize(y.float(), dim=-1)


def _int8_visual(clip) -> torch.nn.Module:
    """A copy of clip's image tower whose ``nn.Linear`` modules are int8 (dynamic quantization). Left
    out: a CLIP-ResNet's attention pool, which reads its q/k/v Linears' weights directly."""
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    visual = copy.deepcopy(clip.model.visual).float().eval()
    spec = {name: default_dynamic_qconfig for name, mod in visual.named_modules()
            if type(mod) is torch.nn.Linear and "attnpool" not in name.split(".")}
    if not spec:
        raise InputError(f"{clip.name}'s image tower has no Linear layers for int8 to speed up "
                         "(a CLIP-ResNet is convolutions); try the onnx tower.")
    with warnings.catch_warnings():  # torch marks its quantized tensors deprecated (docs/NOTES.md)
        warnings.filterwarnings("ignore", category=UserWarning, message=".*quantize")
        return quantize_dynamic(visual, spec, dtype=torch.qint8)


def _onnx_session(clip, folder: Path, quantize: bool):
    """Export clip's image tower to folder/visual.onnx (batch dimension free), optionally quantize its
    weights to int8, and open it in ONNX Runtime with torch's thread count."""
    import onnxruntime as ort

    visual = copy.deepcopy(clip.model.visual).float().eval().requires_grad_(True)
    path = folder / "visual.onnx"
    x = torch.zeros(2, 3, clip.image_size, clip.image_size)
    # Grad on and weights requiring it: otherwise nn.MultiheadAttention takes a fused fast path that has no
    # ONNX form (aten::_native_multi_head_attention).
    with torch.enable_grad(), warnings.catch_warnings():  # the tracer's advice is for model authors
        warnings.simplefilter("ignore")
        torch.onnx.export(visual, (x,), str(path), input_names=["pixels"], output_names=["embedding"],
                          dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}}, dynamo=False,
                          opset_version=17)
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        q = folder / "visual-int8.onnx"
        quiet = logging.getLogger()  # onnxruntime.quantization advises pre-processing on the root logger
        level, quiet.level = quiet.level, logging.ERROR
        try:
            quantize_dynamic(str(path), str(q), weight_type=QuantType.QInt8)
        finally:
            quiet.level = level
        path = q
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    # No busy-waiting between runs: the builder's decoding threads need those cores in the meantime.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    logger.info("ONNX image tower %s (%.1f MB)", path.name, path.stat().st_size / 2**20)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def agreement(ref: np.ndarray, other: np.ndarray, k: int = 10) -> dict:
    """How far `other`'s vectors (N, D) are from the reference's, for the same N images: the cosine
    of each pair (mean and least) and, for each image, the share of its k nearest neighbours among
    the N (itself left out) that both sets of vectors agree on (mean)."""
    ref, other = np.asarray(ref, np.float32), np.asarray(other, np.float32)
    cos = np.sum(ref * other, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(other, axis=1))
    n = len(ref)
    k = min(k, n - 1)
    overlap = 1.0
    if k > 0:
        def top(v):
            s = v @ v.T
            np.fill_diagonal(s, -np.inf)
            return np.argpartition(-s, k - 1, axis=1)[:, :k]

        a, b = top(ref), top(other)
        overlap = float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)]))
    return {"images": n, "cos_mean": float(cos.mean()), "cos_min": float(cos.min()), "overlap_at_10": overlap}


def agrees(stats: dict) -> bool:
    return stats["cos_min"] >= MIN_COS and stats["overlap_at_10"] >= MIN_OVERLAP


def _timed(encode, x: torch.Tensor) -> tuple[np.ndarray, float]:
    """encode(x) once to warm up (those vectors are returned), then once timed: (vectors, images/s)."""
    vecs = encode(x).numpy()
    t = time.perf_counter()
    encode(x)
    return vecs, len(x) / max(time.perf_counter() - t, 1e-9)


def choose_tower(clip, kind: str, images: list) -> tuple[object, str, str]:
    """Measure `kind` (or, for "auto", each of AUTO that can run here) against fp32 on `images` (a
    sample of the folder): agreement and speed. Returns (encoder, the kind it is, a one-line note).

    An asked-for kind is used if it agrees (``agrees``), else fp32; "auto" takes the fastest that
    agrees and is at least AUTO_MIN_GAIN× fp32's speed, else fp32. A kind that cannot run here
    (``InputError``) is an error when asked for and left out of "auto"."""
    if kind == "auto" and clip.device.device.type != "cpu":
        return clip, "fp32", ""
    if not images:
        if kind == "auto":
            return clip, "fp32", ""
        return ImageTower(clip, kind), kind, f"tower {kind}: no readable image to check it on"
    x = torch.stack([clip.preprocess(im) for im in images])
    ref, base = _timed(clip.encode_pixels, x)
    tried = []  # (kind, tower, stats, speed ratio)
    for k in (AUTO if kind == "auto" else (kind,)):
        try:
            tower = ImageTower(clip, k)
        except InputError:
            if kind != "auto":
                raise
            continue
        vecs, speed = _timed(tower.encode_pixels, x)
        tried.append((k, tower, agreement(ref, vecs), speed / base))
    n = f"{len(images)} images of this folder"
    if kind != "auto":
        k, tower, st, gain = tried[0]
        ok = agrees(st)
        note = (f"tower {k}: least cosine to fp32 {st['cos_min']:.4f}, top-10 overlap {st['overlap_at_10']:.2f}, "
                f"{gain:.1f}× fp32's speed on {n}" + ("" if ok else f"; under {MIN_COS} / {MIN_OVERLAP}: embedded with fp32 instead"))
        logger.log(logging.INFO if ok else logging.WARNING, "%s", note)
        return (tower, k, note) if ok else (clip, "fp32", note)
    good = [t for t in tried if agrees(t[2]) and t[3] >= AUTO_MIN_GAIN]
    rest = ", ".join(f"{k} {g:.1f}×{'' if agrees(st) else ' (disagrees)'}" for k, _, st, g in tried)
    if not good:
        note = f"tower auto: fp32 (on {n}: {rest or 'no other tower can run here'})"
        logger.info("%s", note)
        return clip, "fp32", note
    k, tower, st, gain = max(good, key=lambda t: t[3])
    note = (f"tower auto: {k}, {gain:.1f}× fp32's speed at least cosine {st['cos_min']:.4f}, top-10 overlap "
            f"{st['overlap_at_10']:.2f} on {n} ({rest})")
    logger.info("%s", note)
    return tower, k, note
