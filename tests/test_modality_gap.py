"""Text queries find their true top 10 on the approximate indexes, not only queries near stored images.

CLIP text vectors sit in another cone than image vectors (bench/modality_gap.py makes such data: a text
query's cosine to its best image is about 0.4, a near-duplicate's 0.9). Tuned on near queries alone and
with every centroid dominated by the image cone, the IVF indexes found about half of a text query's top 10.
The indexes now assign lists by the centred vectors and are tuned on text queries too."""
import sys

import numpy as np
import pytest

from demo_core.search.ann import build_ann, exact_top10, near_queries, recall_at_10
from demo_core.search.compressed import CompressedIndex, build_compressed
from demo_core.search.store import VectorStore
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from modality_gap import ModalityGap  # noqa: E402


@pytest.fixture(scope="module")
def gap():
    g = ModalityGap(dim=256, concepts=1000)
    x, _ = g.images(20_000, seed=1)
    return g, np.arange(len(x), dtype=np.int64) * 2 + 1, x


def _recall(search, queries, exact):
    return float(np.mean([len({i for i, _ in search(q)} & set(e)) / 10 for q, e in zip(queries, exact)]))


def test_ivf_flat_finds_the_top10_of_text_queries_it_was_not_tuned_on(gap):
    g, ids, x = gap
    index, info = build_ann(x, ids, threshold=0, text_queries=g.texts(300, seed=2))
    assert info["index_type"].startswith("IVF-Flat") and "centred" in info["index_type"]
    text, image = g.texts(300, seed=3), near_queries(x, 300, np.random.default_rng(4))  # held out
    assert np.mean(np.sort(text @ x.T, 1)[:, -1]) < 0.5  # far from every image, as CLIP's text queries are
    assert recall_at_10(index, x, ids, text, exact_top10(x, ids, text)) >= 0.95
    assert recall_at_10(index, x, ids, image, exact_top10(x, ids, image)) >= 0.95
    assert info["recall_at_10_text"] >= 0.95 and info["recall_at_10"] >= 0.95


def test_compressed_index_finds_the_top10_of_text_queries(gap, tmp_path):
    g, ids, x = gap
    VectorStore.write(tmp_path, len(x), x.shape[1], ((ids[i:i + 4096], x[i:i + 4096]) for i in range(0, len(x), 4096)))
    _, info = build_compressed(tmp_path, text_queries=g.texts(300, seed=2))
    served = CompressedIndex(tmp_path)
    x16 = x.astype(np.float16).astype(np.float32)  # the store keeps float16: exact is exact on those
    for queries in (g.texts(300, seed=3), near_queries(x, 300, np.random.default_rng(4))):
        exact = ids[np.argsort(-(queries @ x16.T), axis=1)[:, :10]]
        assert _recall(lambda q: served.search(q, 10), queries, exact) >= 0.95
    assert info["recall_at_10_text"] >= 0.95 and info["compressed_params"]["centred"]


def test_the_builder_tunes_on_the_models_own_text_queries(tiny_clip_folder, tmp_path, monkeypatch):
    """index_builder encodes the tuning prompts with the index's CLIP in its search template, once, beside
    the index; the IVF build then records the text queries' recall."""
    import shutil

    from demo_core.clip.model import ClipModel
    from demo_core.search import ann
    from demo_core.search.builder import build_index
    from demo_core.search.index import ImageIndex
    from demo_core.search.prompts import FILE, tuning_prompts
    from tests.conftest import EXAMPLES

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted(EXAMPLES.glob("*.png")):
        shutil.copy(p, photos / p.name)
    clip = ClipModel.load(f"local-dir:{tiny_clip_folder}", "cpu")
    monkeypatch.setattr(ann, "EXACT_MAX_WORK", 0)  # IVF even for six images
    build_index(photos, tmp_path / "index", clip, workers=1)
    saved = np.load(tmp_path / "index" / FILE)
    expected = clip.label_embeddings(tuning_prompts(), (clip.search_template,)).numpy()
    assert len(tuning_prompts()) >= 300 and np.allclose(saved, expected, atol=1e-6)
    m = ImageIndex(tmp_path / "index").manifest()
    assert m["index_type"].startswith("IVF-Flat") and m["recall_at_10_text"] is not None
