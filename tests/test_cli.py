"""The hf-metaid command: help texts, a tiny end-to-end run, and user mistakes reported without a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import datasets
import pytest
from huggingface_hub import ModelCard

import hf_metaid as hm
from hf_metaid.cli import main

SUBCOMMANDS = ("index", "train", "extend", "evaluate", "recommend", "demo", "push")


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """40 users over 30 items, 6 interactions each, with overlapping patterns so indexing has structure."""
    path = tmp_path_factory.mktemp("data") / "tiny.txt"
    lines = [" ".join([f"u{u}"] + [f"i{(u * 3 + k * (1 + u % 4)) % 30}" for k in range(6)]) for u in range(40)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert "usage: hf-metaid " + command in capsys.readouterr().out


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "hf_metaid.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "index" in result.stdout and "demo" in result.stdout


def test_bad_data_file_is_one_line_error_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("u1 a b c\nu2 a\n")
    assert main(["index", str(bad), "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"hf-metaid index: error: {bad}: line 2" in err
    assert not (tmp_path / "v").exists()  # nothing half-written


def test_missing_model_folder_and_bad_cutoffs(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "hf-metaid evaluate: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["evaluate", str(tmp_path), "--k", "5,x"])
    assert done.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err


def test_index_train_evaluate_recommend_end_to_end(tiny_file, tmp_path, capsys):
    vocab_dir, model_dir = tmp_path / "vocab", tmp_path / "model"
    assert main(["index", str(tiny_file), "--out", str(vocab_dir), "--clusters", "4", "--embedding", "spectral"]) == 0
    assert "new tokens" in capsys.readouterr().out and (vocab_dir / "metaid_vocab.json").is_file()
    train = ["train", str(tiny_file), "--vocab", str(vocab_dir / "metaid_vocab.json"), "--out", str(model_dir)]
    assert main([*train, "--max-steps", "3", "--batch-size", "16", "--d-model", "32", "--warmup", "0"]) == 0
    assert "train loss" in capsys.readouterr().out
    assert main(["evaluate", str(model_dir), "--data", str(tiny_file), "--k", "1,5", "--limit", "10"]) == 0
    *_, counts, last = capsys.readouterr().out.strip().splitlines()
    assert last.startswith("HR@1=") and "NDCG@5=" in last
    assert counts.startswith("users=10 known_users=10 known_targets=10 ")
    other = tmp_path / "other.txt"  # data the model has never seen: refused, or evaluated with --force
    other.write_text("".join(f"x{u} y1 y2 y3 y{u}\n" for u in range(4)))
    assert main(["evaluate", str(model_dir), "--data", str(other)]) == 2
    assert "knows 0 of the split's 4 target items and 0 of its 4 users" in capsys.readouterr().err
    assert main(["evaluate", str(model_dir), "--data", str(other), "--force"]) == 0
    assert "users=4 known_users=0 known_targets=0 " in capsys.readouterr().out
    assert main(["recommend", str(model_dir), "--user", "u3", "--k", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2 + 3
    assert main(["recommend", str(model_dir), "--user", "nobody"]) == 2
    assert "unknown user id 'nobody'" in capsys.readouterr().err
    assert main(["recommend", str(model_dir), "--history", "i1,i2", "--k", "2"]) == 0  # a new user
    capsys.readouterr()
    assert main(["recommend", str(model_dir), "--user", "u3", "--history", "i1,nope"]) == 2
    assert "unknown item id 'nope'" in capsys.readouterr().err


def test_a_lora_model_serves_every_command(tiny_file, tmp_path, capsys):
    """A LoRA folder from train carries what rebuilds its base (here, built from a configuration: its weights), so
    recommend and evaluate take it as they take a full model."""
    vocab_dir, lora = tmp_path / "vocab", tmp_path / "lora"
    assert main(["index", str(tiny_file), "--out", str(vocab_dir), "--clusters", "4", "--embedding", "spectral"]) == 0
    quick = ["--max-steps", "2", "--batch-size", "8", "--d-model", "32", "--warmup", "0"]
    assert main(["train", str(tiny_file), "--vocab", str(vocab_dir), "--out", str(lora), "--lora", *quick]) == 0
    assert (lora / "adapter_config.json").is_file() and (lora / "base" / "model.safetensors").is_file()
    capsys.readouterr()
    assert main(["recommend", str(lora), "--user", "u3", "--k", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2 + 3
    assert main(["evaluate", str(lora), "--data", str(tiny_file), "--limit", "5"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("HR@5=")


def test_out_is_replaced_only_with_overwrite(tiny_file, tmp_path, capsys):
    """index and train refuse a non-empty --out; with --overwrite the new folder replaces the old one whole."""
    vocab_dir, model_dir = tmp_path / "vocab", tmp_path / "model"
    index = ["index", str(tiny_file), "--out", str(vocab_dir), "--clusters", "4", "--embedding", "spectral"]
    assert main(index) == 0
    first = (vocab_dir / "metaid_vocab.json").read_bytes()
    assert main([*index, "--seed", "1"]) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert (vocab_dir / "metaid_vocab.json").read_bytes() == first
    assert main([*index, "--seed", "1", "--overwrite"]) == 0
    assert (vocab_dir / "metaid_vocab.json").read_bytes() != first
    train = ["train", str(tiny_file), "--vocab", str(vocab_dir), "--out", str(model_dir), "--max-steps", "1"]
    quick = ["--batch-size", "8", "--d-model", "32", "--warmup", "0"]
    assert main([*train, *quick]) == 0
    (model_dir / "notes.txt").write_text("kept until replaced")
    weights = (model_dir / "model.safetensors").read_bytes()
    assert main([*train, *quick, "--seed", "1"]) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert (model_dir / "model.safetensors").read_bytes() == weights and (model_dir / "notes.txt").is_file()
    assert main([*train, *quick, "--seed", "1", "--overwrite"]) == 0
    assert (model_dir / "model.safetensors").read_bytes() != weights and not (model_dir / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # nothing left beside it
    assert main(["recommend", str(model_dir), "--user", "u3", "--k", "2"]) == 0


def train_on_a_degree_ranked_spectral_vocabulary(tiny_file, tmp_path) -> list[str]:
    """``hf-metaid index`` with spectral IDs ranked by degree, the SVD in single precision (checked in the saved
    params); returns the start of a one-step ``hf-metaid train`` command on that vocabulary."""
    vocab_dir = tmp_path / "vocab"
    index = ["index", str(tiny_file), "--out", str(vocab_dir), "--clusters", "4", "--embedding", "spectral"]
    assert main([*index, "--rank-by", "degree", "--svd-precision", "float32"]) == 0
    params = json.loads((vocab_dir / "metaid_vocab.json").read_text())["metadata"]["params"]
    assert (params["embedding"], params["rank_by"], params["svd_precision"]) == ("spectral", "degree", "float32")
    return ["train", str(tiny_file), "--vocab", str(vocab_dir / "metaid_vocab.json"), "--max-steps", "1"]


def test_templates_option_records_the_training_words(tiny_file, tmp_path, capsys):
    train = train_on_a_degree_ranked_spectral_vocabulary(tiny_file, tmp_path)
    quick = ["--batch-size", "8", "--d-model", "32", "--warmup", "0", "--max-history", "3"]
    assert main([*train, "--out", str(tmp_path / "c"), "--templates", "compact", *quick]) == 0
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["metaid_prompt_templates"]["sequential"]["seen"] == ["user {user} items {history}"]
    assert config["metaid_max_history"] == 3
    assert config["metaid_tree_softmax"] is False  # train keeps the paper's softmax unless asked
    assert main([*train, "--out", str(tmp_path / "t"), "--tree-softmax", *quick]) == 0
    assert json.loads((tmp_path / "t" / "config.json").read_text())["metaid_tree_softmax"] is True
    assert main(["recommend", str(tmp_path / "t"), "--user", "u3", "--k", "3"]) == 0  # reloads with its item table
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"sequential": {"seen": ["u {user} h {history}"]}}))
    assert main([*train, "--out", str(tmp_path / "m"), "--templates", str(mine), *quick]) == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["metaid_prompt_templates"] == {"sequential": {"seen": ["u {user} h {history}"]}}
    capsys.readouterr()
    assert main([*train, "--out", str(tmp_path / "x"), "--templates", "fancy"]) == 2
    assert "templates 'fancy': not one of openp5, compact" in capsys.readouterr().err
    mine.write_text(json.dumps({"sequential": {"seen": ["no slots"]}}))
    assert main([*train, "--out", str(tmp_path / "x"), "--templates", str(mine)]) == 2
    assert f"{mine}: bad templates file" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_history_in_decoder_option_trains_the_mode_and_records_it(tiny_file, tmp_path, capsys):
    train = train_on_a_degree_ranked_spectral_vocabulary(tiny_file, tmp_path)
    quick = ["--batch-size", "8", "--d-model", "32", "--warmup", "0", "--templates", "compact", "--max-history", "3"]
    assert main([*train, "--out", str(tmp_path / "d"), "--history-in-decoder", "--tree-softmax", *quick]) == 0
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    assert (config["metaid_history_in_decoder"], config["metaid_max_history"]) == (True, 3)
    assert main(["evaluate", str(tmp_path / "d"), "--data", str(tiny_file), "--limit", "10", "--exclude-seen"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("HR@5=")
    assert main(["recommend", str(tmp_path / "d"), "--user", "u3", "--history", "i1,i2", "--k", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2 + 3
    assert main([*train, "--out", str(tmp_path / "p"), *quick]) == 0  # the paper's prompts unless asked
    assert json.loads((tmp_path / "p" / "config.json").read_text())["metaid_history_in_decoder"] is False


def test_tiny_model_shape_options(tiny_file, tmp_path, capsys):
    train = train_on_a_degree_ranked_spectral_vocabulary(tiny_file, tmp_path)
    quick = ["--batch-size", "8", "--d-model", "32", "--warmup", "0"]
    assert main([*train, "--out", str(tmp_path / "a"), *quick, "--layers", "1+3", "--d-ff", "48"]) == 0
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (config["num_layers"], config["num_decoder_layers"], config["d_ff"]) == (1, 3, 48)
    assert main([*train, "--out", str(tmp_path / "b"), *quick, "--layers", "3"]) == 0
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert (config["num_layers"], config["num_decoder_layers"], config["d_ff"]) == (3, 3, 64)  # d_ff 0: 2 x d_model
    capsys.readouterr()
    for bad in ("0", "1+x", "1+2+3"):
        with pytest.raises(SystemExit) as done:
            main([*train, "--out", str(tmp_path / "x"), "--layers", bad])
        assert done.value.code == 2
        assert f"expected N or E+D with positive integers, got {bad!r}" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_demo_runs_end_to_end_on_a_small_file(tiny_file, tmp_path, capsys):
    out = tmp_path / "demo"
    small = ["--clusters", "4", "--d-model", "32", "--d-ff", "48", "--max-steps", "2", "--batch-size", "8"]
    assert main(["demo", "--data", str(tiny_file), "--out", str(out), *small, "--warmup", "0"]) == 0
    printed = capsys.readouterr().out
    assert "(spectral)" in printed and "training a small T5 (d_model=32, d_ff=48, 1+2 layers)" in printed
    assert "users; history items left out: no user meets an item twice in the training data)" in printed
    examples = [line for line in printed.splitlines() if line.startswith("  user ")]
    assert len(examples) == 3
    for line in examples:  # "  user U (last items A, B, C) → X, Y, Z": a shown history item is never recommended
        shown, recommended = line.split("(last items ")[1].split(") → ")
        assert len(recommended.split(", ")) == 5 and not set(shown.split(", ")) & set(recommended.split(", "))
    last = printed.strip().splitlines()[-1].split()
    assert [part.split("=")[0] for part in last] == ["HR@5", "HR@10", "NDCG@5", "NDCG@10"]
    results = json.loads((out / "demo_results.json").read_text())
    assert f"HR@10={results['hr@10']:.4f}" in last and results["exclude_seen"] is True
    card = ModelCard.load(out / "README.md")  # the card holds the figures the demo measured
    measured = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert measured["hr@10"] == pytest.approx(results["hr@10"], abs=1e-6) and set(measured) == {
        "hr@5",
        "hr@10",
        "ndcg@5",
        "ndcg@10",
    }
    assert all(r.metric_args["history_items"] == "left out" for r in card.data.eval_results)
    config = json.loads((out / "config.json").read_text())
    assert (config["num_layers"], config["num_decoder_layers"], config["d_ff"]) == (1, 2, 48)
    assert config["metaid_history_in_decoder"] and config["metaid_item_output"] and config["metaid_item_input"]
    assert main(["demo", "--data", str(tiny_file), "--out", str(out)]) == 2  # never overwrites silently
    assert "is not empty; pass --overwrite" in capsys.readouterr().err


def test_the_history_is_left_out_of_the_ranking_only_where_no_pair_repeats(beauty_slice):
    """Beauty meets each item once per user: the demo leaves the history out. Where users come back to items
    (repeat consumption), a history item is often the answer, so it stays in, and the reason is said."""
    from hf_metaid.data import repeated_pairs
    from hf_metaid.pipeline import decide_exclude_seen

    train = hm.leave_one_out(beauty_slice)["train"]
    assert repeated_pairs(train) == 0
    assert decide_exclude_seen(train) == (
        True,
        "history items left out: no user meets an item twice in the training data",
    )
    rows = {"user": ["a"] * 5 + ["b"] * 4, "item": ["x", "y", "x", "z", "x", "x", "y", "w", "v"]}
    repeats = hm.leave_one_out(hm.load_interactions(datasets.Dataset.from_dict(rows)))["train"]
    assert repeated_pairs(repeats) == 1  # a: x y x (z x held out); b: x y (w v held out)
    left_out, reason = decide_exclude_seen(repeats)
    assert left_out is False and "1 training rows repeat a user-item pair" in reason


def test_demo_defaults_are_the_measured_ones():
    """The demo's defaults are the DEMO recipe, the settings chosen on the validation split
    (benchmarks/results/quality_budget.md); index and train keep the paper's skip-gram IDs and the plain small T5
    unless asked, and the options of each command give back exactly the recipe they started from."""
    from hf_metaid.cli import _index_config, _model_and_training, build_parser
    from hf_metaid.pipeline import BENCHMARK_RECIPE, DEMO, Recipe

    model = DEMO.model
    assert (DEMO.index.embedding, model.layers, model.d_ff, model.d_model, model.dropout) == (
        "spectral",
        (1, 2),
        256,
        64,
        0.3,
    )
    assert model.item_output and model.item_input and not model.tree_softmax
    # the ninth round: K = 200 and the sampled all-items objective, over the decoder recipe the benchmarks keep
    assert (DEMO.index.num_clusters, model.item_loss, model.item_loss_negatives) == (200, 1.0, 1024)
    assert (BENCHMARK_RECIPE.index.num_clusters, BENCHMARK_RECIPE.model.item_loss) == (100, 0.0)
    assert (DEMO.training, DEMO.threads) == (BENCHMARK_RECIPE.training, BENCHMARK_RECIPE.threads)
    training = DEMO.training
    assert (training.batch_size, training.learning_rate, training.epochs, training.max_history) == (64, 4e-3, 16, 20)
    assert training.history_in_decoder and training.templates == "anonymous" and DEMO.exclude_seen is None
    demo = build_parser().parse_args(["demo"])
    assert demo.threads == DEMO.threads == 1  # one thread: two gain 8% at most (demo_threads.md)
    assert build_parser().parse_args(["train", "--vocab", "v", "--out", "m"]).threads == 0  # torch's default
    assert _index_config(demo, DEMO) == DEMO.index and _model_and_training(demo, DEMO) == (DEMO.model, DEMO.training)
    # the demo leaves seen items out of the ranking; evaluate keeps the paper's protocol unless asked
    assert demo.exclude_seen is None and build_parser().parse_args(["demo", "--no-exclude-seen"]).exclude_seen is False
    assert build_parser().parse_args(["evaluate", "m"]).exclude_seen is False
    assert build_parser().parse_args(["evaluate", "m", "--exclude-seen"]).exclude_seen is True
    index = build_parser().parse_args(["index", "--out", "v"])
    train = build_parser().parse_args(["train", "--vocab", "v", "--out", "m"])
    defaults = Recipe()
    assert _index_config(index, defaults) == defaults.index and defaults.index.embedding == "skipgram"
    assert _model_and_training(train, defaults) == (defaults.model, defaults.training)
    assert (defaults.model.layers, defaults.model.d_ff) == ((2, 2), 0)
    changed = build_parser().parse_args(["demo", "--clusters", "7", "--lr", "0.01", "--layers", "2+1", "--seed", "3"])
    index_config, (model, training) = _index_config(changed, DEMO), _model_and_training(changed, DEMO)
    assert (index_config.num_clusters, index_config.seed, index_config.embedding) == (7, 3, "spectral")
    assert (training.learning_rate, training.seed, model.layers, model.d_ff) == (0.01, 3, (2, 1), 256)


class _Restarted(Exception):
    pass


def test_console_entry_restarts_once_with_passive_openmp_threads(monkeypatch):
    """Spinning OpenMP threads collapse under any other load (benchmarks/thread_policy.py); the policy is only read
    when OpenMP loads, so the console entry starts a fresh process with it unless the caller chose one."""
    calls = []

    def fake_execv(path, argv):
        calls.append((path, argv, os.environ.get("OMP_WAIT_POLICY")))
        raise _Restarted

    monkeypatch.setattr(os, "execv", fake_execv)
    monkeypatch.setattr(sys, "argv", ["hf-metaid", "demo", "--help"])
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with pytest.raises(_Restarted):
        main()
    assert calls == [(sys.executable, [sys.executable, "-m", "hf_metaid.cli", "demo", "--help"], "PASSIVE")]
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with pytest.raises(SystemExit):  # no restart: --help runs here
        main()
    assert len(calls) == 1


def test_extend_then_resume_keeps_every_old_id(tiny_file, tmp_path, capsys):
    """index -> train (LoRA) -> extend the model with new users and items -> train --resume-from, all old IDs kept."""
    vocab_dir, lora, grown, resumed = (tmp_path / name for name in ("vocab", "lora", "grown", "resumed"))
    assert main(["index", str(tiny_file), "--out", str(vocab_dir), "--clusters", "4", "--embedding", "spectral"]) == 0
    quick = ["--max-steps", "2", "--batch-size", "8", "--d-model", "32", "--warmup", "0"]
    assert main(["train", str(tiny_file), "--vocab", str(vocab_dir), "--out", str(lora), "--lora", *quick]) == 0
    new = tmp_path / "new.csv"
    new.write_text("user,item\nu1,n0\nu2,n0\nu3,n1\nu4,n1\nfresh,n0\nfresh,i3\nfresh,i4\nonce,i5\n")
    assert main(["extend", str(vocab_dir), str(new), "--out", str(tmp_path / "v2")]) == 0
    assert "fingerprint" in capsys.readouterr().out
    assert main(["extend", str(lora), str(new), "--out", str(grown)]) == 0
    old = hm.EntityVocabulary.load(vocab_dir / "metaid_vocab.json")
    for folder in (tmp_path / "v2", grown):
        vocabulary = hm.EntityVocabulary.load(folder / "metaid_vocab.json")
        assert vocabulary.metadata["parent_fingerprint"] == old.fingerprint
        assert [vocabulary.item_code(i) for i in old.items] == [old.item_code(i) for i in old.items]
        assert [vocabulary.user_code(u) for u in old.users] == [old.user_code(u) for u in old.users]
        assert vocabulary.has_item("n0") and vocabulary.user_code("fresh")[0] != old.metadata["cold_start"]["cluster"]
        assert vocabulary.user_code("once")[0] == old.metadata["cold_start"]["cluster"]  # one row: cold start
    assert (grown / "model.safetensors").is_file()  # the LoRA model was merged into a full one
    with_new = tmp_path / "with_new.txt"
    with_new.write_text(tiny_file.read_text() + "fresh n0 i3 i4 n1\nonce i5 n0 n1\n")
    assert main(["train", str(with_new), "--resume-from", str(grown), "--out", str(resumed), "--lora", *quick]) == 0
    capsys.readouterr()
    assert main(["recommend", str(resumed), "--history", "n0,n1", "--k", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2 + 3
    model, tokenizer = hm.load_for_inference(resumed)  # a fresh adapter whose base (the grown model) travels with it
    assert (resumed / "adapter_config.json").is_file() and (resumed / "base" / "model.safetensors").is_file()
    assert tokenizer.entity_vocabulary.fingerprint == hm.EntityVocabulary.load(grown / "metaid_vocab.json").fingerprint
    assert len(model.recommend(tokenizer, user="fresh", k=3)) == 3
    assert main(["train", str(with_new), "--resume-from", str(grown), "--vocab", str(vocab_dir), "--out", "x"]) == 2
    assert "not both or neither" in capsys.readouterr().err
    assert main(["extend", str(tmp_path / "nothing"), str(new), "--out", str(tmp_path / "v3")]) == 2
    assert "neither a model folder nor a vocabulary" in capsys.readouterr().err
