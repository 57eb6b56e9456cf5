"""The compressed index's parameters, chosen by rule for N vectors of D dimensions and a memory budget
(``choose_params``); nprobe and the re-rank depth are then measured at build time (``compressed.tune``)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .store import CHUNK_BYTES

MEMORY_BUDGET = int(os.environ.get("DEMO_INDEX_MEMORY", 2 * 2**30))  # bytes the served index may hold


@dataclass
class Params:
    nlist: int
    m: int  # PQ sub-quantizers
    nbits: int  # bits per sub-quantizer code
    opq: bool
    ondisk: bool  # inverted lists merged into lists.ivfdata and memory-mapped (classic scan)
    train_size: int
    shard_rows: int
    nprobe: int = 0  # set by tuning
    rerank: int = 0  # k': candidates re-ranked exactly; set by tuning
    why: str = ""

    def factory(self, d: int) -> str:
        return (f"OPQ{self.m}_{d}," if self.opq else "") + f"IVF{self.nlist},PQ{self.m}x{self.nbits}"

    def fast_scan(self) -> bool:
        return self.nbits == 4 and not self.ondisk and not self.opq

    def code_bytes(self) -> int:
        """Bytes a vector costs in the served index: its PQ code and its 8-byte id."""
        return self.m * self.nbits // 8 + 8


def choose_params(n: int, d: int, budget: int = MEMORY_BUDGET) -> Params:
    """The index parameters for N vectors of D dimensions, by rule (measured on the 2-core reference
    machine, one thread, clustered synthetic 512-d data; bench/RESULTS.md, "Index at scale"):

    - nlist: the power of two nearest √N (at most N/39, so k-means has 39 points a list; 16..65536).
      At 100k×512, 256 lists with nprobe 16–32 gave recall@10 0.98–0.99 after re-ranking in under
      0.5 ms; the build's assignment cost grows as N·nlist·D, so √N keeps a 10M build within hours
      on 2 cores while lists stay short enough (~2.4k vectors at 10M) to scan fast.
    - PQ: 4-bit codes (nbits 4) served in FAISS's fast-scan layout, m = D/4 (64 bytes at 512-d, 72 a
      vector with its id) when that fits half the memory budget. What limits recall is how many
      vectors crowd a query's neighbourhood: at 100k×512 (50 a cluster) m = D/8 reached recall@10
      0.99 with k' = 100, m = D/16 lost 0.01–0.02 and m = D/4 gained nothing; at 1M×512 with 5,000 a
      cluster (10M's density) m = D/8 needed k' = 3,200 for 0.978 (6.2 ms) and m = D/4 k' = 1,600 for
      0.977 (2.9 ms), and nprobe 8 to 128 changed nothing: the misses were in the codes' ranking,
      not in unprobed lists. 8-bit codes with m = D/8 reached D/8's recall at 72 bytes and took 17 s
      to train against 2 s.
    - Memory budget (``MEMORY_BUDGET``, like autofaiss's): if D/4 codes (plus the centroids) are over
      half the budget, m = D/8; if those are over 80% of it, m = D/16; if still over, m = D/8 again
      and the lists are merged on disk and served through the page cache (fast-scan lists cannot
      live on disk: classic scan).
    - OPQ: off. Training the rotation took over 100 s at 10k×64 on one core, and the re-rank depth
      and nprobe are then raised by measurement until recall@10 ≥ ``TARGET_RECALL`` anyway.
    - nprobe, k': measured at build time (``tune``): of the (nprobe, smallest k' in ``RERANK_DEPTHS``)
      pairs whose recall@10 on held-aside queries against exact search reaches ``TARGET_RECALL``
      (+0.01), the fastest measured. Misses can be in unprobed lists (more nprobe) or in the codes'
      ranking (more k'); they trade against each other and only a measurement can choose.
    """
    nlist = int(2 ** round(np.log2(max(np.sqrt(n), 1))))
    nlist = int(min(65536, max(16, nlist), max(1, 2 ** int(np.log2(max(n // 39, 1))))))
    centroids = nlist * d * 4
    m, ondisk, why = max(1, d // 4), False, f"m = D/4 fast-scan: the codes fit half the budget; nlist ≈ √N = {nlist}"
    if n * (m // 2 + 8) + centroids > 0.5 * budget:
        m, why = max(1, d // 8), f"m = D/8: D/4 codes would exceed half the {budget / 2**30:.2f} GiB budget"
    if n * (m // 2 + 8) + centroids > 0.8 * budget:
        m, why = max(1, d // 16), f"m = D/16: D/8 codes would exceed 80% of the {budget / 2**30:.2f} GiB budget"
    if n * (m // 2 + 8) + centroids > 0.8 * budget:
        m, ondisk = max(1, d // 8), True
        why = f"lists on disk: even D/16 codes exceed 80% of the {budget / 2**30:.2f} GiB budget"
    while d % m:
        m -= 1
    train = int(min(n, max(40 * nlist, 65536), 500_000))
    shard_rows = max(1024, CHUNK_BYTES // (4 * d))
    return Params(nlist, m, 4, False, ondisk, train, shard_rows, why=why)
