"""Screening of loaded interactions for what breaks no format rule but changes what a model learns: copied rows,
and users too short for the leave-one-out split.

Each has an innocent reading (a user who plays a song twice in a row, a user who left after two purchases) and a
harmful one (a file appended to itself, where every test target is the last history item), so each is counted and
reported as a :class:`~hf_metaid.errors.DataWarning`, refused where the data cannot be used as it stands, and
dropped only where the caller asked.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ..errors import DataWarning, InteractionFormatError

LEAVE_ONE_OUT_MINIMUM = 3  # the last two interactions are the validation and test targets, one is left to learn from
# A file in which at least this share of the distinct interactions has a copy is refused unless the caller says what
# to do with the copies: that is a file appended to itself, not a log.
DOUBLED_SHARE = 0.5


class Interaction(Protocol):
    @property
    def item(self) -> str: ...

    @property
    def timestamp(self) -> float | None: ...

    @property
    def where(self) -> str: ...


Event = TypeVar("Event", bound=Interaction)


@dataclass(frozen=True)
class CopyCount:
    """What :func:`count_copies` found. A *copy* repeats an earlier interaction of its user exactly: same item and
    timestamp, or, in data without timestamps, the same item right after it (nothing else tells a copy apart)."""

    interactions: int
    copies: int  # interactions that copy an earlier one
    copied: int  # distinct interactions with at least one copy
    returns: int  # interactions of the user's previous item at another time: repeat consumption, not copies
    example: str | None  # "line 5 repeats line 4": the first copy

    @property
    def copied_share(self) -> float:
        """The share of the distinct interactions that have a copy: 1 where every row is in the file twice."""
        return self.copied / max(self.interactions - self.copies, 1)


def count_copies(by_user: dict[str, Sequence[Event]]) -> CopyCount:
    """Count the copies and the returns to the previous item in chronologically ordered user sequences."""
    copies = copied = returns = 0
    example = None
    total = 0
    for seq in by_user.values():
        total += len(seq)
        originals = _originals(seq)
        copies += sum(original is not None for original in originals)
        copied += len({original for original in originals if original is not None})
        returns += sum(
            original is None and index > 0 and event.item == seq[index - 1].item
            for index, (event, original) in enumerate(zip(seq, originals, strict=True))
        )
        if example is None:
            first = next((i for i, original in enumerate(originals) if original is not None), None)
            if first is not None:
                copy, original = seq[first], seq[originals[first]]  # type: ignore[index]
                same = copy.where == original.where  # one line of a sequence file
                example = f"{copy.where}: {copy.item!r} twice" if same else f"{copy.where} repeats {original.where}"
    return CopyCount(total, copies, copied, returns, example)


def _originals(seq: Sequence[Interaction]) -> list[int | None]:
    """For each interaction, the index of the earlier one it copies (the first of its kind), or ``None``."""
    originals: list[int | None] = []
    if seq and seq[0].timestamp is not None:
        first: dict[tuple[str, float | None], int] = {}
        for index, event in enumerate(seq):
            key = (event.item, event.timestamp)
            originals.append(first.get(key))
            first.setdefault(key, index)
        return originals
    run_start = 0
    for index, event in enumerate(seq):
        if index and event.item == seq[index - 1].item:
            originals.append(run_start)
        else:
            originals.append(None)
            run_start = index
    return originals


def screen_copies(by_user: dict[str, list[Event]], source: str, drop_duplicates: bool | None) -> dict[str, list[Event]]:
    """Report copied interactions and returns to the previous item; drop the copies (``drop_duplicates=True``),
    keep them (``False``), or, by default, keep a few and refuse a doubled file.

    Raises:
        InteractionFormatError: ``drop_duplicates`` is ``None`` and the data looks doubled (:data:`DOUBLED_SHARE`).
    """
    found = count_copies(by_user)
    timed = next(iter(by_user.values()))[0].timestamp is not None
    what = "same user, item and timestamp" if timed else "the user's previous item again, in data without timestamps"
    described = (
        f"{source}: {found.copies} of {found.interactions} interactions copy an earlier one ({what}; e.g. "
        f"{found.example})"
    )
    if found.copies and drop_duplicates is None and found.copied_share >= DOUBLED_SHARE:
        raise InteractionFormatError(
            f"{described}: {found.copied_share:.0%} of the distinct interactions have a copy, as in a file appended "
            "to itself; drop the copies with --drop-duplicates (drop_duplicates=True), or keep them with "
            "--keep-duplicates (drop_duplicates=False)"
        )
    if found.returns:
        _warn(
            f"{source}: {found.returns} of {found.interactions} interactions repeat the user's previous item at "
            "another time (kept: a user coming back to an item)"
        )
    if not found.copies:
        return by_user
    if drop_duplicates:
        _warn(f"{described}: dropped")
        return {user: _without_copies(seq) for user, seq in by_user.items()}
    advice = "as asked" if drop_duplicates is False else "--drop-duplicates (drop_duplicates=True) drops them"
    _warn(f"{described}: kept, {advice}")
    return by_user


def _without_copies(seq: list[Event]) -> list[Event]:
    return [event for event, original in zip(seq, _originals(seq), strict=True) if original is None]


def screen_short_users(
    by_user: dict[str, list[Event]], source: str, min_interactions: int | None
) -> dict[str, list[Event]]:
    """Refuse users with fewer interactions than leave-one-out needs (``min_interactions=None``), naming the first,
    or drop the users with fewer than ``min_interactions`` and report how many.

    Raises:
        InteractionFormatError: a short user and ``min_interactions`` is ``None``; no user left after dropping.
    """
    if min_interactions is None:
        short = [(user, seq) for user, seq in by_user.items() if len(seq) < LEAVE_ONE_OUT_MINIMUM]
        if short:
            user, seq = short[0]
            more = f", and {len(short) - 1} more user(s) have fewer" if len(short) > 1 else ""
            raise InteractionFormatError(
                f"{source}: {seq[0].where}: user {user!r} has {len(seq)} interaction(s){more}; at least "
                f"{LEAVE_ONE_OUT_MINIMUM} are needed (leave-one-out keeps the last two for validation and test); "
                f"drop such users with --min-interactions {LEAVE_ONE_OUT_MINIMUM} "
                f"(min_interactions={LEAVE_ONE_OUT_MINIMUM})"
            )
        return by_user
    kept = {user: seq for user, seq in by_user.items() if len(seq) >= min_interactions}
    if not kept:
        raise InteractionFormatError(
            f"{source}: no user has {min_interactions} interactions or more (min_interactions={min_interactions})"
        )
    if len(kept) < len(by_user):
        total = sum(len(seq) for seq in by_user.values())
        lost = total - sum(len(seq) for seq in kept.values())
        _warn(
            f"{source}: dropped {len(by_user) - len(kept)} of {len(by_user)} users with fewer than {min_interactions} "
            f"interactions ({lost} of {total} interactions)"
        )
    return kept


def _warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=5)  # the caller of load_interactions
