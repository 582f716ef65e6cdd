"""benchmarks/quality.py end to end on tiny slices of real data (a P5 file and a CSV): every scheme and the counting
references run, write their files, resume, and the report and chart hold what the arms measured."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import hf_metaid as hm
from conftest import write_beauty_lines
from hf_metaid.evaluation.metrics import ranking_metrics

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SMALL = ["--clusters", "4", "--d-model", "32", "--d-ff", "48", "--batch-size", "8", "--max-steps", "2"]

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


@pytest.fixture(autouse=True)
def benchmarks_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


@pytest.fixture(scope="module")
def p5_file(tmp_path_factory):
    return write_beauty_lines(tmp_path_factory.mktemp("p5") / "beauty60.txt", 60)


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory, p5_file):
    """The same users as a CSV with timestamps, the rows shuffled (the loader must order them by time)."""
    rows = []
    for line in p5_file.read_text().splitlines():
        user, *items = line.split()
        rows += [(user, item, 1_000 + position) for position, item in enumerate(items)]
    rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    path = tmp_path_factory.mktemp("csv") / "beauty60.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item", "timestamp"])
        writer.writerows(rows)
    return path


def run(data: Path, tmp_path: Path, *extra: str, capsys=None) -> Path:
    import quality

    argv = ["--data", str(data), *SMALL, "--threads", "1", "--results", str(tmp_path / "results")]
    return quality.main([*argv, "--work", str(tmp_path / "work"), *extra])


def test_every_scheme_and_reference_on_a_p5_file(p5_file, tmp_path, capsys):
    import quality

    report = run(p5_file, tmp_path)
    folder = tmp_path / "results" / "beauty60" / "cpu"
    assert report == tmp_path / "results" / "beauty60" / "RESULTS.md"
    text = report.read_text()
    splits = hm.leave_one_out(hm.load_interactions(p5_file))
    for arm in quality.ARMS:
        record = json.loads((folder / f"{arm}.json").read_text())
        assert record["arm"] == arm and record["data"] == "beauty60.txt" and record["profile"] == "cpu"
        with np.load(folder / f"{arm}.ranks.npz") as ranks:
            assert all(ranks[key].shape == (splits["test"].num_rows,) for key in ranks.files)
        if arm == "references":
            continue
        assert record["settings"]["scheme"] == (arm if arm in hm.workflow.schemes.SCHEMES else "metaid")
        assert record.get("steps", 2) == 2 and math.isfinite(record["id_scores"]["diversity"])
        test = record["metrics"]["test"]
        assert test["kept"]["num_users"] == splits["test"].num_rows
        with np.load(folder / f"{arm}.ranks.npz") as ranks:  # the ranks are the metrics' users, one by one
            for protocol in ("kept", "left out"):
                rank = ranks[f"test|{protocol}"].astype(int)
                assert test[protocol]["hr@10"] == pytest.approx(((rank >= 0) & (rank < 10)).mean(), abs=1e-12)
        if arm in quality.ABLATIONS:
            row = next(line for line in text.splitlines() if line.startswith(f"| `{arm}` |"))
            assert f"| {test['kept']['hr@10']:.4f} / {test['kept']['ndcg@10']:.4f} |" in row
            assert f"| {record['id_scores']['diversity']:.3f} |" in row
            continue
        row = next(line for line in text.splitlines() if line.startswith(f"| {quality.SCHEME_NAMES[arm]} |"))
        assert f"| {test['kept']['hr@10']:.4f} |" in row  # the report quotes the arm's own figure
        scores = record["id_scores"]
        assert f"| {quality.SCHEME_NAMES[arm]} | {scores['diversity']:.3f} | {scores['memorization']:.3f} |" in text
    assert "reference: item Markov chain" in text and "## gpu profile\n\nNot run" in text
    assert (folder / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "](cpu/quality.png)" in text
    assert "python benchmarks/quality.py --data" in text.splitlines()[2]  # the command that regenerates it
    settings = {arm: json.loads((folder / f"{arm}.json").read_text())["settings"] for arm in quality.ABLATIONS}
    assert settings["metaid-k50"]["index"]["num_clusters"] == 50 and not settings["metaid-separate"]["index"]["joint"]
    assert settings["metaid-skipgram"]["index"]["embedding"] == "skipgram"
    assert settings["metaid-centroid"]["model"]["init_new_rows"] == "centroid"
    assert (
        settings["metaid-decoder-f"]["model"]["augment_decoder"]
        and not settings["metaid-k50"]["model"]["augment_decoder"]
    )
    assert settings["prompt-metaid-no-f"]["model"]["alpha"] == 0 < settings["prompt-metaid"]["model"]["alpha"]
    bug = json.loads((folder / "prompt-metaid-f-bug.json").read_text())
    assert bug["model_of"] == "prompt-metaid" and "steps" not in bug  # decoded, not trained again
    # A rerun skips every finished arm (nothing trains again) and writes the same report; an arm that lost its ID
    # scores gets them back from its model.
    scored = json.loads((folder / "metaid.json").read_text())
    (folder / "metaid.json").write_text(json.dumps({k: v for k, v in scored.items() if k != "id_scores"}))
    capsys.readouterr()
    assert run(p5_file, tmp_path).read_text() == text
    out = capsys.readouterr().out
    assert out.count("exists: skipped") == len(quality.ARMS) and out.count("ID scores added") == 1
    restored = json.loads((folder / "metaid.json").read_text())["id_scores"]
    assert restored == pytest.approx(scored["id_scores"], abs=1e-9)


def test_the_references_are_count_baselines_figures(csv_file, tmp_path):
    """A CSV (rows shuffled, ordered by their timestamps) runs end to end too, and its references are
    count_baselines' own computation on the same file."""
    import count_baselines

    report = run(csv_file, tmp_path, "--arms", "metaid,references")
    assert "| META ID |" in report.read_text()
    record = json.loads((tmp_path / "results" / "beauty60" / "cpu" / "references.json").read_text())
    index = dataclasses.replace(hm.recipes.get("decoder-k100").index, num_clusters=4)  # the META ID arm's (SMALL)
    references = count_baselines.counting_references(str(csv_file), embeddings=("spectral",), index=index)
    assert record["order"] == list(references.rankers)
    for name in references.rankers:
        for split in ("validation", "test"):
            for protocol in ("kept", "left out"):
                lists = references.ranked(name, split, protocol == "left out")
                expected = ranking_metrics(lists, references.targets[split], ks=(5, 10))
                found = record["metrics"][name][split][protocol]
                assert found["hr@10"] == pytest.approx(expected["hr@10"], abs=1e-12)
                assert found["ndcg@5"] == pytest.approx(expected["ndcg@5"], abs=1e-12)


def test_paired_standard_error_of_a_difference():
    import quality

    first = np.array([0, -1, 3, -1, 12, 1])  # ranks: hits at 10 for users 0, 2, 5
    second = np.array([-1, -1, 0, 2, -1, -1])
    mean, error = quality.paired_difference(first, second, "hr@10")
    difference = np.array([1, 0, 0, -1, 0, 1], dtype=float)
    assert mean == pytest.approx(difference.mean()) and error == pytest.approx(difference.std(ddof=1) / math.sqrt(6))
    assert quality.standard_error(first, "hr@10") == pytest.approx(np.array([1, 0, 1, 0, 0, 1]).std(ddof=1) / 6**0.5)


def test_the_gpu_profile_runs_the_paper_recipe_for_a_baseline_scheme(p5_file, tmp_path):
    """The gpu profile trains through examples/paper_recipe.py (here its CPU dry run) with any scheme, and the
    report says plainly that a dry run is not a result."""
    report = run(p5_file, tmp_path, "--profile", "gpu", "--dry-run", "--arms", "sequential", "--limit", "10")
    record = json.loads((tmp_path / "results" / "beauty60" / "gpu" / "sequential.json").read_text())
    assert record["settings"]["scheme"] == "sequential" and record["dry_run"] is True
    assert record["metrics"]["test"]["kept"]["num_users"] == 10
    text = report.read_text()
    assert "## cpu profile\n\nNot run" in text and "**A dry run**" in text
    assert "Not run yet: META ID, random (RID), collaborative (CID), independent (IID), references." in text


def test_unknown_arms_are_refused(capsys):
    import quality

    with pytest.raises(SystemExit):
        quality.parse_args(["--arms", "metaid,sasrec"])
    assert "unknown arm(s) ['sasrec']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        quality.parse_args(["--profile", "gpu", "--arms", "metaid-k50"])
    assert "the ablations ['metaid-k50'] run on the cpu profile only" in capsys.readouterr().err
    assert quality.parse_args(["--profile", "gpu"]).arms == ",".join((*hm.workflow.schemes.SCHEMES, "references"))


def test_the_generation_bug_arm_needs_the_model_it_decodes(p5_file, tmp_path):
    with pytest.raises(SystemExit, match="run --arms prompt-metaid first"):
        run(p5_file, tmp_path, "--arms", "prompt-metaid-f-bug")


def test_id_scores_read_each_item_as_the_model_reads_it(tiny):
    """The scores see the items' own input vectors where the model has them: identical ID rows with distinct item
    vectors are told apart."""
    import quality
    from hf_metaid.workflow.build import build_model
    from hf_metaid.workflow.settings import ModelSettings

    split, tokenizer, _ = tiny
    model = build_model(tokenizer, ModelSettings(d_model=32, item_input=True))
    plain = quality.item_read_vectors(model, tokenizer)
    with torch.no_grad():
        model.encoder.metaid_item_input.weight.normal_()
    moved = quality.item_read_vectors(model, tokenizer)
    assert plain.shape == (len(tokenizer.entity_vocabulary.items), 32) and not np.allclose(plain, moved)
    scores = quality.id_scores(model, tokenizer, split["train"])
    assert scores["diversity"] > 0 and -1 <= scores["memorization"] <= 1


def test_the_speed_section_embeds_each_results_file(tmp_path):
    import quality

    results = tmp_path / "results"
    results.mkdir()
    (results / "index_scale.md").write_text(
        "# Index cost\n\nRegenerate: x.\n\n## part\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![plot](index_scale.png)\n\n"
        "Commands:\n\n    python benchmarks/index_scale.py\n"
    )
    lines = quality.speed_section(tmp_path / "report", results)
    text = "\n".join(lines)
    assert "### Index cost against graph size" in text and "| 1 | 2 |" in text and "##### part" in text
    assert "![plot](../results/index_scale.png)" in text and "# Index cost" not in lines
    assert "Not run yet: `python benchmarks/index_speed.py`." in text and "    python" not in text


def test_the_report_embeds_the_sequential_references_or_says_how_to_run_them(tmp_path):
    import quality

    results = tmp_path / "results"
    results.mkdir()
    missing = "\n".join(quality.embedded_files("Sequential references", quality.SEQUENTIAL_FILES, tmp_path, results))
    assert "Not run yet: `python benchmarks/sequential_references.py run --model sasrec --budget 15`." in missing
    assert "Not run yet: `python benchmarks/quality_budget.py table`." in missing
    (results / "sequential_references.md").write_text(
        "# Sequential references\n\n## Budget runs\n\n| model | test |\n|---|---|\n| sasrec | 0.0356 |\n"
    )
    (results / "budget_comparison.md").write_text(  # a blank line before the commands, as write_report writes it
        "# Against the references\n\n| budget | model |\n|---|---|\n\n\nCommands:\n\n    python x.py\n"
    )
    text = "\n".join(quality.embedded_files("Sequential references", quality.SEQUENTIAL_FILES, tmp_path, results))
    assert "## Sequential references" in text and "### SASRec and BERT4Rec (RecTools) at a training budget" in text
    assert "##### Budget runs" in text and "| sasrec | 0.0356 |" in text and "Not run yet" not in text
    assert text.index("### The recipes against the references") < text.index("### SASRec and BERT4Rec")
    assert "\n\n\n" not in text  # the file's blank lines and the dropped command list leave single blank lines
    report = quality.report("beauty", report_path=tmp_path / "RESULTS.md", results=tmp_path / "quality")
    assert "## Sequential references" in report.read_text()


def test_the_beauty_report_quotes_every_named_recipe_and_points_to_the_benchmarks_readme(tmp_path):
    """RESULTS.md carries each named recipe's figures as the registry quotes them (the README's results table links
    there) and links ``benchmarks/README.md``, which tells how to rerun everything."""
    import quality

    report = quality.report("beauty", report_path=tmp_path / "RESULTS.md", results=tmp_path / "results")
    text = report.read_text()
    assert all(f"- `{name}`: {hm.recipes.describe(name)}" in text for name in hm.recipes.names())
    readme = BENCHMARKS / "README.md"
    assert readme.is_file() and f"]({os.path.relpath(readme, tmp_path)})" in text


def test_the_scheme_arms_train_the_recipe_asked_for_in_their_own_folder(p5_file, tmp_path):
    """``--recipe NAME`` trains the scheme arms on that named recipe (the small-data options still apply), into
    ``cpu-NAME`` beside the default recipe's ``cpu``, and the report gives it its own section."""
    import quality

    report = run(p5_file, tmp_path, "--arms", "metaid", "--recipe", "fast").read_text()
    record = json.loads((tmp_path / "results" / "beauty60" / "cpu-fast" / "metaid.json").read_text())
    fast = hm.recipes.get("fast")
    assert record["recipe"] == "fast" and not (tmp_path / "results" / "beauty60" / "cpu").exists()
    model = record["settings"]["model"]
    assert (model["item_loss"], model["item_loss_negatives"]) == (fast.model.item_loss, fast.model.item_loss_negatives)
    assert (model["d_model"], record["settings"]["index"]["num_clusters"]) == (32, 4)  # SMALL's overrides
    assert "## cpu profile, recipe fast" in report and "## cpu profile\n\nNot run" in report
    with pytest.raises(SystemExit):
        quality.parse_args(["--profile", "gpu", "--recipe", "fast"])
    assert quality.parse_args([]).recipe == quality.DEFAULT_RECIPE == "decoder-k100"
