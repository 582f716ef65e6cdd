"""Wrong types, values out of range, missing and damaged files: every public entry point and every command refuses
them with an error that names the thing at fault, and writes nothing.

Python cases check the error class and message. Command cases check the exit status 2, a single stderr line
``hf-metaid <command>: error: ...`` naming the culprit, no traceback, and that ``--out`` is absent or byte-identical
to what it was (no staging folder left beside it either).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import torch

import hf_metaid as hm
from conftest import random_vocabulary, subprocess_env, tiny_model, tiny_setup, write_beauty_lines
from hf_metaid.cli import main
from hf_metaid.data import build_training_prompts
from hf_metaid.evaluation.metrics import ranking_metrics
from hf_metaid.training.trainer import lora_config, training_arguments

datasets.disable_progress_bars()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A 60-user slice of Beauty, its vocabulary, and a full and a LoRA model trained on it for one step."""
    root = tmp_path_factory.mktemp("made")
    data = write_beauty_lines(root / "slice.txt")
    other = root / "other.txt"  # users and items the vocabulary has never seen
    other.write_text("".join(f"x{u} " + " ".join(f"y{u}-{k}" for k in range(4)) + "\n" for u in range(10)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        index = [
            "index",
            "--data",
            str(data),
            "--out",
            str(root / "vocab"),
            "--num-clusters",
            "4",
            "--embedding",
            "spectral",
            "--user-ids",  # the cases below ask for users by id
        ]
        assert main(index) == 0
        quick = ["--max-steps", "1", "--d-model", "32", "--batch-size", "8", "--warmup-steps", "0"]
        for name, extra in (("model", []), ("lora", ["--lora"])):
            argv = [
                "train",
                "--data",
                str(data),
                "--vocab",
                str(root / "vocab"),
                "--out",
                str(root / name),
                *quick,
                *extra,
            ]
            assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    interactions = hm.load_interactions(data)
    return SimpleNamespace(root=root, data=data, other=other, splits=hm.leave_one_out(interactions))


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """No case here may ask the Hub: a mistyped local path must fail at once."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"the Hub was asked for {args} {kwargs}")

    monkeypatch.setattr("huggingface_hub.snapshot_download", refuse)


def snapshot(path: Path) -> dict[str, bytes] | None:
    """Every file under ``path`` with its bytes (``None`` when absent), to prove nothing was written or changed."""
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def copy_of(made, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(made.root / name, target)
    return target


def cut(path: Path, keep: float = 0.5) -> None:
    """Truncate a file, as a save killed while writing it would have left it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ------------------------------------------------------------------------------------------------ command line
@dataclass
class Cli:
    """One command line: ``build(made, tmp_path)`` returns the arguments and the ``--out`` to watch (or None)."""

    name: str
    build: Callable
    says: str


def _index(made, tmp, *extra, data=None, out=None):
    out = out or tmp / "v"
    return ["index", "--data", str(data or made.data), "--out", str(out), "--num-clusters", "4", *extra], out


def _train(made, tmp, *extra, vocab=None, data=None, out=None):
    out = out or tmp / "m"
    vocab = vocab or made.root / "vocab"
    argv = ["train", "--data", str(data or made.data), "--vocab", str(vocab), "--out", str(out), "--max-steps", "1"]
    return [*argv, "--d-model", "32", "--warmup-steps", "0", *extra], out


def _file(tmp, name, content: bytes) -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


def _every_item_twice(sequence_file: Path) -> bytes:
    """A P5 text file whose every interaction was written twice (``u a a b b``), as a botched export leaves it."""
    lines = [line.split() for line in sequence_file.read_text().splitlines()]
    return "".join(
        " ".join([user] + [item for item in items for _ in range(2)]) + "\n" for user, *items in lines
    ).encode()


def _non_empty(tmp, marker: bool) -> Path:
    folder = tmp / "busy"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    if marker:
        (folder / "metaid_vocab.json").write_text("{}")
    return folder


def _damaged(made, tmp, name, damage) -> Path:
    folder = copy_of(made, tmp, name)
    damage(folder)
    return folder


def _on(command: str, folder: str, *extra: str, damage: Callable | None = None) -> Callable:
    """A command on one of the made model folders, or on a copy of it that ``damage`` changed."""

    def build(made, tmp):
        path = made.root / folder if damage is None else _damaged(made, tmp, folder, damage)
        return [command, str(path), *extra], None

    return build


def _vocabulary_renamed(folder: Path) -> None:
    """The folder's vocabulary with one user renamed: the same tokens, another id map."""
    old = hm.EntityVocabulary.load(folder / "metaid_vocab.json")
    users = ["renamed", *old.users[1:]]
    codes = (old.user_codes, old.item_codes, old.cluster_vectors, old.rank_vectors)
    hm.EntityVocabulary(users, old.items, *codes, scheme=old.scheme, seed=old.seed).save(folder / "metaid_vocab.json")


CLI_CASES = [
    # index: the data, the options, the output folder
    Cli("index-missing-data", lambda m, t: _index(m, t, data=t / "nope.txt"), "nope.txt: no such file"),
    Cli("index-data-is-a-folder", lambda m, t: _index(m, t, data=t), "a folder, not a file"),
    Cli("index-empty-data", lambda m, t: _index(m, t, data=_file(t, "e.txt", b"")), "empty: no interactions"),
    Cli(
        "index-not-utf8",
        lambda m, t: _index(m, t, data=_file(t, "l.txt", b"1 a b c\n2 \xe9 b c\n")),
        "l.txt: line 2: character 3 is not UTF-8",
    ),
    Cli(
        "index-cut-gzip",
        lambda m, t: _index(m, t, data=_file(t, "c.txt.gz", gzip.compress(m.data.read_bytes())[:200])),
        "c.txt.gz: cannot be read",
    ),
    Cli(
        "index-csv-field-too-long",
        lambda m, t: _index(m, t, data=_file(t, "n.csv", b"user,item\nu,a\nu," + b"b" * 200_000 + b"\nu,c\n")),
        "n.csv: line 3: field larger than field limit",
    ),
    Cli(
        "index-control-character",
        lambda m, t: _index(m, t, data=_file(t, "n.csv", b"user,item\nu,a\x00\nu,b\nu,c\n")),
        "n.csv: line 2: item id 'a\\x00' contains a control character",
    ),
    Cli("index-not-parquet", lambda m, t: _index(m, t, data=_file(t, "p.parquet", b"PAR")), "not a readable Parquet"),
    Cli(
        "index-other-column-names",
        lambda m, t: _index(m, t, data=_file(t, "n.csv", b"uid,iid\nu,a\nu,b\nu,c\n")),
        "n.csv: line 1: missing column(s) ['user', 'item']; found ['uid', 'iid']; name the file's own columns with "
        "--user-column (user_column=), --item-column (item_column=)",
    ),
    Cli(
        "index-columns-of-a-sequence-file",
        lambda m, t: _index(m, t, "--user-column", "uid"),
        "slice.txt: a sequence file ('user item item ...' per line) has no columns, yet user_column='uid' was given",
    ),
    Cli(
        "index-short-user",
        lambda m, t: _index(m, t, data=_file(t, "s.csv", b"user,item\nu,a\nu,b\nu,c\nv,a\nv,b\n")),
        "s.csv: line 5: user 'v' has 2 interaction(s); at least 3 are needed (leave-one-out keeps the last two for "
        "validation and test); drop such users with --min-interactions 3",
    ),
    Cli(
        "index-min-interactions-under-3",
        lambda m, t: _index(m, t, "--min-interactions", "2"),
        "argument --min-interactions: must be >= 3, got '2'",
    ),
    Cli(
        "index-every-user-dropped",
        lambda m, t: _index(m, t, "--min-interactions", "1000"),
        "slice.txt: no user has 1000 interactions or more",
    ),
    Cli(
        "index-doubled-file",
        lambda m, t: _index(m, t, data=_file(t, "d.txt", _every_item_twice(m.data))),
        "interactions copy an earlier one (the user's previous item again, in data without timestamps; e.g. line 1: ",
    ),
    Cli(
        "index-duplicates-dropped-and-kept",
        lambda m, t: _index(m, t, "--drop-duplicates", "--keep-duplicates"),
        "argument --keep-duplicates: not allowed with argument --drop-duplicates",
    ),
    Cli("index-zero-clusters", lambda m, t: _index(m, t, "--num-clusters", "0"), "num_clusters must be"),
    Cli("index-negative-seed", lambda m, t: _index(m, t, "--seed", "-1"), "argument --seed: must be >= 0"),
    Cli("index-bad-scheme", lambda m, t: _index(m, t, "--scheme", "best"), "invalid choice: 'best'"),
    Cli("index-out-not-empty", lambda m, t: _index(m, t, out=_non_empty(t, True)), "is not empty; pass --overwrite"),
    Cli(
        "index-overwrite-foreign-folder",
        lambda m, t: _index(m, t, "--overwrite", out=_non_empty(t, False)),
        "holds files hf_metaid did not write",
    ),
    Cli("index-out-is-a-file", lambda m, t: _index(m, t, out=_file(t, "f", b"x")), "exists and is not a folder"),
    # train: the vocabulary, the settings, the output folder
    Cli("train-missing-vocab", lambda m, t: _train(m, t, vocab=t / "nope.json"), "nope.json: no such vocabulary"),
    Cli(
        "train-cut-vocab",
        lambda m, t: _train(m, t, vocab=_file(t, "v.json", (m.root / "vocab/metaid_vocab.json").read_bytes()[:99])),
        "v.json: not a valid vocabulary file",
    ),
    Cli("train-vocab-of-other-data", lambda m, t: _train(m, t, data=m.other), "unknown item id 'y0-0'"),
    Cli("train-zero-epochs", lambda m, t: _train(m, t, "--epochs", "0"), "epochs must be a finite number > 0"),
    Cli("train-zero-d-model", lambda m, t: _train(m, t, "--d-model", "0"), "d_model must be an int >= 8"),
    Cli("train-d-model-not-4x", lambda m, t: _train(m, t, "--d-model", "30"), "d_model must be a multiple of 4"),
    Cli("train-zero-layers", lambda m, t: _train(m, t, "--layers", "0"), "positive integers, got '0'"),
    Cli("train-nan-lr", lambda m, t: _train(m, t, "--learning-rate", "nan"), "learning_rate must be a finite number"),
    Cli("train-zero-history", lambda m, t: _train(m, t, "--max-history", "0"), "max_history must be an int >= 1"),
    Cli("train-negative-threads", lambda m, t: _train(m, t, "--threads", "-1"), "argument --threads: must be >= 0"),
    Cli("train-unknown-templates", lambda m, t: _train(m, t, "--templates", "fancy"), "templates 'fancy'"),
    Cli(
        "train-templates-without-history",
        lambda m, t: _train(m, t, "--templates", str(_file(t, "t.json", b'{"sequential": {"seen": ["user {user}"]}}'))),
        "lacks {history}",
    ),
    Cli("train-missing-local-base", lambda m, t: _train(m, t, "--base", "./no-base"), "base ./no-base: no such folder"),
    Cli("train-out-not-empty", lambda m, t: _train(m, t, out=m.root / "model"), "is not empty; pass --overwrite"),
    # evaluate and recommend: the model folder
    Cli("evaluate-missing-folder", lambda m, t: (["evaluate", str(t / "nope")], None), "nope: no such folder"),
    Cli("evaluate-mistyped-name", lambda m, t: (["evaluate", "metaid-dem"], None), "metaid-dem: no such folder"),
    Cli("evaluate-dot-path", lambda m, t: (["evaluate", "./a/b"], None), "./a/b: no such folder"),
    Cli("evaluate-in-a-local-folder", lambda m, t: (["evaluate", "runs/nope"], None), "runs/nope: no such folder"),
    Cli(
        "evaluate-not-a-model",
        lambda m, t: (["evaluate", str(_non_empty(t, False))], None),
        "not a complete model folder written by hf_metaid: missing config.json",
    ),
    Cli(
        "evaluate-no-weights",
        _on("evaluate", "model", damage=lambda f: (f / "model.safetensors").unlink()),
        "missing model.safetensors",
    ),
    Cli(
        "evaluate-cut-weights",
        _on("evaluate", "model", damage=lambda f: cut(f / "model.safetensors")),
        "model.safetensors: damaged weights file",
    ),
    Cli(
        "evaluate-cut-config",
        _on("evaluate", "model", damage=lambda f: cut(f / "config.json")),
        "config.json: damaged JSON file",
    ),
    Cli(
        "evaluate-cut-tokenizer",
        _on("evaluate", "model", damage=lambda f: cut(f / "tokenizer.json")),
        "tokenizer.json: damaged JSON file",
    ),
    Cli(
        "evaluate-cut-tokenizer-vocabulary",
        _on("evaluate", "model", damage=lambda f: cut(f / "metaid_vocab.json")),
        "metaid_vocab.json: not a valid vocabulary file",
    ),
    Cli(
        "evaluate-other-data",
        lambda m, t: (["evaluate", str(m.root / "model"), "--data", str(m.other)], None),
        "knows 0 of the split's 10 target items and 0 of its 10 users",
    ),
    Cli(
        "evaluate-template-without-its-placeholder",  # the history is read in the decoder: the prompt shows the user
        _on("evaluate", "model", "--template", "items {history}"),
        "direct template with {user}",
    ),
    Cli("evaluate-zero-cutoff", _on("evaluate", "model", "--cutoffs", "0"), "--cutoffs: cut-offs"),
    Cli(
        "evaluate-lora-cut-base",
        _on("evaluate", "lora", damage=lambda f: cut(f / "base" / "model.safetensors", keep=0.9)),
        "base/model.safetensors: damaged weights file",
    ),
    Cli(
        "evaluate-lora-without-base",
        _on("evaluate", "lora", damage=lambda f: shutil.rmtree(f / "base")),
        "base is not a complete model folder written by hf_metaid: missing config.json",
    ),
    Cli(
        "recommend-cut-adapter",
        _on("recommend", "lora", "--user", "1", damage=lambda f: cut(f / "adapter_model.safetensors")),
        "adapter_model.safetensors: damaged weights file",
    ),
    Cli(
        "recommend-other-vocabulary",
        _on("recommend", "model", "--user", "1", damage=_vocabulary_renamed),
        "tokenizer and model were built for different ID vocabularies",
    ),
    Cli("recommend-nobody", _on("recommend", "model"), "give --user, --history"),
    Cli("recommend-unknown-user", _on("recommend", "lora", "--user", "nobody"), "unknown user id 'nobody'"),
    Cli("recommend-unknown-item", _on("recommend", "model", "--history", "1,nope"), "unknown item id 'nope'"),
    Cli("recommend-zero-k", _on("recommend", "model", "--k", "0"), "--k: must be >= 1"),
    # demo
    Cli(
        "demo-out-not-empty",
        lambda m, t: (["demo", "--data", str(m.data), "--out", str(m.root / "model")], m.root / "model"),
        "is not empty; pass --overwrite",
    ),
    Cli(
        "demo-zero-epochs",
        lambda m, t: (["demo", "--data", str(m.data), "--out", str(t / "d"), "--epochs", "0"], t / "d"),
        "epochs must be",
    ),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[case.name for case in CLI_CASES])
def test_command_refuses_with_one_line(case, made, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()  # a local folder: "runs/..." is a local path, not a Hub repository
    argv, out = case.build(made, tmp_path)
    before = snapshot(out) if out is not None else None
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as done:  # argparse's refusals
        code = done.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(f"hf-metaid {argv[0]}: error: "), err
    assert case.says in lines[0]
    if out is not None:
        assert snapshot(out) == before
        assert not list(out.parent.glob(f".{out.name}.*")), "a staging folder was left behind"


@pytest.mark.slow
def test_the_console_command_prints_one_line(made, tmp_path):
    """The same rule through the real console entry, where library warnings and logging reach stderr too: a LoRA
    folder is loaded (PEFT, transformers), then the data is refused."""
    command = [sys.executable, "-m", "hf_metaid.cli", "evaluate", str(made.root / "lora"), "--data", str(made.other)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=subprocess_env())
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith("hf-metaid evaluate: error: ")


# ------------------------------------------------------------------------------------------------- Python API
@pytest.fixture(scope="module")
def kit(made, tmp_path_factory):
    """What the Python cases call with: a tiny model, its tokenizer, splits and tokenized prompts."""
    split, tokenizer, train = tiny_setup()
    return SimpleNamespace(
        made=made,
        split=split,
        tokenizer=tokenizer,
        train=train,
        model=tiny_model(tokenizer).eval(),
        vocab=tokenizer.entity_vocabulary,
        args=training_arguments(tmp_path_factory.mktemp("run"), max_steps=1),
        tmp=tmp_path_factory.mktemp("api"),
    )


@dataclass
class Api:
    """One call: ``call(kit)`` must raise ``error`` with ``says`` in its message; ``out(kit)``, where given, is a
    path the call was asked to write, which must stay as it was."""

    name: str
    call: Callable
    error: type[Exception]
    says: str
    out: Callable | None = None


def _recommend(kit, **kwargs):
    return kit.model.recommend(kit.tokenizer, **{"user": "u1", "history": ["i1"], **kwargs})


def _evaluate(k, **kwargs):
    return hm.evaluate_recommender(k.model, k.tokenizer, kwargs.pop("split", k.split["test"]), progress=False, **kwargs)


def _build(k, **kwargs):
    given = {"model": k.model, "tokenizer": k.tokenizer, "train_dataset": k.train, "args": k.args, **kwargs}
    return hm.build_trainer(**given)


def _save(k, name, **kwargs):
    return hm.save_for_inference(
        kwargs.pop("model", k.model), kwargs.pop("tokenizer", k.tokenizer), k.tmp / name, **kwargs
    )


def _vocabulary(users=("u",), user_codes=((0, 0),), **kwargs):
    return hm.EntityVocabulary(
        list(users) if isinstance(users, tuple) else users, ["i"], user_codes, [[0, 1]], [[1.0]], **kwargs
    )


def _file_with(k, name, text):
    path = k.tmp / name
    path.write_text(text)
    return path


def _other_split():
    rows = {
        "user": [f"x{u}" for u in range(4) for _ in range(3)],
        "item": [f"y{i}" for _ in range(4) for i in range(3)],
    }
    return hm.leave_one_out(hm.load_interactions(datasets.Dataset.from_dict(rows)))["test"]


def _busy(k):
    folder = k.tmp / "busy"
    folder.mkdir(exist_ok=True)
    (folder / "metaid_vocab.json").write_text("{}")
    return folder


BAD = hm.InvalidArgumentError
API_CASES = [
    # recommend / recommend_batch
    Api("recommend-history-string", lambda k: _recommend(k, history="12"), BAD, "history must be a list of ids"),
    Api("recommend-history-of-floats", lambda k: _recommend(k, history=[1.5]), BAD, "history[0] must be a raw id"),
    Api("recommend-k-zero", lambda k: _recommend(k, k=0), BAD, "k must be an integer >= 1, got 0"),
    Api("recommend-k-float", lambda k: _recommend(k, k=2.5), BAD, "k must be an integer, got float 2.5"),
    Api("recommend-k-bool", lambda k: _recommend(k, k=True), BAD, "k must be an integer, got bool"),
    Api("recommend-mode", lambda k: _recommend(k, mode="greedy"), BAD, "mode must be one of 'beam', 'exact'"),
    Api("recommend-beams", lambda k: _recommend(k, num_beams=0), BAD, "num_beams must be an integer >= 1"),
    Api("recommend-exclude-seen", lambda k: _recommend(k, exclude_seen="no"), BAD, "exclude_seen must be True or"),
    Api("recommend-max-history", lambda k: _recommend(k, max_history=0), BAD, "max_history must be an integer >= 1"),
    Api("recommend-nobody", lambda k: _recommend(k, user=None, history=None), BAD, "a known user, a history"),
    Api("recommend-unknown-user", lambda k: _recommend(k, user="nobody"), hm.UnknownEntityError, "'nobody'"),
    Api(
        "recommend-batch-lengths",
        lambda k: k.model.recommend_batch(k.tokenizer, ["u1", "u2"], [["i1"]]),
        BAD,
        "histories has 1 entries for 2 users",
    ),
    Api("recommend-template", lambda k: _recommend(k, template="user {user}"), BAD, "template with {history}"),
    Api(
        "set-prompt-format",
        lambda k: tiny_model(k.tokenizer).set_prompt_format({"sequential": {"seen": ["user {user}"]}}),
        BAD,
        "lacks {history}",
    ),
    Api(
        "set-prompt-format-mistyped-user",
        lambda k: tiny_model(k.tokenizer).set_prompt_format({"direct": {"seen": ["user {usr}"]}}),
        BAD,
        "lacks {user}",
    ),
    # evaluation
    Api("evaluate-split-list", lambda k: _evaluate(k, split=[1]), BAD, "split must be a datasets.Dataset"),
    Api("evaluate-ks-zero", lambda k: _evaluate(k, ks=(0,)), BAD, "every cut-off in ks must be a positive integer"),
    Api("evaluate-ks-string", lambda k: _evaluate(k, ks="5"), BAD, "ks must be a cut-off or a list of them"),
    Api("evaluate-task", lambda k: _evaluate(k, task="next"), BAD, "task must be one of 'sequential', 'direct'"),
    Api("evaluate-limit", lambda k: _evaluate(k, limit=0), BAD, "limit must be an integer >= 1"),
    Api("evaluate-batch-size", lambda k: _evaluate(k, batch_size=2.0), BAD, "batch_size must be an integer"),
    Api("evaluate-known-share", lambda k: _evaluate(k, min_known_targets=2), BAD, "min_known_targets must be"),
    Api("evaluate-other-data", lambda k: _evaluate(k, split=_other_split()), hm.UnknownDataError, "knows 0 of"),
    Api(
        "evaluate-tokenizer",
        lambda k: hm.evaluate_recommender(k.model, object(), k.split["test"]),
        BAD,
        "tokenizer must be a MetaIDTokenizer",
    ),
    Api(
        "evaluator-misspelt-option",
        lambda k: hm.RecommendationEvaluator(k.tokenizer, k.split["validation"], limt=3),
        BAD,
        "unexpected keyword argument 'limt'",
    ),
    Api("ranking-metrics-ks", lambda k: ranking_metrics([["a"]], ["a"], ks=(2.5,)), BAD, "every cut-off in ks"),
    Api("ranking-metrics-lengths", lambda k: ranking_metrics([["a"]], ["a", "b"]), BAD, "one entry per user"),
    Api("ranking-metrics-string", lambda k: ranking_metrics([["a"], ["b"]], "ab"), BAD, "targets must have one entry"),
    Api(
        "ranking-metrics-catalogue",
        lambda k: ranking_metrics([["a"]], ["a"], valid_items="abc"),
        BAD,
        "valid_items must be a collection of item ids",
    ),
    # training
    Api("trainer-model", lambda k: _build(k, model="model"), BAD, "expected a MetaIDForConditionalGeneration"),
    Api("trainer-dataset", lambda k: _build(k, train_dataset=[1]), BAD, "train_dataset must be a datasets.Dataset"),
    Api("trainer-args", lambda k: _build(k, args={"lr": 1}), BAD, "args must be Seq2SeqTrainingArguments"),
    Api("trainer-lora", lambda k: _build(k, lora="yes"), BAD, "lora must be None, True, False or a peft.LoraConfig"),
    Api("trainer-source-length", lambda k: _build(k, max_source_length=0), BAD, "max_source_length must be"),
    Api("arguments-bf16", lambda k: training_arguments(k.tmp, bf16="yes"), BAD, "bf16 must be True, False or 'auto'"),
    Api(
        "arguments-misspelt",
        lambda k: training_arguments(k.tmp, num_train_epoch=3),
        BAD,
        "unexpected keyword argument 'num_train_epoch'",
    ),
    Api("arguments-output-dir", lambda k: training_arguments(None), BAD, "output_dir must be a path"),
    Api("lora-rank", lambda k: lora_config(k.model, r=0), BAD, "r must be an integer >= 1"),
    Api("lora-dropout", lambda k: lora_config(k.model, dropout=1.5), BAD, "dropout must be a number >= 0 and <= 1"),
    Api("lora-targets", lambda k: lora_config(k.model, target_modules="qv"), BAD, "target_modules must be a list"),
    Api("lora-plain-model", lambda k: lora_config(torch.nn.Linear(2, 2)), BAD, "the model has no META ID tokens"),
    Api(
        "prompts-table",
        lambda k: build_training_prompts([1], k.tokenizer),
        BAD,
        "training rows need columns 'user' and 'item'",
    ),
    Api("prompts-task", lambda k: build_training_prompts(k.split["train"], k.tokenizer, tasks=("next",)), BAD, "next"),
    Api(
        "prompts-per-sample",
        lambda k: build_training_prompts(k.split["train"], k.tokenizer, templates_per_sample=0),
        BAD,
        "templates_per_sample must be 'all' or an int",
    ),
    Api(
        "prompts-tokenizer",
        lambda k: build_training_prompts(k.split["train"], object()),
        BAD,
        "tokenizer must be a MetaIDTokenizer",
    ),
    Api("model-settings", lambda k: hm.ModelSettings(d_model=30), BAD, "d_model must be a multiple of 4"),
    Api("training-settings", lambda k: hm.TrainingSettings(epochs=0), BAD, "epochs must be a finite number > 0"),
    Api("tiny-config-field", lambda k: hm.tiny_t5_config(d_modl=64), BAD, "unknown config field(s) ['d_modl']"),
    Api("tiny-config-type", lambda k: hm.tiny_t5_config(d_model="big"), BAD, "Field 'd_model' expected int"),
    # saving and loading
    Api(
        "save-not-a-model",
        lambda k: _save(k, "s1", model="model"),
        BAD,
        "trainer_or_model must be a Seq2SeqTrainer or a MetaIDForConditionalGeneration",
        lambda k: k.tmp / "s1",
    ),
    Api("save-overwrite", lambda k: _save(k, "s2", overwrite="yes"), BAD, "overwrite must be", lambda k: k.tmp / "s2"),
    Api(
        "save-other-tokenizer",
        lambda k: _save(k, "s3", tokenizer=hm.MetaIDTokenizer.from_base(None, random_vocabulary(seed=5))),
        hm.VocabularyMismatchError,
        "different ID vocabularies",
        lambda k: k.tmp / "s3",
    ),
    Api("save-existing", lambda k: (_busy(k), _save(k, "busy")), hm.OutputExistsError, "busy is not empty", _busy),
    Api("load-missing", lambda k: hm.load_for_inference(k.tmp / "nope"), hm.SavedFileError, "nope: no such folder"),
    Api(
        "load-file",
        lambda k: hm.load_for_inference(_file_with(k, "f.txt", "x")),
        hm.SavedFileError,
        "is a file, not a model folder",
    ),
    Api("load-folder-int", lambda k: hm.load_for_inference(3), BAD, "the model folder must be a non-empty path"),
    Api("load-base-int", lambda k: hm.load_for_inference(k.made.root / "lora", base=3), BAD, "base must be None"),
    Api(
        "load-base-for-full-model",
        lambda k: hm.load_for_inference(k.made.root / "model", base="t5-small"),
        BAD,
        "holds a full model; base= is only for LoRA adapters",
    ),
    # data
    Api("load-interactions-int", lambda k: hm.load_interactions(3), BAD, "source must be a path"),
    Api("load-interactions-minimum", lambda k: hm.load_interactions(min_interactions=0), BAD, "min_interactions"),
    Api(
        "load-interactions-format",
        lambda k: hm.load_interactions(k.made.data, format="xls"),
        hm.InteractionFormatError,
        "unknown format 'xls'",
    ),
    Api(
        "load-interactions-columns",
        lambda k: hm.load_interactions(k.made.data, user_column="item"),
        BAD,
        "user_column and item_column must differ",
    ),
    Api("leave-one-out-list", lambda k: hm.leave_one_out([1]), BAD, "interactions must be a datasets.Dataset"),
    Api("catalogue-list", lambda k: hm.catalogue({"user": []}), BAD, "interactions must be a datasets.Dataset"),
    # vocabularies, tokenizers, models, indexers
    Api("vocabulary-users-string", lambda k: _vocabulary(users="u"), BAD, "users must be a list of raw ids"),
    Api("vocabulary-code-shape", lambda k: _vocabulary(user_codes=[[0, 0, 0]]), BAD, "user_codes must have shape"),
    Api(
        "vocabulary-prefixes",
        lambda k: _vocabulary(cluster_prefix="X", rank_prefix="X"),
        BAD,
        "cluster_prefix and rank_prefix must differ",
    ),
    Api("vocabulary-seed", lambda k: _vocabulary(seed=-1), BAD, "seed must be an integer >= 0"),
    Api("vocabulary-from-list", lambda k: hm.EntityVocabulary.from_dict([]), BAD, "a vocabulary is a dict"),
    Api(
        "vocabulary-missing-file",
        lambda k: hm.EntityVocabulary.load(k.tmp / "v.json"),
        hm.SavedFileError,
        "v.json: no such vocabulary file",
    ),
    Api(
        "vocabulary-not-json",
        lambda k: hm.EntityVocabulary.load(_file_with(k, "w.json", '{"users": [')),
        hm.SavedFileError,
        "w.json: not a valid vocabulary file",
    ),
    Api(
        "vocabulary-a-list",
        lambda k: hm.EntityVocabulary.load(_file_with(k, "l.json", "[]")),
        hm.SavedFileError,
        "l.json: not a valid vocabulary file (a vocabulary is a dict",
    ),
    Api(
        "tokenizer-vocabulary",
        lambda k: hm.MetaIDTokenizer.from_base(None, 3),
        BAD,
        "vocabulary must be an EntityVocabulary",
    ),
    Api(
        "tokenizer-vocabulary-path",
        lambda k: hm.MetaIDTokenizer.from_base(None, "vocab"),
        hm.SavedFileError,
        "vocab: no such vocabulary file or folder",
    ),
    Api("tokenizer-base", lambda k: hm.MetaIDTokenizer.from_base(3, k.vocab), BAD, "base must be None, a checkpoint"),
    Api("model-alpha", lambda k: _model(k, alpha="0.1"), BAD, "alpha must be a finite number, got str"),
    Api("model-alpha-nan", lambda k: _model(k, alpha=float("nan")), BAD, "alpha must be a finite number"),
    Api("model-init", lambda k: _model(k, init_new_rows="zeros"), BAD, "init_new_rows must be one of"),
    Api("model-seed", lambda k: _model(k, seed=-1), BAD, "seed must be an integer >= 0"),
    Api("model-tree", lambda k: _model(k, tree_softmax="yes"), BAD, "tree_softmax must be True or False"),
    Api("model-tokenizer", lambda k: _model(k, tokenizer="tok"), BAD, "tokenizer must be a MetaIDTokenizer"),
    Api("model-base", lambda k: _model(k, base=3), BAD, "base must be a checkpoint name/path, a T5Config or a dict"),
    Api("indexer-clusters", lambda k: hm.MetaIDIndexer(num_clusters=0), BAD, "num_clusters must be"),
    Api("indexer-clusters-float", lambda k: hm.MetaIDIndexer(num_clusters=2.5), BAD, "got 2.5"),
    Api("indexer-misspelt", lambda k: hm.MetaIDIndexer(clusters=3), BAD, "unknown MetaIDIndexerConfig setting(s)"),
    Api("indexer-fit-list", lambda k: hm.MetaIDIndexer().fit([1]), BAD, "expected a datasets.Dataset"),
    Api(
        "decode-items-k",
        lambda k: hm.decode_items(k.model, *_prompt(k), k.model.item_tree(k.tokenizer), k=0),
        BAD,
        "k must be an integer >= 1",
    ),
]


def _model(k, **kwargs):
    given = {"base": hm.tiny_t5_config(), "tokenizer": k.tokenizer, **kwargs}
    return hm.MetaIDForConditionalGeneration.from_base(given.pop("base"), given.pop("tokenizer"), **given)


def _prompt(k):
    batch = k.tokenizer([f"user {k.tokenizer.user_tokens('u1')}"], return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


@pytest.mark.parametrize("case", API_CASES, ids=[case.name for case in API_CASES])
def test_public_function_refuses_naming_the_culprit(case, kit):
    out = case.out(kit) if case.out else None
    before = snapshot(out) if out is not None else None
    with pytest.raises(case.error) as raised:
        case.call(kit)
    assert isinstance(raised.value, hm.MetaIDError)
    assert case.says in str(raised.value)
    if out is not None:
        assert snapshot(out) == before
        assert not list(out.parent.glob(f".{out.name}.*"))
