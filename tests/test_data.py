"""Loading interactions from every supported format, the error rules, and the leave-one-out split."""

from __future__ import annotations

import gzip
import json

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
