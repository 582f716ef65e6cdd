"""The data stage: an interaction file split leave-one-out, its public name, whether ranking leaves histories out."""

from __future__ import annotations

import os
from pathlib import Path

import datasets

from ..data import (
    catalogue,
    leave_one_out,
    load_interactions,
    repeated_pairs,
)


def decide_exclude_seen(train: datasets.Dataset) -> tuple[bool, str]:
    """``(exclude_seen, reason)`` for data whose recipe leaves the choice open: leave the history out of the ranking
    only where no training pair (user, item) repeats. Where users come back to items (check-ins, groceries, music),
    a history item is often the answer, and leaving them out lowers every method's hit rate."""
    repeats = repeated_pairs(train)
    if repeats:
        return False, f"history items kept: {repeats} training rows repeat a user-item pair (repeat consumption)"
    return True, "history items left out: no user meets an item twice in the training data"


def split_data(data: str | os.PathLike | datasets.Dataset | None = "beauty", **load_options):
    """``(leave-one-out splits, catalogue of every user and item)`` of an interaction file, a table, or ``"beauty"``
    / ``None`` for the embedded Beauty data; ``load_options`` go to :func:`~hf_metaid.load_interactions` (column
    names, ``min_interactions``, ``drop_duplicates``)."""
    interactions = load_interactions(None if data == "beauty" else data, **load_options)
    return leave_one_out(interactions), catalogue(interactions)


def data_name(data: str | os.PathLike | datasets.Dataset | None) -> str:
    """A short public name for the data of :func:`split_data`: ``"beauty"`` for the embedded Amazon Beauty data,
    a file's name without its folders (a card on the Hub should not show someone's paths), ``"<dataset>"`` for a
    table."""
    if data is None or data == "beauty":
        return "beauty"
    if isinstance(data, datasets.Dataset):
        return "<dataset>"
    return Path(data).name
