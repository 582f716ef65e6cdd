"""Spectral embedding: a truncated SVD of the degree-normalised user–item adjacency.

The fast alternative to walks + skip-gram (``MetaIDIndexer(embedding="spectral")``): SGNS on random walks
approximately factorises a normalised random-walk matrix of the graph, and the top singular vectors of
``D_u^-1/2 R D_i^-1/2`` (``R`` the user × item interaction counts) capture the same co-interaction structure in one
sparse, deterministic computation of a few seconds. It is what keeps millions of entities practical. scipy is
imported only here.

The SVD runs with OpenBLAS limited to one thread: ARPACK makes thousands of small BLAS calls, and with two BLAS threads
on a machine where another process holds a core, every call waits for a descheduled thread (measured on a busy
2-core machine: 26-29 s instead of 2 s); one thread loses nothing on an idle machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator

import numpy as np

from .config import SVD_PRECISIONS
from .graph import BipartiteGraph


def spectral_embeddings(graph: BipartiteGraph, dim: int = 64, seed: int = 0, precision: str = "float64") -> np.ndarray:
    """``float32 (num_nodes, dim)``: users ``U sqrt(S)``, items ``V sqrt(S)`` of the normalised adjacency's SVD.

    Singular triplets come in descending order of the singular value, with a sign convention (largest-magnitude
    entry of each user singular vector positive), so the output does not depend on the solver's ordering or signs.
    A graph too small for ``dim`` components fills the missing ones with zeros.

    ``precision`` is the arithmetic of the SVD. ``"float32"`` (ARPACK's single-precision solver) runs 3-5 times
    faster on large graphs (``benchmarks/results/index_scale.md``); on Beauty its singular values agree with
    float64's to about 1e-6 and each singular vector's cosine with float64's exceeds 0.99999, where the values are
    distinct. Where a singular value repeats (a graph in many pieces) any basis of its space is a valid answer, and
    the two may return different ones.
    """
    from scipy import sparse
    from scipy.sparse.linalg import svds

    if dim < 1:
        raise ValueError("dim must be >= 1")
    if precision not in SVD_PRECISIONS:
        raise ValueError(f"precision must be one of {SVD_PRECISIONS}, got {precision!r}")
    adjacency = graph.adjacency()
    block = adjacency[: graph.num_users, graph.num_users :].tocsr()  # users × items: the only non-zero block
    degrees = np.asarray(adjacency.sum(axis=1)).ravel()
    scale = 1.0 / np.sqrt(np.maximum(degrees, 1e-12))
    normalised = (sparse.diags(scale[: graph.num_users]) @ block @ sparse.diags(scale[graph.num_users :])).tocsr()
    normalised = normalised.astype(precision, copy=False)
    vectors = np.zeros((graph.num_nodes, dim), dtype=np.float32)
    rank = min(dim, min(normalised.shape) - 1)
    if rank < 1:  # a single user or a single item: one direction says everything
        vectors[:, 0] = 1.0
        return vectors
    start = np.random.default_rng([seed, 0x53564453]).standard_normal(min(normalised.shape)).astype(precision)
    with single_threaded_openblas():
        left, values, right_t = svds(normalised, k=rank, v0=start, random_state=seed)
    order = np.argsort(-values, kind="stable")
    left, values, right = left[:, order], values[order], right_t[order].T
    signs = np.sign(left[np.abs(left).argmax(axis=0), np.arange(rank)])
    signs[signs == 0] = 1.0
    root = np.sqrt(np.maximum(values, 0.0))
    vectors[: graph.num_users, :rank] = left * signs * root
    vectors[graph.num_users :, :rank] = right * signs * root
    return vectors


# (setter, getter) of the pthreads OpenBLAS builds that numpy and scipy wheels ship (symbols prefixed ``scipy_``).
# Other BLAS libraries in the process (e.g. faiss's OpenMP OpenBLAS, whose thread setter also reconfigures OpenMP)
# are deliberately left alone.
_OPENBLAS_THREAD_SYMBOLS = (
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
)


@contextlib.contextmanager
def single_threaded_openblas() -> Iterator[None]:
    """Limit numpy's and scipy's OpenBLAS to one thread for the duration, then restore their thread counts."""
    restore = []
    for library in _loaded_openblas():
        for setter, getter in _OPENBLAS_THREAD_SYMBOLS:
            if hasattr(library, setter) and hasattr(library, getter):
                restore.append((getattr(library, setter), getattr(library, getter)()))
                getattr(library, setter)(1)
                break
    try:
        yield
    finally:
        for setter, threads in restore:
            setter(threads)


def _loaded_openblas() -> list[ctypes.CDLL]:
    """numpy/scipy OpenBLAS libraries already mapped into this process (Linux; elsewhere none are found)."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "scipy_openblas" in line and line.rstrip().endswith(".so")}
    except OSError:
        return []
    libraries = []
    for path in sorted(paths):
        try:
            libraries.append(ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0)))
        except OSError:
            continue
    return libraries
