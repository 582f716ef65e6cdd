"""Indexer settings objects: every rule named in its error, config or keywords alike, JSON-able params, and the
saved vocabulary of given data, settings and seed byte-identical to what it was before the settings objects."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import FrozenInstanceError, fields, replace

import numpy as np
import pytest

import hf_metaid
from hf_metaid.indexing import (
    BlockIndexerConfig,
    MetaIDIndexer,
    MetaIDIndexerConfig,
    RandomIndexer,
    SequentialIndexer,
    SkipGramConfig,
)
from hf_metaid.indexing.graph import build_graph
from hf_metaid.indexing.skipgram import skipgram_embeddings
from hf_metaid.indexing.walks import metapath_walks

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


# ------------------------------------------------------------------------------------------------ validation
# (settings, field, value, rule): each must raise ValueError("<field> must be <rule>, got <value!r>").
POSITIVE = "an int >= 1"
REFUSED = [
    *[({name: 0}, name, 0, POSITIVE) for name in ("dim", "window", "negatives", "epochs", "batch_size")],
    *[({name: 0}, name, 0, POSITIVE) for name in ("negative_pool", "walks_per_node", "walk_length", "kmeans_iters")],
    ({"dim": 2.5}, "dim", 2.5, POSITIVE),
    ({"dim": 64.0}, "dim", 64.0, POSITIVE),
    ({"dim": True}, "dim", True, POSITIVE),
    ({"walk_length": "20"}, "walk_length", "20", POSITIVE),
    ({"seed": -1}, "seed", -1, "an int >= 0"),
    ({"seed": None}, "seed", None, "an int >= 0"),
    ({"learning_rate": 0}, "learning_rate", 0, "a finite number > 0"),
    ({"learning_rate": -0.1}, "learning_rate", -0.1, "a finite number > 0"),
    ({"learning_rate": float("inf")}, "learning_rate", float("inf"), "a finite number > 0"),
    ({"learning_rate": True}, "learning_rate", True, "a finite number > 0"),
    ({"embedding": "node2vec"}, "embedding", "node2vec", "one of 'skipgram', 'spectral'"),
    ({"rank_by": "random"}, "rank_by", "random", "one of 'distance', 'degree'"),
    ({"backend": "jax"}, "backend", "jax", "one of 'torch', 'gensim'"),
    ({"joint": 1}, "joint", 1, "True or False"),
    ({"num_clusters": 0}, "num_clusters", 0, "an int >= 1 or a pair of ints >= 1"),
    ({"num_clusters": 2.5}, "num_clusters", 2.5, "an int >= 1 or a pair of ints >= 1"),
    ({"num_clusters": (3, 0), "joint": False}, "num_clusters", (3, 0), "an int >= 1 or a pair of ints >= 1"),
    ({"num_clusters": [3], "joint": False}, "num_clusters", [3], "an int >= 1 or a pair of ints >= 1"),
    ({"num_clusters": (1, 2, 3), "joint": False}, "num_clusters", (1, 2, 3), "an int >= 1 or a pair of ints >= 1"),
]


@pytest.mark.parametrize(("settings", "name", "value", "rule"), REFUSED, ids=[repr(row[0]) for row in REFUSED])
def test_every_rule_names_the_setting_the_value_and_the_rule(settings, name, value, rule):
    message = re.escape(f"{name} must be {rule}, got {value!r}")
    with pytest.raises(ValueError, match=f"^{message}$"):
        MetaIDIndexerConfig(**settings)
    with pytest.raises(ValueError, match=f"^{message}$"):
        MetaIDIndexer(**settings)
    if name in {f.name for f in fields(SkipGramConfig)}:
        with pytest.raises(ValueError, match=f"^{message}$"):
            SkipGramConfig(**{name: value})


BLOCK_REFUSED = [
    ({"block_size": 0}, "block_size", 0, "an int >= 1 or None"),
    ({"block_size": 2.5}, "block_size", 2.5, "an int >= 1 or None"),
    ({"dim": 0}, "dim", 0, POSITIVE),
    ({"seed": 1.5}, "seed", 1.5, "an int >= 0"),
]


@pytest.mark.parametrize(("settings", "name", "value", "rule"), BLOCK_REFUSED, ids=[repr(r[0]) for r in BLOCK_REFUSED])
@pytest.mark.parametrize("make", [BlockIndexerConfig, SequentialIndexer, RandomIndexer])
def test_block_settings_are_checked_too(make, settings, name, value, rule):
    with pytest.raises(ValueError, match=f"^{re.escape(f'{name} must be {rule}, got {value!r}')}$"):
        make(**settings)


def test_a_cluster_pair_needs_separate_clustering():
    with pytest.raises(ValueError, match=r"^num_clusters must be an int with joint=True .* got \(3, 4\)$"):
        MetaIDIndexerConfig(num_clusters=(3, 4))
    separate = MetaIDIndexerConfig(num_clusters=(3, 4), joint=False)
    with pytest.raises(ValueError, match="joint=True"):
        replace(separate, joint=True)  # a derived config is checked again


def test_settings_are_stored_as_plain_values():
    config = MetaIDIndexerConfig(num_clusters=[np.int64(4), 3], joint=False, dim=np.int32(32), learning_rate=1)
    assert config.num_clusters == (4, 3) and type(config.num_clusters[0]) is int
    assert type(config.dim) is int and type(config.learning_rate) is float and config.learning_rate == 1.0
    with pytest.raises(FrozenInstanceError):
        config.dim = 16


@pytest.mark.parametrize("config_class", [SkipGramConfig, MetaIDIndexerConfig, BlockIndexerConfig])
def test_every_setting_is_documented(config_class):
    for setting in fields(config_class):
        assert len(setting.metadata.get("help", "")) > 20, setting.name


def test_skipgram_takes_its_config_the_indexer_config_or_keywords(slice_split):
    graph = build_graph(slice_split[0])
    walks = metapath_walks(graph, 2, 6, seed=0)
    config = SkipGramConfig(dim=8, batch_size=256, seed=1)
    vectors = skipgram_embeddings(walks, graph.num_nodes, config)
    assert vectors.shape == (graph.num_nodes, 8)
    assert np.array_equal(vectors, skipgram_embeddings(walks, graph.num_nodes, dim=8, batch_size=256, seed=1))
    assert np.array_equal(
        vectors, skipgram_embeddings(walks, graph.num_nodes, SkipGramConfig(dim=8), batch_size=256, seed=1)
    )
    indexer_config = MetaIDIndexerConfig(dim=8, batch_size=256, seed=1, num_clusters=7, walk_length=6)
    assert isinstance(indexer_config, SkipGramConfig)  # the skip-gram parameters are declared once, in SkipGramConfig
    assert np.array_equal(vectors, skipgram_embeddings(walks, graph.num_nodes, indexer_config))


# ----------------------------------------------------------------------------------- config or keywords
def test_config_and_keywords_give_the_same_vocabulary(slice_split, tmp_path):
    settings = dict(num_clusters=5, walks_per_node=2, walk_length=8, batch_size=512, seed=2)
    config = MetaIDIndexerConfig(**settings)
    by_config, by_keywords = MetaIDIndexer(config), MetaIDIndexer(**settings)
    assert by_config.config == by_keywords.config == config
    assert saved_bytes(by_config, slice_split, tmp_path) == saved_bytes(by_keywords, slice_split, tmp_path)
    # keywords replace the config's fields; the config object itself stays as it was
    mixed = MetaIDIndexer(config, embedding="spectral", seed=4)
    assert mixed.config == replace(config, embedding="spectral", seed=4) and config.seed == 2
    spelled_out = MetaIDIndexer(**dict(settings, embedding="spectral", seed=4))
    assert saved_bytes(mixed, slice_split, tmp_path) == saved_bytes(spelled_out, slice_split, tmp_path)
    for indexer in (SequentialIndexer, RandomIndexer):
        block = BlockIndexerConfig(block_size=12, dim=8, seed=3)
        first = saved_bytes(indexer(block), slice_split, tmp_path)
        assert first == saved_bytes(indexer(block_size=12, dim=8, seed=3), slice_split, tmp_path)


def saved_bytes(indexer, split, tmp_path) -> bytes:
    path = tmp_path / "vocab.json"
    indexer.fit(split[0], catalogue=split[1]).save(path)
    return path.read_bytes()


def test_settings_read_as_attributes():
    indexer = MetaIDIndexer(num_clusters=[4, 3], joint=False)
    assert (indexer.num_clusters, indexer.joint, indexer.window, indexer.seed) == ((4, 3), False, 3, 0)
    assert SequentialIndexer(block_size=7).block_size == 7 and RandomIndexer().dim == 64
    with pytest.raises(AttributeError, match="no_such_setting"):
        indexer.no_such_setting
    assert copy.deepcopy(indexer).config == indexer.config  # copying and pickling do not trip over the lookup


def test_constructor_misuse_is_a_type_error():
    with pytest.raises(TypeError, match=r"config must be a MetaIDIndexerConfig .* got int 50"):
        MetaIDIndexer(50)  # num_clusters was the first positional parameter; settings now go by keyword
    with pytest.raises(TypeError, match="config must be a MetaIDIndexerConfig"):
        MetaIDIndexer(BlockIndexerConfig())
    with pytest.raises(TypeError, match=r"unknown MetaIDIndexerConfig setting\(s\) \['clusters'\]"):
        MetaIDIndexer(clusters=5)
    with pytest.raises(TypeError, match=r"unknown BlockIndexerConfig setting\(s\) \['num_clusters'\]"):
        SequentialIndexer(num_clusters=5)
    with pytest.raises(TypeError, match=r"unknown SkipGramConfig setting\(s\) \['walk_length'\]"):
        skipgram_embeddings(np.zeros((1, 2), dtype=np.int64), 1, walk_length=2)


# ------------------------------------------------------------------------------------------------- params
SAVED_PARAM_NAMES = {  # the keys of the params every vocabulary saved so far records
    "num_clusters", "dim", "seed", "embedding", "joint", "walks_per_node", "walk_length", "window", "negatives",
    "epochs", "backend", "learning_rate", "batch_size", "negative_pool", "kmeans_iters", "rank_by",
}  # fmt: skip


@pytest.mark.parametrize(
    "settings",
    [{}, dict(num_clusters=(4, 3), joint=False, learning_rate=1, rank_by="degree", backend="gensim", seed=7)],
    ids=["defaults", "separate"],
)
def test_params_round_trip_through_json(settings):
    indexer = MetaIDIndexer(**settings)
    params = indexer.get_params()
    assert set(params) == SAVED_PARAM_NAMES
    assert json.loads(json.dumps(params)) == params
    assert MetaIDIndexerConfig(**json.loads(json.dumps(params))) == indexer.config


def test_block_params_keep_their_keys():
    assert SequentialIndexer(block_size=9).get_params() == {"block_size": 9, "dim": 64, "seed": 0}


def test_a_saved_vocabulary_rebuilds_its_indexer(slice_split, tmp_path):
    indexer = MetaIDIndexer(num_clusters=(6, 9), joint=False, embedding="spectral", dim=16)
    first = saved_bytes(indexer, slice_split, tmp_path)
    params = hf_metaid.EntityVocabulary.load(tmp_path / "vocab.json").metadata["params"]
    again = MetaIDIndexer(**params)
    assert again.config == indexer.config
    assert saved_bytes(again, slice_split, tmp_path) == first


def test_public_names():
    assert hf_metaid.MetaIDIndexerConfig is MetaIDIndexerConfig and hf_metaid.SkipGramConfig is SkipGramConfig
    assert hf_metaid.BlockIndexerConfig is BlockIndexerConfig
