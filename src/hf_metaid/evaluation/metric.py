"""The ranking metrics as an ``evaluate`` metric, so they plug into code written for ``evaluate``.

``evaluate.load`` fetches metric scripts from the Hub; this class is defined locally instead, so it works offline::

    from hf_metaid.evaluation.metric import load_metric

    metric = load_metric()
    metric.add_batch(predictions=[["item_1", "item_7"]], references=["item_7"])
    metric.compute(ks=(5, 10))  # {"hr@5": 1.0, "ndcg@5": 0.63..., ...}

Each prediction is one user's ranked list of item ids and each reference that user's held-out item. The numbers
are those of :func:`hf_metaid.evaluation.metrics.ranking_metrics`.

``evaluate`` is an optional extra (``pip install hf-metaid[evaluate]``):
:func:`~hf_metaid.evaluation.metrics.ranking_metrics` gives the same numbers without it, and it would add to every
install a dozen packages the rest of the library never imports (requests and aiohttp with their dependencies), for the
sake of code already written for ``evaluate``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import datasets

from .metrics import DEFAULT_KS, ranking_metrics

try:
    import evaluate
except ImportError as err:
    raise ImportError(
        "hf_metaid.evaluation.metric needs the evaluate library: pip install hf-metaid[evaluate]"
    ) from err

__all__ = ["MetaIDRankingMetric", "load_metric"]

_DESCRIPTION = """Full-ranking HR@k, NDCG@k and MRR@k for next-item recommendation with one held-out item per user,
plus the share of recommended entries that are repeats or (given the catalogue) not real items."""

_INPUTS = """
Args:
    predictions: list of ranked lists of item ids (strings), best first, one list per user.
    references: list of item ids (strings), the held-out target of each user.
    ks: cut-offs, default (5, 10).
    valid_items: optional collection of all item ids; recommended ids outside it count as invalid.
Returns:
    dict with hr@k, ndcg@k, mrr@k for each k, invalid_rate and num_users.
"""

_CITATION = """@inproceedings{huang2025metaid,
  title={Improving LLMs for Recommendation with Out-Of-Vocabulary Tokens},
  author={Huang, Ting-Ji and Yang, Jia-Qi and Shen, Chunxu and Liu, Kai-Qi and Zhan, De-Chuan and Ye, Han-Jia},
  booktitle={International Conference on Machine Learning (ICML)},
  year={2025}
}"""


class MetaIDRankingMetric(evaluate.Metric):
    """``evaluate.Metric`` over ranked item lists; delegates to
    :func:`~hf_metaid.evaluation.metrics.ranking_metrics`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.List(datasets.Value("string")),
                    "references": datasets.Value("string"),
                }
            ),
        )

    def _compute(
        self,
        predictions: Sequence[Sequence[str]],
        references: Sequence[str],
        ks: Iterable[int] = DEFAULT_KS,
        valid_items: Collection[str] | None = None,
    ) -> dict[str, float]:
        return ranking_metrics(predictions, references, ks=ks, valid_items=valid_items)


def load_metric(**kwargs) -> MetaIDRankingMetric:
    """A ready :class:`MetaIDRankingMetric`, without the Hub.

    Predictions are kept in memory unless ``keep_in_memory=False`` is passed, so nothing is written to the
    ``evaluate`` cache folder; other keyword arguments go to ``evaluate.Metric`` (e.g. ``num_process`` and
    ``process_id`` for distributed evaluation, which needs the on-disk cache).
    """
    kwargs.setdefault("keep_in_memory", True)
    return MetaIDRankingMetric(**kwargs)
