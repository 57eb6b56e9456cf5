"""CLIP-like synthetic embeddings with a modality gap, for the search benchmarks and tests.

CLIP's image embeddings sit in one narrow cone and its text embeddings in another (Liang et al., 2022,
"Mind the Gap"); a text query's cosine to its best images is about 0.3 for ViT-B/32, against about 0.9
for a near-duplicate image. The generator:

    image = gap·u_image + concept_c + noise        text = gap·u_text + concept_c + noise

(each normalised), with u_image ⟂ u_text the two cones' axes, `concepts` random unit directions and
isotropic Gaussian noise of total norm `noise`. A text query is the text vector of a concept that the
images hold; an image-like query is a stored image plus a little noise (what ``ann.near_queries`` makes).
"""
from __future__ import annotations

import numpy as np


class ModalityGap:
    def __init__(self, dim: int = 512, concepts: int = 2000, gap: float = 1.0, noise: float = 0.9,
                 seed: int = 0):
        rng = np.random.default_rng(seed)
        basis = np.linalg.qr(rng.standard_normal((dim, 2)))[0].T  # two orthonormal axes
        self.u_image, self.u_text = basis[0].astype(np.float32), basis[1].astype(np.float32)
        c = rng.standard_normal((concepts, dim)).astype(np.float32)
        self.concepts = c / np.linalg.norm(c, axis=1, keepdims=True)
        self.dim, self.gap, self.noise = dim, gap, noise

    def _make(self, axis: np.ndarray, labels: np.ndarray, rng) -> np.ndarray:
        noise = rng.standard_normal((len(labels), self.dim)).astype(np.float32) * (self.noise / np.sqrt(self.dim))
        x = self.gap * axis + self.concepts[labels] + noise
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def images(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, D) image embeddings and their concept labels."""
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, len(self.concepts), n)
        return self._make(self.u_image, labels, rng), labels

    def texts(self, n: int, seed: int) -> np.ndarray:
        """(n, D) text queries, each of a random concept."""
        rng = np.random.default_rng(seed)
        return self._make(self.u_text, rng.integers(0, len(self.concepts), n), rng)
