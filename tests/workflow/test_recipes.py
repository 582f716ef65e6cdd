"""The named recipes: each resolves, has the settings its description promises, is the benchmark arm its figures came
from, and the commands take it by name (train without --recipe trains fast; unknown names fail in one line)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import hf_metaid as hm
from hf_metaid.cli import main
from hf_metaid.prompt_templates import seen_templates
from hf_metaid.workflow.settings import load_templates

REPOSITORY = Path(__file__).resolve().parents[2]
RECIPE_COMMANDS = ("index", "train", "demo")


def test_every_name_resolves_and_describes_its_measured_figures():
    assert hm.recipes.names()[0] == hm.recipes.DEFAULT == "fast"
    assert {"fast", "best", "paper"} <= set(hm.recipes.names())
    for name in hm.recipes.names():
        recipe = hm.recipes.get(name)
        assert isinstance(recipe, hm.Recipe) and hm.Recipe.from_name(name) is recipe
        assert "HR@10" in hm.recipes.describe(name) and hm.recipes.entry(name).summary
    with pytest.raises(hm.InvalidArgumentError) as refused:
        hm.Recipe.from_name("fastest")
    assert "'fastest'" in str(refused.value) and all(name in str(refused.value) for name in hm.recipes.names())
    assert not hasattr(hm, "DEMO") and not hasattr(hm.workflow.recipes, "BENCHMARK_RECIPE")


def test_fast_and_best_read_the_history_in_the_decoder_and_learn_every_item():
    fast, best, base = (hm.recipes.get(name) for name in ("fast", "best", "decoder-k100"))
    for recipe in (fast, best, base):
        assert recipe.model.history_in_decoder and recipe.model.item_output and recipe.model.item_input
        assert all("{user}" not in text for text in seen_templates(load_templates(recipe.model.templates), "direct"))
        assert recipe.index.embedding == "spectral" and recipe.threads == 1 and recipe.exclude_seen is None
    assert fast.model.item_loss > 0 and fast.model.item_loss_negatives > 0 and not fast.model.repeat_bias
    assert base == dataclasses.replace(  # fast: the base with the all-items objective, the chain prior, a beam of 20
        fast,
        index=dataclasses.replace(fast.index, user_ids=True, max_cluster_size=None),  # and IDs for the items alone
        model=dataclasses.replace(
            fast.model, item_loss=0.0, item_loss_negatives=0, chain_prior=0, chain_prior_earlier=0, num_beams=0
        ),
        training=dataclasses.replace(fast.training, time_budget=0.0),  # the benchmarks' base trains fixed epochs
    )
    assert not fast.index.user_ids and fast.index.max_cluster_size == 512 and best.index == fast.index
    assert best.model.repeat_bias and best.training.epochs > fast.training.epochs
    # fast fits the demo in 15 minutes, best its training in 60; the others train their fixed epochs
    assert (fast.training.time_budget, best.training.time_budget) == (15.0, 60.0)
    others = [hm.recipes.get(name).training for name in hm.recipes.names() if name not in ("fast", "best")]
    assert others and all(training.time_budget == 0 for training in others)
    assert fast.model.chain_prior and best.model.chain_prior == fast.model.chain_prior
    assert best.model == dataclasses.replace(fast.model, repeat_bias=True)  # fast's model with the repeat score


def test_paper_is_the_papers_prompt_mode():
    paper = hm.recipes.get("paper")
    assert paper.index == hm.MetaIDIndexerConfig() and paper.index.embedding == "skipgram"
    training = paper.training
    assert not paper.model.history_in_decoder and set(training.tasks.split(",")) == {"sequential", "direct"}
    templates = load_templates(paper.model.templates)
    assert all({"{user}", "{history}"} <= set(_slots(t)) for t in seen_templates(templates, "sequential"))
    assert all("{user}" in text for text in seen_templates(templates, "direct"))
    assert paper.model.alpha > 0 and not paper.model.augment_decoder and paper.model.base == "tiny"
    assert not (paper.model.item_output or paper.model.item_input or paper.model.tree_softmax)
    assert (training.learning_rate, training.epochs, training.warmup_steps) == (1e-3, 10.0, 100)
    assert paper.exclude_seen is False  # the paper's protocol keeps the history in the ranking


def _slots(template: str) -> list[str]:
    return [part for part in ("{user}", "{history}") if part in template]


@pytest.mark.parametrize(
    ("name", "arm"),
    [
        ("fast", "fast-earlier3"),
        ("best", "best-earlier3"),
        ("decoder-k100", "dec-small-e16-item-io-anon-drop0.3"),
        ("fast-prompt", "prompt-demo"),
    ],
)
def test_a_recipe_is_the_benchmark_arm_its_figures_came_from(name, arm, monkeypatch):
    """The figures quoted for a recipe are its quality_budget arm's: the same settings (the arms of ``ARMS`` name their
    anonymous templates by a file with the library's words and train fixed epochs)."""
    monkeypatch.syspath_prepend(str(REPOSITORY / "benchmarks"))
    monkeypatch.chdir(REPOSITORY)
    import quality_budget

    recipe, measured = hm.recipes.get(name), quality_budget.arm_recipe(arm)
    if arm in quality_budget.RECIPE_VARIANTS:  # measured as the recipe itself, in its time budget
        assert measured == recipe
        return
    assert _words(measured.model.templates) == _words(recipe.model.templates)
    same_words = dataclasses.replace(measured.model, templates=recipe.model.templates)
    fixed_length = dataclasses.replace(recipe.training, time_budget=0.0)  # the figures came from fixed epochs
    assert (measured.index, same_words, measured.training) == (recipe.index, recipe.model, fixed_length)
    assert quality_budget.arm_recipe(f"recipe-{name}") == recipe


def _words(templates: str) -> str:
    """A template set (built-in name or file) as comparable text, lists and tuples alike."""
    return json.dumps(load_templates(templates), sort_keys=True)


@pytest.mark.parametrize("command", RECIPE_COMMANDS)
def test_help_lists_every_recipe(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "{" + ",".join(hm.recipes.names()) + "}" in out and "(default: fast)" in out
    assert "(default: the recipe's; fast:" in out


@pytest.mark.parametrize("command", RECIPE_COMMANDS)
def test_an_unknown_recipe_is_one_line_naming_the_known_ones(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--out", str(tmp_path / "out"), "--recipe", "fastest"])
    assert done.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hf-metaid {command}: error: argument --recipe")
    assert "'fastest'" in lines[0] and all(f"'{name}'" in lines[0] for name in hm.recipes.names())
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_index_and_train_without_a_recipe_give_the_fast_model(tiny_file, tmp_path, capsys, monkeypatch):
    """``index`` then ``train`` with no recipe named build fast's vocabulary and model, on fast's torch threads."""
    import torch

    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    fast = hm.recipes.get("fast")
    vocab, model = tmp_path / "vocab", tmp_path / "model"
    assert main(["index", "--data", str(tiny_file), "--out", str(vocab)]) == 0
    params = json.loads((vocab / "metaid_vocab.json").read_text())["metadata"]["params"]
    assert (params["embedding"], params["num_clusters"]) == (fast.index.embedding, fast.index.num_clusters)
    assert (
        main(["train", "--data", str(tiny_file), "--vocab", str(vocab), "--out", str(model), "--max-steps", "1"]) == 0
    )
    assert "recipe      fast" in capsys.readouterr().out and threads == [fast.threads]
    config = json.loads((model / "config.json").read_text())
    assert config["metaid_history_in_decoder"] is True and config["metaid_max_history"] == fast.model.max_history
    assert (config["metaid_item_loss"], config["metaid_item_loss_negatives"]) == (
        fast.model.item_loss,
        fast.model.item_loss_negatives,
    )
    assert (config["d_model"], config["num_decoder_layers"]) == (fast.model.d_model, fast.model.layers[1])
    record = json.loads((model / "metaid_training.json").read_text())
    assert (record["learning_rate"], record["batch_size"]) == (fast.training.learning_rate, fast.training.batch_size)


def test_recipe_paper_trains_a_prompt_mode_model(tiny_file, tmp_path, capsys):
    paper = hm.recipes.get("paper")
    vocab, model = tmp_path / "vocab", tmp_path / "model"
    assert (
        main(["index", "--data", str(tiny_file), "--out", str(vocab), "--recipe", "paper", "--num-clusters", "4"]) == 0
    )
    params = json.loads((vocab / "metaid_vocab.json").read_text())["metadata"]["params"]
    assert params["embedding"] == "skipgram"
    train = ["train", "--data", str(tiny_file), "--vocab", str(vocab), "--out", str(model), "--recipe", "paper"]
    assert main([*train, "--max-steps", "2", "--batch-size", "16", "--d-model", "32"]) == 0
    config = json.loads((model / "config.json").read_text())
    assert config["metaid_history_in_decoder"] is False and config["metaid_prompt_templates"] is None  # OpenP5's
    assert config["metaid_alpha"] == paper.model.alpha and config["metaid_max_history"] == paper.model.max_history
    assert config["d_model"] == 32 and config["num_layers"] == paper.model.layers[0]  # the option, then the recipe
    record = json.loads((model / "metaid_training.json").read_text())
    assert (record["learning_rate"], record["warmup_steps"]) == (1e-3, paper.training.warmup_steps)
    assert main(["recommend", str(model), "--user", "u3", "--k", "3"]) == 0
