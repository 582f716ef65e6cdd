"""benchmarks/train_overhead.py: the plain twin matches the META ID model's sizes, and a tiny run writes its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_beauty_lines

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(autouse=True)
def benchmarks_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_the_plain_twin_has_the_models_sizes(model):
    import train_overhead

    twin = train_overhead.plain_twin(model)
    assert type(twin).__name__ == "T5ForConditionalGeneration"
    assert twin.get_input_embeddings().weight.shape == model.get_input_embeddings().weight.shape
    shapes = {name: p.shape for name, p in twin.named_parameters()}
    mine = {name: p.shape for name, p in model.named_parameters()}
    assert all(mine[name] == shape for name, shape in shapes.items())  # every T5 weight, same shape
    assert set(mine) - set(shapes) == {"encoder.metaid_augmentation.weight", "encoder.metaid_augmentation.bias"}


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_tiny_run_writes_every_variant(tmp_path):
    import train_overhead

    data = write_beauty_lines(tmp_path / "beauty60.txt", 60)
    out = tmp_path / "overhead.md"
    train_overhead.main(["--data", str(data), "--steps", "1", "--warmup", "1", "--repeats", "2", "--out", str(out)])
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "variant" not in line]
    assert [row.split(" | ")[1] for row in rows] == [
        "plain T5",
        "META ID",
        "META ID, F skipped",
        "plain T5",
        "META ID",
        "META ID, repeat bias",
    ]
    assert all(float(row.split(" | ")[-1].rstrip(" |")) > 0 for row in rows)
    text = out.read_text()
    assert "F's overhead: " in text and "repeat bias's overhead: " in text and "not measured" not in text
