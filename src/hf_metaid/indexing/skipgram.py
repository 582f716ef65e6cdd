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

import numpy as np
import torch

BACKENDS = ("torch", "gensim")
_CHUNK_PAIRS = 1 << 22  # pairs materialised at once: memory stays bounded however many walks there are


def skipgram_embeddings(
    walks: np.ndarray,
    num_nodes: int,
    *,
    dim: int = 64,
    window: int = 3,
    negatives: int = 5,
    epochs: int = 1,
    seed: int = 0,
    backend: str = "torch",
    learning_rate: float = 0.03,
    batch_size: int = 16384,
    negative_pool: int = 64,
) -> np.ndarray:
    """Train SGNS on ``walks`` (``(num_walks, walk_length)`` node numbers) and return ``float32 (num_nodes, dim)``.

    ``window`` is the largest context distance; as in word2vec each center draws its own window in
    ``1..window``, so nearer nodes count more. ``learning_rate``, ``batch_size`` and ``negative_pool`` apply to the
    torch backend only (gensim keeps its own SGD schedule).
    """
    walks = np.ascontiguousarray(walks, dtype=np.int64)
    if walks.ndim != 2 or walks.shape[0] == 0:
        raise ValueError("walks must be a non-empty (num_walks, walk_length) array")
    if walks.min() < 0 or walks.max() >= num_nodes:
        raise ValueError(f"walks contain node numbers outside [0, {num_nodes})")
    if min(dim, window, negatives, epochs) < 1:
        raise ValueError("dim, window, negatives and epochs must be >= 1")
    if backend == "torch":
        with _one_torch_thread():  # single-threaded whatever the core count: results and speed ignore the load
            return _torch_sgns(
                walks, num_nodes, dim, window, negatives, epochs, seed, learning_rate, batch_size, negative_pool
            )
    if backend == "gensim":
        return _gensim_sgns(walks, num_nodes, dim, window, negatives, epochs, seed)
    raise ValueError(f"unknown skip-gram backend {backend!r}; use one of {BACKENDS}")


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


def _torch_sgns(
    walks: np.ndarray,
    num_nodes: int,
    dim: int,
    window: int,
    negatives: int,
    epochs: int,
    seed: int,
    learning_rate: float,
    batch_size: int,
    negative_pool: int,
) -> np.ndarray:
    """Skip-gram with negative sampling; call it inside ``_one_torch_thread()`` (results do not depend on load)."""
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng([seed, 0x53474E53])
    # word2vec initialisation: small random center vectors, zero context vectors.
    center_vectors = torch.nn.Parameter((torch.rand(num_nodes, dim, generator=generator) - 0.5) / dim)
    context_vectors = torch.nn.Parameter(torch.zeros(num_nodes, dim))
    center_vectors.grad = torch.zeros_like(center_vectors)
    context_vectors.grad = torch.zeros_like(context_vectors)
    # Dense Adam: rows a batch misses keep moving on their momentum, which trains rare (low-degree) nodes markedly
    # better than a lazy, touched-rows-only update (validation proxy on Beauty: user HR@10 0.030 vs 0.018), and was
    # also faster there. Its cost per step grows with num_nodes, so for millions of nodes raise batch_size or use the
    # spectral embedding.
    optimizer = torch.optim.Adam([center_vectors, context_vectors], lr=learning_rate, fused=True)
    noise = np.bincount(walks.ravel(), minlength=num_nodes).astype(np.float64) ** 0.75
    noise_cdf = torch.from_numpy(np.cumsum(noise / noise.sum()))
    negative_weight = negatives / negative_pool
    walk_length = walks.shape[1]
    walks_per_chunk = max(1, _CHUNK_PAIRS // max(1, walk_length * window))
    with torch.no_grad():
        for epoch in range(epochs):
            # Each center draws its window once per epoch; knowing every pair count up front drives the lr schedule.
            reach = rng.integers(1, window + 1, size=walks.shape, dtype=np.int16)
            order = rng.permutation(walks.shape[0])
            epoch_pairs = sum(2 * int((reach[:, o:] >= o).sum()) for o in range(1, min(window, walk_length - 1) + 1))
            done = 0
            for start in range(0, len(order), walks_per_chunk):
                rows = order[start : start + walks_per_chunk]
                centers, contexts = window_pairs(walks[rows], reach[rows], window)
                shuffle = torch.from_numpy(rng.permutation(len(centers)))
                centers = torch.from_numpy(centers)[shuffle]
                contexts = torch.from_numpy(contexts)[shuffle]
                for begin in range(0, len(centers), batch_size):
                    progress = (epoch + done / max(epoch_pairs, 1)) / epochs
                    optimizer.param_groups[0]["lr"] = learning_rate * max(1.0 - progress, 1e-4)
                    center = centers[begin : begin + batch_size]
                    context = contexts[begin : begin + batch_size]
                    pool = torch.searchsorted(
                        noise_cdf, torch.rand(negative_pool, generator=generator, dtype=torch.float64)
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


def _gensim_sgns(
    walks: np.ndarray, num_nodes: int, dim: int, window: int, negatives: int, epochs: int, seed: int
) -> np.ndarray:
    try:
        from gensim.models import Word2Vec
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("backend='gensim' needs gensim: pip install 'hf-metaid[gensim]'") from err

    sentences = [[str(node) for node in walk] for walk in walks.tolist()]
    model = Word2Vec(
        sentences,
        vector_size=dim,
        window=window,
        min_count=1,
        sg=1,
        negative=negatives,
        ns_exponent=0.75,
        sample=0,  # no frequent-node subsampling, the same objective as the torch backend
        epochs=epochs,
        workers=1,  # the only deterministic setting
        seed=seed,
        hashfxn=_stable_hash,  # the default (Python's hash) is salted per process
    )
    vectors = np.zeros((num_nodes, dim), dtype=np.float32)
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
