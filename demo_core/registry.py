"""Model specs: what names a model, and which model the app actually runs and why.

A CLIP model is named by a *spec*:
- an open_clip name with a pretrained tag: ``ViT-B-32/openai`` (the default);
- a hub repository in open_clip's format: ``hf-hub:timm/ViT-B-16-SigLIP``;
- a local folder in that same format: ``local-dir:/path/to/folder`` or just an existing path;
- a bundled model's name: ``mini-clip`` (= ``local-dir:assets/models/mini-clip``).

Bundled models are plain local folders loaded through the same open_clip code path as hub
folders. ``resolve_clip_spec`` decides, without ever hanging on a missing network, whether the
requested hub model can be used (it is cached, or the hub answers within a few seconds) or
whether the app falls back to the bundled model, and says why in one line.
"""
from __future__ import annotations

import contextlib
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
BUNDLED_MODELS = {"mini-clip": ASSETS / "models" / "mini-clip"}
DEFAULT_CLIP = "ViT-B-32/openai"
BUNDLED_CLIP = "mini-clip"
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
    """Parse a spec string. Raises ValueError with advice on a spec that names nothing."""
    s = spec.strip()
    if not s:
        raise ValueError("Empty model spec; use e.g. ViT-B-32/openai, hf-hub:ORG/NAME or mini-clip.")
    if s in BUNDLED_MODELS:
        return ClipSpec(s, "local", f"local-dir:{BUNDLED_MODELS[s]}")
    if s.startswith("hf-hub:"):
        if "/" not in s[len("hf-hub:"):]:
            raise ValueError(f"'{s}' is not a hub repository; write hf-hub:ORG/NAME.")
        return ClipSpec(s, "hf-hub", s)
    if s.startswith("local-dir:") or os.path.isdir(s):
        path = Path(s.removeprefix("local-dir:")).expanduser()
        if not (path / "open_clip_config.json").is_file():
            raise ValueError(f"'{path}' is not an open_clip model folder (it has no open_clip_config.json).")
        return ClipSpec(s, "local", f"local-dir:{path}")
    import open_clip

    name, _, tag = s.partition("/")
    if name not in open_clip.list_models():
        raise ValueError(
            f"Unknown model '{name}'. Use an open_clip name such as ViT-B-32/openai, "
            "hf-hub:ORG/NAME, a local folder, or mini-clip."
        )
    tags = [t for n, t in open_clip.list_pretrained() if n == name]
    tag = tag or (tags[0] if tags else "")
    if tag not in tags:
        raise ValueError(f"'{name}' has no pretrained weights tagged '{tag}'; known tags: {', '.join(tags) or 'none'}.")
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


def is_cached(spec: ClipSpec) -> bool:
    """True when the spec's files are already in the local Hugging Face cache."""
    if spec.kind == "local":
        return True
    from huggingface_hub import try_to_load_from_cache

    repo, names = _hub_files(spec)
    if not repo:
        return False
    return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)


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


@contextlib.contextmanager
def hub_offline_mode():
    """Load from the local cache only: huggingface_hub then makes no request at all."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def resolve_clip_spec(requested: str | None = None, *, probe_timeout: float = HUB_TIMEOUT_S) -> Resolution:
    """Choose the CLIP model to load.

    `requested` (else $DEMO_CLIP_MODEL, else ViT-B-32/openai) is used when it is local, cached,
    or the hub answers within `probe_timeout` s; otherwise the bundled mini-clip, with the reason.
    Raises ValueError for a spec that names nothing (a typo should not silently fall back).
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
    return Resolution(bundled, f"{bundled.display}: {why}", fallback=True)
