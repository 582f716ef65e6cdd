"""The example scripts run as documented (tiny settings, CPU), so they cannot drift from the library's API."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import hf_metaid as hm

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def examples_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


@pytest.mark.slow
def test_train_beauty_trains_saves_and_evaluates(tmp_path, capsys):
    import train_beauty

    argv = [
        "--users",
        "40",
        "--num-clusters",
        "4",
        "--max-steps",
        "3",
        "--eval-users",
        "5",
        "--output-dir",
        str(tmp_path),
    ]
    metrics = train_beauty.main(argv)
    assert metrics["num_users"] == 5 and 0.0 <= metrics["hr@10"] <= 1.0 and metrics["invalid_rate"] == 0.0
    assert (tmp_path / "final" / "config.json").is_file() and "saved to" in capsys.readouterr().out


@pytest.mark.slow
def test_lora_example_saves_an_adapter_that_reloads(tmp_path, capsys):
    import lora_accelerate

    lora_accelerate.main(["--users", "40", "--max-steps", "2", "--use-cpu", "--output-dir", str(tmp_path)])
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert "top-5 for user" in capsys.readouterr().out


@pytest.mark.slow
def test_paper_recipe_dry_run_trains_five_steps_and_reports(tmp_path):
    import paper_recipe

    report = paper_recipe.main(["--dry-run", "--output-dir", str(tmp_path)])
    assert report["metrics"]["num_users"] == 10 and report["processes"] == 1
    assert report["settings"]["lr"] == 1e-3 and report["settings"]["effective_batch"] == 2048
    assert (tmp_path / "results.json").is_file() and (tmp_path / "model" / "config.json").is_file()


def test_paper_recipe_keeps_the_effective_batch_for_any_number_of_processes(monkeypatch):
    import paper_recipe

    args = paper_recipe.parse_args([])
    for processes, accumulation in ((1, 8), (2, 4), (8, 1)):
        monkeypatch.setenv("WORLD_SIZE", str(processes))
        assert args.per_device_batch * accumulation * processes == paper_recipe.EFFECTIVE_BATCH
        assert paper_recipe.accumulation_steps(args) == accumulation


@pytest.mark.slow
def test_share_on_hub_folder_loads_without_the_package(tmp_path, capsys):
    import share_on_hub

    share_on_hub.main(["--out", str(tmp_path / "shared")])
    printed = capsys.readouterr().out
    assert "transformers_modules" in printed and "MetaIDForConditionalGeneration" in printed
    assert "generative-retrieval" in printed and "model-index:" in printed  # both cards, the model's evaluated
    model = tmp_path / "shared" / "model"
    vocabulary = hm.EntityVocabulary.from_pretrained(tmp_path / "shared" / "vocabulary")
    assert hm.MetaIDTokenizer.from_pretrained(model).entity_vocabulary.fingerprint == vocabulary.fingerprint
    assert sys.modules["share_on_hub"].__file__.startswith(str(EXAMPLES))
