"""The user–item interaction graph that META ID walks on, stored sparsely.

Users and items are nodes, every training interaction is an edge. Nodes are numbered users first
(``0 .. U-1``) then items (``U .. U+I-1``), each in first-appearance order of the training table, so the numbering
depends only on the table. Neighbours are kept as CSR arrays (``indptr``, ``indices``): memory grows with the number
of interactions, never with the square of the number of nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import numpy as np

from ..errors import InteractionFormatError, InvalidArgumentError


@dataclass(frozen=True)
class BipartiteGraph:
    """Undirected bipartite graph in CSR form.

    Attributes:
        users, items: raw ids; node ``n < len(users)`` is ``users[n]``, node ``len(users) + j`` is ``items[j]``.
        indptr: ``int64 (num_nodes + 1,)``; the neighbours of node ``n`` are ``indices[indptr[n]:indptr[n + 1]]``.
        indices: ``int64 (2 * num_edges,)`` neighbour node numbers. A repeated interaction is a repeated edge, so a
            walk follows it proportionally more often.
    """

    users: list[str]
    items: list[str]
    indptr: np.ndarray
    indices: np.ndarray

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_nodes(self) -> int:
        return len(self.users) + len(self.items)

    @property
    def num_edges(self) -> int:
        return int(self.indices.shape[0]) // 2

    @property
    def degrees(self) -> np.ndarray:
        return np.diff(self.indptr)

    def is_user(self, nodes: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``nodes`` are users (the node type the meta-path alternates on)."""
        return np.asarray(nodes) < self.num_users

    def adjacency(self):
        """``scipy.sparse.csr_matrix`` (num_nodes × num_nodes) of edge counts; scipy is imported only here."""
        from scipy import sparse

        data = np.ones(self.indices.shape[0], dtype=np.float64)
        matrix = sparse.csr_matrix((data, self.indices, self.indptr), shape=(self.num_nodes, self.num_nodes))
        matrix.sum_duplicates()
        return matrix


def build_graph(train: datasets.Dataset, user_column: str = "user", item_column: str = "item") -> BipartiteGraph:
    """Build the bipartite graph of a training interaction table (one row per interaction).

    Raises:
        InteractionFormatError (a ``ValueError``): the table is empty or lacks the user/item columns.
    """
    check_training_table(train, user_column, item_column)
    users, user_codes = _factorize(train[user_column][:])
    items, item_codes = _factorize(train[item_column][:])
    num_users = len(users)
    item_nodes = item_codes + num_users
    # Both directions of every edge; a stable sort by source keeps neighbours in table order (deterministic).
    source = np.concatenate([user_codes, item_nodes])
    target = np.concatenate([item_nodes, user_codes])
    order = np.argsort(source, kind="stable")
    counts = np.bincount(source, minlength=num_users + len(items))
    indptr = np.zeros(num_users + len(items) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return BipartiteGraph(users=users, items=items, indptr=indptr, indices=target[order].astype(np.int64))


def _factorize(values: list) -> tuple[list[str], np.ndarray]:
    """Distinct values in first-appearance order and the ``int64`` code of every value."""
    array = np.asarray([str(v) for v in values])
    uniques, first, inverse = np.unique(array, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rename = np.empty_like(order)
    rename[order] = np.arange(len(order))
    return uniques[order].tolist(), rename[inverse.reshape(-1)].astype(np.int64)


def check_training_table(train: datasets.Dataset, user_column: str, item_column: str) -> None:
    """Refuse what no vocabulary can be built from: not a Dataset, missing columns, no rows."""
    if not isinstance(train, datasets.Dataset):
        raise InvalidArgumentError(f"expected a datasets.Dataset of training interactions, got {type(train).__name__}")
    missing = [c for c in (user_column, item_column) if c not in train.column_names]
    if missing:
        raise InteractionFormatError(f"training table lacks column(s) {missing}; found {train.column_names}")
    if len(train) == 0:
        raise InteractionFormatError("training table is empty: cannot build an ID vocabulary from no interactions")
