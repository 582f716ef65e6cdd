"""benchmarks/index_scale.py: the synthetic power-law graphs, the memory sampler, and a tiny run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(autouse=True)
def benchmarks_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_power_law_graphs_are_seeded_and_long_tailed():
    import index_scale

    table = index_scale.power_law_interactions(20_000, seed=3)
    again = index_scale.power_law_interactions(20_000, seed=3)
    assert table.num_rows == 20_000 and table["user"] == again["user"] and table["item"] == again["item"]
    assert table["user"] != index_scale.power_law_interactions(20_000, seed=4)["user"]
    users = np.unique(table["user"], return_counts=True)[1]
    assert len(users) <= 1_000 and users.max() > 20 * np.median(users)  # Zipf: a few users do most


def test_peak_memory_of_a_stage():
    import index_scale

    sampler = index_scale.MemorySampler()
    sampler.samples = [(0.0, 10), (1.0, 30), (2.0, 20), (3.0, 50)]
    assert sampler.peak(0.5, 2.5) == 30 and sampler.peak(0.0, 3.0) == 50
    assert sampler.peak(2.1, 2.2) == 20  # shorter than the interval: the nearest sample


@pytest.mark.slow
def test_tiny_points_end_to_end(tmp_path, capsys):
    import index_scale

    results, table = tmp_path / "points", tmp_path / "index_scale.md"
    argv = ["--points", "spectral-2000,skipgram-2000", "--results", str(results), "--table", str(table)]
    index_scale.main(argv)
    for point, stages in (("spectral-2000", 4), ("skipgram-2000", 5)):
        record = json.loads((results / f"{point}.json").read_text())
        assert record["interactions"] == 2000 and len(record["stages"]) == stages
        fit = sum(stage["seconds"] for stage in record["stages"].values())
        assert fit == pytest.approx(record["total_seconds"], rel=1e-6)
        assert 0 < record["peak_rss_gib"] <= record["max_rss_gib"] * 1.01
    text = table.read_text()
    assert text.count("| spectral | 2,000 |") == 1 and text.count("| skipgram | 2,000 |") == 1
    assert "Skip-gram at 2,000 interactions" in text and "target point has not run" in text and "No projection" in text
    assert table.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    index_scale.main(argv)
    assert capsys.readouterr().out.count("exists: skipped") == 2
    with pytest.raises(SystemExit):
        index_scale.main(["--points", "dense-100"])


def test_the_projection_follows_the_two_largest_points(monkeypatch):
    import index_scale

    monkeypatch.setattr(index_scale, "memory_gib", lambda: 17.0)
    points = [
        {"interactions": 1_000_000, "peak_rss_gib": 2.0, "start_rss_gib": 1.0, "total_seconds": 10.0},
        {"interactions": 4_000_000, "peak_rss_gib": 5.0, "start_rss_gib": 1.0, "total_seconds": 40.0},
    ]
    (line,) = index_scale.projection(points)
    # added memory 1 → 4 GiB over 4x interactions: slope 1; 16 GiB free at the start → 16M interactions, 160 s
    assert "interactions^1.00" in line and "about 16M interactions" in line and "about 3 minutes" in line
    assert "No projection" in index_scale.projection(points[:1])[0]
