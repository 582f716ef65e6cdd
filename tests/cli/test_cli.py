"""The hf-metaid command: help texts, a tiny end-to-end run, and user mistakes reported without a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys

import datasets
import pytest
from huggingface_hub import ModelCard

import hf_metaid as hm
from hf_metaid.cli import main

SUBCOMMANDS = ("index", "train", "extend", "evaluate", "recommend", "demo", "push")
QUICK_TRAIN = ("--batch-size", "8", "--d-model", "32", "--warmup-steps", "0")  # a tiny model that trains in seconds


def index_command(data, out) -> list[str]:
    """``hf-metaid index`` of ``data`` into ``out`` with 4 clusters of spectral IDs: quick on the small test files.
    With user IDs (the default recipe's IDs are the items' alone), since these tests ask for users by id and train
    prompts that name them."""
    return [
        "index",
        "--data",
        str(data),
        "--out",
        str(out),
        "--num-clusters",
        "4",
        "--embedding",
        "spectral",
        "--user-ids",
    ]


def train_command(data, vocab, out) -> list[str]:
    """``hf-metaid train`` on ``data`` with the IDs of ``vocab`` into ``out``; the caller adds the run's options."""
    return ["train", "--data", str(data), "--vocab", str(vocab), "--out", str(out)]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert "usage: hf-metaid " + command in capsys.readouterr().out


@pytest.mark.slow
def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "hf_metaid.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "index" in result.stdout and "demo" in result.stdout


def test_bad_data_file_is_one_line_error_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("u1 a b c\nu2 a\n")
    assert main(["index", "--data", str(bad), "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"hf-metaid index: error: {bad}: line 2" in err
    assert not (tmp_path / "v").exists()  # nothing half-written


def test_missing_model_folder_and_bad_cutoffs(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "hf-metaid evaluate: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["evaluate", str(tmp_path), "--cutoffs", "5,x"])
    assert done.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err


def test_index_train_evaluate_recommend_end_to_end(tiny_file, tmp_path, capsys):
    vocab_dir, model_dir = tmp_path / "vocab", tmp_path / "model"
    assert main(index_command(tiny_file, vocab_dir)) == 0
    assert "new tokens" in capsys.readouterr().out and (vocab_dir / "metaid_vocab.json").is_file()
    train = train_command(tiny_file, vocab_dir / "metaid_vocab.json", model_dir)  # the vocabulary file or its folder
    assert main([*train, "--max-steps", "3", *QUICK_TRAIN]) == 0
    assert "train loss" in capsys.readouterr().out
    assert main(["evaluate", str(model_dir), "--data", str(tiny_file), "--cutoffs", "1,5", "--limit", "10"]) == 0
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
    assert main(index_command(tiny_file, vocab_dir)) == 0
    quick = ["--max-steps", "2", *QUICK_TRAIN]
    assert main([*train_command(tiny_file, vocab_dir, lora), "--lora", *quick]) == 0
    assert (lora / "adapter_config.json").is_file() and (lora / "base" / "model.safetensors").is_file()
    capsys.readouterr()
    assert main(["recommend", str(lora), "--user", "u3", "--k", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2 + 3
    assert main(["evaluate", str(lora), "--data", str(tiny_file), "--limit", "5"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("HR@5=")


def test_out_is_replaced_only_with_overwrite(tiny_file, tmp_path, capsys):
    """index and train refuse a non-empty --out; with --overwrite the new folder replaces the old one whole."""
    vocab_dir, model_dir = tmp_path / "vocab", tmp_path / "model"
    index = index_command(tiny_file, vocab_dir)
    assert main(index) == 0
    first = (vocab_dir / "metaid_vocab.json").read_bytes()
    assert main([*index, "--seed", "1"]) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert (vocab_dir / "metaid_vocab.json").read_bytes() == first
    assert main([*index, "--seed", "1", "--overwrite"]) == 0
    assert (vocab_dir / "metaid_vocab.json").read_bytes() != first
    train = [*train_command(tiny_file, vocab_dir, model_dir), "--max-steps", "1"]
    assert main([*train, *QUICK_TRAIN]) == 0
    (model_dir / "notes.txt").write_text("kept until replaced")
    weights = (model_dir / "model.safetensors").read_bytes()
    assert main([*train, *QUICK_TRAIN, "--seed", "1"]) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert (model_dir / "model.safetensors").read_bytes() == weights and (model_dir / "notes.txt").is_file()
    assert main([*train, *QUICK_TRAIN, "--seed", "1", "--overwrite"]) == 0
    assert (model_dir / "model.safetensors").read_bytes() != weights and not (model_dir / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # nothing left beside it
    assert main(["recommend", str(model_dir), "--user", "u3", "--k", "2"]) == 0


def train_on_a_degree_ranked_spectral_vocabulary(tiny_file, tmp_path) -> list[str]:
    """``hf-metaid index`` with spectral IDs ranked by degree, the SVD in single precision (checked in the saved
    params); returns the start of a one-step ``hf-metaid train`` command on that vocabulary, in the paper's prompt
    mode."""
    vocab_dir = tmp_path / "vocab"
    assert main([*index_command(tiny_file, vocab_dir), "--rank-by", "degree", "--svd-precision", "float32"]) == 0
    params = json.loads((vocab_dir / "metaid_vocab.json").read_text())["metadata"]["params"]
    assert (params["embedding"], params["rank_by"], params["svd_precision"]) == ("spectral", "degree", "float32")
    train = ["train", "--data", str(tiny_file), "--vocab", str(vocab_dir / "metaid_vocab.json"), "--max-steps", "1"]
    return [*train, "--recipe", "paper", "--tasks", "sequential"]  # the paper's prompt mode, one task


def test_templates_option_records_the_training_words(tiny_file, tmp_path, capsys):
    train = train_on_a_degree_ranked_spectral_vocabulary(tiny_file, tmp_path)
    quick = [*QUICK_TRAIN, "--max-history", "3"]
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
    quick = [*QUICK_TRAIN, "--templates", "compact", "--max-history", "3"]
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
    assert main([*train, "--out", str(tmp_path / "a"), *QUICK_TRAIN, "--layers", "1+3", "--d-ff", "48"]) == 0
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (config["num_layers"], config["num_decoder_layers"], config["d_ff"]) == (1, 3, 48)
    assert main([*train, "--out", str(tmp_path / "b"), *QUICK_TRAIN, "--layers", "3"]) == 0
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert (config["num_layers"], config["num_decoder_layers"], config["d_ff"]) == (3, 3, 64)  # d_ff 0: 2 x d_model
    capsys.readouterr()
    for bad in ("0", "1+x", "1+2+3"):
        with pytest.raises(SystemExit) as done:
            main([*train, "--out", str(tmp_path / "x"), "--layers", bad])
        assert done.value.code == 2
        assert f"expected N or E+D with positive integers, got {bad!r}" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_demo_runs_end_to_end_on_a_small_file(tiny_file, tmp_path, capsys):
    out = tmp_path / "demo"
    small = ["--num-clusters", "4", "--d-model", "32", "--d-ff", "48", "--max-steps", "2", "--batch-size", "8"]
    assert main(["demo", "--data", str(tiny_file), "--out", str(out), *small, "--warmup-steps", "0"]) == 0
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
    # The peak resident memory is printed beside the timings, in GB, as this process's ru_maxrss counts it.
    peak = [line for line in printed.splitlines() if "peak memory GB" in line]
    assert len(peak) == 1
    printed_peak = float(peak[0].split()[-1])
    so_far = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux
    assert 0.05 < printed_peak <= so_far + 0.01 and results["peak_memory_gb"] == pytest.approx(printed_peak, abs=0.01)
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
    from hf_metaid.workflow.splitting import decide_exclude_seen

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


def test_each_command_starts_from_its_recipe_and_its_options_override_it():
    """index, train and demo take every default from the recipe --recipe names (fast unless asked; its settings are
    tests/workflow/test_recipes.py's business): the parsed options give back exactly that recipe, each option given
    changes its own field only, and evaluate keeps the paper's protocol unless asked."""
    from hf_metaid.cli import build_parser
    from hf_metaid.cli.settings_options import _index_config, _model_and_training

    def parse(*argv):
        return build_parser().parse_args(list(argv))

    for name in hm.recipes.names():
        recipe = hm.recipes.get(name)
        index, train = parse("index", "--out", "v", "--recipe", name), parse("train", "--vocab", "v", "--out", "m")
        if name != hm.recipes.DEFAULT:
            train = parse("train", "--vocab", "v", "--out", "m", "--recipe", name)
        demo = parse("demo", "--recipe", name)
        assert _index_config(index) == _index_config(demo) == recipe.index and index.scheme == recipe.scheme
        assert _model_and_training(train) == _model_and_training(demo) == (recipe.model, recipe.training)
        assert train.threads == demo.threads == recipe.threads and demo.exclude_seen == recipe.exclude_seen
    fast = hm.recipes.get("fast")
    assert parse("demo").recipe == "fast" and parse("index", "--out", "v").recipe == "fast"
    assert parse("demo", "--no-exclude-seen").exclude_seen is False and parse("demo", "--threads", "2").threads == 2
    assert parse("evaluate", "m").exclude_seen is False and parse("evaluate", "m", "--exclude-seen").exclude_seen
    changed = parse(
        "demo", "--num-clusters", "7", "--learning-rate", "0.01", "--layers", "2+1", "--seed", "3", "--no-item-input"
    )
    index_config, (model, training) = _index_config(changed), _model_and_training(changed)
    assert index_config == dataclasses.replace(fast.index, num_clusters=7, seed=3)
    assert model == dataclasses.replace(fast.model, layers=(2, 1), item_input=False)
    assert training == dataclasses.replace(fast.training, learning_rate=0.01, seed=3)
    paper = parse("index", "--out", "v", "--recipe", "paper", "--embedding", "spectral", "--separate")
    assert _index_config(paper) == dataclasses.replace(hm.recipes.get("paper").index, embedding="spectral", joint=False)


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
    """index -> train (LoRA) -> extend the model with new users and items -> train --start-from, all old IDs kept."""
    vocab_dir, lora, grown, resumed = (tmp_path / name for name in ("vocab", "lora", "grown", "resumed"))
    assert main(index_command(tiny_file, vocab_dir)) == 0
    quick = ["--max-steps", "2", *QUICK_TRAIN]
    assert main([*train_command(tiny_file, vocab_dir, lora), "--lora", *quick]) == 0
    new = tmp_path / "new.csv"
    new.write_text("user,item\nu1,n0\nu2,n0\nu3,n1\nu4,n1\nfresh,n0\nfresh,i3\nfresh,i4\nonce,i5\n")
    assert main(["extend", str(vocab_dir), "--data", str(new), "--out", str(tmp_path / "v2")]) == 0
    assert "fingerprint" in capsys.readouterr().out
    assert main(["extend", str(lora), "--data", str(new), "--out", str(grown)]) == 0
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
    assert (
        main(["train", "--data", str(with_new), "--start-from", str(grown), "--out", str(resumed), "--lora", *quick])
        == 0
    )
    capsys.readouterr()
    assert main(["recommend", str(resumed), "--history", "n0,n1", "--k", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2 + 3
    model, tokenizer = hm.load_for_inference(resumed)  # a fresh adapter whose base (the grown model) travels with it
    assert (resumed / "adapter_config.json").is_file() and (resumed / "base" / "model.safetensors").is_file()
    assert tokenizer.entity_vocabulary.fingerprint == hm.EntityVocabulary.load(grown / "metaid_vocab.json").fingerprint
    assert len(model.recommend(tokenizer, user="fresh", k=3)) == 3
    assert (
        main(["train", "--data", str(with_new), "--start-from", str(grown), "--vocab", str(vocab_dir), "--out", "x"])
        == 2
    )
    assert "not both or neither" in capsys.readouterr().err
    assert main(["extend", str(tmp_path / "nothing"), "--data", str(new), "--out", str(tmp_path / "v3")]) == 2
    assert "neither a model folder nor a vocabulary" in capsys.readouterr().err


def test_extend_counts_the_new_data_and_refuses_other_data_unless_forced(tiny_file, tmp_path, capsys):
    """extend says how many users and items of NEW_DATA are known and new and where the new ones went; data of
    which the vocabulary knows under half of the items is refused (as evaluate refuses it), --force goes on."""
    vocab_dir, grown = tmp_path / "vocab", tmp_path / "grown"
    assert main(index_command(tiny_file, vocab_dir)) == 0
    cold = hm.EntityVocabulary.load(vocab_dir / "metaid_vocab.json").metadata["cold_start"]["cluster"]
    other = tmp_path / "other.csv"  # x0 (two rows) and v9 (i3, x2) are placed; x1 and x2 (one row each) go cold
    other.write_text("user,item\nu1,x0\nu2,x0\nu3,x1\nv9,x2\nv9,i3\n")
    capsys.readouterr()
    assert main(["extend", str(vocab_dir), "--data", str(other), "--out", str(grown)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-metaid extend: error: ") and err.count("\n") == 1
    assert f"{other}: the vocabulary knows 1 of the new data's 4 items (25%) and 3 of its 4 users" in err
    assert "under 50% of the items known" in err and "--force" in err
    assert not grown.exists()  # nothing written
    assert main(["extend", str(vocab_dir), "--data", str(other), "--out", str(grown), "--force"]) == 0
    rows = {line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in capsys.readouterr().out.splitlines()}
    assert rows["new data"] == f"5 rows of {other}"
    assert rows["its users"] == "3 known, 1 new" and rows["its items"] == "1 known, 3 new"
    assert rows["placed by neighbours"] == "1 users, 1 items (nearest existing cluster)"
    assert rows["cold-start"] == f"0 users, 2 items (cluster {cold})"
    vocabulary = hm.EntityVocabulary.load(grown / "metaid_vocab.json")
    assert [vocabulary.item_code(i)[0] == cold for i in ("x0", "x1", "x2")] == [False, True, True]


def test_start_from_a_lora_folder_trains_the_merged_model_in_full_or_with_a_fresh_adapter(tiny_file, tmp_path):
    """Without --lora the adapter is merged into its base and every weight trains, as in a freshly built full model
    (the merged model must not keep the adapter's frozen base); with --lora a fresh adapter trains on the merged
    model, whose weights travel unchanged as its base."""
    import torch
    from safetensors.torch import load_file

    vocab_dir, lora, full, relora = (tmp_path / name for name in ("vocab", "lora", "full", "relora"))
    assert main(index_command(tiny_file, vocab_dir)) == 0
    quick = ["--max-steps", "2", *QUICK_TRAIN]
    reads_ids = ["--templates", "compact", "--no-history-in-decoder"]  # the encoder reads ID tokens: F trains too
    assert main([*train_command(tiny_file, vocab_dir, lora), "--lora", *quick, *reads_ids]) == 0
    merged = dict(hm.workflow.growth.load_for_training(lora)[0].named_parameters())

    assert main(["train", "--data", str(tiny_file), "--start-from", str(lora), "--out", str(full), *quick]) == 0
    assert (full / "model.safetensors").is_file() and not (full / "adapter_config.json").exists()
    trained = dict(hm.load_for_inference(full)[0].named_parameters())
    assert trained.keys() == merged.keys()
    assert [name for name, weight in trained.items() if torch.equal(weight, merged[name])] == []  # all trained

    assert (
        main(["train", "--data", str(tiny_file), "--start-from", str(lora), "--out", str(relora), "--lora", *quick])
        == 0
    )
    assert (relora / "adapter_config.json").is_file()
    base = load_file(relora / "base" / "model.safetensors")
    assert base and all(torch.equal(weight, merged[name]) for name, weight in base.items() if name in merged)
    assert {name for name in merged if "shared" in name} <= base.keys()


DATA_OPTIONS = ("--data", "--user-column", "--item-column", "--time-column", "--drop-duplicates", "--keep-duplicates")
DATA_COMMANDS = ("index", "train", "extend", "evaluate", "recommend", "demo")


@pytest.mark.parametrize("command", DATA_COMMANDS)
def test_every_command_that_reads_interactions_takes_the_data_options(command, capsys):
    """One set of options (hf_metaid.cli.parser._add_data_options) on every command that reads an interaction file, the
    file itself as --data included, and --min-interactions, which drops short users, wherever the file is split
    (extend and recommend take every user)."""
    from hf_metaid.cli import build_parser
    from hf_metaid.cli.settings_options import _data_options

    with pytest.raises(SystemExit):
        main([command, "--help"])
    shown = capsys.readouterr().out
    assert all(option in shown for option in DATA_OPTIONS)
    positional = {"index": ["--out", "o"], "train": ["--out", "o"], "evaluate": ["model"], "demo": []}
    positional["extend"] = ["vocab", "--data", "new.csv", "--out", "o"]
    positional["recommend"] = ["model", "--data", "log.csv", "--out", "recs.csv"]
    given = ["--user-column", "uid", "--item-column", "iid", "--time-column", "ts", "--drop-duplicates"]
    splits = command not in ("extend", "recommend")
    if splits:
        given += ["--min-interactions", "4"]
        assert "drop the users with fewer than N interactions" in shown
    options = _data_options(build_parser().parse_args([command, *positional[command], *given]))
    expected = {"user_column": "uid", "item_column": "iid", "timestamp_column": "ts", "drop_duplicates": True}
    assert options == ({**expected, "min_interactions": 4} if splits else expected)
    defaults = _data_options(build_parser().parse_args([command, *positional[command], "--keep-duplicates"]))
    assert defaults["drop_duplicates"] is False and defaults["timestamp_column"] == "timestamp"
    assert defaults.get("min_interactions") is None


def test_own_column_names_short_users_and_copies_from_the_command_line(tmp_path, capsys):
    """A log with its own column names, a user with two interactions and every row twice: each refusal names what
    to give, and with the options the vocabulary is built, each thing dropped counted on one line of stderr."""
    rows = [f"u{u},i{(u * 3 + k * (1 + u % 4)) % 30},{k}" for u in range(20) for k in range(6)] + ["v,i1,0", "v,i2,1"]
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,ts\n" + "".join(f"{row}\n{row}\n" for row in rows))
    index = index_command(path, tmp_path / "ids")
    named = ["--user-column", "user_id", "--item-column", "item_id", "--time-column", "ts"]
    steps = [
        ([], "missing column(s) ['user', 'item']; found ['user_id', 'item_id', 'ts']; name the file's own columns"),
        (named, "interactions copy an earlier one"),
        ([*named, "--drop-duplicates"], "user 'v' has 2 interaction(s); at least 3 are needed"),
    ]
    for extra, says in steps:
        assert main([*index, *extra]) == 2
        err = capsys.readouterr().err
        assert f"hf-metaid index: error: {path}" in err and says in err, err
    assert not (tmp_path / "ids").exists()
    assert main([*index, *named, "--drop-duplicates", "--min-interactions", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"hf-metaid index: warning: {path}: {len(rows)} of {2 * len(rows)} interactions copy an earlier one (same "
        "user, item and timestamp; e.g. line 3 repeats line 2): dropped",
        f"hf-metaid index: warning: {path}: dropped 1 of 21 users with fewer than 3 interactions (2 of {len(rows)} "
        "interactions)",
    ]
    vocabulary = hm.EntityVocabulary.load(tmp_path / "ids" / "metaid_vocab.json")
    assert len(vocabulary.users) == 20 and "v" not in vocabulary.users
    new = tmp_path / "new.csv"  # extend reads its file with the same options
    new.write_text("user_id,item_id,ts\n" + "".join(f"w,i{k},{k}\nw,i{k},{k}\n" for k in range(3)))
    grown = ["extend", str(tmp_path / "ids"), "--data", str(new), "--out", str(tmp_path / "grown"), *named]
    assert main([*grown, "--drop-duplicates"]) == 0
    assert "3 of 6 interactions copy an earlier one" in capsys.readouterr().err
    assert hm.EntityVocabulary.load(tmp_path / "grown" / "metaid_vocab.json").users[-1] == "w"


# ----------------------------------------------------------------------------------------- one spelling each
def test_each_option_has_one_spelling_and_no_abbreviation(capsys):
    """No aliases: every option of every command has one name (a --flag/--no-flag pair and -h/--help apart), and a
    prefix of a name is not taken for it."""
    from hf_metaid.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == set(SUBCOMMANDS)
    for name, command in commands.items():
        for action in command._actions:
            names = [s for s in action.option_strings if s not in ("-h", "--help")]
            if isinstance(action, argparse.BooleanOptionalAction):
                names = [s for s in names if not s.startswith("--no-")]
            assert len(names) <= 1, f"hf-metaid {name}: {action.option_strings} name one option"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["index", "--out", "v", "--num-cl", "4"])
    assert "unrecognized arguments: --num-cl 4" in capsys.readouterr().err


RENAMED = [
    # command, the words it took, the words it takes now, what they set
    ("index", ["--clusters", "7"], ["--num-clusters", "7"], lambda a: a.__dict__["MetaIDIndexerConfig.num_clusters"]),
    ("demo", ["--lr", "0.01"], ["--learning-rate", "0.01"], lambda a: a.__dict__["TrainingSettings.learning_rate"]),
    ("train", ["--warmup", "5"], ["--warmup-steps", "5"], lambda a: a.__dict__["TrainingSettings.warmup_steps"]),
    ("train", ["--resume-from", "m"], ["--start-from", "m"], lambda a: a.start_from),
    ("evaluate", ["--k", "1,5"], ["--cutoffs", "1,5"], lambda a: a.cutoffs),
    ("demo", ["--k", "1,5"], ["--cutoffs", "1,5"], lambda a: a.cutoffs),
    ("extend", ["--min-interactions", "3"], ["--min-neighbour-rows", "3"], lambda a: a.min_neighbour_rows),
]
REQUIRED = {"index": ["--out", "v"], "train": ["--out", "m"], "evaluate": ["m"], "demo": []}
REQUIRED["extend"] = ["v", "--data", "new.csv", "--out", "o"]


@pytest.mark.parametrize(("command", "old", "new", "value_of"), RENAMED, ids=[f"{c}{o[0]}" for c, o, *_ in RENAMED])
def test_renamed_options_work_and_their_old_spellings_are_refused_with_the_new_name(
    command, old, new, value_of, capsys
):
    from hf_metaid.cli import build_parser

    expected = {"7": 7, "0.01": 0.01, "5": 5, "m": "m", "1,5": (1, 5), "3": 3}[new[1]]
    assert value_of(build_parser().parse_args([command, *REQUIRED[command], *new])) == expected
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, *REQUIRED[command], *old])  # parsing only: no command runs
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hf-metaid {command}: error: unrecognized arguments: {' '.join(old)} ")
    assert f"({old[0]} is now {new[0]})" in err


def test_recommends_k_is_the_number_of_items_and_evaluates_cutoffs_are_a_list():
    from hf_metaid.cli import build_parser

    assert build_parser().parse_args(["recommend", "m", "--user", "u", "--k", "3"]).k == 3
    assert build_parser().parse_args(["evaluate", "m", "--cutoffs", "1,20"]).cutoffs == (1, 20)


@pytest.mark.parametrize("command", DATA_COMMANDS)
def test_every_command_takes_the_data_as_the_data_option(command, capsys):
    """--data FILE on every command that reads interactions (Beauty where a command has a default); the file as a
    positional word, as index and train once took it, is refused with the option to use."""
    from hf_metaid.cli import build_parser

    others = {"extend": ["v", "--out", "o"], "recommend": ["m", "--out", "r.csv"]}
    before = others.get(command, REQUIRED.get(command))
    assert build_parser().parse_args([command, *before, "--data", "log.csv"]).data == "log.csv"
    if command in REQUIRED and command != "extend":
        assert build_parser().parse_args([command, *REQUIRED[command]]).data == "beauty"
    if command == "recommend":  # one user, --user/--history: no data
        assert build_parser().parse_args([command, "m", "--user", "u"]).data is None
    with pytest.raises(SystemExit) as done:
        main([command, *before, "--data", "log.csv", "other.csv"])
    assert done.value.code == 2
    assert "unrecognized arguments: other.csv (the data is given as --data other.csv)" in capsys.readouterr().err
    if command == "extend":  # no default: the new interactions are the point of the command
        with pytest.raises(SystemExit):
            main([command, *before])
        assert "the following arguments are required: --data" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- recommend --data/--out
@pytest.fixture(scope="module")
def small_model(tiny_file, tmp_path_factory):
    """A model trained for a few steps on tiny_file through the command (its folder)."""
    root = tmp_path_factory.mktemp("small_model")
    assert main(index_command(tiny_file, root / "vocab")) == 0
    assert main([*train_command(tiny_file, root / "vocab", root / "m"), "--max-steps", "3", *QUICK_TRAIN]) == 0
    return root / "m"


def test_recommend_out_writes_the_top_k_of_every_user(small_model, tiny_file, tmp_path, capsys):
    """recommend --data --out: k rows per user (user, rank, item, score), each user's whole history as the prompt's
    and, as tiny_file has no repeated pair, left out of its items; the same lists as recommend for one user. A user
    the vocabulary does not know is asked from its known items, one with none gets no rows, and both are counted."""
    from ranking_checks import assert_same_recommendations

    log = tmp_path / "log.txt"
    log.write_text(tiny_file.read_text() + "stranger i1 i2 i9\nghost zz1 zz2\n")
    out = tmp_path / "recs.parquet"
    capsys.readouterr()
    assert main(["recommend", str(small_model), "--data", str(log), "--out", str(out), "--k", "3"]) == 0
    printed = capsys.readouterr()
    assert "hf-metaid recommend: warning: 2 of 42 users are not in the ID vocabulary: 1 asked as new users" in (
        printed.err
    )
    assert "1 with no known item left without recommendations" in printed.err
    assert "2 of 245 interactions name items the ID vocabulary does not know" in printed.err
    rows = {line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in printed.out.splitlines()}
    assert rows["users"] == f"42 in {log}, 41 with recommendations" and rows["new users"].startswith("1 ")
    assert rows["history"] == "history items left out: no user meets an item twice in the training data"
    table = datasets.Dataset.from_parquet(str(out))
    assert table.column_names == ["user", "rank", "item", "score"] and table.num_rows == 41 * 3
    users = list(dict.fromkeys(table["user"]))
    assert users == [f"u{u}" for u in range(40)] + ["stranger"]
    assert table["rank"] == [1, 2, 3] * 41
    model, tokenizer = hm.load_for_inference(small_model)
    histories = hm.user_sequences(hm.load_interactions(log, min_interactions=1))
    for user in ("u0", "u7", "stranger"):
        mine = [(r["item"], r["score"]) for r in table if r["user"] == user]
        asked = None if user == "stranger" else user
        alone = model.recommend(tokenizer, user=asked, history=histories[user], k=3, exclude_seen=True)
        assert_same_recommendations(mine, alone, atol=1e-4)
        assert not {item for item, _ in mine} & set(histories[user])


def test_recommend_out_is_checked_before_any_work_and_replaced_only_with_overwrite(
    small_model, tiny_file, tmp_path, capsys
):
    out = tmp_path / "recs.csv"
    out.write_text("kept\n")
    missing = tmp_path / "no-model"  # a missing model would be the error if --out were checked after loading it
    assert main(["recommend", str(missing), "--data", str(tiny_file), "--out", str(out)]) == 2
    assert f"hf-metaid recommend: error: {out} exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "kept\n"
    command = ["recommend", str(small_model), "--data", str(tiny_file), "--out", str(out), "--k", "2"]
    assert main([*command, "--no-exclude-seen", "--overwrite"]) == 0
    assert "history items kept, as asked" in capsys.readouterr().out
    table = datasets.Dataset.from_csv(str(out))
    assert table.column_names == ["user", "rank", "item", "score"] and table.num_rows == 40 * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recs.csv"]  # nothing left beside it
    for argv, says in [
        (["--data", str(tiny_file)], "--data recommends for every user of the data: give --out FILE"),
        (["--data", str(tiny_file), "--out", str(tmp_path / "recs.txt")], "the table is written as .parquet, .csv"),
        (["--data", str(tiny_file), "--user", "u1", "--out", str(out)], "not both"),
        (["--user", "u1", "--out", str(out)], "--out is the table of every user of --data: give --data too"),
    ]:
        assert main(["recommend", str(small_model), *argv]) == 2
        assert says in capsys.readouterr().err


def test_the_default_recipes_items_only_ids_serve_every_command(tiny_file, tmp_path, capsys):
    """index with the default recipe gives the items alone IDs (its prompt names no user): train, evaluate and
    recommend ask every user from the history, recommend --user alone says it needs one, and --data counts no user
    as unknown."""
    vocab_dir, model_dir = tmp_path / "vocab", tmp_path / "model"
    index = [
        "index",
        "--data",
        str(tiny_file),
        "--out",
        str(vocab_dir),
        "--num-clusters",
        "4",
        "--max-cluster-size",
        "6",
    ]
    assert main(index) == 0
    rows = {line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in capsys.readouterr().out.splitlines()}
    assert rows["users"] == "none: items only (40 users without IDs)" and int(rows["rank tokens"]) <= 6
    vocabulary = hm.EntityVocabulary.load(vocab_dir / "metaid_vocab.json")
    assert vocabulary.users == [] and vocabulary.num_ranks <= 6
    assert main([*train_command(tiny_file, vocab_dir, model_dir), "--max-steps", "2", *QUICK_TRAIN]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(model_dir), "--data", str(tiny_file), "--limit", "10"]) == 0
    assert "users=10 known_users=0 known_targets=10 " in capsys.readouterr().out
    assert main(["recommend", str(model_dir), "--user", "u3", "--history", "i1,i2", "--k", "3"]) == 0
    with_user = capsys.readouterr().out
    assert main(["recommend", str(model_dir), "--history", "i1,i2", "--k", "3"]) == 0
    assert capsys.readouterr().out == with_user  # the user is not read
    assert main(["recommend", str(model_dir), "--user", "u3"]) == 2
    assert "recommend needs the user's history" in capsys.readouterr().err
    log = tmp_path / "log.txt"
    log.write_text(tiny_file.read_text() + "ghost zz1 zz2\n")
    out = tmp_path / "recs.csv"
    assert main(["recommend", str(model_dir), "--data", str(log), "--out", str(out), "--k", "2"]) == 0
    printed = capsys.readouterr()
    assert "1 of 41 users have no history item the ID vocabulary knows" in printed.err
    assert "are not in the ID vocabulary" not in printed.err
    rows = {line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in printed.out.splitlines()}
    assert rows["new users"].startswith("none: the vocabulary gives users no IDs")
    assert datasets.Dataset.from_csv(str(out)).num_rows == 40 * 2
