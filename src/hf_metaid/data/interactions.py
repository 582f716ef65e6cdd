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
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import datasets

from ..checks import check_bool, check_int
from ..errors import DataWarning, InteractionFormatError, InvalidArgumentError
from .screening import screen_copies, screen_short_users
from .synthetic import markov_interactions

SEQUENCE_SUFFIXES = (".txt", ".txt.gz")
TABULAR_FORMATS = ("csv", "tsv", "parquet", "jsonl")
DEFAULT_TIMESTAMP_COLUMN = "timestamp"  # read where present; a column named otherwise must be there
LOADER_COLUMNS = ("position",)  # what load_interactions adds: no column left unread when its table is read again


@dataclass(frozen=True)
class _Event:
    user: str
    item: str
    timestamp: float | None
    where: str  # "line 12" / "row 3": used in error messages


def embedded_beauty_path() -> Path:
    """Path of the Amazon Beauty 5-core file shipped inside the package (P5 text format, gzip)."""
    return Path(str(resources.files("hf_metaid.data").joinpath("beauty.txt.gz")))


# Built-in synthetic logs by name: the keyword arguments of markov_interactions that write them. "markov-large" has
# about Beauty's interactions per user over 36,000 users and 18,000 items: the size a 15-minute demo is meant to handle.
SYNTHETIC_SOURCES = {
    "markov": {},
    "markov-repeats": {"repeats": True},
    "markov-large": {"num_users": 36000, "num_items": 18000, "mean_length": 8.0, "seed": 1},
}


def load_interactions(
    source: str | os.PathLike | datasets.Dataset | None = None,
    *,
    format: str | None = None,
    user_column: str = "user",
    item_column: str = "item",
    timestamp_column: str | None = DEFAULT_TIMESTAMP_COLUMN,
    min_interactions: int | None = None,
    drop_duplicates: bool | None = None,
) -> datasets.Dataset:
    """Read interactions into a ``Dataset`` with columns ``user``, ``item``, ``position`` [, ``timestamp``].

    Args:
        source: a path, a ``datasets.Dataset`` with user/item columns, ``None`` / ``"beauty"`` for the embedded
            Amazon Beauty data, ``"markov"`` for the synthetic log of :func:`~hf_metaid.data.markov_interactions`
            with its default settings (a second data set whose best possible ranking is known), or
            ``"markov-repeats"`` for the same process where users come back to items they met (repeat consumption,
            as in check-ins or music), ``"markov-large"`` for a log of 36,000 users and about 18,000 items.
        format: ``"sequence"`` (P5 ``Beauty.txt`` and OpenP5 ``user_sequence.txt``: ``user item item ...`` per
            line, items in time order), ``"csv"``, ``"tsv"``, ``"parquet"`` or ``"jsonl"``. Guessed from the suffix
            when omitted (``.txt`` → sequence).
        user_column: the user column's name in tabular sources.
        item_column: the item column's name in tabular sources.
        timestamp_column: the timestamp column's name in tabular sources. Without a timestamp column the file
            order is the chronological order; with one, ties keep the file order (stable sort). The default,
            ``"timestamp"``, is read where present; a column named otherwise must be there.
        min_interactions: ``None`` refuses a user with fewer than 3 interactions (leave-one-out keeps the last two
            for validation and test), naming the first; a number N drops the users with fewer than N instead and
            reports how many.
        drop_duplicates: ``True`` drops the copies of an interaction (same user, item and timestamp; without
            timestamps, the same item again right after itself), ``False`` keeps them; either way they are counted
            and reported. ``None`` keeps a few and refuses data where half the interactions have a copy (a file
            appended to itself: every test target would be the last history item).

    Warns:
        DataWarning: counting the copies, the returns to the user's previous item, the users dropped, or the
            columns left unread where there is no timestamp column.

    Raises:
        InteractionFormatError: naming the file, the line (or row) and the rule that was broken.
    """
    _check_arguments(source, format, user_column, item_column, timestamp_column, min_interactions)
    if drop_duplicates is not None:
        check_bool("drop_duplicates", drop_duplicates)
    screening = {"min_interactions": min_interactions, "drop_duplicates": drop_duplicates}
    name = "<dataset>"
    if source is None or (isinstance(source, str) and source.lower() == "beauty"):
        source, format = embedded_beauty_path(), "sequence"
    elif isinstance(source, str) and source.lower() in SYNTHETIC_SOURCES:
        source, name = markov_interactions(**SYNTHETIC_SOURCES[source.lower()])[0], source.lower()
    if isinstance(source, datasets.Dataset):
        events = _dataset_events(source, user_column, item_column, timestamp_column, name)
        return _build(events, name, **screening)
    path = Path(source)
    if not path.is_file():
        raise InteractionFormatError(f"{path}: {'a folder, not a file' if path.is_dir() else 'no such file'}")
    fmt = (format or _guess_format(path)).lower()
    if fmt == "sequence":
        _check_no_columns(path, user_column, item_column, timestamp_column)
        return _build(_sequence_events(path), str(path), **screening, grouped=True)
    if fmt in ("csv", "tsv"):
        events = _csv_events(path, "\t" if fmt == "tsv" else ",", user_column, item_column, timestamp_column)
    elif fmt == "jsonl":
        events = _jsonl_events(path, user_column, item_column, timestamp_column)
    elif fmt == "parquet":
        events = _dataset_events(_read_parquet(path), user_column, item_column, timestamp_column, str(path))
    else:
        known = ", ".join(("sequence", *TABULAR_FORMATS))
        raise InteractionFormatError(f"{path}: unknown format {fmt!r}; use one of {known}")
    return _build(events, str(path), **screening)


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
    if min_interactions is not None:
        check_int("min_interactions", min_interactions, minimum=1)


def _check_no_columns(path: Path, user_column: str, item_column: str, timestamp_column: str | None) -> None:
    """Column names given for a file that has none would otherwise be ignored without a word."""
    named = {"user_column": user_column, "item_column": item_column, "timestamp_column": timestamp_column}
    defaults = {"user_column": "user", "item_column": "item", "timestamp_column": DEFAULT_TIMESTAMP_COLUMN}
    given = [f"{key}={value!r}" for key, value in named.items() if value not in (defaults[key], None)]
    if given:
        raise InvalidArgumentError(
            f"{path}: a sequence file ('user item item ...' per line) has no columns, yet {', '.join(given)} was "
            "given; column names apply to CSV, TSV, Parquet and JSONL files and to tables"
        )


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
        _require_columns(header, user_col, item_col, time_col, f"{path}: line 1")
        _note_no_timestamp(header, user_col, item_col, time_col, str(path))
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
    first = True
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
        _require_columns(list(row), user_col, item_col, time_col, f"{path}: {where}")
        if first:
            _note_no_timestamp(list(row), user_col, item_col, time_col, str(path))
            first = False
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
    _require_columns(table.column_names, user_col, item_col, time_col, source)
    _note_no_timestamp(table.column_names, user_col, item_col, time_col, source)
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


def _require_columns(header: Iterable[str], user_col: str, item_col: str, time_col: str | None, where: str) -> None:
    """The user and item columns, and a timestamp column named otherwise than the default, must be there."""
    header = list(header)
    needed = (user_col, item_col) if time_col in (None, DEFAULT_TIMESTAMP_COLUMN) else (user_col, item_col, time_col)
    missing = [c for c in needed if c not in header]
    if missing:
        options = {user_col: "--user-column (user_column=)", item_col: "--item-column (item_column=)"}
        options.setdefault(time_col, "--time-column (timestamp_column=)")
        raise InteractionFormatError(
            f"{where}: missing column(s) {missing}; found {list(header)}; name the file's own columns with "
            + ", ".join(options[c] for c in missing)
        )


def _note_no_timestamp(header: Iterable[str], user_col: str, item_col: str, time_col: str | None, source: str) -> None:
    """Without the default timestamp column the file order is the time order; where other columns go unread, one
    of them may be the time under another name, so say so rather than train on the file order without a word."""
    header = list(header)
    if time_col is None or time_col in header:
        return
    unread = [c for c in header if c not in (user_col, item_col, *LOADER_COLUMNS)]
    if unread:
        warnings.warn(
            f"{source}: no {time_col!r} column, so the file order is taken as the time order, and the column(s) "
            f"{unread} are not read; name the time column with --time-column (timestamp_column=)",
            DataWarning,
            stacklevel=5,  # the caller of load_interactions
        )


def _build(
    events: Iterable[_Event],
    source: str,
    min_interactions: int | None,
    drop_duplicates: bool | None,
    grouped: bool = False,
) -> datasets.Dataset:
    """Group events by user, order each user's events by time (stable), screen copies and short users
    (:mod:`.screening`), build the table."""
    by_user: dict[str, list[_Event]] = {}
    for event in events:
        by_user.setdefault(event.user, []).append(event)
    if not by_user:
        raise InteractionFormatError(f"{source}: empty: no interactions found")
    stamped = {e.timestamp is not None for seq in by_user.values() for e in seq}
    if len(stamped) > 1:
        raise InteractionFormatError(f"{source}: some rows have a timestamp and some do not")
    has_time = stamped == {True}
    if has_time and not grouped:  # sorted() is stable: ties keep the file order
        by_user = {user: sorted(seq, key=lambda e: e.timestamp) for user, seq in by_user.items()}
    by_user = screen_copies(by_user, source, drop_duplicates)
    by_user = screen_short_users(by_user, source, min_interactions)
    columns: dict[str, list] = {"user": [], "item": [], "position": []}
    if has_time:
        columns["timestamp"] = []
    for user, seq in by_user.items():
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
