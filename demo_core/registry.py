"""Model specs: what names a model, and which model the app actually runs and why.

A CLIP model is named by a *spec*:
- an open_clip name with a pretrained tag: ``ViT-B-32/openai`` (the default);
- a hub repository in open_clip's format: ``hf-hub:timm/ViT-B-16-SigLIP``;
- a local folder in that same format: ``local-dir:/path/to/folder`` or just an existing path;
- a bundled model's name: ``mini-clip-3`` (= ``local-dir:assets/models/mini-clip-3``), ``mini-clip-2``, ``mini-clip``,
  ``mini-clip-v1``.

Bundled models are plain local folders loaded through the same open_clip code path as hub
folders. ``resolve_clip_spec`` decides, without ever hanging on a missing network, whether the
requested hub model can be used (it is cached, or the hub answers within a few seconds) or
whether the app falls back to the bundled model, and says why in one line.
"""
from __future__ import annotations

import logging
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import ModelUnavailable

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
# mini-clip-3: the app's CLIP offline (zero-shot, search, How CLIP learns). mini-clip-2: the one before it. mini-clip
# and mini-clip-v1: the CLIPs the bundled diffusion models were conditioned on; each keeps loading its own (their
# configs name it) until it is retrained on the app's.
BUNDLED_MODELS = {name: ASSETS / "models" / name for name in ("mini-clip-3", "mini-clip-2", "mini-clip", "mini-clip-v1")}
DEFAULT_CLIP = "ViT-B-32/openai"
BUNDLED_CLIP = "mini-clip-3"
HUB_TIMEOUT_S = float(os.environ.get("DEMO_HUB_TIMEOUT", 3.0))

Kind = Literal["pretrained", "hf-hub", "local"]


@dataclass(frozen=True)
class ClipSpec:
    """A parsed spec: how open_clip is to be called for it."""

    spec: str  # what the user wrote, normalised
    kind: Kind
    model_name: str  # first argument of open_clip.create_model_and_transforms
    pretrained: str | None = None  # tag for kind == "pretrained"

    @property
    def display(self) -> str:
        return f"{self.spec} (bundled)" if self.spec in BUNDLED_MODELS else self.spec


@dataclass(frozen=True)
class Resolution:
    """The spec the app will load, and the one-line reason shown to the user."""

    spec: ClipSpec
    reason: str
    fallback: bool = False  # True when a requested hub model was replaced by the bundled one


def parse_clip_spec(spec: str) -> ClipSpec:
    """Parse a spec string. Raises ModelUnavailable with advice on a spec that names nothing."""
    s = spec.strip()
    if not s:
        raise ModelUnavailable("Empty model spec; use e.g. ViT-B-32/openai, hf-hub:ORG/NAME or mini-clip-3.")
    if s in BUNDLED_MODELS:
        return ClipSpec(s, "local", f"local-dir:{BUNDLED_MODELS[s]}")
    if s.startswith("hf-hub:"):
        if "/" not in s[len("hf-hub:"):]:
            raise ModelUnavailable(f"'{s}' is not a hub repository; write hf-hub:ORG/NAME.")
        return ClipSpec(s, "hf-hub", s)
    if s.startswith("local-dir:") or os.path.isdir(s):
        path = Path(s.removeprefix("local-dir:")).expanduser()
        if not (path / "open_clip_config.json").is_file():
            raise ModelUnavailable(f"'{path}' is not an open_clip model folder (it has no open_clip_config.json).")
        return ClipSpec(s, "local", f"local-dir:{path}")
    import open_clip

    name, _, tag = s.partition("/")
    if name not in open_clip.list_models():
        raise ModelUnavailable(
            f"Unknown model '{name}'. Use an open_clip name such as ViT-B-32/openai, "
            "hf-hub:ORG/NAME, a local folder, or mini-clip-3 (bundled)."
        )
    tags = [t for n, t in open_clip.list_pretrained() if n == name]
    tag = tag or (tags[0] if tags else "")
    if tag not in tags:
        raise ModelUnavailable(f"'{name}' has no pretrained weights tagged '{tag}'; known tags: {', '.join(tags) or 'none'}.")
    return ClipSpec(f"{name}/{tag}", "pretrained", name, tag)


def _hub_files(spec: ClipSpec) -> tuple[str, list[str]]:
    """(repo id, candidate weight/config file names) of a hub-backed spec."""
    if spec.kind == "hf-hub":
        return spec.model_name.removeprefix("hf-hub:"), ["open_clip_config.json"]
    import open_clip

    cfg = open_clip.pretrained.get_pretrained_cfg(spec.model_name, spec.pretrained) or {}
    hub = cfg.get("hf_hub", "")  # 'org/name/' or 'org/name/file.bin'
    repo, filename = os.path.split(hub) if hub else ("", "")
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    if filename and filename.endswith(".bin"):
        names.insert(0, filename[: -len(".bin")] + ".safetensors")
    return repo.rstrip("/"), names


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Does the Hugging Face hub answer within `timeout` seconds? (DNS included: a thread.)"""
    from huggingface_hub import constants

    answer: list[bool] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout)
            answer.append(True)
        except urllib.error.HTTPError:
            answer.append(True)  # it answered, even if with an error code
        except Exception:
            answer.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(answer and answer[0])


def cached_file(repo: str, names: list[str]) -> str | None:
    """The local path of the first of `names` that the Hugging Face cache holds for `repo`, else None."""
    from huggingface_hub import try_to_load_from_cache

    for name in names:
        path = try_to_load_from_cache(repo, name)
        if isinstance(path, str):
            return path
    return None


@dataclass(frozen=True)
class ClipSource:
    """Exactly what one load passes to open_clip, decided once before loading.

    A spec whose files are in the local cache is pointed at those files, so the load makes no
    request at all, without switching the process-wide ``HF_HUB_OFFLINE`` (other threads may be
    loading at the same time)."""

    model_name: str  # first argument of open_clip.create_model_and_transforms
    pretrained: str | None = None  # a tag (downloaded if needed) or a local weights file
    kwargs: dict = field(default_factory=dict)  # what the tag would set, when its file is loaded directly
    where: Literal["local folder", "local cache", "hub"] = "local folder"


def clip_source(spec: ClipSpec) -> ClipSource:
    """Where `spec`'s files come from for this load: a local folder, the local Hugging Face cache
    (then no request is made) or the hub."""
    if spec.kind == "local":
        return ClipSource(spec.model_name)
    repo, names = _hub_files(spec)
    if spec.kind == "hf-hub":
        config = cached_file(repo, names)
        if config and cached_file(repo, ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]):
            return ClipSource(f"local-dir:{os.path.dirname(config)}", where="local cache")
        return ClipSource(spec.model_name, where="hub")
    weights = cached_file(repo, names) if repo else None
    if not weights:
        return ClipSource(spec.model_name, spec.pretrained, where="hub")
    import open_clip

    tag = open_clip.pretrained.get_pretrained_cfg(spec.model_name, spec.pretrained) or {}
    kwargs = {"force_quick_gelu": bool(tag.get("quick_gelu", False)), "image_mean": tag.get("mean"),
              "image_std": tag.get("std"), "image_interpolation": tag.get("interpolation"),
              "image_resize_mode": tag.get("resize_mode")}
    return ClipSource(spec.model_name, weights, kwargs, where="local cache")


def is_cached(spec: ClipSpec) -> bool:
    """True when the spec's files are already in the local Hugging Face cache (or a local folder)."""
    return clip_source(spec).where != "hub"


def resolve_clip_spec(requested: str | None = None, *, probe_timeout: float = HUB_TIMEOUT_S) -> Resolution:
    """Choose the CLIP model to load.

    `requested` (else $DEMO_CLIP_MODEL, else ViT-B-32/openai) is used when it is local, cached,
    or the hub answers within `probe_timeout` s; otherwise the bundled mini-clip-3 (BUNDLED_CLIP), with the reason.
    Raises ModelUnavailable for a spec that names nothing (a typo should not silently fall back).
    """
    asked = requested or os.environ.get("DEMO_CLIP_MODEL") or None
    spec = parse_clip_spec(asked or DEFAULT_CLIP)
    how = "asked for" if asked else "default"
    if spec.kind == "local":
        return Resolution(spec, f"{spec.display}: {how}, loaded from a local folder")
    if is_cached(spec):
        return Resolution(spec, f"{spec.display}: {how}, found in the local Hugging Face cache")
    bundled = parse_clip_spec(BUNDLED_CLIP)
    if hub_offline():
        why = f"HF_HUB_OFFLINE is set and {spec.display} is not in the local cache"
    elif hub_reachable(probe_timeout):
        return Resolution(spec, f"{spec.display}: {how}, downloading from the Hugging Face hub")
    else:
        why = f"the Hugging Face hub did not answer within {probe_timeout:g} s"
    logger.warning("using the bundled %s instead of %s: %s", bundled.display, spec.display, why)
    return Resolution(bundled, f"{bundled.display}: {why}", fallback=True)


def model_folder(out: str | Path, config_name: str, config, meta: dict | None = None) -> Path:
    """Create a bundled model's folder and write its config dataclass (`config_name`, JSON) and, when given, its
    training record (``training_meta.json``); the caller writes the weights beside them."""
    import json
    from dataclasses import asdict

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / config_name).write_text(json.dumps(asdict(config), indent=1))
    if meta is not None:
        (out / "training_meta.json").write_text(json.dumps(meta, indent=1))
    return out
