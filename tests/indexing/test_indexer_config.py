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
    CollaborativeIndexer,
    CollaborativeIndexerConfig,
    IndependentIndexer,
    IndependentIndexerConfig,
    MetaIDIndexer,
    MetaIDIndexerConfig,
    RandomIndexer,
    SequentialIndexer,
    SkipGramConfig,
)
from hf_metaid.indexing.graph import build_graph
from hf_metaid.indexing.skipgram import skipgram_embeddings
from hf_metaid.indexing.walks import metapath_walks

# What a saved vocabulary records of its making, pinned as it was before the settings moved into config dataclasses
# (the whole saved files were compared then, on one machine): sha256 of the canonical JSON of ``metadata["params"]``
# and, for the block baselines, whose codes need no float arithmetic, of the ids and codes too. Float results
# (skip-gram, SVD, k-means, the vectors) change with the CPU, so they are not pinned here.
PINNED = {
    "skipgram-defaults": (
        lambda: MetaIDIndexer(num_clusters=20),
        "e094d84f215e751df03478087f80d499b27210c96314a5da51dcaf6939a304ac",
    ),
    "skipgram-small": (
        lambda: MetaIDIndexer(num_clusters=10, walks_per_node=2, walk_length=8, batch_size=512, epochs=2, seed=3),
        "bf2bdfca3559a44a309198d586281cf4cdbfcd5fc1ff2dc9999b27656733f22d",
    ),
    "gensim": (
        lambda: MetaIDIndexer(num_clusters=10, backend="gensim", walks_per_node=2, walk_length=8),
        "6ce6fc781966eb38f306ea6ef998d2f0f86b2215dfab9e44757b7ca5b54b22a6",
    ),
    "spectral": (
        lambda: MetaIDIndexer(num_clusters=20, embedding="spectral"),
        "acfceac37748692667dbed127bf98da6fd473cfef37605edaf1871a133dc5240",
    ),
    "spectral-separate-pair-degree": (
        lambda: MetaIDIndexer(num_clusters=(8, 12), joint=False, embedding="spectral", rank_by="degree", dim=32),
        "8b06b6d8e3ce7718667278bd4820c8d3602f16bc39d418a68d37edde2ea69497",
    ),
    "spectral-separate-int": (
        lambda: MetaIDIndexer(num_clusters=7, joint=False, embedding="spectral"),
        "8389527e6d8500e660f80b3b175689595db0d2e14a29d066f9c7423c4381ffc3",
    ),
    "sequential": (
        lambda: SequentialIndexer(block_size=30, dim=16, seed=2),
        "3e44bf545d95debb5fd71404a8f49a942386283606145a425462e529ac91f816",
    ),
    "random": (
        lambda: RandomIndexer(seed=5),
        "b634506bf4dcbc700978c6d3c9c9a22b909185d3af0bedd0183f2068880c2bea",
    ),
}


# Settings added after the pin, with the default that does what the library did before them: a vocabulary made
# with the default records it, and without it records what it recorded when pinned.
ADDED_SINCE_PINNED = {"svd_precision": "float64", "max_cluster_size": None, "user_ids": True}


def recorded_part(vocab: hf_metaid.EntityVocabulary) -> str:
    """The float-free part of a saved vocabulary: its parameters (less the later settings at their defaults), and
    the codes of the block baselines."""
    params = dict(vocab.metadata["params"])
    for name, default in ADDED_SINCE_PINNED.items():
        if vocab.scheme == "metaid":
            assert params.pop(name) == default
    part = {"params": params, "scheme": vocab.scheme}
    if vocab.scheme in ("sequential", "random"):
        part.update(
            users=vocab.users, items=vocab.items, codes=[*vocab.user_codes.tolist(), *vocab.item_codes.tolist()]
        )
    return hashlib.sha256(json.dumps(part, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@pytest.fixture(scope="module")
def slice_split(beauty_slice):
    return hf_metaid.leave_one_out(beauty_slice)["train"], hf_metaid.catalogue(beauty_slice)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_saved_vocabulary_records_the_same_settings(name, slice_split, tmp_path):
    make, digest = PINNED[name]
    if name == "gensim":
        pytest.importorskip("gensim")
    train, names = slice_split
    path = tmp_path / "metaid_vocab.json"
    make().fit(train, catalogue=names).save(path)
    assert recorded_part(hf_metaid.EntityVocabulary.load(path)) == digest


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


@pytest.mark.parametrize(
    "config_class",
    [SkipGramConfig, MetaIDIndexerConfig, BlockIndexerConfig, CollaborativeIndexerConfig, IndependentIndexerConfig],
)
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
    collaborative = CollaborativeIndexerConfig(num_groups=4, leaf_size=50, dim=8, seed=3)
    first = saved_bytes(CollaborativeIndexer(collaborative), slice_split, tmp_path)
    assert first == saved_bytes(CollaborativeIndexer(num_groups=4, leaf_size=50, dim=8, seed=3), slice_split, tmp_path)
    first = saved_bytes(IndependentIndexer(IndependentIndexerConfig(dim=8)), slice_split, tmp_path)
    assert first == saved_bytes(IndependentIndexer(dim=8), slice_split, tmp_path)


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
SAVED_PARAM_NAMES = {  # the keys of the params every vocabulary saved before ADDED_SINCE_PINNED records
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
    assert set(params) == SAVED_PARAM_NAMES | set(ADDED_SINCE_PINNED)
    assert json.loads(json.dumps(params)) == params
    assert MetaIDIndexerConfig(**json.loads(json.dumps(params))) == indexer.config
    older = {name: value for name, value in params.items() if name not in ADDED_SINCE_PINNED}
    assert MetaIDIndexerConfig(**older) == indexer.config  # what an older vocabulary recorded reads back the same


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
    assert hf_metaid.CollaborativeIndexer is CollaborativeIndexer and hf_metaid.IndependentIndexer is IndependentIndexer
    assert hf_metaid.CollaborativeIndexerConfig is CollaborativeIndexerConfig
    assert hf_metaid.IndependentIndexerConfig is IndependentIndexerConfig
