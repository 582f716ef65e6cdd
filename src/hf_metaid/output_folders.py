"""Output folders that are either the old one or the new one, never a mix, and never replaced unasked.

Everything hf_metaid writes as a folder (a model, an adapter, a vocabulary) is written into a hidden staging folder
beside the target (``.NAME.partial-XXXX``), flushed to disk, and renamed onto the target in one step once it is
complete. A process killed while writing leaves the target as it was, plus the staging folder. Replacing an existing
folder (only with ``overwrite``) moves the old one aside (``.NAME.replaced-XXXX``), renames the new one in and then
deletes the old one, so a kill between the two renames leaves no target and the old folder aside, never a folder
that mixes old and new files.

A folder is only replaced when it holds a ``metaid_vocab.json``, which every folder hf_metaid writes has: a mistyped
``--out ~ --overwrite`` cannot delete a folder of someone else's files.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import InvalidArgumentError, OutputExistsError, SavedFileError

# Every folder hf_metaid writes holds one (a vocabulary folder, and the tokenizer's copy in a model folder).
MARKER = "metaid_vocab.json"


def check_output_folder(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``path`` as a ``Path`` if a folder may be written there: it is absent or empty, or ``overwrite`` is set and it
    is a folder hf_metaid wrote. Called before any long work, so that a refusal comes first, not after training.

    Raises:
        OutputExistsError: the folder holds files and ``overwrite`` is not set, or it is not a folder hf_metaid
            wrote, or ``path`` is a file.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise InvalidArgumentError(f"the output folder must be a non-empty path, got {path!r}")
    if not isinstance(overwrite, bool):
        raise InvalidArgumentError(f"overwrite must be True or False, got {overwrite!r}")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} exists and is not a folder; choose another output folder")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise OutputExistsError(
                f"{path} is not empty; pass --overwrite (overwrite=True) to replace it, or choose another folder"
            )
        if not (path / MARKER).is_file():
            raise OutputExistsError(
                f"{path} holds files hf_metaid did not write (no {MARKER}), so it is not replaced; "
                "remove it yourself or choose another folder"
            )
    return path


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; when the block ends without an error, the staging folder
    becomes ``target`` in one rename (see the module's docstring). On an error the staging folder is deleted and
    ``target`` is left as it was."""
    target = check_output_folder(target, overwrite)
    absolute = Path(os.path.abspath(target))
    absolute.parent.mkdir(parents=True, exist_ok=True)
    staging = _new_sibling(absolute, "partial", create=True)
    try:
        yield staging
        _sync_tree(staging)
        _publish(staging, target, absolute, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish(staging: Path, target: Path, absolute: Path, overwrite: bool) -> None:
    check_output_folder(target, overwrite)  # again: another process may have written there in the meantime
    if absolute.is_dir() and not any(absolute.iterdir()):
        absolute.rmdir()  # an empty folder is taken over (renaming onto it is not portable)
    if not absolute.exists():
        try:
            os.rename(staging, absolute)
        except OSError as err:  # it appeared between the check and the rename
            raise OutputExistsError(f"{target} appeared while it was being written ({err.strerror})") from None
    else:
        aside = _new_sibling(absolute, "replaced", create=False)
        os.rename(absolute, aside)
        os.rename(staging, absolute)
        shutil.rmtree(aside)
    _sync_path(absolute.parent)


def _new_sibling(target: Path, kind: str, create: bool) -> Path:
    """A hidden, unused name beside ``target`` (``.NAME.kind-XXXXXXXX``); created as a folder with ``create``."""
    while True:
        candidate = target.with_name(f".{target.name}.{kind}-{secrets.token_hex(4)}")
        if not create:
            if not os.path.lexists(candidate):
                return candidate
        else:
            with contextlib.suppress(FileExistsError):
                candidate.mkdir()  # honours the umask, unlike tempfile.mkdtemp's private mode
                return candidate


def _sync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` to disk, so that the rename never publishes unwritten data."""
    for root, _, files in os.walk(folder):
        for name in files:
            _sync_path(Path(root) / name)
        _sync_path(Path(root))


def _sync_path(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replace_file(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a hidden file beside it renamed into place: the file is whole or as it was,
    never half-written (for a record or card updated inside an existing folder)."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{secrets.token_hex(4)}")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def read_json_object(path: str | os.PathLike) -> dict:
    """The JSON object in the file ``path`` (a byte-order mark is no harm).

    Raises:
        SavedFileError: the file is unreadable, not JSON, or not an object; the message names it.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as err:
        raise SavedFileError(f"{path}: damaged JSON file ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise SavedFileError(f"{path}: not a JSON object")
    return data
