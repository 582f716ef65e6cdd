"""Collaborative indexing (CID): OpenP5's recursive spectral clustering of the item co-occurrence graph.

OpenP5 ("How to Index Item IDs for Recommendation Foundation Models") links two items by the number of pairs of
positions at which they occur together in a user's training sequence, splits the items into N groups by spectral
clustering (scikit-learn's ``SpectralClustering(affinity="precomputed", assign_labels="cluster_qr")``), and splits
again every group larger than M, until every group (a leaf) holds at most M items. Its item ID is the path of
group tokens from the root to the leaf plus a last token for the item inside the leaf, so IDs vary in length.

Here the same tree is built without the dense items × items matrix: ``C`` is kept as its factor, the sparse user ×
item count matrix ``R`` (``C = R^T R`` minus its diagonal, :class:`Cooccurrence`), so memory and every product grow
with the interactions, not with the co-occurring pairs (a user with ``d`` items makes ``d^2`` of them). Each split
takes the top-N eigenvectors of the group's normalised co-occurrence ``D^-1/2 C D^-1/2`` (ARPACK ``eigsh`` through
products with the factor; a dense solver for small groups) and assigns the items by the same cluster-QR step
(Damle, Minden and Ying, 2019: deterministic, no k-means restarts); the recursion is an explicit stack.

Mapping onto the library's two-token IDs (cluster, rank): every leaf becomes one cluster token, numbered in
depth-first order of the paths (sibling leaves get neighbouring numbers), and an item's rank is its position in the
leaf (a seeded shuffle, as OpenP5 draws its last token at random). So an item's cluster token names its whole path,
where OpenP5 spells the path with one token per level from a pool of M tokens shared by all levels: the model sees
the leaf, not the levels above it (two sibling leaves share no token), and every ID has the same depth. The paths
are kept in the vocabulary's metadata (``leaf_paths``), from which a variable-length, one-token-per-level spelling
can be rebuilt.

What this adds to OpenP5, whose recursion has no rule for them: items that co-occur with no other item of their group
(at the root, items bought only by users with one training item; deeper, items whose partners all went to other
groups) cannot be placed by the spectral step and form a group of their own, and a group the spectral step leaves in
one piece is cut into consecutive runs of at most M items, so the recursion always ends (both counted in the
metadata).

Users: OpenP5 numbers users sequentially; here users get the sequential block IDs of
:class:`~hf_metaid.indexing.SequentialIndexer` with blocks of M, in cluster tokens after the leaves, so the rank
tokens number M and the user IDs carry no collaborative signal (the scheme is about items).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import datasets
import numpy as np

from ..entity_vocabulary import random_unit_vectors
from .base import ConfiguredIndexer, IndexedEntities
from .config import CollaborativeIndexerConfig
from .graph import BipartiteGraph, build_graph
from .spectral import single_threaded_openblas

DENSE_LIMIT = 1500  # groups up to this many items are split with a dense eigensolver (exact, and faster there)


@dataclass(frozen=True)
class Cooccurrence:
    """OpenP5's item co-occurrence ``C``, kept as its factor: ``C = R^T R`` minus its diagonal, where ``R`` is the
    sparse user × item count matrix. ``C[i, j]`` (``i != j``) is the number of pairs of positions in a user's
    training sequence that hold items ``i`` and ``j``, OpenP5's count.

    ``C`` itself is never formed (but for groups small enough for a dense solver): a user with ``d`` items makes
    ``d^2`` pairs, so ``C`` can hold orders of magnitude more entries than the interactions, while a product
    ``C x = R^T (R x) - s * x`` costs two passes over the interactions.

    Attributes:
        counts: ``scipy.sparse.csc_matrix`` (users × items) interaction counts.
        self_pairs: ``(items,)`` the diagonal of ``R^T R`` (sum over users of the squared counts), taken back out.
    """

    counts: object
    self_pairs: np.ndarray

    @classmethod
    def of_graph(cls, graph: BipartiteGraph) -> Cooccurrence:
        adjacency = graph.adjacency()
        counts = adjacency[: graph.num_users, graph.num_users :].tocsc()
        return cls(counts, np.asarray(counts.multiply(counts).sum(axis=0), dtype=np.float64).ravel())

    @property
    def num_items(self) -> int:
        return int(self.counts.shape[1])

    def restrict(self, members: np.ndarray) -> Cooccurrence:
        """The co-occurrence among ``members`` only (the users who meet none of them dropped)."""
        counts = self.counts[:, members]
        return Cooccurrence(counts[np.unique(counts.indices)], self.self_pairs[members])

    def matvec(self, vector: np.ndarray) -> np.ndarray:
        """``C @ vector``."""
        vector = np.asarray(vector, dtype=np.float64).ravel()
        return self.counts.T @ (self.counts @ vector) - self.self_pairs * vector

    def degrees(self) -> np.ndarray:
        """Row sums of ``C``: an item's co-occurrences with the other items."""
        return self.matvec(np.ones(self.num_items))

    def to_sparse(self):
        """``C`` as a ``scipy.sparse.csr_matrix`` with a zero diagonal (for small groups and inspection)."""
        matrix = (self.counts.T @ self.counts).tocsr()
        matrix.setdiag(0)
        matrix.eliminate_zeros()
        return matrix


def cluster_qr(vectors: np.ndarray) -> np.ndarray:
    """Labels ``0..k-1`` of the rows of an ``(n, k)`` spectral embedding by column-pivoted QR (Damle, Minden and Ying,
    "Simple, direct and efficient multi-way spectral clustering", 2019), the assignment OpenP5 asks scikit-learn for.

    The pivots pick the k most independent rows; an orthogonal rotation maps them onto the axes, and every row goes to
    the axis it leans on most.
    """
    from scipy.linalg import qr, svd

    k = vectors.shape[1]
    _, _, pivots = qr(vectors.T, mode="economic", pivoting=True)
    left, _, right = svd(vectors[pivots[:k]].T)
    return np.abs(vectors @ (left @ right)).argmax(axis=1)


def spectral_split(cooccurrence: Cooccurrence, num_groups: int, seed: int) -> np.ndarray:
    """Group labels of the items of ``cooccurrence``, each of which co-occurs with some other.

    The embedding is that of scikit-learn's spectral clustering: the top eigenvectors of ``D^-1/2 C D^-1/2``, scaled
    back by ``D^-1/2`` (the random-walk Laplacian's eigenvectors), then :func:`cluster_qr`. Large groups go to ARPACK
    through products with the factor, small ones to a dense solver.
    """
    from scipy.linalg import eigh
    from scipy.sparse.linalg import LinearOperator, eigsh

    n = cooccurrence.num_items
    k = min(num_groups, n)
    scale = 1.0 / np.sqrt(cooccurrence.degrees())
    with single_threaded_openblas():
        if n <= DENSE_LIMIT or k >= n - 1:
            normalised = scale[:, None] * cooccurrence.to_sparse().toarray() * scale[None, :]
            _, vectors = eigh(normalised, subset_by_index=[n - k, n - 1])
        else:
            operator = LinearOperator(
                (n, n), matvec=lambda x: scale * cooccurrence.matvec(scale * np.ravel(x)), dtype=np.float64
            )
            start = np.random.default_rng([seed, n, 0x43494453]).standard_normal(n)
            _, vectors = eigsh(operator, k=k, which="LA", v0=start)
        return cluster_qr(vectors * scale[:, None])


def recursive_leaves(
    cooccurrence: Cooccurrence, num_groups: int, leaf_size: int, seed: int
) -> tuple[list[np.ndarray], list[list[int]], dict[str, int]]:
    """OpenP5's tree over the items of ``cooccurrence``: ``(leaves, paths, counts)``.

    ``leaves`` hold item numbers (ascending), in depth-first order of their ``paths`` (the group index at each
    level); every leaf has at most ``leaf_size`` items. ``counts``: ``isolated_groups`` (items with no co-occurrence
    inside their group, set apart) and ``unsplit_groups`` (groups the spectral step left whole, cut into runs).
    """
    counts = {"isolated_groups": 0, "unsplit_groups": 0}
    leaves: list[np.ndarray] = []
    paths: list[list[int]] = []
    stack: list[tuple[np.ndarray, list[int]]] = [(np.arange(cooccurrence.num_items), [])]
    while stack:
        members, path = stack.pop()
        if len(members) <= leaf_size and path:
            leaves.append(members)
            paths.append(path)
            continue
        groups = _split(cooccurrence.restrict(members), num_groups, leaf_size, seed, counts)
        stack.extend((members[group], [*path, index]) for index, group in reversed(list(enumerate(groups))))
    return leaves, paths, counts


def _split(group: Cooccurrence, num_groups: int, leaf_size: int, seed: int, counts: dict[str, int]) -> list[np.ndarray]:
    """The children of one group (positions into it, each ascending), in order of their first member."""
    n = group.num_items
    linked = group.degrees() > 0
    children: list[np.ndarray] = []
    connected = np.flatnonzero(linked)
    if len(connected) > 1:
        labels = spectral_split(group.restrict(connected), num_groups, seed)
        children = [connected[labels == label] for label in dict.fromkeys(labels.tolist())]
    elif len(connected):
        children = [connected]
    if (~linked).any():
        counts["isolated_groups"] += 1
        children.append(np.flatnonzero(~linked))
    if len(children) == 1 and n > leaf_size:  # nothing split: cut into runs so that the recursion ends
        counts["unsplit_groups"] += 1
        children = [children[0][start : start + leaf_size] for start in range(0, n, leaf_size)]
    return sorted(children, key=lambda child: int(child[0]))


class CollaborativeIndexer(ConfiguredIndexer[CollaborativeIndexerConfig]):
    """Collaborative indexing (CID, OpenP5): items by recursive spectral clustering of their co-occurrence graph.

    An item's ID is (its leaf group, its position in the leaf); users get sequential block IDs (module docstring,
    which also says how this differs from OpenP5's variable-length IDs). The vectors behind the tokens are seeded
    random unit vectors, as for the other baselines.

    Settings (:class:`~hf_metaid.indexing.CollaborativeIndexerConfig`, or the same as keywords): ``num_groups`` (N),
    ``leaf_size`` (M), ``dim`` and ``seed`` (the eigensolver's start, the order inside leaves, the vectors).
    """

    scheme = "collaborative"
    config_class = CollaborativeIndexerConfig

    def _index(self, train: datasets.Dataset) -> IndexedEntities:
        config = self.config
        clock = time.perf_counter()
        graph = build_graph(train, self.user_column, self.item_column)
        clock = self._lap("graph_s", clock)
        cooccurrence = Cooccurrence.of_graph(graph)
        clock = self._lap("cooccurrence_s", clock)
        leaves, paths, counts = recursive_leaves(cooccurrence, config.num_groups, config.leaf_size, config.seed)
        self._lap("tree_s", clock)
        rng = np.random.default_rng([config.seed, 0x43494452])
        codes = np.zeros((graph.num_nodes, 2), dtype=np.int64)
        for leaf, members in enumerate(leaves):
            codes[graph.num_users + members] = np.stack([np.full(len(members), leaf), rng.permutation(len(members))], 1)
        users = np.arange(graph.num_users, dtype=np.int64)
        codes[: graph.num_users] = np.stack([len(leaves) + users // config.leaf_size, users % config.leaf_size], 1)
        num_clusters = len(leaves) + -(-graph.num_users // config.leaf_size)
        sizes = np.array([len(members) for members in leaves])
        metadata = {
            "params": self.get_params(),
            "item_leaves": len(leaves),
            "user_blocks": num_clusters - len(leaves),
            "items_without_cooccurrence": int((cooccurrence.degrees() == 0).sum()),
            "leaf_paths": paths,
            "leaf_sizes": {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())},
            **counts,
        }
        cluster_vectors = random_unit_vectors(num_clusters, config.dim, config.seed, stream=0x434C5553)
        return IndexedEntities.of_graph(graph, codes, cluster_vectors, metadata=metadata)
