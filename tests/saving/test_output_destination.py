"""Every command that writes checks its destination before any work (a write is tried there), and the next write of
an output clears what killed runs left beside it, sparing a running writer's files.

The work is replaced by spies that fail the test if reached: the refusal must come before it, with no timing
involved. A destination that cannot be written is made for real where a test running as root can make one (a
regular file where the parent folder should be); a read-only folder needs a user that permissions bind, and a full
file system is its refusal to flush the probe (ENOSPC).
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hf_metaid as hm
from conftest import random_vocabulary, tiny_model, write_beauty_lines
from hf_metaid.cli import main
from hf_metaid.saving.leftovers import owner_tag

WORK = [  # the first long step of each command
    "hf_metaid.workflow.splitting.split_data",
    "hf_metaid.workflow.schemes.build_indexer",
    "hf_metaid.workflow.schemes.build_vocabulary",
    "hf_metaid.workflow.training_run.train",
    "hf_metaid.workflow.training_run.fine_tune",
    "hf_metaid.workflow.growth.load_for_training",
    "hf_metaid.data.load_interactions",
    "hf_metaid.saving.inference_folder.load_for_inference",
]


class WorkStarted(Exception):
    """Raised by a spy: the command began its work."""


@pytest.fixture
def no_work(monkeypatch):
    def spy(name):
        def started(*args, **kwargs):
            raise WorkStarted(name)

        return started

    for name in WORK:
        monkeypatch.setattr(name, spy(name))


def _commands(tmp: Path, out: Path) -> dict[str, list[str]]:
    data = tmp / "data.txt"
    data.write_text("u1 a b c\nu2 b c d\n")
    vocab = tmp / "metaid_vocab.json"
    random_vocabulary().save(vocab)
    model = tmp / "a-model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    return {
        "index": ["index", "--data", str(data), "--out", str(out)],
        "train": ["train", "--data", str(data), "--vocab", str(vocab), "--out", str(out)],
        "train-start-from": ["train", "--data", str(data), "--start-from", str(model), "--out", str(out)],
        "extend-vocabulary": ["extend", str(vocab), "--data", str(data), "--out", str(out)],
        "extend-model": ["extend", str(model), "--data", str(data), "--out", str(out)],
        "demo": ["demo", "--data", str(data), "--out", str(out)],
        "evaluate-save-to-card": ["evaluate", str(out), "--data", str(data), "--save-to-card"],
        "recommend-table": ["recommend", str(model), "--data", str(data), "--out", f"{out}.csv"],  # a file
    }


def _unwritable(kind: str, tmp: Path, command: str, monkeypatch) -> tuple[Path, str]:
    """An output (for ``evaluate``, the model folder itself) that cannot be written, and the reason shown."""
    if kind == "parent-is-a-file":
        (tmp / "file").write_text("a file, not a folder")
        return tmp / "file" / "out", f"{tmp / 'file'} is not a folder"
    if kind == "read-only":
        (tmp / "locked").mkdir()
        if command.startswith("evaluate"):
            (tmp / "locked" / "config.json").write_text("{}")
        (tmp / "locked").chmod(0o555)
        try:
            (tmp / "locked" / "try").mkdir()
        except PermissionError:
            pass
        else:  # root, with its power to override permissions
            pytest.skip("permissions do not bind this user; the other kinds fail for real here")
        return (tmp / "locked" if command.startswith("evaluate") else tmp / "locked" / "out"), "Permission denied"
    assert kind == "full"

    def no_space(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    out = tmp / "full" / ("model" if command.startswith("evaluate") else "out")
    out.parent.mkdir()
    if command.startswith("evaluate"):
        out.mkdir()
        (out / "config.json").write_text("{}")
    return out, os.strerror(errno.ENOSPC)


COMMANDS = ["index", "train", "train-start-from", "extend-vocabulary", "extend-model", "demo", "evaluate-save-to-card"]
COMMANDS += ["recommend-table"]


@pytest.mark.parametrize("kind", ["parent-is-a-file", "read-only", "full"])
@pytest.mark.parametrize("command", COMMANDS)
def test_an_unwritable_destination_is_refused_before_any_work(command, kind, tmp_path, no_work, capsys, monkeypatch):
    if kind == "parent-is-a-file" and command.startswith("evaluate"):
        pytest.skip("evaluate writes into an existing model folder, which has no parent to make")
    out, reason = _unwritable(kind, tmp_path, command, monkeypatch)
    argv = _commands(tmp_path, out)[command]
    capsys.readouterr()
    code = main(argv)  # a spy raises WorkStarted if the work began
    monkeypatch.undo()  # os.fsync back before anything else is written
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"hf-metaid {argv[0]}: error: {out}"), err
    assert reason in err
    parent = out if command.startswith("evaluate") else out.parent
    if parent.is_dir():
        assert not [p for p in parent.iterdir() if p.name.startswith(".")], "the probe was left behind"


def test_missing_parent_folders_are_made_for_the_probe_and_removed_again(tmp_path, no_work):
    """A destination whose folders do not exist yet passes; the check leaves no trace until the save makes them."""
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(WorkStarted):
        main(_commands(tmp_path, out)["index"])
    assert not (tmp_path / "new").exists()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the process is gone
    return child.pid


def _leftover(beside: Path, kind: str, owner: str, size: int, folder: bool = True, tag: str = "0badcafe") -> Path:
    path = beside.with_name(f".{beside.name}.{kind}-{owner}-{tag}")
    if folder:
        path.mkdir()
        (path / "model.safetensors").write_bytes(bytes(size))
    else:
        path.write_bytes(bytes(size))
    return path


@pytest.mark.slow
def test_a_write_removes_the_leftovers_of_killed_runs_and_spares_a_running_writers(tmp_path, capsys):
    data = write_beauty_lines(tmp_path / "slice.txt")
    out = tmp_path / "watched" / "vocab"
    out.parent.mkdir()
    dead = owner_tag(_dead_pid())
    stale = [
        _leftover(out, "partial", dead, 1_500_000),  # a killed save's staging folder
        _leftover(out, "partial", dead, 4096, folder=False, tag="0ddba11e"),  # a killed probe's file
    ]
    running = _leftover(out, "partial", owner_tag(), 10)  # this very process: a concurrent write
    foreign = _leftover(out, "partial", f"otherhost-{os.getpid()}", 10)  # its pid means nothing here
    older = out.with_name(f".{out.name}.partial-0badcafe")  # an earlier version's: no writer named
    older.mkdir()
    assert (
        main(["index", "--data", str(data), "--out", str(out), "--num-clusters", "4", "--embedding", "spectral"]) == 0
    )
    assert (out / "metaid_vocab.json").is_file()
    assert not any(path.exists() for path in stale)
    assert running.is_dir() and foreign.is_dir() and older.is_dir()
    prefix = "hf-metaid index: warning: "
    said = [line.removeprefix(prefix) for line in capsys.readouterr().err.splitlines() if line.startswith(prefix)]
    assert f"{out}: removed 2 leftover(s) of killed runs beside it (1.5 MB)" in said, said
    assert f"{out}: left alone: {running.name}, being written by the running process {os.getpid()}" in said, said
    assert any(f"left alone: {foreign.name}" in line and "host otherhost" in line for line in said), said
    assert any(f"left alone: {older.name}" in line and "earlier hf-metaid version" in line for line in said), said
    assert len(said) == 4, said  # each once, though the command checks its output twice


@pytest.mark.slow
def test_a_folder_moved_aside_by_a_killed_replace_is_kept_until_its_target_is_written_again(tmp_path):
    out = tmp_path / "vocab"
    aside = _leftover(out, "replaced", owner_tag(_dead_pid()), 100)
    vocabulary = random_vocabulary()
    with pytest.warns(hm.LeftoverWarning, match=f"moved aside by a killed run, is whole in {re.escape(aside.name)}"):
        vocabulary.save_pretrained(out)
    assert aside.is_dir(), "the previous folder, whole, was deleted while its target was absent"
    with pytest.warns(hm.LeftoverWarning, match=re.escape(f"{out}: removed 1 leftover(s) of killed runs")):
        vocabulary.save_pretrained(out, overwrite=True)
    assert not aside.exists()
    assert hm.EntityVocabulary.from_pretrained(out).fingerprint == vocabulary.fingerprint


# ----------------------------------------------------- what a writing command reads is checked before its work too
def test_evaluate_save_to_card_names_a_damaged_record_before_evaluating(tmp_path, no_work, capsys):
    """The card is rebuilt from the folder's records after the evaluation; a damaged one is named before it."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "metaid_evaluation.json").write_text('{"results": [')  # cut short
    data = tmp_path / "data.txt"
    data.write_text("u1 a b c\n")
    code = main(["evaluate", str(model), "--data", str(data), "--save-to-card"])  # WorkStarted if it loaded
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"hf-metaid evaluate: error: {model / 'metaid_evaluation.json'}: damaged"), err


def test_push_names_a_damaged_record_in_the_model_folder_not_in_its_staged_copy(tmp_path, monkeypatch):
    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr("hf_metaid.saving.hub_push.upload_folder", no_hub)
    tokenizer = hm.MetaIDTokenizer.from_base(None, random_vocabulary())
    folder = hm.save_for_inference(tiny_model(tokenizer), tokenizer, tmp_path / "model")
    (folder / "metaid_training.json").write_text("{")
    with pytest.raises(hm.SavedFileError, match="^" + re.escape(f"{folder / 'metaid_training.json'}: damaged JSON")):
        hm.push_model(folder, "me/model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_file_output_is_whole_or_as_it_was_and_replaced_only_with_overwrite(tmp_path):
    """What ``recommend --out`` writes: a hidden file beside the target, renamed onto it once complete."""
    from hf_metaid.saving.output_folders import atomic_file, check_output_file

    target = tmp_path / "recs.csv"
    target.write_text("old")
    with pytest.raises(hm.OutputExistsError, match=r"recs\.csv exists; pass --overwrite"):
        check_output_file(target)
    with pytest.raises(RuntimeError, match="killed"), atomic_file(target, overwrite=True) as partial:
        partial.write_text("half of the new")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["recs.csv"]
    with atomic_file(target, overwrite=True) as partial:
        assert partial.parent == tmp_path and partial.name.startswith(".recs.csv.partial-")
        partial.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["recs.csv"]
    with pytest.raises(hm.OutputExistsError, match="is a folder; name the file to write"):
        check_output_file(tmp_path)
    assert check_output_file(tmp_path / "new" / "recs.parquet") == tmp_path / "new" / "recs.parquet"
    assert not (tmp_path / "new").exists()  # made for the probe only
