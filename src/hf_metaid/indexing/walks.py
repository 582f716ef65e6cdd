"""Meta-path random walks on the user–item graph (metapath2vec on a bipartite graph).

The meta-path is U-I-U-I... for walks that start at a user and I-U-I-U... for walks that start at an item. On a
bipartite graph every neighbour of a user is an item and vice versa, so picking a uniformly random neighbour already
follows the meta-path; :func:`metapath_walks` still checks the alternation so a non-bipartite graph cannot slip
through unnoticed. All walks advance together, one vectorised step at a time, so the cost is ``walk_length`` numpy
operations over ``num_nodes * walks_per_node`` walks rather than a Python loop per walk.
"""

from __future__ import annotations

import numpy as np

from .graph import BipartiteGraph


def metapath_walks(graph: BipartiteGraph, walks_per_node: int = 10, walk_length: int = 20, seed: int = 0) -> np.ndarray:
    """Random walks from every node, ``walks_per_node`` each.

    Returns:
        ``int64 (walks_per_node * num_nodes, walk_length)`` node numbers. Row ``r * num_nodes + n`` is the ``r``-th
        walk from node ``n``. Every node of a graph built from interactions has a neighbour, so no walk gets stuck.
    """
    if walks_per_node < 1 or walk_length < 1:
        raise ValueError("walks_per_node and walk_length must be >= 1")
    degrees = graph.degrees
    if (degrees == 0).any():
        raise ValueError(f"{int((degrees == 0).sum())} node(s) have no neighbour; every node needs an interaction")
    rng = np.random.default_rng([seed, 0x57414C4B])
    current = np.tile(np.arange(graph.num_nodes, dtype=np.int64), walks_per_node)
    walks = np.empty((current.shape[0], walk_length), dtype=np.int64)
    walks[:, 0] = current
    indptr, indices = graph.indptr, graph.indices
    for step in range(1, walk_length):
        offsets = rng.integers(0, degrees[current])  # one uniform neighbour slot per walk
        current = indices[indptr[current] + offsets]
        walks[:, step] = current
    user = graph.is_user(walks)
    if walk_length > 1 and not (user[:, 1:] != user[:, :-1]).all():
        raise ValueError("walks do not alternate users and items: the graph is not bipartite")
    return walks
