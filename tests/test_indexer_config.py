"""Indexer settings: the saved vocabulary of given data, settings and seed stays byte-identical."""

from __future__ import annotations

import hashlib

import pytest

import hf_metaid
from hf_metaid.indexing import MetaIDIndexer, RandomIndexer, SequentialIndexer

# sha256 of ``vocab.save`` on the Beauty slice (first 300 users, train split, full catalogue), recorded before the
# settings moved into config dataclasses; float results (skip-gram, SVD, k-means) are those of this platform and the
# library versions setup.cfg pins.
SAVED_DIGESTS = {
    "skipgram-defaults": (
        lambda: MetaIDIndexer(num_clusters=20),
        "81012101889b2a723d262085a9180481b78bd84ee1d3a8a19a869a5b818cf88d",
    ),
    "skipgram-small": (
        lambda: MetaIDIndexer(num_clusters=10, walks_per_node=2, walk_length=8, batch_size=512, epochs=2, seed=3),
        "1fd624fd47bd2551f44fc07286dd3448f11bad372e12fdff006df0cc59a1f7ab",
    ),
    "gensim": (
        lambda: MetaIDIndexer(num_clusters=10, backend="gensim", walks_per_node=2, walk_length=8),
        "a3f7e9b07c1dcb5783d77bab75f3ca58fda705388488ab0611be5ae810e88b59",
    ),
    "spectral": (
        lambda: MetaIDIndexer(num_clusters=20, embedding="spectral"),
        "5b8f3d3d65b01bf24feca23bd3cdf79caa02be169334fbd7c1c84e31b52ae6da",
    ),
    "spectral-separate-pair-degree": (
        lambda: MetaIDIndexer(num_clusters=(8, 12), joint=False, embedding="spectral", rank_by="degree", dim=32),
        "0304cd125c7654b409c3d972165abf3675809734dd610e8d8bdd9970e7bea343",
    ),
    "spectral-separate-int": (
        lambda: MetaIDIndexer(num_clusters=7, joint=False, embedding="spectral"),
        "3ab3dd8ac4a74046aacee943bb9a21122426225ca9751162e2e7f6beda4bff38",
    ),
    "sequential": (
        lambda: SequentialIndexer(block_size=30, dim=16, seed=2),
        "80a06c0870ccc770fb0fdee886564e426605b080493b933c69eb5e80c34cafd5",
    ),
    "random": (lambda: RandomIndexer(seed=5), "2947c3941a38af0b5c092b15fe14046228057a997d70d989d6e448009e0de180"),
}


@pytest.fixture(scope="module")
def slice_split(beauty_slice):
    return hf_metaid.leave_one_out(beauty_slice)["train"], hf_metaid.catalogue(beauty_slice)


@pytest.mark.parametrize("name", sorted(SAVED_DIGESTS))
def test_saved_vocabulary_bytes_are_unchanged(name, slice_split, tmp_path):
    make, digest = SAVED_DIGESTS[name]
    if name == "gensim":
        pytest.importorskip("gensim")
    train, names = slice_split
    path = tmp_path / "metaid_vocab.json"
    make().fit(train, catalogue=names).save(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
