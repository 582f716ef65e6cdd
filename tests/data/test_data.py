"""Loading interactions from every supported format, the error rules, and the leave-one-out split."""

from __future__ import annotations

import gzip
import json
import warnings

import datasets
import pytest

import hf_metaid as hm


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_embedded_beauty_matches_its_published_figures(beauty):
    assert beauty.num_rows == 198_502
    assert len(set(beauty["user"][:])) == 22_363
    assert len(set(beauty["item"][:])) == 12_101
    assert beauty.features["user"].dtype == "string" and beauty.features["item"].dtype == "string"


def test_shipped_file_is_the_shared_dataset():
    with gzip.open(hm.embedded_beauty_path(), "rt") as handle:
        first = handle.readline().split()
    assert first[0] == "1" and len(first) > 3


def test_sequence_format_keeps_string_ids_and_order(tmp_path):
    path = write(tmp_path / "seq.txt", "A 007 x y\nB 7 z q r\n")
    table = hm.load_interactions(path)
    assert table["user"][:] == ["A"] * 3 + ["B"] * 4
    assert table["item"][:] == ["007", "x", "y", "7", "z", "q", "r"]
    assert table["position"][:] == [0, 1, 2, 0, 1, 2, 3]


def test_csv_sorts_by_timestamp_with_stable_ties(tmp_path):
    path = write(tmp_path / "d.csv", "user,item,timestamp\nu,a,3\nu,b,1\nu,c,1\nv,a,5\nv,b,6\nv,c,7\n")
    table = hm.load_interactions(path)
    assert table["item"][:3] == ["b", "c", "a"]  # b and c tie at 1: file order kept
    assert table["timestamp"][:3] == [1.0, 1.0, 3.0]


def test_jsonl_and_parquet_and_dataset_inputs_agree(tmp_path):
    rows = [{"user": u, "item": i} for u in ("u1", "u2") for i in ("a", "b", "c")]
    jsonl = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    parquet = tmp_path / "d.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(parquet))
    expected = hm.load_interactions(jsonl).to_dict()
    assert hm.load_interactions(parquet).to_dict() == expected
    assert hm.load_interactions(datasets.Dataset.from_list(rows)).to_dict() == expected


def test_integer_ids_in_tabular_files_become_strings(tmp_path):
    rows = [{"user": 1, "item": 10 + k} for k in range(3)]
    table = hm.load_interactions(write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows)))
    assert table["user"][:] == ["1", "1", "1"] and table["item"][:] == ["10", "11", "12"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.txt", "", "empty"),
        ("blank.txt", "\n\n", "empty"),
        ("short.txt", "u1 a b c\nu2 a b\n", "line 2: user 'u2' has 2 interaction(s)"),
        ("noitems.txt", "u1 a b c\nu2\n", "line 2: user 'u2' has no items"),
        ("dup.txt", "u1 a b c\nu1 d e f\n", "line 2: user 'u1' already has a sequence on line 1"),
        ("cols.csv", "uid,item\n1,2\n", "missing column(s) ['user']"),
        ("fields.csv", "user,item\nu,a\nu\n", "line 3: expected 2 fields"),
        ("stamp.csv", "user,item,timestamp\nu,a,x\n", "line 2: timestamp 'x' is not a number"),
        ("bad.jsonl", '{"user": "u", "item": "a"}\n{nope\n', "line 2: not valid JSON"),
        ("float.jsonl", '{"user": "u", "item": 1.5}\n', "line 1: item id 1.5 is not a string or an integer"),
        ("null.jsonl", '{"user": null, "item": "a"}\n', "line 1: user id None is not a string or an integer"),
        ("list.jsonl", '{"user": ["u"], "item": "a"}\n', "line 1: user id ['u'] is not a string or an integer"),
        ("space.csv", "user,item\nu x,a\n", "line 2: user id 'u x' contains white space"),
    ],
)
def test_bad_input_names_file_line_and_rule(tmp_path, name, text, message):
    path = write(tmp_path / name, text)
    with pytest.raises(hm.InteractionFormatError) as err:
        hm.load_interactions(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(hm.InteractionFormatError, match="no such file"):
        hm.load_interactions(tmp_path / "absent.txt")
    with pytest.raises(hm.InteractionFormatError, match="unknown format 'xml'"):
        hm.load_interactions(write(tmp_path / "d.txt", "u a b c\n"), format="xml")


def test_leave_one_out_protocol(tmp_path):
    table = hm.load_interactions(write(tmp_path / "d.txt", "u1 a b c d\nu2 e f g\n"))
    splits = hm.leave_one_out(table)
    assert splits["train"]["item"][:] == ["a", "b", "e"]
    assert splits["validation"][0] == {"user": "u1", "history": ["a", "b"], "target": "c"}
    assert splits["test"][0] == {"user": "u1", "history": ["a", "b", "c"], "target": "d"}
    assert splits["test"][1] == {"user": "u2", "history": ["e", "f"], "target": "g"}


def test_leave_one_out_on_beauty_sizes(beauty):
    splits = hm.leave_one_out(beauty)
    assert splits["train"].num_rows == 198_502 - 2 * 22_363
    assert splits["test"].num_rows == splits["validation"].num_rows == 22_363


def test_catalogue_lists_every_entity(tmp_path):
    table = hm.load_interactions(write(tmp_path / "d.txt", "u1 a b c d\nu2 e f a\n"))
    assert hm.catalogue(table) == {"users": ["u1", "u2"], "items": ["a", "b", "c", "d", "e", "f"]}


@pytest.mark.parametrize("name", ["bom.txt", "bom.txt.gz", "bom.csv", "bom.jsonl"])
def test_a_byte_order_mark_is_not_part_of_the_first_id(tmp_path, name):
    """Editors on Windows start UTF-8 files with a byte-order mark; it must neither become part of the first user id
    (P5 text) nor hide the first column's name (CSV)."""
    bodies = {
        "txt": "1 a b c\n2 d e f\n",
        "csv": "user,item\n1,a\n1,b\n1,c\n2,d\n2,e\n2,f\n",
        "jsonl": "".join(f'{{"user": "{u}", "item": "{i}"}}\n' for u, i in zip("111222", "abcdef", strict=True)),
    }
    body = "\ufeff" + bodies[name.split(".")[1]]
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(body)
    else:
        write(path, body)
    table = hm.load_interactions(path)
    assert sorted(set(table["user"][:])) == ["1", "2"] and table["item"][:3] == ["a", "b", "c"]


def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("1 a b c\n2 d caf\u00e9 f\n".encode("latin-1"))
    with pytest.raises(hm.InteractionFormatError, match=f"{path}: line 2: character 8 is not UTF-8"):
        hm.load_interactions(path)


# ------------------------------------------------------------------------------- copies, short users, columns
def csv_rows(users: int = 6, length: int = 5) -> list[str]:
    """``user,item,timestamp`` rows: every user meets ``length`` distinct items at times 0, 1, ..."""
    return [f"u{u},i{(u * 3 + k) % 11},{k}" for u in range(users) for k in range(length)]


def test_a_doubled_file_is_refused_until_told_what_to_do_with_the_copies(tmp_path):
    """Every row twice would make each test target the last history item: refused by default, naming an example;
    dropping the copies gives back the single file's table, keeping them is counted."""
    rows = csv_rows()
    single = write(tmp_path / "single.csv", "user,item,timestamp\n" + "\n".join(rows) + "\n")
    doubled = write(tmp_path / "doubled.csv", "user,item,timestamp\n" + "".join(f"{r}\n{r}\n" for r in rows))
    with pytest.raises(hm.InteractionFormatError) as err:
        hm.load_interactions(doubled)
    message = str(err.value)
    assert f"{doubled}: {len(rows)} of {2 * len(rows)} interactions copy an earlier one" in message
    assert "line 3 repeats line 2" in message and "--drop-duplicates" in message and "--keep-duplicates" in message
    with pytest.warns(hm.DataWarning, match=f"{len(rows)} of {2 * len(rows)} interactions copy .*: dropped"):
        dropped = hm.load_interactions(doubled, drop_duplicates=True)
    assert dropped.to_dict() == hm.load_interactions(single).to_dict()
    with pytest.warns(hm.DataWarning, match="kept, as asked"):
        kept = hm.load_interactions(doubled, drop_duplicates=False)
    assert kept.num_rows == 2 * len(rows)


def test_without_timestamps_a_copy_is_the_same_item_right_after_itself(tmp_path):
    """A sequence file cannot tell a copy from a return but by its place: ``a a`` is a copy, ``a b a`` a return."""
    doubled = write(tmp_path / "doubled.txt", "u1 a a b b c c\nu2 d d e e f f\n")
    with pytest.raises(
        hm.InteractionFormatError, match=r"6 of 12 interactions copy an earlier one .*e\.g\. line 1: 'a' twice"
    ):
        hm.load_interactions(doubled)
    with pytest.warns(hm.DataWarning, match="dropped"):
        assert hm.load_interactions(doubled, drop_duplicates=True)["item"][:] == list("abcdef")
    comeback = write(tmp_path / "comeback.txt", "u1 a b a c\nu2 d e d f\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", hm.DataWarning)  # returns to an earlier item: nothing to report
        assert hm.load_interactions(comeback, drop_duplicates=True)["item"][:] == list("abacdedf")


def test_a_few_copies_are_kept_and_counted(tmp_path):
    rows = csv_rows()
    path = write(tmp_path / "d.csv", "user,item,timestamp\n" + "\n".join([*rows, rows[7]]) + "\n")
    with pytest.warns(
        hm.DataWarning,
        match=f"1 of {len(rows) + 1} interactions copy .*line {len(rows) + 2} repeats line 9.*kept, --drop-duplicates",
    ):
        assert hm.load_interactions(path).num_rows == len(rows) + 1


def test_returns_to_the_previous_item_are_counted_and_kept():
    """Repeat consumption (``markov-repeats``): the same item again at a later time is no copy; it is counted,
    kept even with drop_duplicates, and the repeated pairs that choose the ranking protocol stay as they were."""
    log, _ = hm.data.markov_interactions(300, 200, repeats=True)
    users, items = log["user"][:], log["item"][:]
    returns = sum(users[k] == users[k - 1] and items[k] == items[k - 1] for k in range(1, len(items)))
    assert returns > 0
    with pytest.warns(hm.DataWarning, match=f"{returns} of {log.num_rows} interactions repeat the user's previous"):
        table = hm.load_interactions(log, drop_duplicates=True)
    assert table["item"][:] == items
    train = hm.leave_one_out(table)["train"]
    assert hm.data.repeated_pairs(train) == hm.data.repeated_pairs(hm.leave_one_out(log)["train"]) > 0


def test_short_users_are_refused_by_name_or_dropped_when_asked(tmp_path):
    rows = csv_rows(users=4)
    path = write(
        tmp_path / "d.csv", "user,item,timestamp\n" + "\n".join([*rows, "once,i1,0", "twice,i1,0", "twice,i2,1"])
    )
    with pytest.raises(hm.InteractionFormatError) as err:
        hm.load_interactions(path)
    assert f"line {len(rows) + 2}: user 'once' has 1 interaction(s), and 1 more user(s) have fewer" in str(err.value)
    assert "--min-interactions 3 (min_interactions=3)" in str(err.value)
    with pytest.warns(
        hm.DataWarning, match=f"dropped 2 of 6 users with fewer than 3 interactions \\(3 of {len(rows) + 3}"
    ):
        table = hm.load_interactions(path, min_interactions=3)
    assert sorted(set(table["user"][:])) == ["u0", "u1", "u2", "u3"] and table.num_rows == len(rows)
    with pytest.raises(hm.InteractionFormatError, match="no user has 6 interactions or more"):
        hm.load_interactions(path, min_interactions=6)


def test_copies_are_dropped_before_users_are_counted(tmp_path):
    """A user with two interactions written twice has two, not four."""
    rows = [*csv_rows(users=3), "short,i1,0", "short,i1,0", "short,i2,1", "short,i2,1"]
    path = write(tmp_path / "d.csv", "user,item,timestamp\n" + "\n".join(rows))
    with warnings.catch_warnings(record=True) as caught, pytest.raises(hm.InteractionFormatError) as err:
        warnings.simplefilter("always")
        hm.load_interactions(path, drop_duplicates=True)
    assert "user 'short' has 2 interaction(s)" in str(err.value)
    first = rows.index("short,i1,0") + 2  # its line: the header is line 1
    assert [str(w.message) for w in caught if w.category is hm.DataWarning] == [
        f"{path}: 2 of {len(rows)} interactions copy an earlier one (same user, item and timestamp; e.g. line "
        f"{first + 1} repeats line {first}): dropped"
    ]


def test_the_caller_names_the_columns(tmp_path):
    body = "user_id,item_id,ts\n" + "\n".join(r for r in ("u,b,2", "u,a,1", "u,c,3", "v,a,1", "v,b,2", "v,c,3")) + "\n"
    path = write(tmp_path / "d.csv", body)
    with pytest.raises(hm.InteractionFormatError, match=r"missing column.*--user-column \(user_column=\), --item-col"):
        hm.load_interactions(path)
    named = {"user_column": "user_id", "item_column": "item_id"}
    table = hm.load_interactions(path, **named, timestamp_column="ts")
    assert table["item"][:3] == ["a", "b", "c"] and table["timestamp"][:3] == [1.0, 2.0, 3.0]
    with pytest.warns(hm.DataWarning, match="no 'timestamp' column, so the file order .*\\['ts'\\] are not read"):
        assert hm.load_interactions(path, **named)["item"][:3] == ["b", "a", "c"]  # the file order
    with pytest.raises(hm.InteractionFormatError, match="missing column\\(s\\) \\['when'\\]"):
        hm.load_interactions(path, **named, timestamp_column="when")  # a time column named must be there
    with pytest.raises(hm.InvalidArgumentError, match="has no columns, yet user_column='user_id' was given"):
        hm.load_interactions(write(tmp_path / "s.txt", "u a b c\n"), user_column="user_id")
