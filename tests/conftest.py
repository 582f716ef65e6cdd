"""Shared fixtures: small real data (a slice of the embedded Beauty), tiny random vocabularies and models, and a tiny
synthetic data set with the helpers that train on it (training, saving and evaluation tests, and the worker that
tests/training/test_training.py launches in two processes)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

import hf_metaid as hm
from hf_metaid.data import build_training_prompts, tokenize_prompts
from hf_metaid.training.collator import MetaIDDataCollator
from hf_metaid.training.trainer import training_arguments


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


def subprocess_env() -> dict[str, str]:
    """The environment for a child Python that must import this hf_metaid, whatever its working directory."""
    package_root = str(Path(hm.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}


def write_beauty_lines(path, count: int = 60):
    """The first ``count`` users of the embedded Beauty file as a P5 text file: small real data for command runs."""
    with gzip.open(hm.embedded_beauty_path(), "rt") as handle:
        path.write_text("".join(next(handle) for _ in range(count)))
    return path


@pytest.fixture(scope="session")
def tiny_file(tmp_path_factory):
    """40 users over 30 items, 6 interactions each, with overlapping patterns so indexing has structure (a P5 text
    file, read only)."""
    path = tmp_path_factory.mktemp("data") / "tiny.txt"
    lines = [" ".join([f"u{u}"] + [f"i{(u * 3 + k * (1 + u % 4)) % 30}" for k in range(6)]) for u in range(40)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def beauty_slice(beauty):
    """The first 300 users of Beauty (about 2,700 interactions)."""
    users = list(dict.fromkeys(beauty["user"][:]))[:300]
    keep = set(users)
    return beauty.filter(lambda batch: [u in keep for u in batch["user"]], batched=True)


# --------------------------------------------------------------------------------------------------- tiny training runs
@pytest.fixture
def one_thread():
    """Tiny models train ~15x faster on one thread than on two contended ones (the test machine has 2 cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def named_vocabulary(users, items, num_clusters=4, dim=16, seed=0) -> hm.EntityVocabulary:
    """A vocabulary for the given user and item names with unique random (cluster, rank) codes: fast, and enough for
    everything but ID quality."""
    rng = np.random.default_rng(seed)
    count = len(users) + len(items)
    ranks = -(-count // num_clusters)
    flat = rng.permutation(num_clusters * ranks)[:count]
    codes = np.stack([flat // ranks, flat % ranks], axis=1)
    vectors = rng.standard_normal((num_clusters, dim))
    return hm.EntityVocabulary(users, items, codes[: len(users)], codes[len(users) :], vectors)


def synthetic_interactions(num_users=12, num_items=20, seed=0) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    rows = {"user": [], "item": []}
    for user in range(num_users):
        for item in rng.choice(num_items, size=int(rng.integers(5, 9)), replace=False):
            rows["user"].append(f"u{user}")
            rows["item"].append(f"i{item}")
    return hm.load_interactions(datasets.Dataset.from_dict(rows))


def tiny_setup(seed=0, dropout=0.0, **data):
    """Split, tokenizer, and tokenized sequential prompts of a small synthetic data set."""
    interactions = synthetic_interactions(seed=seed, **data)
    split = hm.leave_one_out(interactions)
    names = hm.catalogue(interactions)
    tokenizer = hm.MetaIDTokenizer.from_base(None, named_vocabulary(names["users"], names["items"], seed=seed))
    prompts = build_training_prompts(split["train"], tokenizer, tasks=("sequential",), seed=seed)
    return split, tokenizer, tokenize_prompts(prompts, tokenizer)


def tiny_model(tokenizer, seed=0, dropout=0.0) -> hm.MetaIDForConditionalGeneration:
    torch.manual_seed(seed)
    return hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(dropout_rate=dropout), tokenizer)


@pytest.fixture(scope="module")
def tiny():
    return tiny_setup()


def with_item_vectors(model, tokenizer, seed: int = 0, std: float = 0.5, output: bool = True, input: bool = False):
    """``model`` with the item output (and/or the item input) on and random item vectors and biases (zeros would
    change nothing), in eval mode."""
    modules = []
    if output:
        model.set_item_output(tokenizer)
        modules.append(model.metaid_item_output)
    if input:
        model.set_item_input(tokenizer)
        modules.append(model.item_input_stack.metaid_item_input)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in (p for module in modules for p in module.parameters()):
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model.eval()


def quiet_args(output_dir, **overrides):
    fields = {"logging_steps": 1, "save_strategy": "no", "warmup_steps": 0, "disable_tqdm": True}
    fields.update(overrides)
    return training_arguments(output_dir, **fields)


def fixed_batch(tokenizer, dataset, size=16):
    return MetaIDDataCollator(tokenizer)([dataset[i] for i in range(min(size, len(dataset)))])


def logits_of(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def loss_of(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**batch).loss.item()


def prompt(tok, user="u1", history=("i3", "i7")) -> str:
    """A sequential prompt in the library's words, for tests of the tokenizer and the model."""
    items = " , ".join(tok.item_tokens(i) for i in history)
    return f"User {tok.user_tokens(user)} has interacted with items {items} . What is the next item ?"


def logits(model, tok, text):
    """The model's logits for ``text`` with the decoder at (start, the second cluster token)."""
    batch = tok([text], return_tensors="pt")
    with torch.no_grad():
        return model(**batch, decoder_input_ids=torch.tensor([[0, tok.cluster_token_ids[1]]])).logits
