"""Sharing on the Hub: a vocabulary as a dataset folder/repository, and `hf-metaid push` of a model with its
vocabulary. Nothing reaches the network: only huggingface_hub's network calls (create_repo, upload_folder,
snapshot_download) are replaced, by fakes that keep the uploaded folder as a downloaded snapshot would be."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import datasets
import huggingface_hub
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from huggingface_hub import DatasetCard, ModelCard
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

import hf_metaid as hm
from conftest import quiet_args, tiny_model
from hf_metaid.cli import main
from hf_metaid.saving.inference_folder import load_for_inference, save_for_inference
from hf_metaid.training.trainer import build_trainer, lora_config
from hf_metaid.vocabulary.card import cluster_sizes
from hf_metaid.vocabulary.histogram import BAR, histogram_bins
from ranking_checks import assert_same_recommendations

datasets.disable_progress_bars()


@pytest.fixture(scope="module")
def fitted(beauty_slice):
    """A real META ID vocabulary of 300 Beauty users (with cold-start items), and its indexer's timings."""
    splits = hm.leave_one_out(beauty_slice)
    indexer = hm.MetaIDIndexer(num_clusters=8, dim=16, embedding="spectral")
    vocabulary = indexer.fit(splits["train"], catalogue=hm.catalogue(beauty_slice), source="beauty")
    return vocabulary, dict(indexer.timings_)


class FakeHub:
    """Stands in for the Hub's network calls: records them and keeps each upload as a snapshot folder."""

    def __init__(self, root: Path, fail: Exception | None = None) -> None:
        self.root, self.fail, self.calls, self.tokens = root, fail, [], []

    def create_repo(self, api, repo_id, *, repo_type=None, private=None, exist_ok=False, **rest):
        self.tokens.append(api.token)
        self.calls.append(("create_repo", repo_id, {"repo_type": repo_type, "private": private, "exist_ok": exist_ok}))
        if self.fail is not None:
            raise self.fail
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, api, *, repo_id, folder_path, repo_type=None, commit_message=None, **rest):
        files = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
        self.calls.append(
            ("upload_folder", repo_id, {"repo_type": repo_type, "message": commit_message, "files": files})
        )
        shutil.copytree(folder_path, self.snapshot(repo_type or "model", repo_id))
        return SimpleNamespace(commit_url=f"https://hub.test/{repo_id}/commit/1")

    def snapshot(self, repo_type: str, repo_id: str) -> Path:
        return self.root / repo_type / repo_id.replace("/", "--")

    def snapshot_download(self, repo_id, *, repo_type=None, revision=None, **rest):
        self.calls.append(("snapshot_download", repo_id, {"repo_type": repo_type, "revision": revision}))
        return str(self.snapshot(repo_type or "model", repo_id))


@pytest.fixture
def hub(tmp_path, monkeypatch):
    fake = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda api, *a, **k: fake.create_repo(api, *a, **k))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda api, **k: fake.upload_folder(api, **k))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    return fake


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------------- vocabulary
def test_a_saved_vocabulary_loads_back_and_as_a_plain_dataset(fitted, tmp_path):
    vocabulary, timings = fitted
    folder = tmp_path / "vocab"
    vocabulary.save_pretrained(folder, timings=timings, repo_id="org/beauty-ids")
    assert sorted(tree(folder)) == [
        "README.md",
        "cluster_sizes.png",
        "metaid_vocab.json",
        "vocabulary.parquet",
        "vocabulary_info.json",
    ]
    loaded = hm.EntityVocabulary.from_pretrained(folder)
    assert loaded.fingerprint == vocabulary.fingerprint and loaded.metadata == vocabulary.metadata
    assert np.array_equal(loaded.entity_vectors, vocabulary.entity_vectors)
    assert np.array_equal(loaded.rank_vectors, vocabulary.rank_vectors)
    rows = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))["train"]
    assert rows.num_rows == len(vocabulary) + len(vocabulary.new_tokens)
    assert hm.EntityVocabulary.from_dataset(rows, header=vocabulary._header()).fingerprint == vocabulary.fingerprint


def test_the_dataset_card_reports_the_vocabulary(fitted, tmp_path):
    vocabulary, timings = fitted
    folder = Path(vocabulary.save_pretrained(tmp_path / "vocab", timings=timings, repo_id="org/beauty-ids"))
    card = DatasetCard.load(folder / "README.md")
    assert {"recommendation", "generative-retrieval", "semantic-ids"} <= set(card.data.tags)
    assert card.data.configs == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "vocabulary.parquet"}]}
    ]
    sizes = cluster_sizes(vocabulary)
    cold = vocabulary.metadata["cold_start"]
    assert f"| users | {len(vocabulary.users)} |" in card.text and f"| items | {len(vocabulary.items)} |" in card.text
    assert f"min {sizes.min()}, median {np.median(sizes):g}, max {sizes.max()}" in card.text
    assert f"{cold['items']} items, in cluster {cold['cluster']}" in card.text and cold["items"] > 0
    assert f"{len(vocabulary)} distinct IDs for {len(vocabulary)} entities: every ID is unique" in card.text
    assert "| embedding | spectral |" in card.text and f"total {timings['total_s']:.1f} s" in card.text
    assert vocabulary.metadata["source"]["train_sha256"] in card.text and "| source data | beauty;" in card.text
    assert 'hm.EntityVocabulary.from_pretrained("org/beauty-ids")' in card.text
    # the histogram: one bar per non-empty size range, as wide as the PNG header says
    png = (folder / "cluster_sizes.png").read_bytes()
    width, height = struct.unpack(">II", png[16:24])
    idat_length = struct.unpack(">I", png[33:37])[0]
    raw = zlib.decompress(png[41 : 41 + idat_length])
    pixels = np.frombuffer(raw, np.uint8).reshape(height, 1 + 3 * width)[:, 1:].reshape(height, width, 3)
    bar_columns = np.all(pixels == BAR, axis=2).any(axis=0)
    bars = int(np.sum(bar_columns[1:] & ~bar_columns[:-1]) + bar_columns[0])
    assert bars == int(np.count_nonzero(histogram_bins(sizes.tolist(), 20)[0]))


def test_the_card_names_the_vocabulary_a_vocabulary_extends(fitted, tmp_path):
    vocabulary, _ = fitted
    assert (
        "Extends the vocabulary"
        not in DatasetCard.load(Path(vocabulary.save_pretrained(tmp_path / "a")) / "README.md").text
    )
    child = hm.EntityVocabulary.from_pretrained(tmp_path / "a")
    child.metadata["parent_fingerprint"] = "0123456789abcdef"
    card = DatasetCard.load(Path(child.save_pretrained(tmp_path / "b")) / "README.md")
    assert "Extends the vocabulary `0123456789abcdef`" in card.text


def test_the_card_of_a_grown_vocabulary_states_its_counts_as_they_are(fitted, tmp_path):
    """A grown vocabulary's card counts what it holds now (cold-start entities included), not its parent's fit."""
    parent, _ = fitted
    cold = parent.metadata["cold_start"]
    users = [u for u in parent.users if parent.user_code(u)[0] != cold["cluster"]][:6]
    items = [i for i in parent.items if parent.item_code(i)[0] != cold["cluster"]][:12]
    rows = [(users[k % 6], item) for k, item in enumerate(items)]
    rows += [(users[0], "placed"), (users[1], "placed"), ("newcomer", items[0])]  # placed / one row: cold start
    rows += [(users[k], f"once{k}") for k in range(5)]  # one row each: cold start
    new = datasets.Dataset.from_dict({"user": [u for u, _ in rows], "item": [i for _, i in rows]})
    grown = parent.extend(new, source="new.csv")
    cold_users = int(np.sum(grown.user_codes[:, 0] == cold["cluster"]))
    cold_items = int(np.sum(grown.item_codes[:, 0] == cold["cluster"]))
    assert (cold_users, cold_items) == (cold["users"] + 1, cold["items"] + 5)
    folder = Path(grown.save_pretrained(tmp_path / "grown"))
    card = DatasetCard.load(folder / "README.md").text
    assert f"{cold_users} users and {cold_items} items, in cluster {cold['cluster']}" in card
    assert f"{cold['users']} users and {cold['items']} items, in cluster" not in card
    sizes = cluster_sizes(grown)
    assert f"| users | {len(grown.users)} |" in card and f"| items | {len(grown.items)} |" in card
    assert f"min {sizes.min()}, median {np.median(sizes):g}, max {sizes.max()}" in card
    assert f"| rank tokens | {grown.num_ranks} |" in card and f"| fingerprint | `{grown.fingerprint}` |" in card
    assert f"{len(grown)} distinct IDs for {len(grown)} entities" in card
    assert f"Extends the vocabulary `{parent.fingerprint}`" in card and "the fold-in rule" in card
    assert "It adds 1 users and 6 items (1 and 5 of them into the cold-start cluster)" in card
    sha = grown.metadata["extension"]["data"]["rows_sha256"]
    assert f"| source data | beauty; sha256 of the training rows `{parent.metadata['source']['train_sha256']}`" in card
    assert f"extended with new.csv (sha256 of its rows `{sha}`)" in card
    info = json.loads((folder / "vocabulary_info.json").read_text())
    assert (info["summary"]["cold_start"]["users"], info["summary"]["cold_start"]["items"]) == (cold_users, cold_items)


def test_a_saved_vocabulary_is_byte_identical_and_never_replaced_unasked(fitted, tmp_path):
    vocabulary, _ = fitted
    vocabulary.save_pretrained(tmp_path / "a")
    vocabulary.save_pretrained(tmp_path / "b")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    with pytest.raises(hm.OutputExistsError):
        vocabulary.save_pretrained(tmp_path / "a")
    vocabulary.save_pretrained(tmp_path / "a", overwrite=True)


def test_rows_that_do_not_match_the_fingerprint_are_refused(fitted, tmp_path):
    vocabulary, _ = fitted
    folder = Path(vocabulary.save_pretrained(tmp_path / "vocab"))
    table = pq.read_table(folder / "vocabulary.parquet")
    ranks = table.column("rank").to_pylist()
    first, second = [i for i, kind in enumerate(table.column("type").to_pylist()) if kind == "item"][:2]
    ranks[first], ranks[second] = ranks[second], ranks[first]  # two items swap IDs: a valid, different vocabulary
    pq.write_table(table.set_column(3, "rank", pa.array(ranks, pa.int64())), folder / "vocabulary.parquet")
    with pytest.raises(hm.SavedFileError) as refused:
        hm.EntityVocabulary.from_pretrained(folder)
    message = str(refused.value)
    assert vocabulary.fingerprint in message and "vocabulary.parquet" in message
    assert message.split("rows give the vocabulary fingerprint ")[1][:16] != vocabulary.fingerprint


def test_a_vocabulary_from_a_hub_repository_builds_a_tokenizer(fitted, hub, tmp_path):
    vocabulary, _ = fitted
    url = vocabulary.push_to_hub("org/beauty-ids", private=True, commit_message="first IDs")
    assert url == "https://hub.test/org/beauty-ids/commit/1"
    (_, repo, created), (_, _, uploaded) = hub.calls
    assert repo == "org/beauty-ids" and created == {"repo_type": "dataset", "private": True, "exist_ok": True}
    assert uploaded["repo_type"] == "dataset" and uploaded["message"] == "first IDs"
    assert "vocabulary.parquet" in uploaded["files"] and "README.md" in uploaded["files"]
    tokenizer = hm.MetaIDTokenizer.from_base(None, "org/beauty-ids")
    assert tokenizer.entity_vocabulary.fingerprint == vocabulary.fingerprint
    assert hub.calls[-1] == ("snapshot_download", "org/beauty-ids", {"repo_type": "dataset", "revision": None})
    hm.EntityVocabulary.from_pretrained("org/beauty-ids", revision="v1")
    assert hub.calls[-1][2]["revision"] == "v1"


@pytest.mark.slow
def test_train_takes_a_shared_vocabulary(fitted, hub, tmp_path, capsys):
    data = tmp_path / "tiny.txt"
    data.write_text("".join(" ".join([f"u{u}"] + [f"i{(u * 3 + k) % 12}" for k in range(5)]) + "\n" for u in range(16)))
    assert (
        main(
            [
                "index",
                "--data",
                str(data),
                "--out",
                str(tmp_path / "vocab"),
                "--num-clusters",
                "3",
                "--embedding",
                "spectral",
            ]
        )
        == 0
    )
    shared = hm.EntityVocabulary.from_pretrained(tmp_path / "vocab")
    shared.push_to_hub("org/tiny-ids")
    quick = ["--max-steps", "1", "--batch-size", "8", "--d-model", "32", "--warmup-steps", "0"]
    assert (
        main(["train", "--data", str(data), "--vocab", "org/tiny-ids", "--out", str(tmp_path / "model"), *quick]) == 0
    )
    assert hm.MetaIDTokenizer.from_pretrained(tmp_path / "model").entity_vocabulary.fingerprint == shared.fingerprint
    assert (
        main(["train", "--data", str(data), "--vocab", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m2")]) == 2
    )
    assert "nowhere: no such vocabulary file or folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------- push
@pytest.mark.numerics
def test_push_uploads_a_model_and_its_vocabulary_cross_linked(tiny, hub, tmp_path, capsys):
    _, tokenizer, _ = tiny
    model = tiny_model(tokenizer).eval()
    folder = save_for_inference(model, tokenizer, tmp_path / "model")
    before = tree(folder)
    command = ["push", str(folder), "me/beauty-metaid", "--vocab-repo", "me/beauty-ids", "--private"]
    assert main([*command, "--commit-message", "trained on Beauty", "--token", "hf_test"]) == 0
    assert hub.tokens == ["hf_test", "hf_test"]
    assert [(call, repo) for call, repo, _ in hub.calls] == [
        ("create_repo", "me/beauty-ids"),
        ("upload_folder", "me/beauty-ids"),
        ("create_repo", "me/beauty-metaid"),
        ("upload_folder", "me/beauty-metaid"),
    ]
    assert hub.calls[0][2] == {"repo_type": "dataset", "private": True, "exist_ok": True}
    assert hub.calls[2][2] == {"repo_type": "model", "private": True, "exist_ok": True}
    uploaded = hub.calls[3][2]
    assert uploaded["message"] == "trained on Beauty" and uploaded["files"] == sorted(before)
    assert tree(folder) == before and not list(tmp_path.glob(".model.*"))  # the local folder is as it was
    snapshot = hub.snapshot("model", "me/beauty-metaid")
    loaded = AutoModelForSeq2SeqLM.from_pretrained(snapshot)
    loaded_tokenizer = AutoTokenizer.from_pretrained(snapshot)
    # float32 rounding: the reloaded weights sit at other memory alignments, which some BLAS kernels round otherwise
    assert_same_recommendations(
        loaded.recommend(loaded_tokenizer, user="u1", k=3), model.recommend(tokenizer, user="u1", k=3), atol=1e-5
    )
    model_card = ModelCard.load(snapshot / "README.md")
    assert model_card.data.datasets == ["me/beauty-ids"] and model_card.data.model_name == "me/beauty-metaid"
    assert "https://huggingface.co/datasets/me/beauty-ids" in model_card.text
    vocabulary_snapshot = hub.snapshot("dataset", "me/beauty-ids")
    assert (
        hm.EntityVocabulary.from_pretrained(vocabulary_snapshot).fingerprint == tokenizer.entity_vocabulary.fingerprint
    )
    assert "https://huggingface.co/me/beauty-metaid" in DatasetCard.load(vocabulary_snapshot / "README.md").text
    assert "me/beauty-metaid" in capsys.readouterr().out


@pytest.mark.numerics
def test_push_uploads_a_lora_adapter_that_loads_back(tiny, hub, tmp_path):
    _, tokenizer, train = tiny
    model = tiny_model(tokenizer)
    trainer = build_trainer(model, tokenizer, train, quiet_args(tmp_path / "run", max_steps=1), lora=lora_config(model))
    trainer.train()
    folder = save_for_inference(trainer, tokenizer, tmp_path / "adapter")
    urls = hm.push_model(folder, "me/beauty-lora")
    assert urls == {"model": "https://hub.test/me/beauty-lora/commit/1"}
    snapshot = hub.snapshot("model", "me/beauty-lora")
    assert "base/model.safetensors" in hub.calls[-1][2]["files"]
    loaded, loaded_tokenizer = load_for_inference(snapshot)
    expected, _ = load_for_inference(folder)
    batch = loaded_tokenizer(["user <CT0><R0>"], return_tensors="pt")
    with torch.no_grad():  # the same files loaded twice: the same weights at the same alignments, so bit for bit
        assert torch.equal(loaded.generate(**batch, max_new_tokens=3), expected.generate(**batch, max_new_tokens=3))
    assert ModelCard.load(snapshot / "README.md").data.library_name == "peft"


def test_push_without_network_fails_in_one_line_and_writes_nothing(tiny, tmp_path, monkeypatch, capsys):
    _, tokenizer, _ = tiny
    folder = save_for_inference(tiny_model(tokenizer), tokenizer, tmp_path / "model")
    before = tree(folder)
    offline = FakeHub(tmp_path / "hub", fail=ConnectionError("[Errno -2] Name or service not known"))
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda api, *a, **k: offline.create_repo(api, *a, **k))
    assert main(["push", str(folder), "me/beauty-metaid", "--vocab-repo", "me/beauty-ids"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("hf-metaid push: error: could not push to the Hub dataset repository me/beauty-ids")
    assert "Name or service not known" in err
    assert tree(folder) == before and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_push_refuses_what_it_cannot_push(tiny, tmp_path, capsys):
    _, tokenizer, _ = tiny
    folder = save_for_inference(tiny_model(tokenizer), tokenizer, tmp_path / "model")
    assert main(["push", str(tmp_path / "nowhere"), "me/m"]) == 2
    assert "nowhere: no such model folder" in capsys.readouterr().err
    assert main(["push", str(folder), "not a repo"]) == 2
    assert "repo_id 'not a repo' is not a valid Hub repository name" in capsys.readouterr().err
    assert main(["push", str(folder), "me/m", "--vocab-repo", "me/m"]) == 2
    assert "vocab_repo must differ from repo_id" in capsys.readouterr().err
    (folder / "tokenizer.json").unlink()
    assert main(["push", str(folder), "me/m"]) == 2
    assert "missing tokenizer.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda v, t: hm.EntityVocabulary.from_pretrained(3), hm.InvalidArgumentError, "must be a folder, a file or"),
        (lambda v, t: hm.EntityVocabulary.from_pretrained(t / "none"), hm.SavedFileError, "no such vocabulary file"),
        (lambda v, t: hm.EntityVocabulary.from_pretrained(t), hm.SavedFileError, "no vocabulary here"),
        (lambda v, t: v.push_to_hub("not a repo"), hm.InvalidArgumentError, "not a valid Hub repository name"),
        (lambda v, t: v.save_pretrained(t / "v", model_repo="a b"), hm.InvalidArgumentError, "model_repo 'a b'"),
        (lambda v, t: hm.push_model(t / "none", "me/m"), hm.SavedFileError, "no such model folder"),
    ],
    ids=["name-type", "missing", "empty-folder", "repo-name", "model-repo-name", "push-missing"],
)
def test_bad_sharing_arguments_are_named(fitted, tmp_path, call, error, message):
    with pytest.raises(error, match=message):
        call(fitted[0], tmp_path)
    assert not (tmp_path / "v").exists()


def test_a_damaged_info_file_is_named(fitted, tmp_path):
    folder = Path(fitted[0].save_pretrained(tmp_path / "vocab"))
    (folder / "vocabulary_info.json").write_text('{"format_version": 1, "fing')
    with pytest.raises(hm.SavedFileError, match=r"vocabulary_info\.json: damaged JSON file"):
        hm.EntityVocabulary.from_pretrained(folder)
    (folder / "vocabulary_info.json").unlink()
    with pytest.raises(hm.SavedFileError, match=r"vocabulary_info\.json: missing"):
        hm.EntityVocabulary.from_pretrained(folder)
