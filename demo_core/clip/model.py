"""CLIP: load a model by spec, embed images and texts, zero-shot classify with prompt templates.

Zero-shot is the lecture's "(2) create dataset classifier from label text, (3) use for zero-shot
prediction": each label becomes prompts ("a photo of a {label}."), the prompts' text embeddings
are averaged and re-normalised (the CLIP paper's prompt ensembling), and the image's cosine
similarity to every label, times the learned scale exp(t), goes through a softmax.
"""
from __future__ import annotations

import json
import logging
import os
import re
import string
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..device import DeviceChoice, pick_device
from ..errors import InputError, ModelUnavailable
from ..inputs import check_text
from ..registry import ClipSpec, Resolution, clip_source, parse_clip_spec
from .weights import open_clip_folder

logger = logging.getLogger(__name__)

# No trailing full stop: the bundled mini-clip never saw one in training, and on its *training*
# emoji a period costs 17 points of zero-shot accuracy (0.66 -> 0.48); OpenAI's CLIP does not mind.
DEFAULT_TEMPLATES = (
    "a photo of a {}",
    "an emoji of a {}",
    "a drawing of a {}",
    "a picture of a {}",
    "an icon of a {}",
    "a cartoon of a {}",
)
# The search box's query template, for models whose folder does not name one (open_clip_config.json
# "demo_meta": {"search_template": ...}, chosen where the model is measured: bench/gallery_queries.py).
SEARCH_TEMPLATE = "a photo of {}."
MAX_LABELS = 1000
MAX_LABEL_CHARS = 200
MAX_TEMPLATES = 20
MAX_TEMPLATE_CHARS = 200  # CLIP reads 77 tokens; a longer template only costs memory
MAX_PROMPTS = 6000  # labels x templates in one request: 1000 labels with the 6 default templates
TEXT_CACHE_BYTES = int(os.environ.get("DEMO_TEXT_CACHE_MB", 64)) * 2**20


def parse_labels(text: str | None) -> tuple[list[str], list[str]]:
    """Split a labels box on commas and newlines.

    Returns (labels, notes): blank entries dropped, duplicates (case-insensitive) removed with
    a note, so the user sees what happened. Raises InputError when nothing usable is left.
    """
    text = check_text(text, "The labels", max_chars=MAX_LABELS * (MAX_LABEL_CHARS + 2))
    parts = [p.strip() for p in re.split(r"[,\n]", text)]
    labels, seen, dupes = [], set(), []
    for p in parts:
        if not p:
            continue
        key = p.casefold()
        if key in seen:
            dupes.append(p)
            continue
        seen.add(key)
        labels.append(p)
    if not labels:
        raise InputError("Type at least one label, e.g. cat, dog, car (commas or new lines between them).")
    if len(labels) > MAX_LABELS:
        raise InputError(f"{len(labels)} labels is more than this app handles at once ({MAX_LABELS}).")
    too_long = [lab for lab in labels if len(lab) > MAX_LABEL_CHARS]
    if too_long:
        raise InputError(f"A label is longer than {MAX_LABEL_CHARS} characters: '{too_long[0][:40]}…'.")
    notes = []
    if dupes:
        notes.append(f"Ignored {len(dupes)} duplicate label(s): {', '.join(dupes[:5])}{'…' if len(dupes) > 5 else ''}.")
    if len(labels) == 1:
        notes.append("With a single label its probability is always 100%; add more labels to compare.")
    return labels, notes


def _check_template(line: str) -> None:
    """One {} and nothing else for str.format to act on: a {name}, a {:>9999999} or a lone brace is refused."""
    shown = line if len(line) <= 60 else line[:57] + "…"
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(line) if name is not None]
    except ValueError:
        raise InputError(f"The template '{shown}' has a lone {{ or }}; write {{{{ or }}}} for a brace itself.") from None
    if len(fields) != 1 or fields[0] != ("", "", None):
        raise InputError(f"Each template needs exactly one {{}} where the label goes, and no other {{…}}; "
                         f"this one does not: '{shown}'.")


def parse_templates(text: str | None) -> list[str]:
    """One template per line, each with {} where the label goes. Empty box -> the bare label."""
    text = check_text(text, "The templates", max_chars=MAX_TEMPLATES * (MAX_TEMPLATE_CHARS + 2) * 2)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ["{}"]
    if len(lines) > MAX_TEMPLATES:
        raise InputError(f"{len(lines)} templates is more than this app uses at once ({MAX_TEMPLATES}).")
    for ln in lines:
        if len(ln) > MAX_TEMPLATE_CHARS:
            raise InputError(f"A template is longer than {MAX_TEMPLATE_CHARS} characters: '{ln[:40]}…'.")
        _check_template(ln)
    return lines


@dataclass
class ZeroShotResult:
    labels: list[str]
    probs: list[float]  # softmax(logit_scale * cosine), sums to 1
    cosines: list[float]  # raw cosine similarity image . label
    logit_scale: float  # exp(t), the inverse temperature
    templates: list[str]

    @property
    def temperature(self) -> float:
        return 1.0 / self.logit_scale


def _search_template(spec: ClipSpec) -> str:
    """The query template a local model's folder records (its own measured choice), else SEARCH_TEMPLATE."""
    if spec.kind != "local":
        return SEARCH_TEMPLATE
    config = Path(spec.model_name.removeprefix("local-dir:")) / "open_clip_config.json"
    try:
        template = json.loads(config.read_text()).get("demo_meta", {}).get("search_template")
    except (OSError, ValueError):
        logger.warning("could not read the search template from %s", config, exc_info=True)
        return SEARCH_TEMPLATE
    return template if isinstance(template, str) and template.count("{}") == 1 else SEARCH_TEMPLATE


class ClipModel:
    """An open_clip model on a device, with batched encoders and a text-embedding cache."""

    def __init__(self, model, preprocess, tokenizer, spec: ClipSpec, device: DeviceChoice,
                 cache_bytes: int = TEXT_CACHE_BYTES, search_template: str = SEARCH_TEMPLATE):
        self.model = model.eval()
        self.search_template = search_template
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.spec = spec
        self.device = device
        self.embed_dim = int(model.text_projection.shape[1]) if hasattr(model, "text_projection") else None
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()  # prompt -> (D,) on CPU, oldest first
        self._cache_bytes, self._cache_limit = 0, cache_bytes
        self._lock = threading.Lock()

    @classmethod
    def load(cls, spec: str | ClipSpec | Resolution, device: str | DeviceChoice | None = None) -> "ClipModel":
        """Load a model by spec (a string, a parsed ClipSpec or a Resolution)."""
        import open_clip

        if isinstance(spec, Resolution):
            spec = spec.spec
        if isinstance(spec, str):
            spec = parse_clip_spec(spec)
        dev = device if isinstance(device, DeviceChoice) else pick_device(device)
        source = clip_source(spec)  # a cached hub model is loaded from its cached files: no request
        t0 = time.perf_counter()
        try:
            model_name = source.model_name
            if model_name.startswith("local-dir:"):  # weights in files under 10 MB are joined once, for open_clip
                model_name = f"local-dir:{open_clip_folder(Path(model_name.removeprefix('local-dir:')))}"
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=source.pretrained, device=dev.device, precision=_precision(dev),
                **source.kwargs)
            tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as e:  # noqa: BLE001 - a damaged folder or download fails in many ways; the cause is chained
            # A bad model folder is the user's to fix: one plain message. The traceback stays on the
            # exception (the app's loader logs it) and in the debug log.
            logger.debug("loading CLIP %s from the %s failed", spec.display, source.where, exc_info=True)
            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ModelUnavailable(f"The CLIP model {spec.display} could not be loaded from the {source.where} "
                                   f"({why}); check the spec, or use a complete open_clip folder.") from e
        logger.info("loaded CLIP %s from the %s in %.1f s", spec.display, source.where, time.perf_counter() - t0)
        return cls(model, preprocess, tokenizer, spec, dev, search_template=_search_template(spec))

    @property
    def name(self) -> str:
        return self.spec.display

    @property
    def image_size(self) -> int:
        """The square input side the image tower expects (224 for ViT-B-32, 64 for mini-clip)."""
        size = getattr(self.model.visual, "image_size", 224)
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())

    @torch.inference_mode()
    def encode_images(self, images: Sequence, batch_size: int = 64) -> torch.Tensor:
        """PIL images -> (N, D) L2-normalised float32 embeddings on CPU."""
        out = []
        for i in range(0, len(images), batch_size):
            x = torch.stack([self.preprocess(im) for im in images[i : i + batch_size]])  # (B, 3, H, W)
            out.append(self.encode_pixels(x))
        return torch.cat(out) if out else torch.empty(0, self.embed_dim or 0)

    @torch.inference_mode()
    def encode_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed pixels (B, 3, H, W) -> (B, D) normalised embeddings on CPU."""
        x = x.to(self.device.device, self.device.dtype)
        return torch.nn.functional.normalize(self.model.encode_image(x).float(), dim=-1).cpu()

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Texts -> (N, D) L2-normalised float32 embeddings on CPU, cached per text.

        The cache keeps the most recently used texts up to ``cache_bytes`` (texts and vectors counted),
        so neither many prompts nor long ones can grow it without bound."""
        unique = list(dict.fromkeys(texts))
        found: dict[str, torch.Tensor] = {}
        with self._lock:
            for t in unique:
                if t in self._text_cache:
                    self._text_cache.move_to_end(t)
                    found[t] = self._text_cache[t]
        missing = [t for t in unique if t not in found]
        for i in range(0, len(missing), batch_size):
            chunk = missing[i : i + batch_size]
            tokens = self.tokenizer(chunk).to(self.device.device)
            emb = torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu()  # (B, D)
            found.update((t, e.clone()) for t, e in zip(chunk, emb))  # own storage: evicting one frees it
        with self._lock:
            for t in missing:
                if t not in self._text_cache:
                    self._text_cache[t] = found[t]
                    self._cache_bytes += _cost(t, found[t])
            while self._cache_bytes > self._cache_limit and self._text_cache:
                t, e = self._text_cache.popitem(last=False)
                self._cache_bytes -= _cost(t, e)
        rows = [found[t] for t in texts]
        return torch.stack(rows) if rows else torch.empty(0, self.embed_dim or 0)

    @property
    def text_cache_bytes(self) -> int:
        """What the text cache holds now, in bytes (texts and vectors)."""
        return self._cache_bytes

    def label_embeddings(self, labels: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """(L, D) classifier weights: mean over templates of normalised prompt embeddings, renormalised.

        Raises:
            InputError: more than MAX_PROMPTS prompts (labels × templates).
        """
        if len(labels) * len(templates) > MAX_PROMPTS:
            raise InputError(f"{len(labels)} labels × {len(templates)} templates = {len(labels) * len(templates):,} "
                             f"prompts; at most {MAX_PROMPTS:,} are encoded at once. Use fewer labels or templates.")
        prompts = [tpl.format(lab) for lab in labels for tpl in templates]
        emb = self.encode_texts(prompts).view(len(labels), len(templates), -1)  # (L, T, D)
        return torch.nn.functional.normalize(emb.mean(dim=1), dim=-1)

    def zero_shot(self, image, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                  ensemble: bool = True) -> ZeroShotResult:
        """Classify one PIL image among `labels`. Without `ensemble`, only the first template is used."""
        templates = list(templates) if ensemble else list(templates[:1])
        img = self.encode_images([image])[0]  # (D,)
        cos = self.label_embeddings(labels, templates) @ img  # (L,)
        scale = self.logit_scale
        probs = torch.softmax(scale * cos, dim=0)
        return ZeroShotResult(list(labels), probs.tolist(), cos.tolist(), scale, templates)


def _cost(text: str, emb: torch.Tensor) -> int:
    """Bytes one cache entry holds: the text, the vector and the objects around them."""
    return sys.getsizeof(text) + emb.element_size() * emb.nelement() + 200


def _precision(dev: DeviceChoice) -> str:
    if dev.device.type != "cuda":
        return "fp32"
    return "bf16" if dev.dtype == torch.bfloat16 else "fp16"
