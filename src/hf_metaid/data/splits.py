"""Chronological leave-one-out split, the protocol of P5, OpenP5 and META ID.

Per user: the last item is the test target, the one before it the validation target, everything before that is
training. Only the ``train`` split may feed the ID vocabulary; validation and test rows carry their history so
evaluation never has to look back into the raw interactions.
"""

from __future__ import annotations

import datasets

from ..errors import InteractionFormatError, InvalidArgumentError
from .interactions import user_sequences
from .screening import LEAVE_ONE_OUT_MINIMUM

TARGET_FEATURES = datasets.Features(
    {
        "user": datasets.Value("string"),
        "history": datasets.Sequence(datasets.Value("string")),
        "target": datasets.Value("string"),
    }
)


def leave_one_out(interactions: datasets.Dataset) -> datasets.DatasetDict:
    """Split a table from :func:`load_interactions` into ``train`` / ``validation`` / ``test``.

    Returns:
        ``train``: interaction rows (``user``, ``item``, ``position``) of ``items[:-2]``;
        ``validation``: one row per user, ``history = items[:-2]``, ``target = items[-2]``;
        ``test``: one row per user, ``history = items[:-1]``, ``target = items[-1]``.
    """
    _check_table(interactions)
    sequences = user_sequences(interactions)
    train = {"user": [], "item": [], "position": []}
    validation = {"user": [], "history": [], "target": []}
    test = {"user": [], "history": [], "target": []}
    for user, items in sequences.items():
        if len(items) < LEAVE_ONE_OUT_MINIMUM:
            raise InteractionFormatError(
                f"user {user!r} has {len(items)} interaction(s); leave-one-out needs at least {LEAVE_ONE_OUT_MINIMUM} "
                f"(drop such users with load_interactions(..., min_interactions={LEAVE_ONE_OUT_MINIMUM}), "
                f"--min-interactions {LEAVE_ONE_OUT_MINIMUM})"
            )
        train["user"].extend([user] * (len(items) - 2))
        train["item"].extend(items[:-2])
        train["position"].extend(range(len(items) - 2))
        validation["user"].append(user)
        validation["history"].append(items[:-2])
        validation["target"].append(items[-2])
        test["user"].append(user)
        test["history"].append(items[:-1])
        test["target"].append(items[-1])
    train_features = datasets.Features(
        {"user": datasets.Value("string"), "item": datasets.Value("string"), "position": datasets.Value("int64")}
    )
    return datasets.DatasetDict(
        train=datasets.Dataset.from_dict(train, features=train_features),
        validation=datasets.Dataset.from_dict(validation, features=TARGET_FEATURES),
        test=datasets.Dataset.from_dict(test, features=TARGET_FEATURES),
    )


def catalogue(interactions: datasets.Dataset) -> dict[str, list[str]]:
    """Every user and item id of a table (first-appearance order), to give IDs to entities absent from training.

    Only the *names* go to the indexer, never the interactions, so no validation/test structure leaks into it.
    """
    _check_table(interactions)
    return {
        "users": list(dict.fromkeys(interactions["user"][:])),
        "items": list(dict.fromkeys(interactions["item"][:])),
    }


def repeated_pairs(train: datasets.Dataset) -> int:
    """How many training rows repeat a (user, item) pair already seen: 0 where every user meets an item once (as in
    the Amazon 5-core sets), many on check-ins, groceries or music, where a history item is often the next one."""
    _check_table(train)
    pairs = list(zip(train["user"][:], train["item"][:], strict=True))
    return len(pairs) - len(set(pairs))


def _check_table(interactions: datasets.Dataset) -> None:
    if not isinstance(interactions, datasets.Dataset) or not {"user", "item"} <= set(interactions.column_names):
        found = interactions.column_names if isinstance(interactions, datasets.Dataset) else type(interactions).__name__
        raise InvalidArgumentError(
            f"interactions must be a datasets.Dataset with columns 'user' and 'item' (load_interactions' output), "
            f"got {found}"
        )
