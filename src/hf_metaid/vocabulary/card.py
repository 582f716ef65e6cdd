"""The dataset card of a shared ID vocabulary: the numbers a person needs to decide whether to build on it.

:func:`vocabulary_summary` computes them from the vocabulary itself (counts, cluster sizes, the unique-ID check) and
from what the indexer recorded in its metadata (settings, cold-start entities, the source data and its hash, timings
where given); :func:`vocabulary_card` writes them as a ``huggingface_hub.DatasetCard`` whose YAML header makes the
Parquet rows load with ``datasets.load_dataset`` and carries the Hub tags.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
from huggingface_hub import DatasetCard, DatasetCardData

from ..entity_vocabulary import EntityVocabulary

ROWS_FILE = "vocabulary.parquet"
HISTOGRAM_FILE = "cluster_sizes.png"
HISTOGRAM_BINS = 20
TAGS = ("recommendation", "generative-retrieval", "semantic-ids", "meta-id", "hf-metaid")
PAPER = "Huang et al., ICML 2025, *Improving LLMs for Recommendation with Out-Of-Vocabulary Tokens*"
GROWN_FIT_NOTE = (
    "The settings of the fit this vocabulary's lineage began with; the users and items added since were placed by "
    "the fold-in rule of `hf_metaid.vocabulary.growth`."
)


def users_with_ids(vocabulary: EntityVocabulary) -> str:
    """How many users have IDs, or, for a vocabulary of items only (``user_ids=False``), how many users have none."""
    without = vocabulary.metadata.get("users_without_ids")
    if not vocabulary.items_only or not without:
        return str(len(vocabulary.users))
    return f"none: items only ({without:,} users without IDs)"


def cluster_sizes(vocabulary: EntityVocabulary) -> np.ndarray:
    """Entities (users and items) per cluster token, one count per cluster (empty clusters count 0)."""
    codes = np.concatenate([vocabulary.user_codes, vocabulary.item_codes])
    return np.bincount(codes[:, 0], minlength=vocabulary.num_clusters).astype(np.int64)


def vocabulary_summary(vocabulary: EntityVocabulary, timings: Mapping[str, float] | None = None) -> dict:
    """The card's numbers as JSON-able values (they are also written to ``vocabulary_info.json``). Every count is
    taken from the vocabulary as it is, the cold-start one included: a grown vocabulary (``extend``) may have put
    new entities into the cold-start cluster since its fit recorded it."""
    sizes = cluster_sizes(vocabulary)
    codes = np.concatenate([vocabulary.user_codes, vocabulary.item_codes])
    distinct = len({(int(c), int(r)) for c, r in codes.tolist()})
    metadata = vocabulary.metadata
    params = metadata.get("params") or {}
    summary = {
        "users": len(vocabulary.users),
        "items": len(vocabulary.items),
        "clusters": vocabulary.num_clusters,
        "clusters_used": int((sizes > 0).sum()),
        "ranks": vocabulary.num_ranks,
        "new_tokens": len(vocabulary.new_tokens),
        "cluster_size": {
            "min": int(sizes.min()) if sizes.size else 0,
            "median": float(np.median(sizes)) if sizes.size else 0.0,
            "max": int(sizes.max()) if sizes.size else 0,
        },
        "unique_ids": {"entities": len(codes), "distinct": distinct, "passed": distinct == len(codes)},
        "cold_start": cold_start_counts(vocabulary),
        "embedding": params.get("embedding", vocabulary.scheme if vocabulary.scheme != "metaid" else None),
        "source": metadata.get("source"),
        "extended_with": metadata.get("extended_with"),
        "timings": dict(timings) if timings else metadata.get("timings"),
        "vector_dim": vocabulary.vector_dim,
        "entity_vectors": vocabulary.entity_vectors is not None,
    }
    return summary


def cold_start_counts(vocabulary: EntityVocabulary) -> dict | None:
    """The fit's cold-start record (``metadata["cold_start"]``) with the users and items its cluster holds now."""
    record = vocabulary.metadata.get("cold_start")
    if not record or record.get("cluster") is None:
        return record
    cluster = record["cluster"]
    users = int(np.sum(vocabulary.user_codes[:, 0] == cluster))
    return {**record, "users": users, "items": int(np.sum(vocabulary.item_codes[:, 0] == cluster))}


def vocabulary_card(
    vocabulary: EntityVocabulary,
    summary: Mapping,
    repo_id: str | None = None,
    model_repo: str | None = None,
    license: str | None = None,
) -> DatasetCard:
    """The dataset card (YAML metadata + Markdown) of ``vocabulary``; ``repo_id`` is where it is (to be) pushed,
    ``model_repo`` a model trained on it, linked both ways by :func:`hf_metaid.saving.hub_push.push_model`."""
    data = DatasetCardData(
        license=license,
        pretty_name=f"META ID vocabulary {vocabulary.fingerprint}",
        tags=list(TAGS),
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": ROWS_FILE}]}],
    )
    name = repo_id or "path/to/this/folder"
    size = summary["cluster_size"]
    unique = summary["unique_ids"]
    lines = [
        f"# ID vocabulary `{vocabulary.fingerprint}`",
        "",
        f"User and item IDs made of two out-of-vocabulary tokens each (a cluster token and a rank token), the META ID "
        f"scheme of {PAPER}, built with the `hf_metaid` library. Each row of `{ROWS_FILE}` is a user or an "
        "item (`type`, raw `id`, `cluster`, `rank`, the `tokens` that spell its ID, the `vector` it was clustered "
        "from) or one ID token with its fixed vector; `vocabulary_info.json` holds the fit settings and the "
        "fingerprint that a model trained on these IDs records.",
        "",
    ]
    if model_repo:
        lines += [f"Model trained on this vocabulary: [{model_repo}](https://huggingface.co/{model_repo}).", ""]
    parent = vocabulary.metadata.get("parent_fingerprint")
    if parent:
        lines += [f"Extends the vocabulary `{parent}`: every ID it holds is kept as it was. {_growth(vocabulary)}", ""]
    lines += [
        "## Usage",
        "",
        "```python",
        "import hf_metaid as hm",
        f'vocab = hm.EntityVocabulary.from_pretrained("{name}")',
        'tokenizer = hm.MetaIDTokenizer.from_base("t5-small", vocab)  '
        f"# or: hf-metaid train --data DATA --vocab {name}",
        "```",
        "",
        f'The rows alone: `datasets.load_dataset("{name}")`.',
        "",
        "## Numbers",
        "",
        "| | |",
        "|---|---|",
        f"| scheme | {vocabulary.scheme} |",
        f"| fingerprint | `{vocabulary.fingerprint}` |",
        f"| users | {users_with_ids(vocabulary)} |",
        f"| items | {summary['items']} |",
        f"| cluster tokens | {summary['clusters']} ({summary['clusters_used']} hold entities) |",
        f"| rank tokens | {summary['ranks']} |",
        f"| entities per cluster | min {size['min']}, median {size['median']:g}, max {size['max']} |",
        f"| unique IDs | {unique['distinct']} distinct IDs for {unique['entities']} entities: "
        f"{'every ID is unique' if unique['passed'] else 'FAILED, some entities share an ID'} |",
        f"| cold-start entities | {_cold_start(summary['cold_start'], grown=bool(parent))} |",
        f"| embedding | {summary['embedding'] or 'not recorded'} |",
        f"| fit time | {_timings(summary['timings'])} |",
        f"| source data | {_source(summary['source'], summary.get('extended_with'))} |",
        f"| vector size | {summary['vector_dim']} (entity vectors {_kept(summary['entity_vectors'])}) |",
        "",
        f"![Entities per cluster: one bar per size range, from {size['min']} (left) to {size['max']} (right); bar "
        f"height: clusters in that range]({HISTOGRAM_FILE})",
        "",
        f"Histogram of entities per cluster, {HISTOGRAM_BINS} size ranges at most from the smallest cluster (left) to "
        "the largest (right); each bar's height is the number of clusters in that range.",
        "",
        "## Fit settings",
        "",
        *([GROWN_FIT_NOTE, ""] if parent else []),
        "```json",
        json.dumps(vocabulary.metadata.get("params") or {}, indent=2, sort_keys=True),
        "```",
        "",
        *citation_section(),
    ]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def citation_section() -> list[str]:
    """The card's closing section: the paper, as BibTeX."""
    return ["## Citation", "", "```bibtex", CITATION, "```"]


def _kept(flag: bool) -> str:
    return "included" if flag else "not kept"


def _growth(vocabulary: EntityVocabulary) -> str:
    """What the last extension added, where the vocabulary records it."""
    record = vocabulary.metadata.get("extension")
    if not record:
        return ""
    if "cold_start_users" in record:
        cold = f"{record['cold_start_users']} and {record['cold_start_items']} of them into the cold-start cluster"
    else:  # recorded before the count was split by kind
        cold = f"{record.get('cold_start', 0)} of them into the cold-start cluster"
    return f"It adds {record['users']} users and {record['items']} items ({cold}), placed by: {record['rule']}."


def _cold_start(record: Mapping | None, grown: bool = False) -> str:
    if not record:
        return "not recorded"
    if record.get("cluster") is None:
        if grown:
            return "none (no cold-start cluster: a new entity without a place is left out)"
        return "none (every user and item occurs in the training data)"
    why = "never occur in the training data" + (", or too rarely in the data it was extended with" if grown else "")
    return (
        f"{record['users']} users and {record['items']} items, in cluster {record['cluster']} (they {why}: one "
        "shared cluster with a zero vector)"
    )


def _timings(timings: Mapping | None) -> str:
    if not timings:
        return "not recorded"
    return ", ".join(f"{name.removesuffix('_s')} {seconds:.1f} s" for name, seconds in sorted(timings.items()))


def _source(source: Mapping | None, extended_with: list | None = None) -> str:
    text = "not recorded"
    if source:
        text = f"{source.get('name') or 'unnamed'}; sha256 of the training rows `{source.get('train_sha256')}`"
    for data in extended_with or []:
        text += f"; extended with {data.get('name') or 'unnamed data'} (sha256 of its rows `{data.get('rows_sha256')}`)"
    return text


CITATION = """@inproceedings{huang2025metaid,
  title     = {Improving {LLMs} for Recommendation with Out-Of-Vocabulary Tokens},
  author    = {Huang, Ting-Ji and Yang, Jia-Qi and Shen, Chunxu and Liu, Kai-Qi and Zhan, De-Chuan and Ye, Han-Jia},
  booktitle = {Proceedings of the 42nd International Conference on Machine Learning},
  series    = {Proceedings of Machine Learning Research},
  volume    = {267},
  pages     = {26041--26057},
  year      = {2025}
}"""
