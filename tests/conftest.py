"""Shared fixtures: small real data (a slice of the embedded Beauty) and tiny random vocabularies and models."""

from __future__ import annotations

import numpy as np
import pytest

import hf_metaid as hm


def random_vocabulary(
    num_users: int = 30, num_items: int = 50, num_clusters: int = 4, dim: int = 16, seed: int = 0
) -> hm.EntityVocabulary:
    """A valid vocabulary with unique random (cluster, rank) codes, for tests that need no real indexing."""
    rng = np.random.default_rng(seed)
    per_cluster = (num_users + num_items) // num_clusters + 5
    codes = np.array([(c, r) for c in range(num_clusters) for r in range(per_cluster)])
    codes = codes[rng.permutation(len(codes))[: num_users + num_items]]
    return hm.EntityVocabulary(
        [f"u{i}" for i in range(num_users)],
        [f"i{i}" for i in range(num_items)],
        codes[:num_users],
        codes[num_users:],
        rng.standard_normal((num_clusters, dim)),
        seed=seed,
    )


@pytest.fixture
def vocab() -> hm.EntityVocabulary:
    return random_vocabulary()


@pytest.fixture
def tokenizer(vocab) -> hm.MetaIDTokenizer:
    return hm.MetaIDTokenizer.from_base(None, vocab)


@pytest.fixture
def model(tokenizer) -> hm.MetaIDForConditionalGeneration:
    model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(), tokenizer, seed=0)
    return model.eval()


@pytest.fixture(scope="session")
def beauty():
    return hm.load_interactions()


@pytest.fixture(scope="session")
def beauty_slice(beauty):
    """The first 300 users of Beauty (about 2,700 interactions)."""
    users = list(dict.fromkeys(beauty["user"][:]))[:300]
    keep = set(users)
    return beauty.filter(lambda batch: [u in keep for u in batch["user"]], batched=True)
