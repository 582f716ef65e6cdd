"""The command's printing: plain aligned tables and metric lines."""

from __future__ import annotations

from collections.abc import Sequence

from ..evaluation.metrics import DEFAULT_KS


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (floats with 4 decimals)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, rule, *body])


def _cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_line(metrics: dict, ks: Sequence[int] = DEFAULT_KS) -> str:
    """The machine-readable summary: ``HR@5=… HR@10=… NDCG@5=… NDCG@10=…``."""
    parts = [f"HR@{k}={metrics[f'hr@{k}']:.4f}" for k in ks] + [f"NDCG@{k}={metrics[f'ndcg@{k}']:.4f}" for k in ks]
    return " ".join(parts)


def metrics_table(metrics: dict, ks: Sequence[int]) -> str:
    rows = [[f"@{k}", metrics[f"hr@{k}"], metrics[f"ndcg@{k}"], metrics[f"mrr@{k}"]] for k in ks]
    return format_table(["cut-off", "HR", "NDCG", "MRR"], rows)
