"""Skip-gram with negative sampling (SGNS) over meta-path walks: one vector space shared by users and items.

Two backends train the same objective (word2vec's: a (center, context) pair inside the window is pulled together,
``negatives`` noise nodes drawn from the unigram^0.75 distribution are pushed away):

* ``"torch"`` (default): vectorised. All (center, context) pairs of a chunk of walks are built with numpy at once,
  gradients are written out by hand (no autograd graph) and applied with a dense fused Adam in large batches.
  Each batch draws one pool of ``negative_pool`` noise nodes shared by all its pairs; a pair's negative term is
  ``negatives`` times the pool mean, the same expectation as ``negatives`` independent draws, and the whole batch's
  negative scores are one matrix product. Adam's per-coordinate step sizes keep popular nodes (which appear many
  times in one batch) stable where plain batched SGD diverges, so one epoch is enough. On the Beauty training graph
  it reaches in ~25 s the validation quality that gensim needs ~290 s for (twice the walks, window 5, five epochs);
  gensim with the same walks and epochs is about as fast but far worse (``benchmarks/results/embedding_quality.md``).
* ``"gensim"``: ``gensim.models.Word2Vec(sg=1)``, the reference implementation, kept for comparison. gensim is an
  optional extra, imported only when this backend is chosen; it runs with ``workers=1`` because only then is it
  deterministic.

Both are deterministic: same walks, parameters and seed give bit-identical vectors on the same machine and library
versions. The torch backend runs single-threaded (restoring the thread count afterwards) so the result does not
depend on how many cores the machine has, and draws every random number from seeded generators.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from .config import SkipGramConfig, configure

_CHUNK_PAIRS = 1 << 22  # pairs materialised at once: memory stays bounded however many walks there are


def skipgram_embeddings(
    walks: np.ndarray, num_nodes: int, config: SkipGramConfig | None = None, **settings: Any
) -> np.ndarray:
    """Train SGNS on ``walks`` (``(num_walks, walk_length)`` node numbers) and return ``float32 (num_nodes, dim)``.

    Settings come from ``config`` (a :class:`SkipGramConfig`, or a ``MetaIDIndexerConfig``, which extends it) and
    keyword ``settings`` that replace its fields (``skipgram_embeddings(walks, n, dim=16)``). ``window`` is the
    largest context distance; as in word2vec each center draws its own window in ``1..window``, so nearer nodes
    count more. ``learning_rate``, ``batch_size`` and ``negative_pool`` apply to the torch backend only (gensim keeps
    its own SGD schedule).
    """
    config = configure(SkipGramConfig, config, settings)
    walks = np.ascontiguousarray(walks, dtype=np.int64)
    if walks.ndim != 2 or walks.shape[0] == 0:
        raise ValueError("walks must be a non-empty (num_walks, walk_length) array")
    if walks.min() < 0 or walks.max() >= num_nodes:
        raise ValueError(f"walks contain node numbers outside [0, {num_nodes})")
    if config.backend == "gensim":
        return _gensim_sgns(walks, num_nodes, config)
    with _one_torch_thread():  # single-threaded whatever the core count: results and speed ignore the load
        return _torch_sgns(walks, num_nodes, config)


def window_pairs(walks: np.ndarray, reach: np.ndarray, max_window: int) -> tuple[np.ndarray, np.ndarray]:
    """All (center, context) pairs of ``walks`` where the context lies within the center's own ``reach``.

    Built one offset at a time over all walks together: ``2 * max_window`` masked slices instead of a loop over
    tokens.
    """
    centers, contexts = [], []
    for offset in range(1, min(max_window, walks.shape[1] - 1) + 1):
        forward = reach[:, :-offset] >= offset  # center at t, context at t + offset
        centers.append(walks[:, :-offset][forward])
        contexts.append(walks[:, offset:][forward])
        backward = reach[:, offset:] >= offset  # center at t + offset, context at t
        centers.append(walks[:, offset:][backward])
        contexts.append(walks[:, :-offset][backward])
    if not centers:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(centers), np.concatenate(contexts)


def _torch_sgns(walks: np.ndarray, num_nodes: int, config: SkipGramConfig) -> np.ndarray:
    """Skip-gram with negative sampling; call it inside ``_one_torch_thread()`` (results do not depend on load)."""
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, 0x53474E53])
    # word2vec initialisation: small random center vectors, zero context vectors.
    center_vectors = torch.nn.Parameter((torch.rand(num_nodes, config.dim, generator=generator) - 0.5) / config.dim)
    context_vectors = torch.nn.Parameter(torch.zeros(num_nodes, config.dim))
    center_vectors.grad = torch.zeros_like(center_vectors)
    context_vectors.grad = torch.zeros_like(context_vectors)
    # Dense Adam: rows a batch misses keep moving on their momentum, which trains rare (low-degree) nodes markedly
    # better than a lazy, touched-rows-only update (validation proxy on Beauty: user HR@10 0.030 vs 0.018), and was
    # also faster there. Its cost per step grows with num_nodes, so for millions of nodes raise batch_size or use the
    # spectral embedding.
    optimizer = torch.optim.Adam([center_vectors, context_vectors], lr=config.learning_rate, fused=True)
    noise = np.bincount(walks.ravel(), minlength=num_nodes).astype(np.float64) ** 0.75
    noise_cdf = torch.from_numpy(np.cumsum(noise / noise.sum()))
    negative_weight = config.negatives / config.negative_pool
    walk_length = walks.shape[1]
    walks_per_chunk = max(1, _CHUNK_PAIRS // max(1, walk_length * config.window))
    with torch.no_grad():
        for epoch in range(config.epochs):
            # Each center draws its window once per epoch; knowing every pair count up front drives the lr schedule.
            reach = rng.integers(1, config.window + 1, size=walks.shape, dtype=np.int16)
            order = rng.permutation(walks.shape[0])
            epoch_pairs = sum(
                2 * int((reach[:, o:] >= o).sum()) for o in range(1, min(config.window, walk_length - 1) + 1)
            )
            done = 0
            for start in range(0, len(order), walks_per_chunk):
                rows = order[start : start + walks_per_chunk]
                centers, contexts = window_pairs(walks[rows], reach[rows], config.window)
                shuffle = torch.from_numpy(rng.permutation(len(centers)))
                centers = torch.from_numpy(centers)[shuffle]
                contexts = torch.from_numpy(contexts)[shuffle]
                for begin in range(0, len(centers), config.batch_size):
                    progress = (epoch + done / max(epoch_pairs, 1)) / config.epochs
                    optimizer.param_groups[0]["lr"] = config.learning_rate * max(1.0 - progress, 1e-4)
                    center = centers[begin : begin + config.batch_size]
                    context = contexts[begin : begin + config.batch_size]
                    pool = torch.searchsorted(
                        noise_cdf, torch.rand(config.negative_pool, generator=generator, dtype=torch.float64)
                    ).clamp_(max=num_nodes - 1)
                    _sgns_gradients(center_vectors, context_vectors, center, context, pool, negative_weight)
                    optimizer.step()
                    done += len(center)
    return center_vectors.detach().numpy().astype(np.float32, copy=True)


def _sgns_gradients(
    center_vectors: torch.Tensor,
    context_vectors: torch.Tensor,
    center: torch.Tensor,
    context: torch.Tensor,
    pool: torch.Tensor,
    negative_weight: float,
) -> None:
    """Write the gradient of the batch's SGNS loss (summed over pairs) into the two tables' ``.grad``.

    loss = -Σ log σ(u·v) - w Σ_pool log σ(-u·n); d/du = (σ(u·v) - 1) v + w Σ σ(u·n) n, and symmetrically for v, n.
    """
    u = center_vectors[center]
    v = context_vectors[context]
    noise = context_vectors[pool]
    positive = torch.sigmoid((u * v).sum(1)).sub_(1.0)  # (B,)
    negative = torch.sigmoid(u @ noise.T).mul_(negative_weight)  # (B, pool)
    center_vectors.grad.zero_()
    context_vectors.grad.zero_()
    center_vectors.grad.index_add_(0, center, torch.addmm(positive[:, None] * v, negative, noise))
    context_vectors.grad.index_add_(0, context, positive[:, None] * u)
    context_vectors.grad.index_add_(0, pool, negative.T @ u)


def _gensim_sgns(walks: np.ndarray, num_nodes: int, config: SkipGramConfig) -> np.ndarray:
    try:
        from gensim.models import Word2Vec
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("backend='gensim' needs gensim: pip install 'hf-metaid[gensim]'") from err

    sentences = [[str(node) for node in walk] for walk in walks.tolist()]
    model = Word2Vec(
        sentences,
        vector_size=config.dim,
        window=config.window,
        min_count=1,
        sg=1,
        negative=config.negatives,
        ns_exponent=0.75,
        sample=0,  # no frequent-node subsampling, the same objective as the torch backend
        epochs=config.epochs,
        workers=1,  # the only deterministic setting
        seed=config.seed,
        hashfxn=_stable_hash,  # the default (Python's hash) is salted per process
    )
    vectors = np.zeros((num_nodes, config.dim), dtype=np.float32)
    for node in range(num_nodes):
        key = str(node)
        if key in model.wv.key_to_index:
            vectors[node] = model.wv[key]
    return vectors


def _stable_hash(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode("utf-8"))


@contextlib.contextmanager
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
