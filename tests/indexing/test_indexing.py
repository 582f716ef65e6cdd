"""Indexers: unique two-token IDs, ranks by centroid distance, determinism, no leakage, cold start, baselines."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

import hf_metaid
from hf_metaid.errors import InteractionFormatError
from hf_metaid.indexing import (
    BaseIndexer,
    CollaborativeIndexer,
    IndependentIndexer,
    MetaIDIndexer,
    RandomIndexer,
    SequentialIndexer,
)
from hf_metaid.indexing.clustering import assign_and_rank
from hf_metaid.indexing.graph import build_graph
from hf_metaid.indexing.skipgram import skipgram_embeddings, window_pairs
from hf_metaid.indexing.spectral import spectral_embeddings
from hf_metaid.indexing.walks import metapath_walks

SMALL = dict(num_clusters=6, walks_per_node=4, walk_length=10, batch_size=512)


def synthetic(num_users: int = 60, num_items: int = 40, seed: int = 0, tail_seed: int | None = None) -> Dataset:
    """Two taste communities; each user buys 5-9 items mostly from one half of the catalogue.

    ``tail_seed`` redraws only every user's last two items (the validation and test targets).
    """
    rng = np.random.default_rng(seed)
    tail = np.random.default_rng(tail_seed if tail_seed is not None else seed + 1)
    users, items = [], []
    for u in range(num_users):
        home = (u % 2) * (num_items // 2)
        length = int(rng.integers(5, 10))
        picks = [f"i{home + int(rng.integers(0, num_items // 2))}" for _ in range(length - 2)]
        picks += [f"i{int(tail.integers(0, num_items + 5))}" for _ in range(2)]  # may name items never trained on
        users += [f"u{u}"] * length
        items += picks
    return hf_metaid.load_interactions(Dataset.from_dict({"user": users, "item": items}))


@pytest.fixture(scope="module")
def table() -> Dataset:
    return synthetic()


@pytest.fixture(scope="module")
def train(table) -> Dataset:
    return hf_metaid.leave_one_out(table)["train"]


def all_codes(vocab: hf_metaid.EntityVocabulary) -> np.ndarray:
    return np.concatenate([vocab.user_codes, vocab.item_codes])


def assert_valid(vocab: hf_metaid.EntityVocabulary, users: list[str], items: list[str]) -> None:
    """Every entity has an ID, IDs are unique, ranks are 0..size-1 per cluster and the token count adds up."""
    assert set(vocab.users) == set(users) and set(vocab.items) == set(items)
    codes = all_codes(vocab)
    assert len({tuple(c) for c in codes.tolist()}) == len(codes)
    tokens = {vocab.user_tokens(u) for u in users} | {vocab.item_tokens(i) for i in items}
    assert len(tokens) == len(users) + len(items)
    largest = 0
    for cluster in np.unique(codes[:, 0]):
        ranks = np.sort(codes[codes[:, 0] == cluster, 1])
        assert np.array_equal(ranks, np.arange(len(ranks)))
        largest = max(largest, len(ranks))
    assert vocab.num_ranks == largest
    assert len(vocab.new_tokens) == vocab.num_clusters + largest


# --------------------------------------------------------------------------------------------------- graph, walks
def test_graph_is_sparse_bipartite_csr(train):
    graph = build_graph(train)
    users, items = train["user"][:], train["item"][:]
    assert graph.users == list(dict.fromkeys(users)) and graph.items == list(dict.fromkeys(items))
    assert graph.indptr[-1] == 2 * len(train) and graph.num_edges == len(train)
    node = graph.items.index(items[0]) + graph.num_users
    assert graph.users.index(users[0]) in graph.indices[graph.indptr[node] : graph.indptr[node + 1]].tolist()
    assert graph.adjacency().shape == (graph.num_nodes, graph.num_nodes)


def test_walks_alternate_types_and_are_seeded(train):
    graph = build_graph(train)
    walks = metapath_walks(graph, walks_per_node=3, walk_length=7, seed=5)
    assert walks.shape == (3 * graph.num_nodes, 7)
    assert np.array_equal(walks[: graph.num_nodes, 0], np.arange(graph.num_nodes))
    is_user = graph.is_user(walks)
    assert (is_user[:, 1:] != is_user[:, :-1]).all()
    assert np.array_equal(walks, metapath_walks(graph, walks_per_node=3, walk_length=7, seed=5))
    assert not np.array_equal(walks, metapath_walks(graph, walks_per_node=3, walk_length=7, seed=6))


def test_window_pairs_respect_each_centers_reach():
    walks = np.array([[0, 1, 2, 3]])
    full = window_pairs(walks, np.full((1, 4), 2), 2)
    assert len(full[0]) == 2 * 3 + 2 * 2  # offsets 1 and 2, both directions
    near = window_pairs(walks, np.ones((1, 4), dtype=int), 2)
    assert sorted(zip(*near, strict=True)) == [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)]


# ------------------------------------------------------------------------------------------------- the indexers
INDEXERS = {
    "metaid": lambda: MetaIDIndexer(**SMALL),
    "metaid-spectral": lambda: MetaIDIndexer(num_clusters=6, embedding="spectral"),
    "metaid-separate": lambda: MetaIDIndexer(joint=False, **SMALL),
    "sequential": SequentialIndexer,
    "random": RandomIndexer,
    "collaborative": lambda: CollaborativeIndexer(num_groups=3, leaf_size=8),
    "independent": IndependentIndexer,
}


@pytest.mark.parametrize("name", sorted(INDEXERS))
def test_every_entity_gets_a_unique_two_token_id(name, train):
    indexer = INDEXERS[name]()
    assert isinstance(indexer, BaseIndexer)
    vocab = indexer.fit(train)
    assert_valid(vocab, train.unique("user"), train.unique("item"))
    assert vocab.scheme == name.split("-")[0]
    assert vocab.metadata["cold_start"]["cluster"] is None
    assert "total_s" in indexer.timings_


def test_metaid_vocabulary_contents(train):
    indexer = MetaIDIndexer(**SMALL)
    vocab = indexer.fit(train)
    assert vocab.num_clusters == 6 and vocab.vector_dim == 64
    assert np.allclose(np.linalg.norm(vocab.cluster_vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(vocab.entity_vectors, axis=1), 1.0, atol=1e-5)
    assert vocab.metadata["params"] == indexer.get_params()
    assert not any(key.endswith("_s") for key in vocab.metadata)  # timings stay out of the saved file
    assert {"graph_s", "walks_s", "skipgram_s", "kmeans_s", "total_s"} <= set(indexer.timings_)


@pytest.mark.parametrize("embedding", ["skipgram", "spectral"])
def test_ranks_follow_distance_to_the_centroid(embedding, train):
    vocab = MetaIDIndexer(**dict(SMALL, num_clusters=5), embedding=embedding).fit(train)
    codes, vectors = all_codes(vocab), vocab.entity_vectors
    similarity = vectors @ vocab.cluster_vectors.T
    # nearest centroid, up to ties: the indexer multiplies in chunks, whose kernels may round otherwise
    chosen = similarity[np.arange(len(codes)), codes[:, 0]]
    assert np.all(chosen >= similarity.max(axis=1) - 1e-6)
    for cluster in np.unique(codes[:, 0]):
        members = np.flatnonzero(codes[:, 0] == cluster)
        by_rank = members[np.argsort(codes[members, 1])]
        assert np.all(np.diff(similarity[by_rank, cluster]) <= 1e-6)  # rank 0 = closest


def test_single_precision_svd_agrees_with_double_where_singular_values_are_distinct(train):
    """svd_precision="float32": the same singular subspace as float64, within single precision's reach."""
    graph = build_graph(train)
    double = spectral_embeddings(graph, dim=8, seed=0)
    single = spectral_embeddings(graph, dim=8, seed=0, precision="float32")
    assert single.dtype == double.dtype == np.float32
    scale = np.linalg.norm(double, axis=0)  # sqrt(2 x singular value), descending
    assert np.allclose(np.linalg.norm(single, axis=0), scale, rtol=1e-4)
    gaps = -np.diff(scale)
    distinct = np.minimum(np.r_[np.inf, gaps], np.r_[gaps, np.inf]) > 1e-3  # a repeated value has no one direction
    assert distinct.sum() >= 5  # the fixture's graph: two pieces (the value 1 twice), then distinct values
    cosine = np.sum(double * single, axis=0) / (scale * np.linalg.norm(single, axis=0))
    assert np.all(cosine[distinct] > 1 - 1e-4)  # the same direction, the same sign (the sign convention)
    assert not np.array_equal(single, double)  # but computed in single precision
    fitted = {
        p: MetaIDIndexer(num_clusters=6, embedding="spectral", svd_precision=p).fit(train)
        for p in ("float64", "float32")
    }
    assert fitted["float32"].metadata["params"]["svd_precision"] == "float32"
    assert not np.array_equal(fitted["float32"].entity_vectors, fitted["float64"].entity_vectors)
    with pytest.raises(ValueError, match="precision"):
        spectral_embeddings(graph, dim=8, precision="float16")
    with pytest.raises(ValueError, match="svd_precision"):
        MetaIDIndexer(svd_precision="float16")


@pytest.mark.parametrize("joint", [True, False], ids=["joint", "separate"])
def test_rank_by_degree_puts_the_most_interacted_first(joint, train):
    """rank_by="degree": same clusters, ranks by descending training interaction count, distance among equals."""
    settings = dict(SMALL, num_clusters=5 if joint else (3, 2), embedding="spectral", joint=joint)
    by_distance = MetaIDIndexer(**settings).fit(train)
    by_degree = MetaIDIndexer(**settings, rank_by="degree").fit(train)
    assert by_degree.metadata["params"]["rank_by"] == "degree"
    graph = build_graph(train)
    degree = dict(zip([*graph.users, *graph.items], graph.degrees.tolist(), strict=True))
    codes, plain = all_codes(by_degree), all_codes(by_distance)
    assert np.array_equal(codes[:, 0], plain[:, 0])  # the clusters do not move
    assert not np.array_equal(codes[:, 1], plain[:, 1])
    degrees = np.array([degree[name] for name in [*by_degree.users, *by_degree.items]])
    for cluster in np.unique(codes[:, 0]):
        members = np.flatnonzero(codes[:, 0] == cluster)
        by_rank = members[np.argsort(codes[members, 1])]
        assert sorted(codes[members, 1].tolist()) == list(range(len(members)))
        assert np.all(np.diff(degrees[by_rank]) <= 0)  # rank 0 = most interactions
        for level in np.unique(degrees[members]):  # among equals, the distance order is kept
            equal = by_rank[degrees[by_rank] == level]
            assert np.all(np.diff(plain[equal, 1]) > 0)
    with pytest.raises(ValueError, match="rank_by"):
        MetaIDIndexer(rank_by="random")


@pytest.mark.parametrize(
    "settings",
    [
        dict(SMALL),
        dict(SMALL, joint=False),
        dict(num_clusters=6, embedding="spectral"),
        dict(SMALL, epochs=2),
        dict(num_clusters=6, embedding="spectral", rank_by="degree"),
        dict(num_clusters=6, embedding="spectral", svd_precision="float32"),
    ],
    ids=["torch", "torch-separate", "spectral", "torch-2-epochs", "spectral-by-degree", "spectral-float32"],
)
def test_same_data_and_seed_give_byte_identical_files(settings, train, tmp_path):
    first, second, other = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    MetaIDIndexer(**settings).fit(train).save(first)
    MetaIDIndexer(**settings).fit(train).save(second)
    assert first.read_bytes() == second.read_bytes()
    if settings.get("embedding") != "spectral":
        MetaIDIndexer(**settings, seed=1).fit(train).save(other)
        assert other.read_bytes() != first.read_bytes()


def test_gensim_backend_is_deterministic(train, tmp_path):
    pytest.importorskip("gensim")
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path in paths:
        vocab = MetaIDIndexer(backend="gensim", **SMALL).fit(train)
        assert_valid(vocab, train.unique("user"), train.unique("item"))
        vocab.save(path)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_torch_skipgram_is_bit_identical_and_learns_structure(train):
    graph = build_graph(train)
    walks = metapath_walks(graph, 8, 10, seed=0)
    first = skipgram_embeddings(walks, graph.num_nodes, dim=16, batch_size=256)
    assert np.array_equal(first, skipgram_embeddings(walks, graph.num_nodes, dim=16, batch_size=256))
    # the two taste communities should be told apart: items of the same half are closer than items across halves
    vectors = first / np.linalg.norm(first, axis=1, keepdims=True)
    half = np.array([int(item[1:]) < 20 for item in graph.items])
    item_vectors = vectors[graph.num_users :]
    similarity = item_vectors @ item_vectors.T
    same = similarity[half[:, None] == half[None, :]].mean()
    across = similarity[half[:, None] != half[None, :]].mean()
    assert same > across + 0.1


@pytest.mark.parametrize("make", [lambda: MetaIDIndexer(**SMALL), SequentialIndexer, CollaborativeIndexer])
def test_held_out_items_do_not_change_the_vocabulary(make, tmp_path):
    tables = [synthetic(seed=3, tail_seed=10), synthetic(seed=3, tail_seed=11)]
    splits = [hf_metaid.leave_one_out(t) for t in tables]
    assert splits[0]["train"]["item"][:] == splits[1]["train"]["item"][:]
    assert splits[0]["test"]["target"][:] != splits[1]["test"]["target"][:]
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for split, path in zip(splits, paths, strict=True):
        make().fit(split["train"]).save(path)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_cold_start_entities_get_the_reserved_cluster(table, train):
    catalogue = hf_metaid.catalogue(table)
    catalogue["users"] = [*catalogue["users"], "new-user"]
    catalogue["items"] = [*catalogue["items"], "new-item", catalogue["items"][0]]  # repeats are harmless
    cold_items = [i for i in dict.fromkeys(catalogue["items"]) if i not in set(train["item"][:])]
    assert len(cold_items) >= 2
    indexer = MetaIDIndexer(**SMALL)
    vocab = indexer.fit(train, catalogue)
    assert_valid(vocab, list(dict.fromkeys(catalogue["users"])), list(dict.fromkeys(catalogue["items"])))
    cold = vocab.num_clusters - 1
    facts = vocab.metadata["cold_start"]
    assert (facts["cluster"], facts["users"], facts["items"]) == (cold, 1, len(cold_items))
    assert not vocab.cluster_vectors[cold].any()
    assert vocab.user_code("new-user") == (cold, 0)
    assert [vocab.item_code(i) for i in cold_items] == [(cold, r) for r in range(1, len(cold_items) + 1)]
    assert vocab.item_tokens("new-item") == f"<CT{cold}><R{len(cold_items)}>"
    row = len(vocab.users) + vocab.items.index("new-item")
    assert not vocab.entity_vectors[row].any()
    warm = [vocab.item_code(i)[0] for i in train.unique("item")]
    assert max(warm) < cold
    # every scheme shares the rule
    others = (SequentialIndexer(), RandomIndexer(), CollaborativeIndexer(), IndependentIndexer())
    for other in (*others, MetaIDIndexer(num_clusters=6, embedding="spectral")):
        vocab = other.fit(train, catalogue)
        assert vocab.item_code("new-item")[0] == vocab.num_clusters - 1


def test_joint_and_separate_clustering(train):
    graph = build_graph(train)
    joint = MetaIDIndexer(**SMALL).fit(train)
    separate = MetaIDIndexer(**dict(SMALL, num_clusters=(4, 3)), joint=False).fit(train)
    assert joint.num_clusters == 6 and separate.num_clusters == 7
    assert separate.user_codes[:, 0].max() < 4 <= separate.item_codes[:, 0].min()
    assert separate.metadata["clusters"] == {"users": 4, "items": 3}
    for vocab in (joint, separate):
        assert_valid(vocab, graph.users, graph.items)


def test_more_clusters_than_entities_is_capped():
    tiny = Dataset.from_dict({"user": ["a", "a", "b"], "item": ["x", "y", "x"], "position": [0, 1, 0]})
    for settings in (dict(num_clusters=50, walk_length=4), dict(num_clusters=50, embedding="spectral")):
        vocab = MetaIDIndexer(**settings).fit(tiny)
        assert vocab.num_clusters <= 4
        assert_valid(vocab, ["a", "b"], ["x", "y"])


def test_sequential_and_random_numbering(train):
    graph = build_graph(train)
    entities = graph.num_nodes
    block = int(np.ceil(np.sqrt(entities)))
    sequential = SequentialIndexer().fit(train)
    numbers = all_codes(sequential) @ np.array([block, 1])
    assert np.array_equal(numbers, np.arange(entities))
    assert sequential.users == graph.users and sequential.items == graph.items
    random = RandomIndexer(seed=3).fit(train)
    shuffled = all_codes(random) @ np.array([block, 1])
    assert sorted(shuffled.tolist()) == list(range(entities)) and not np.array_equal(shuffled, numbers)
    assert np.array_equal(all_codes(RandomIndexer(seed=3).fit(train)), all_codes(random))
    assert not np.array_equal(all_codes(RandomIndexer(seed=4).fit(train)), all_codes(random))
    blocked = SequentialIndexer(block_size=10).fit(train)
    assert blocked.num_clusters == -(-entities // 10) and blocked.num_ranks == 10
    assert np.allclose(np.linalg.norm(blocked.cluster_vectors, axis=1), 1.0, atol=1e-5)
    assert blocked.rank_vectors.shape == (10, 64)


def test_beauty_subset():
    table = hf_metaid.load_interactions()
    users = table["user"][:]
    first = set(list(dict.fromkeys(users))[:1500])
    subset = table.select(range(sum(u in first for u in users)))  # rows are grouped by user
    split = hf_metaid.leave_one_out(subset)
    catalogue = hf_metaid.catalogue(subset)
    vocab = MetaIDIndexer(num_clusters=20).fit(split["train"], catalogue)
    assert_valid(vocab, catalogue["users"], catalogue["items"])
    assert len(vocab.users) == 1500


# ------------------------------------------------------------------------------------------------ bad input
def test_empty_training_table_is_refused():
    empty = Dataset.from_dict({"user": [], "item": [], "position": []})
    for indexer in (
        MetaIDIndexer(),
        SequentialIndexer(),
        RandomIndexer(),
        CollaborativeIndexer(),
        IndependentIndexer(),
    ):
        with pytest.raises(ValueError, match="empty"):
            indexer.fit(empty)


def test_bad_input_is_refused(train):
    with pytest.raises(InteractionFormatError, match="column"):
        MetaIDIndexer().fit(Dataset.from_dict({"buyer": ["a"], "item": ["x"]}))
    with pytest.raises(TypeError):
        MetaIDIndexer().fit({"user": ["a"], "item": ["x"]})
    with pytest.raises(ValueError, match="unknown key"):
        SequentialIndexer().fit(train, {"products": ["x"]})
    with pytest.raises(ValueError, match="embedding"):
        MetaIDIndexer(embedding="node2vec")
    with pytest.raises(ValueError, match="backend"):
        MetaIDIndexer(backend="jax")
    with pytest.raises(ValueError, match="num_clusters"):
        MetaIDIndexer(num_clusters=(3, 4))  # a pair needs joint=False
    with pytest.raises(ValueError, match="walk_length"):
        MetaIDIndexer(walk_length=0)


# ------------------------------------------------------------------------------- bounded clusters, items-only IDs
def test_oversized_clusters_are_split_until_each_fits():
    rng = np.random.default_rng(0)
    # one tight blob of 90 points and two small ones: two centroids would put the blob's 90 in one cluster
    points = np.concatenate([rng.normal([5, 0, 0], 0.3, (90, 3)), rng.normal([0, 5, 0], 0.3, (10, 3))])
    centroids = np.array([[1.0, 0, 0], [0, 1.0, 0]], np.float32)
    plain = assign_and_rank(points, centroids)
    assert np.bincount(plain.codes[:, 0]).max() == 90
    bounded = assign_and_rank(points, centroids, max_size=25)
    sizes = np.bincount(bounded.codes[:, 0])
    assert sizes.max() <= 25 and sizes.sum() == 100
    assert bounded.num_clusters >= 2 + 3  # 90 points need at least four parts of 25
    assert len({tuple(c) for c in bounded.codes.tolist()}) == 100  # unique (cluster, rank)
    small = plain.codes[:, 0] == 1  # the cluster under the bound keeps its id and its members
    assert np.array_equal(bounded.codes[small], plain.codes[small])
    assert np.allclose(np.linalg.norm(bounded.centroids, axis=1), 1.0, atol=1e-5)
    # the bound changes nothing where every cluster already fits: the same codes and centroids as without it
    same = assign_and_rank(points, centroids, max_size=90)
    assert np.array_equal(same.codes, plain.codes) and np.array_equal(same.centroids, plain.centroids)


def test_identical_points_are_cut_in_order_when_kmeans_cannot_split_them():
    points = np.tile(np.array([[1.0, 2.0, 3.0]], np.float32), (23, 1))
    result = assign_and_rank(points, points[:1], max_size=5)
    sizes = np.bincount(result.codes[:, 0])
    assert sorted(sizes.tolist()) == [3, 5, 5, 5, 5]
    assert len({tuple(c) for c in result.codes.tolist()}) == 23


def test_max_cluster_size_bounds_the_rank_tokens(train):
    graph = build_graph(train)
    free = MetaIDIndexer(**dict(SMALL, num_clusters=2)).fit(train)
    bounded = MetaIDIndexer(**dict(SMALL, num_clusters=2), max_cluster_size=12).fit(train)
    assert free.num_ranks > 12 >= bounded.num_ranks
    assert bounded.num_clusters > free.num_clusters
    assert bounded.metadata["clusters"]["joint"] == bounded.num_clusters
    assert_valid(bounded, graph.users, graph.items)
    with pytest.raises(ValueError, match="max_cluster_size"):
        MetaIDIndexer(max_cluster_size=0)


@pytest.mark.parametrize("joint", [True, False])
def test_items_only_ids_keep_the_item_clusters_and_number_items_alone(joint, table, train):
    settings = dict(SMALL, joint=joint)
    both = MetaIDIndexer(**settings).fit(train)
    items_only = MetaIDIndexer(**settings, user_ids=False).fit(train, hf_metaid.catalogue(table))
    assert items_only.users == [] and items_only.user_codes.shape == (0, 2) and items_only.items_only
    assert not items_only.has_user(both.users[0]) and not both.items_only
    # the same clusters as with user IDs (users still shape them); ranks count the items alone, in the same order
    offset = 0 if joint else both.metadata["clusters"]["users"]
    for cluster in range(items_only.num_clusters - 1):  # the last cluster is the cold-start one
        members = [i for i in both.items if both.item_code(i)[0] == cluster + offset]
        by_old_rank = sorted(members, key=lambda i: both.item_code(i)[1])
        assert [items_only.item_code(i) for i in by_old_rank] == [(cluster, r) for r in range(len(members))]
    assert items_only.num_ranks == np.bincount(items_only.item_codes[:, 0]).max()
    assert items_only.num_ranks < both.num_ranks if joint else items_only.num_ranks <= both.num_ranks
    cold = items_only.metadata["cold_start"]
    assert cold["users"] == 0 and cold["items"] > 0  # the catalogue's cold items get IDs, its users none
    assert items_only.metadata["users_without_ids"] == len(both.users)
    assert items_only.entity_vectors.shape[0] == len(items_only.items)
