"""The top k of every user of an interaction log, as one table: what a shop computes for all of its users at once.

:func:`recommend_all` asks the model about each user of the log with all of that user's interactions as the history
(the prompt evaluation writes for the test split, without holding the last item out), in batches through
``model.recommend_batch``. A user the ID vocabulary does not know is asked as a new user from the history items it
knows (the cold-start path, as evaluation asks such a user); a user of whom it knows neither the user nor any item
gets no rows. Both are counted, as are the interactions with items it does not know, in a
:class:`~hf_metaid.errors.DataWarning`.

The table is long, one row per recommendation: ``user``, ``rank`` (1 is the best), ``item`` and ``score`` (the
model's log-probability of the item, as ``recommend`` gives it), so that it loads into SQL, pandas or a join as it is.
"""

from __future__ import annotations

import warnings

import datasets
from tqdm.auto import tqdm

from ..checks import check_bool, check_choice, check_int
from ..data.interactions import user_sequences
from ..errors import DataWarning, InvalidArgumentError, UnknownDataError
from .splitting import decide_exclude_seen

__all__ = ["RECOMMENDATION_FEATURES", "recommend_all"]

RECOMMENDATION_FEATURES = datasets.Features(
    {
        "user": datasets.Value("string"),
        "rank": datasets.Value("int32"),
        "item": datasets.Value("string"),
        "score": datasets.Value("float64"),
    }
)


def recommend_all(
    model,
    tokenizer,
    interactions: datasets.Dataset,
    *,
    k: int = 10,
    exclude_seen: bool | None = None,
    mode: str = "beam",
    num_beams: int | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> datasets.Dataset:
    """The top ``k`` items of every user of ``interactions``, one row per item (module docstring), users in the order
    they first appear, each user's items best first.

    Args:
        interactions: the table :func:`~hf_metaid.load_interactions` reads (``user`` and ``item`` columns, each user's
            rows in time order); ``load_interactions(path, min_interactions=1)`` keeps users of any length.
        exclude_seen: leave each user's history items out of its top k; ``None`` decides from the data, as the demo
            and the recipes do: left out where no user meets an item twice, kept where users come back to items
            (:func:`~hf_metaid.workflow.splitting.decide_exclude_seen`).
        k: items per user (fewer where the history left out leaves fewer).
        mode: ``"beam"`` or ``"exact"`` decoding, as in ``model.recommend_batch``.
        num_beams: the beam width (default: the model's ``config.metaid_num_beams``, or ``k``).
        batch_size: users per decoding batch.
        progress: show a progress bar over the users.

    Warns:
        DataWarning: users the vocabulary does not know (asked as new users), users with neither a known id nor a
            known item (no rows), interactions with items it does not know (left out of the histories).

    Raises:
        UnknownDataError: the vocabulary knows none of the users and none of the items: other data than the model's.
    """
    _check_arguments(model, tokenizer, interactions, k, exclude_seen, mode, num_beams, batch_size, progress)
    sequences = user_sequences(interactions)
    if not sequences:
        raise InvalidArgumentError("interactions holds no rows: there is no user to recommend for")
    if exclude_seen is None:
        exclude_seen, _ = decide_exclude_seen(interactions)
    vocabulary = tokenizer.entity_vocabulary
    histories = {user: [item for item in items if vocabulary.has_item(item)] for user, items in sequences.items()}
    asked = [user for user, history in histories.items() if vocabulary.has_user(user) or history]
    _report_unknown(sequences, histories, asked, vocabulary)
    if not asked:
        raise UnknownDataError(
            f"the model's ID vocabulary knows none of the {len(sequences)} users and none of the "
            f"{len({item for items in sequences.values() for item in items})} items: this is not the data the model "
            "was trained for"
        )
    columns: dict[str, list] = {name: [] for name in RECOMMENDATION_FEATURES}
    bar = tqdm(total=len(asked), desc="recommending", unit="user", disable=not progress)
    for start in range(0, len(asked), batch_size):
        users = asked[start : start + batch_size]
        ranked = model.recommend_batch(
            tokenizer,
            [user if vocabulary.has_user(user) else None for user in users],  # None: a new user, from its history
            [histories[user] for user in users],
            k=k,
            exclude_seen=exclude_seen,
            mode=mode,
            num_beams=num_beams,
            batch_size=batch_size,
        )
        for user, row in zip(users, ranked, strict=True):
            for rank, (item, score) in enumerate(row, start=1):
                for name, value in zip(columns, (user, rank, item, score), strict=True):
                    columns[name].append(value)
        bar.update(len(users))
    bar.close()
    return datasets.Dataset.from_dict(columns, features=RECOMMENDATION_FEATURES)


def _report_unknown(sequences: dict, histories: dict, asked: list, vocabulary) -> None:
    """One :class:`DataWarning` with what the vocabulary does not know, where it does not know something."""
    # A vocabulary of items only (user_ids=False) knows no user by design: each is asked from its history alone.
    unknown_users = sum(not vocabulary.has_user(user) for user in sequences) if not vocabulary.items_only else 0
    left_out = len(sequences) - len(asked)
    unknown_rows = sum(len(items) - len(histories[user]) for user, items in sequences.items())
    parts = []
    if vocabulary.items_only and left_out:
        parts.append(
            f"{left_out} of {len(sequences)} users have no history item the ID vocabulary knows, which gives users "
            "no IDs (items only): left without recommendations"
        )
    if unknown_users:
        parts.append(
            f"{unknown_users} of {len(sequences)} users are not in the ID vocabulary: {unknown_users - left_out} "
            f"asked as new users from the history items it knows, {left_out} with no known item left without "
            "recommendations"
        )
    if unknown_rows:
        total = sum(len(items) for items in sequences.values())
        parts.append(
            f"{unknown_rows} of {total} interactions name items the ID vocabulary does not know: left out "
            "of the histories (hf-metaid extend gives new users and items IDs)"
        )
    if parts:
        warnings.warn("; ".join(parts), DataWarning, stacklevel=3)


def _check_arguments(model, tokenizer, interactions, k, exclude_seen, mode, num_beams, batch_size, progress) -> None:
    """The arguments of :func:`recommend_all`, checked before any decoding."""
    if not hasattr(model, "recommend_batch"):
        raise InvalidArgumentError(f"model must be a META ID model (with recommend_batch), got {type(model).__name__}")
    if getattr(tokenizer, "entity_vocabulary", None) is None:
        raise InvalidArgumentError(f"tokenizer must be a MetaIDTokenizer, got {type(tokenizer).__name__}")
    if not isinstance(interactions, datasets.Dataset) or not {"user", "item"} <= set(interactions.column_names):
        found = interactions.column_names if isinstance(interactions, datasets.Dataset) else type(interactions).__name__
        raise InvalidArgumentError(
            "interactions must be a datasets.Dataset with columns 'user' and 'item' (load_interactions' output), "
            f"got {found}"
        )
    check_int("k", k, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_choice("mode", mode, ("beam", "exact"))
    check_bool("progress", progress)
    if exclude_seen is not None:
        check_bool("exclude_seen", exclude_seen)
    if num_beams is not None:
        check_int("num_beams", num_beams, minimum=1)
