"""The collaborative (CID) and independent (IID) baselines: OpenP5's co-occurrence count and recursive spectral tree,
the two-token mapping of both, determinism, save/load, and a whole index → train → evaluate run of each."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from datasets import Dataset

import hf_metaid as hm
from hf_metaid.cli import main
from hf_metaid.decoding import decode_items
from hf_metaid.indexing import CollaborativeIndexer, CollaborativeIndexerConfig, IndependentIndexer
from hf_metaid.indexing.collaborative import Cooccurrence, cluster_qr, recursive_leaves, spectral_split
from hf_metaid.indexing.graph import build_graph
from hf_metaid.workflow.schemes import SCHEMES, build_indexer
from ranking_checks import assert_same_ranking
from test_decoding import assert_beam_parity, brute_force_scores, prompts
from test_indexing import assert_valid, synthetic

SCHEME_INDEXERS = {
    "collaborative": lambda **kw: CollaborativeIndexer(num_groups=3, leaf_size=8, **kw),
    "independent": IndependentIndexer,
}


@pytest.fixture(scope="module")
def table() -> Dataset:
    return synthetic()


@pytest.fixture(scope="module")
def train(table) -> Dataset:
    return hm.leave_one_out(table)["train"]


# --------------------------------------------------------------------------------------------- CID: the tree
def test_cooccurrence_counts_pairs_of_positions_as_openp5_does(train):
    """OpenP5 adds 1 to (a, b) and (b, a) for every pair of positions of a user's training sequence."""
    graph = build_graph(train)
    expected = Counter()
    sequences: dict[str, list[str]] = {}
    for user, item in zip(train["user"][:], train["item"][:], strict=True):
        sequences.setdefault(user, []).append(item)
    for sequence in sequences.values():
        for a, b in itertools.combinations(sequence, 2):
            if a != b:
                expected[a, b] += 1
                expected[b, a] += 1
    cooccurrence = Cooccurrence.of_graph(graph)
    matrix = cooccurrence.to_sparse().tocoo()
    pairs = zip(matrix.row, matrix.col, matrix.data, strict=True)
    found = {(graph.items[i], graph.items[j]): int(v) for i, j, v in pairs}
    assert found == dict(expected)
    assert (matrix.row != matrix.col).all()
    # the products the eigensolver takes from the factor are those of the matrix
    vector = np.random.default_rng(0).standard_normal(cooccurrence.num_items)
    np.testing.assert_allclose(cooccurrence.matvec(vector), matrix.tocsr() @ vector, rtol=1e-12, atol=1e-9)
    some = np.array([1, 4, 5, 9])
    np.testing.assert_array_equal(
        cooccurrence.restrict(some).to_sparse().toarray(), matrix.tocsr()[some][:, some].toarray()
    )


@pytest.mark.parametrize("dense_limit", [1500, 10], ids=["dense", "arpack"])
def test_cluster_qr_and_the_spectral_split_find_planted_groups(dense_limit, monkeypatch):
    from scipy import sparse

    from hf_metaid.indexing import collaborative

    monkeypatch.setattr(collaborative, "DENSE_LIMIT", dense_limit)
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), [15, 17, 16])  # three audiences, each buying from its own shelf of items
    rows, cols = [], []
    for user in range(60):
        shelf = np.flatnonzero(truth == user % 3)
        rows += [user] * 4
        cols += rng.choice(shelf, 4, replace=False).tolist()
    rows, cols = [*rows, 0], [*cols, 47]  # one purchase across shelves
    counts = sparse.csc_matrix((np.ones(len(rows)), (rows, cols)), shape=(60, 48))
    group = Cooccurrence(counts, np.asarray(counts.multiply(counts).sum(0)).ravel())
    labels = spectral_split(group, 3, seed=0)
    assert len(set(labels.tolist())) == 3
    assert all(len(set(labels[truth == shelf].tolist())) == 1 for shelf in range(3))
    indicators = np.eye(3)[truth] + rng.normal(0, 0.01, (48, 3))
    rotated = indicators @ np.linalg.qr(rng.normal(size=(3, 3)))[0]  # any basis of the same space
    labels = cluster_qr(rotated)
    assert all(len(set(labels[truth == group].tolist())) == 1 for group in range(3))


def test_leaves_cover_every_item_once_and_follow_the_taste_communities(train):
    graph = build_graph(train)
    leaves, paths, counts = recursive_leaves(Cooccurrence.of_graph(graph), num_groups=2, leaf_size=6, seed=0)
    members = np.concatenate(leaves)
    assert sorted(members.tolist()) == list(range(graph.num_items))
    assert max(len(leaf) for leaf in leaves) <= 6
    assert paths == sorted(paths) and len({tuple(p) for p in paths}) == len(paths)  # depth-first, distinct
    for a, b in itertools.combinations(paths, 2):  # no leaf's path is a prefix of another's: they are leaves
        assert a != b[: len(a)] and b != a[: len(b)]
    # the two communities (items i0-i19 and i20-i39) part at the first split
    half = {path[0]: Counter() for path in paths}
    for leaf, path in zip(leaves, paths, strict=True):
        for item in leaf:
            half[path[0]][int(graph.items[item][1:]) < 20] += 1
    purity = sum(max(c.values()) for c in half.values()) / graph.num_items
    assert purity >= 0.9, half
    assert set(counts) == {"isolated_groups", "unsplit_groups"}


def test_groups_the_spectral_step_cannot_split_are_cut_so_the_tree_ends():
    """Every user has one training item: no item co-occurs with another, which OpenP5's recursion never ends on."""
    lonely = Dataset.from_dict({"user": [f"u{n}" for n in range(25)], "item": [f"i{n}" for n in range(25)]})
    vocab = CollaborativeIndexer(num_groups=4, leaf_size=10).fit(lonely)
    assert_valid(vocab, lonely["user"], lonely["item"])
    facts = vocab.metadata
    assert facts["items_without_cooccurrence"] == 25 and facts["isolated_groups"] == 1 and facts["unsplit_groups"] == 1
    assert facts["item_leaves"] == 3 and facts["leaf_sizes"] == {"min": 5, "median": 10.0, "max": 10}


# ---------------------------------------------------------------------------------- CID and IID: the codes
def test_collaborative_codes_are_leaf_and_position_and_users_follow_in_blocks(train):
    indexer = CollaborativeIndexer(num_groups=3, leaf_size=8, seed=4)
    vocab = indexer.fit(train)
    graph = build_graph(train)
    leaves, paths, _ = recursive_leaves(Cooccurrence.of_graph(graph), 3, 8, seed=4)
    facts = vocab.metadata
    assert facts["item_leaves"] == len(leaves) and facts["leaf_paths"] == paths
    assert facts["params"] == {"num_groups": 3, "leaf_size": 8, "dim": 64, "seed": 4}
    for leaf, members in enumerate(leaves):
        codes = np.array([vocab.item_code(graph.items[m]) for m in members])
        assert (codes[:, 0] == leaf).all() and sorted(codes[:, 1].tolist()) == list(range(len(members)))
    users = np.array([vocab.user_code(user) for user in graph.users])
    assert np.array_equal(users[:, 0], len(leaves) + np.arange(len(users)) // 8)
    assert np.array_equal(users[:, 1], np.arange(len(users)) % 8)
    assert vocab.num_ranks == 8 and facts["user_blocks"] == -(-len(users) // 8)
    assert np.allclose(np.linalg.norm(vocab.cluster_vectors, axis=1), 1.0, atol=1e-5)
    # the seed reorders items inside their leaves, never moves them between leaves
    other = CollaborativeIndexer(num_groups=3, leaf_size=8, seed=5).fit(train)
    assert np.array_equal(other.item_codes[:, 0], vocab.item_codes[:, 0])
    assert not np.array_equal(other.item_codes[:, 1], vocab.item_codes[:, 1])


def test_independent_ids_are_one_token_per_entity(train, table):
    graph = build_graph(train)
    vocab = IndependentIndexer(dim=8).fit(train)
    codes = np.concatenate([vocab.user_codes, vocab.item_codes])
    assert np.array_equal(codes[:, 0], np.arange(graph.num_nodes)) and not codes[:, 1].any()
    assert vocab.num_clusters == graph.num_nodes and vocab.num_ranks == 1
    assert len(vocab.new_tokens) == graph.num_nodes + 1 and vocab.vector_dim == 8
    assert vocab.item_tokens(graph.items[0]) == f"<CT{graph.num_users}><R0>"
    # cold items share the reserved cluster, as in every scheme: the rank tokens then number the cold entities
    cold = IndependentIndexer().fit(train, hm.catalogue(table))
    count = cold.metadata["cold_start"]["items"]
    assert count > 1 and cold.num_clusters == graph.num_nodes + 1 and cold.num_ranks == count


# -------------------------------------------------------------------------- as META ID: determinism, save/load
@pytest.mark.parametrize("scheme", sorted(SCHEME_INDEXERS))
def test_same_data_and_seed_give_byte_identical_files_and_load_back(scheme, train, table, tmp_path):
    make = SCHEME_INDEXERS[scheme]
    paths = [tmp_path / name for name in ("a.json", "b.json", "c.json")]
    names = hm.catalogue(table)
    for path, seed in zip(paths, (0, 0, 1), strict=True):
        make(seed=seed).fit(train, names).save(path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[2].read_bytes() != paths[0].read_bytes()
    loaded = hm.EntityVocabulary.load(paths[0])
    original = make().fit(train, names)
    assert loaded.fingerprint == original.fingerprint and loaded.scheme == scheme
    assert loaded.metadata == original.metadata
    assert np.array_equal(loaded.cluster_vectors, original.cluster_vectors)
    assert_valid(loaded, names["users"], names["items"])
    rebuilt = type(make())(**loaded.metadata["params"]).fit(train, names)
    assert rebuilt.fingerprint == loaded.fingerprint  # the saved params rebuild the indexer


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"num_groups": 1}, "num_groups must be an int >= 2, got 1"),
        ({"leaf_size": 0}, "leaf_size must be an int >= 1, got 0"),
        ({"leaf_size": 2.5}, "leaf_size must be an int >= 1, got 2.5"),
        ({"dim": 0}, "dim must be an int >= 1, got 0"),
        ({"seed": -1}, "seed must be an int >= 0, got -1"),
    ],
)
def test_bad_collaborative_settings_name_the_field(settings, message):
    for make in (CollaborativeIndexerConfig, CollaborativeIndexer):
        with pytest.raises(ValueError, match=f"^{message}$"):
            make(**settings)
    with pytest.raises(TypeError, match=r"unknown IndependentIndexerConfig setting\(s\) \['block_size'\]"):
        IndependentIndexer(block_size=3)


def test_build_indexer_takes_each_schemes_settings_or_meta_ids():
    assert set(SCHEMES) == {"metaid", "sequential", "random", "collaborative", "independent"}
    config = CollaborativeIndexerConfig(num_groups=5, seed=2)
    assert build_indexer("collaborative", config).config == config
    from_metaid = build_indexer("collaborative", hm.MetaIDIndexerConfig(seed=3, dim=16))
    assert from_metaid.config == CollaborativeIndexerConfig(seed=3, dim=16)
    assert build_indexer("independent").config == hm.IndependentIndexerConfig()
    with pytest.raises(ValueError, match="must be a IndependentIndexerConfig or a MetaIDIndexerConfig"):
        build_indexer("independent", config)
    with pytest.raises(ValueError, match="unknown scheme 'cid'"):
        build_indexer("cid")


# --------------------------------------------------------------------------- the rest of the library takes them
@pytest.mark.numerics
def test_decoding_an_independent_vocabulary_matches_generate_and_brute_force(beauty_slice):
    """One cluster per item and one rank token: the item tree, beam and exact decoding need nothing special."""
    split = hm.leave_one_out(beauty_slice.select(range(400)))
    tokenizer = hm.MetaIDTokenizer.from_base(None, IndependentIndexer(dim=8).fit(split["train"]))
    torch.manual_seed(0)
    model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(d_model=32, d_kv=8), tokenizer).eval()
    tree = model.item_tree(tokenizer)
    assert tree.num_ranks == 1 and int(tree.cluster_sizes.max()) == 1
    batch = prompts(tokenizer, count=3)
    assert_beam_parity(model, tokenizer, batch, beams=4)
    items, scores = decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=5, mode="exact")
    expected_scores, expected_items = brute_force_scores(model, tokenizer, batch).topk(5, dim=-1)
    assert_same_ranking(items, scores, expected_items, expected_scores, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["collaborative", "independent"])
def test_index_train_evaluate_recommend_through_the_command(scheme, tiny_file, tmp_path, capsys):
    vocab_dir, model_dir = tmp_path / "vocab", tmp_path / "model"
    extra = ["--num-groups", "3", "--leaf-size", "6"] if scheme == "collaborative" else []
    assert (
        main(["index", "--data", str(tiny_file), "--out", str(vocab_dir), "--scheme", scheme, "--dim", "8", *extra])
        == 0
    )
    printed = capsys.readouterr().out
    assert f"scheme          {scheme}" in printed
    vocab = hm.EntityVocabulary.load(vocab_dir / "metaid_vocab.json")
    assert vocab.scheme == scheme and vocab.vector_dim == 8
    quick = ["--max-steps", "2", "--batch-size", "8", "--d-model", "32", "--warmup-steps", "0"]
    assert main(["train", "--data", str(tiny_file), "--vocab", str(vocab_dir), "--out", str(model_dir), *quick]) == 0
    assert main(["evaluate", str(model_dir), "--data", str(tiny_file), "--limit", "10"]) == 0
    assert "users=10 " in capsys.readouterr().out
    assert main(["recommend", str(model_dir), "--user", "u3", "--k", "3"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[2:]
    assert len(rows) == 3 and all(vocab.has_item(row.split()[1]) for row in rows)


def test_the_demo_takes_a_scheme(tmp_path, capsys):
    data = tmp_path / "tiny.txt"
    data.write_text("".join(" ".join([f"u{u}"] + [f"i{(u * 5 + k) % 25}" for k in range(5)]) + "\n" for u in range(30)))
    small = ["--d-model", "32", "--d-ff", "48", "--max-steps", "2", "--batch-size", "8", "--warmup-steps", "0"]
    out = tmp_path / "demo"
    args = ["demo", "--data", str(data), "--out", str(out), "--scheme", "collaborative", "--leaf-size", "5", *small]
    assert main(args) == 0
    assert "(collaborative IDs)" in capsys.readouterr().out
    assert hm.EntityVocabulary.load(out / "metaid_vocab.json").scheme == "collaborative"
