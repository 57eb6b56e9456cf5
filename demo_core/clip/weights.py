"""A model folder's weights split in files under 10 MB (Hugging Face's sharded-safetensors layout), so a bundled
model needs no Git LFS on Spaces.

A sharded folder holds ``open_clip_model-00001-of-00002.safetensors``, ... and ``open_clip_model.safetensors.index.json``
(``{"metadata": {"total_size": N}, "weight_map": {tensor name: file}}``), as ``transformers`` writes them. open_clip
reads one weights file, so ``open_clip_folder`` joins the shards once into a cached folder (the config beside one
``open_clip_model.safetensors``) and open_clip loads that, by its own code; an unsharded folder is used as it is.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

WEIGHTS = "open_clip_model.safetensors"
INDEX = WEIGHTS + ".index.json"
CONFIG = "open_clip_config.json"
MAX_FILE_BYTES = 10_000_000  # Spaces stores a file over 10 MB with LFS


def save_weights(state: dict[str, torch.Tensor], folder: Path, max_bytes: int = MAX_FILE_BYTES) -> list[Path]:
    """Write `state` as one safetensors file, or as shards of at most `max_bytes` of tensors each, in order, with the
    index. Returns the files written."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in state.items()}
    sizes = {k: v.numel() * v.element_size() for k, v in state.items()}
    for old in list(folder.glob("open_clip_model*.safetensors")) + [folder / INDEX]:
        old.unlink(missing_ok=True)
    if sum(sizes.values()) <= max_bytes:
        save_file(state, str(folder / WEIGHTS))
        return [folder / WEIGHTS]
    shards: list[dict] = [{}]
    for k in state:
        if shards[-1] and sum(sizes[n] for n in shards[-1]) + sizes[k] > max_bytes:
            shards.append({})
        shards[-1][k] = state[k]
    files, weight_map = [], {}
    for i, shard in enumerate(shards, 1):
        name = f"open_clip_model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name))
        files.append(folder / name)
        weight_map.update({k: name for k in shard})
    index = {"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map}
    (folder / INDEX).write_text(json.dumps(index, indent=1))
    return files + [folder / INDEX]


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """A folder's tensors, from its one weights file or from its shards."""
    from safetensors.torch import load_file

    if not (folder / INDEX).exists():
        return load_file(str(folder / WEIGHTS))
    weight_map = json.loads((folder / INDEX).read_text())["weight_map"]
    state = {}
    for name in dict.fromkeys(weight_map.values()):
        state.update(load_file(str(folder / name)))
    missing = set(weight_map) - set(state)
    if missing:
        raise ValueError(f"{folder}: the index names tensors its shards lack ({', '.join(sorted(missing)[:3])})")
    return state


def open_clip_folder(folder: Path, cache: Path | None = None) -> Path:
    """A folder open_clip can load with ``local-dir:``: `folder` itself, or, when its weights are sharded, a cached
    copy with the shards joined (made once per content of the index and shards)."""
    folder = Path(folder)
    if not (folder / INDEX).exists():
        return folder
    digest = hashlib.sha256()
    for f in sorted(folder.glob("open_clip_model*")) + [folder / CONFIG]:
        digest.update(f.name.encode() + str(f.stat().st_size).encode() + str(f.stat().st_mtime_ns).encode())
    cache = cache or Path(os.environ.get("DEMO_CACHE", Path(tempfile.gettempdir()) / "clip-lab"))
    joined = cache / f"joined-{folder.name}-{digest.hexdigest()[:12]}"
    if (joined / WEIGHTS).exists():
        return joined
    from safetensors.torch import save_file

    state = load_weights(folder)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".joining-"))
    try:
        shutil.copy(folder / CONFIG, tmp / CONFIG)
        save_file(state, str(tmp / WEIGHTS))
        try:
            tmp.rename(joined)  # atomic: another process joining at once leaves its own copy
        except OSError:
            if not (joined / WEIGHTS).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("joined the sharded weights of %s into %s", folder, joined)
    return joined
