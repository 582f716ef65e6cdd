"""Load user–item interactions from the formats recommendation data comes in, into one ``datasets.Dataset``.

Every loader ends in the same table: ``user`` and ``item`` as strings (raw ids are kept as strings end to end, so
``"007"`` and ``"7"`` stay different), ``position`` (0-based chronological index inside the user's sequence) and,
when the source had one, ``timestamp``. Rows are grouped by user (in order of first appearance) and sorted by
position, so a user's history is a contiguous slice.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import datasets

from ..checks import check_int
from ..errors import InteractionFormatError, InvalidArgumentError
from .synthetic import markov_interactions

SEQUENCE_SUFFIXES = (".txt", ".txt.gz")
TABULAR_FORMATS = ("csv", "tsv", "parquet", "jsonl")
DEFAULT_MIN_INTERACTIONS = 3


@dataclass(frozen=True)
class _Event:
    user: str
    item: str
    timestamp: float | None
    where: str  # "line 12" / "row 3": used in error messages


def embedded_beauty_path() -> Path:
    """Path of the Amazon Beauty 5-core file shipped inside the package (P5 text format, gzip)."""
    return Path(str(resources.files("hf_metaid.data").joinpath("beauty.txt.gz")))


# Built-in synthetic logs by name: the keyword arguments of markov_interactions that write them.
SYNTHETIC_SOURCES = {"markov": {}, "markov-repeats": {"repeats": True}}


def load_interactions(
    source: str | os.PathLike | datasets.Dataset | None = None,
    *,
    format: str | None = None,
    user_column: str = "user",
    item_column: str = "item",
    timestamp_column: str | None = "timestamp",
    min_interactions: int = DEFAULT_MIN_INTERACTIONS,
) -> datasets.Dataset:
    """Read interactions into a ``Dataset`` with columns ``user``, ``item``, ``position`` [, ``timestamp``].

    Args:
        source: a path, a ``datasets.Dataset`` with user/item columns, ``None`` / ``"beauty"`` for the embedded
            Amazon Beauty data, ``"markov"`` for the synthetic log of :func:`~hf_metaid.data.markov_interactions`
            with its default settings (a second data set whose best possible ranking is known), or
            ``"markov-repeats"`` for the same process where users come back to items they met (repeat consumption,
            as in check-ins or music).
        format: ``"sequence"`` (P5 ``Beauty.txt`` and OpenP5 ``user_sequence.txt``: ``user item item ...`` per
            line, items in time order), ``"csv"``, ``"tsv"``, ``"parquet"`` or ``"jsonl"``. Guessed from the suffix
            when omitted (``.txt`` → sequence).
        user_column, item_column, timestamp_column: column names of tabular sources. Without a timestamp column
            the file order is the chronological order; with one, ties keep the file order (stable sort).
        min_interactions: users with fewer interactions are refused (leave-one-out needs 3).

    Raises:
        InteractionFormatError: naming the file, the line (or row) and the rule that was broken.
    """
    _check_arguments(source, format, user_column, item_column, timestamp_column, min_interactions)
    if source is None or (isinstance(source, str) and source.lower() == "beauty"):
        source, format = embedded_beauty_path(), "sequence"
    elif isinstance(source, str) and source.lower() in SYNTHETIC_SOURCES:
        source = markov_interactions(**SYNTHETIC_SOURCES[source.lower()])[0]
    if isinstance(source, datasets.Dataset):
        events = _dataset_events(source, user_column, item_column, timestamp_column)
        return _build(events, "<dataset>", min_interactions)
    path = Path(source)
    if not path.is_file():
        raise InteractionFormatError(f"{path}: {'a folder, not a file' if path.is_dir() else 'no such file'}")
    fmt = (format or _guess_format(path)).lower()
    if fmt == "sequence":
        return _build(_sequence_events(path), str(path), min_interactions, grouped=True)
    if fmt in ("csv", "tsv"):
        events = _csv_events(path, "\t" if fmt == "tsv" else ",", user_column, item_column, timestamp_column)
    elif fmt == "jsonl":
        events = _jsonl_events(path, user_column, item_column, timestamp_column)
    elif fmt == "parquet":
        events = _dataset_events(_read_parquet(path), user_column, item_column, timestamp_column, str(path))
    else:
        known = ", ".join(("sequence", *TABULAR_FORMATS))
        raise InteractionFormatError(f"{path}: unknown format {fmt!r}; use one of {known}")
    return _build(events, str(path), min_interactions)


def _check_arguments(source, format, user_column, item_column, timestamp_column, min_interactions) -> None:
    if source is not None and not isinstance(source, (str, os.PathLike, datasets.Dataset)):
        raise InvalidArgumentError(
            f"source must be a path, a datasets.Dataset or None (the embedded Beauty data), got {type(source).__name__}"
        )
    for name, value in (("format", format), ("timestamp_column", timestamp_column)):
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidArgumentError(f"{name} must be a non-empty string or None, got {value!r}")
    for name, value in (("user_column", user_column), ("item_column", item_column)):
        if not isinstance(value, str) or not value:
            raise InvalidArgumentError(f"{name} must be a non-empty string, got {value!r}")
    if user_column == item_column:
        raise InvalidArgumentError(f"user_column and item_column must differ, got {user_column!r} for both")
    check_int("min_interactions", min_interactions, minimum=1)


def _read_parquet(path: Path) -> datasets.Dataset:
    import pyarrow

    try:
        return datasets.Dataset.from_parquet(str(path))
    except pyarrow.ArrowException as err:  # not a parquet file, or a damaged one
        raise InteractionFormatError(f"{path}: not a readable Parquet file ({err})") from None


def _guess_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    for fmt in TABULAR_FORMATS:
        if name.endswith("." + fmt):
            return fmt
    if name.endswith(".json"):
        return "jsonl"
    return "sequence"


def _text_lines(path: Path) -> Iterator[str]:
    """The file's lines as text (gzip read through), line endings kept for the csv module.

    A UTF-8 byte-order mark at the start is dropped (``utf-8-sig``: it would otherwise become part of the first user
    id, or hide the first column's name); bytes that are not UTF-8 raise :class:`InteractionFormatError` naming the
    file and line.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
            for lineno, line in enumerate(handle, start=1):
                try:
                    line.encode("utf-8")  # undecodable bytes came through as lone surrogates
                except UnicodeEncodeError as err:
                    raise InteractionFormatError(
                        f"{path}: line {lineno}: character {err.start + 1} is not UTF-8 text; save the file as UTF-8"
                    ) from None
                yield line
    except (OSError, EOFError) as err:  # unreadable, or a damaged or cut gzip file
        raise InteractionFormatError(f"{path}: cannot be read ({err})") from None


def _check_id(value: object, what: str, where: str, source: str) -> str:
    """Raw ids must be strings or integers (floats would turn 12 into '12.0' and NaN into an id)."""
    if isinstance(value, bool) or value is None:
        raise InteractionFormatError(f"{source}: {where}: {what} id {value!r} is not a string or an integer")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        raise InteractionFormatError(f"{source}: {where}: {what} id {value!r} is not a string or an integer")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise InteractionFormatError(f"{source}: {where}: empty {what} id")
        if any(ch.isspace() for ch in text):
            raise InteractionFormatError(f"{source}: {where}: {what} id {text!r} contains white space")
        if not text.isprintable():  # a NUL or another control character: a damaged or binary file
            raise InteractionFormatError(f"{source}: {where}: {what} id {text!r} contains a control character")
        return text
    raise InteractionFormatError(f"{source}: {where}: {what} id {value!r} is not a string or an integer")


def _check_timestamp(value: object, where: str, source: str) -> float:
    try:
        stamp = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InteractionFormatError(f"{source}: {where}: timestamp {value!r} is not a number") from None
    if not math.isfinite(stamp):
        raise InteractionFormatError(f"{source}: {where}: timestamp {value!r} is not a finite number")
    return stamp


def _sequence_events(path: Path) -> Iterator[_Event]:
    seen: dict[str, int] = {}
    for lineno, line in enumerate(_text_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"line {lineno}"
        user = _check_id(fields[0], "user", where, str(path))
        if len(fields) < 2:
            raise InteractionFormatError(f"{path}: {where}: user {user!r} has no items (expected 'user item ...')")
        if user in seen:
            raise InteractionFormatError(
                f"{path}: {where}: user {user!r} already has a sequence on line {seen[user]} (one line per user)"
            )
        seen[user] = lineno
        for token in fields[1:]:
            yield _Event(user, _check_id(token, "item", where, str(path)), None, where)


def _csv_events(path: Path, delimiter: str, user_col: str, item_col: str, time_col: str | None) -> Iterator[_Event]:
    consumed = 0

    def counted() -> Iterator[str]:  # the csv module's own line count lags behind on its errors
        nonlocal consumed
        for line in _text_lines(path):
            consumed += 1
            yield line

    reader = csv.DictReader(counted(), delimiter=delimiter)
    try:
        header = reader.fieldnames or []
        _require_columns(header, user_col, item_col, f"{path}: line 1")
        has_time = time_col is not None and time_col in header
        for row in reader:
            where = f"line {reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                raise InteractionFormatError(f"{path}: {where}: expected {len(header)} fields as in the header")
            stamp = _check_timestamp(row[time_col], where, str(path)) if has_time else None
            yield _Event(
                _check_id(row[user_col], "user", where, str(path)),
                _check_id(row[item_col], "item", where, str(path)),
                stamp,
                where,
            )
    except csv.Error as err:  # the csv module's own complaints: a NUL byte, an endless quoted field
        raise InteractionFormatError(f"{path}: line {consumed}: {err}") from None


def _jsonl_events(path: Path, user_col: str, item_col: str, time_col: str | None) -> Iterator[_Event]:
    for lineno, line in enumerate(_text_lines(path), start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InteractionFormatError(f"{path}: {where}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise InteractionFormatError(f"{path}: {where}: expected a JSON object per line")
        _require_columns(list(row), user_col, item_col, f"{path}: {where}")
        stamp = _check_timestamp(row[time_col], where, str(path)) if time_col and time_col in row else None
        yield _Event(
            _check_id(row[user_col], "user", where, str(path)),
            _check_id(row[item_col], "item", where, str(path)),
            stamp,
            where,
        )


def _dataset_events(
    table: datasets.Dataset, user_col: str, item_col: str, time_col: str | None, source: str = "<dataset>"
) -> Iterator[_Event]:
    _require_columns(table.column_names, user_col, item_col, source)
    has_time = time_col is not None and time_col in table.column_names
    users, items = table[user_col][:], table[item_col][:]
    stamps = table[time_col][:] if has_time else None
    for index in range(len(users)):
        where = f"row {index}"
        yield _Event(
            _check_id(users[index], "user", where, source),
            _check_id(items[index], "item", where, source),
            _check_timestamp(stamps[index], where, source) if stamps is not None else None,
            where,
        )


def _require_columns(header: Iterable[str], user_col: str, item_col: str, where: str) -> None:
    missing = [c for c in (user_col, item_col) if c not in header]
    if missing:
        raise InteractionFormatError(f"{where}: missing column(s) {missing}; found {list(header)}")


def _build(events: Iterable[_Event], source: str, min_interactions: int, grouped: bool = False) -> datasets.Dataset:
    """Group events by user, order each user's events by time (stable), enforce the minimum, build the table."""
    by_user: dict[str, list[_Event]] = {}
    for event in events:
        by_user.setdefault(event.user, []).append(event)
    if not by_user:
        raise InteractionFormatError(f"{source}: empty: no interactions found")
    stamped = {e.timestamp is not None for seq in by_user.values() for e in seq}
    if len(stamped) > 1:
        raise InteractionFormatError(f"{source}: some rows have a timestamp and some do not")
    has_time = stamped == {True}
    columns: dict[str, list] = {"user": [], "item": [], "position": []}
    if has_time:
        columns["timestamp"] = []
    for user, seq in by_user.items():
        if len(seq) < min_interactions:
            raise InteractionFormatError(
                f"{source}: {seq[0].where}: user {user!r} has {len(seq)} interaction(s); "
                f"at least {min_interactions} are needed (leave-one-out keeps the last two for validation and test)"
            )
        if has_time and not grouped:
            seq = sorted(seq, key=lambda e: e.timestamp)  # sorted() is stable: ties keep the file order
        columns["user"].extend([user] * len(seq))
        columns["item"].extend(e.item for e in seq)
        columns["position"].extend(range(len(seq)))
        if has_time:
            columns["timestamp"].extend(e.timestamp for e in seq)
    features = {"user": datasets.Value("string"), "item": datasets.Value("string"), "position": datasets.Value("int64")}
    if has_time:
        features["timestamp"] = datasets.Value("float64")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def user_sequences(interactions: datasets.Dataset) -> dict[str, list[str]]:
    """``{user: [item, ...]}`` in chronological order, from a table built by :func:`load_interactions`."""
    sequences: dict[str, list[str]] = {}
    for user, item in zip(interactions["user"][:], interactions["item"][:], strict=True):
        sequences.setdefault(user, []).append(item)
    return sequences
