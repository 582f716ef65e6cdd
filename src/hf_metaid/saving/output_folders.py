"""Output folders that are either the old one or the new one, never a mix, and never replaced unasked.

Everything hf_metaid writes as a folder (a model, an adapter, a vocabulary) is written into a hidden staging folder
beside the target (``.NAME.partial-XXXX``), flushed to disk, and renamed onto the target in one step once it is
complete. A process killed while writing leaves the target as it was, plus the staging folder. Replacing an existing
folder (only with ``overwrite``) moves the old one aside (``.NAME.replaced-XXXX``), renames the new one in and then
deletes the old one, so a kill between the two renames leaves no target and the old folder aside, never a folder
that mixes old and new files.

A folder is only replaced when it holds a ``metaid_vocab.json``, which every folder hf_metaid writes has: a mistyped
``--out ~ --overwrite`` cannot delete a folder of someone else's files.

The destination is checked before the work that fills it (:func:`check_output_folder`): a write beside the target is
tried, so an unwritable or full location is refused at once, not after a training run. The hidden folders carry the
host and process id of their writer (``.NAME.partial-HOST-PID-XXXX``): the next save of ``NAME`` on that host removes
those whose process is gone (a killed run's), reports what it freed, and leaves a running writer's alone.

A single file (``hf-metaid recommend --out recs.parquet``) is checked the same way (:func:`check_output_file`) and
written through a hidden file beside it renamed into place (:func:`atomic_file`); an existing file is replaced only
with ``overwrite``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import InvalidArgumentError, OutputExistsError, SavedFileError, UnwritableOutputError
from .leftovers import clear_leftovers, owner_tag

# Every folder hf_metaid writes holds one (a vocabulary folder, and the tokenizer's copy in a model folder).
MARKER = "metaid_vocab.json"
# What is written and flushed to prove a destination writable: one block, so that a full file system refuses it.
PROBE_BYTES = 4096


def check_output_folder(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``path`` as a ``Path`` if a folder may be written there: it is absent or empty, or ``overwrite`` is set and it
    is a folder hf_metaid wrote, and a file can be written and flushed beside it (its parent folders are made for the
    try and removed again). Leftovers of killed runs beside it are reported, and removed where their process is gone.
    Called before any long work, so that a refusal comes first, not after training.

    Raises:
        OutputExistsError: the folder holds files and ``overwrite`` is not set, or it is not a folder hf_metaid
            wrote, or ``path`` is a file.
        UnwritableOutputError: the parent folder cannot be made, or nothing can be written there (no permission, a
            read-only or full file system).
    """
    return _check_destination(_check_target(path, overwrite))


def _check_destination(path: Path) -> Path:
    """``path`` once a file could be written and flushed beside it and its killed runs' leftovers are cleared."""
    absolute = Path(os.path.abspath(path))
    check_writable(absolute.parent, absolute.name, make=True)
    clear_leftovers(absolute)
    return path


def check_writable(folder: str | os.PathLike, name: str, make: bool = False) -> None:
    """Write, flush and remove a small hidden file ``.NAME.partial-...`` in ``folder``: what hf_metaid will write
    there can be written. With ``make``, missing folders are made for the try and removed after it.

    Raises:
        UnwritableOutputError: the folder is missing (and not ``make``), cannot be made, or refuses the write.
    """
    folder = Path(os.path.abspath(folder))
    missing = list(itertools.takewhile(lambda p: not p.is_dir(), [folder, *folder.parents])) if make else []
    in_the_way = next((p for p in missing if os.path.lexists(p)), None)
    if in_the_way is not None:
        raise UnwritableOutputError(f"{folder / name}: {in_the_way} is not a folder; choose another output")
    try:
        try:
            if make:
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UnwritableOutputError(
                f"{folder / name}: its folder {folder} cannot be made ({_reason(err, folder)})"
            ) from None
        if not folder.is_dir():
            raise UnwritableOutputError(f"{folder / name}: no such folder {folder}")
        probe = _new_sibling(folder / name, "partial", create=False)
        try:
            with open(probe, "xb") as handle:
                handle.write(bytes(PROBE_BYTES))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as err:
            raise UnwritableOutputError(f"{folder / name}: cannot write in {folder} ({_reason(err, folder)})") from None
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
    finally:
        for made in missing:  # deepest first; only the empty folders this try made
            with contextlib.suppress(OSError):
                made.rmdir()


def _reason(err: OSError, folder: Path) -> str:
    """The file system's reason, with the path it names where that is not ``folder`` (a file in the way)."""
    reason = err.strerror or type(err).__name__
    if err.filename and os.path.abspath(err.filename) not in (str(folder), os.path.abspath(folder)):
        reason += f": {err.filename}"
    return reason


def _output_path(path: str | os.PathLike, overwrite: bool, kind: str) -> Path:
    """``path`` as a ``Path`` once it and ``overwrite`` are of the types asked for (``kind``: folder or file)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise InvalidArgumentError(f"the output {kind} must be a non-empty path, got {path!r}")
    if not isinstance(overwrite, bool):
        raise InvalidArgumentError(f"overwrite must be True or False, got {overwrite!r}")
    return Path(path)


def _check_target(path: str | os.PathLike, overwrite: bool) -> Path:
    """The checks of :func:`check_output_folder` on the target itself."""
    path = _output_path(path, overwrite, "folder")
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
    target = _check_target(target, overwrite)
    absolute = Path(os.path.abspath(target))
    clear_leftovers(absolute)
    _make_parent(target, absolute)
    staging = _new_sibling(absolute, "partial", create=True)
    try:
        yield staging
        _sync_tree(staging)
        _publish(staging, target, absolute, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _make_parent(target: Path, absolute: Path) -> None:
    """Make the folder that ``target`` (at ``absolute``) goes in, or say why it cannot be made."""
    try:
        absolute.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UnwritableOutputError(
            f"{target}: its folder {absolute.parent} cannot be made ({_reason(err, absolute.parent)})"
        ) from None


def _publish(staging: Path, target: Path, absolute: Path, overwrite: bool) -> None:
    _check_target(target, overwrite)  # again: another process may have written there in the meantime
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
    """A hidden, unused name beside ``target`` (``.NAME.kind-HOST-PID-XXXXXXXX``, naming this process); created as
    a folder with ``create``."""
    while True:
        candidate = target.with_name(f".{target.name}.{kind}-{owner_tag()}-{secrets.token_hex(4)}")
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


def check_output_file(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``path`` as a ``Path`` if a file may be written there: it is absent, or a file and ``overwrite`` is set, and a
    file can be written and flushed beside it (its parent folders are made for the try and removed again). Leftovers
    of killed runs beside it are cleared, as for a folder. Called before the work that fills it.

    Raises:
        OutputExistsError: ``path`` is a folder, or a file and ``overwrite`` is not set.
        UnwritableOutputError: nothing can be written in its folder.
    """
    return _check_destination(_check_target_file(path, overwrite))


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden path beside ``target`` (``.NAME.partial-HOST-PID-XXXXXXXX``) to write the file to; when the block
    ends without an error the file is flushed and renamed onto ``target`` in one step, so ``target`` is the old file
    or the whole new one, never a part. On an error the partial file is removed and ``target`` is left as it was."""
    target = _check_target_file(target, overwrite)
    absolute = Path(os.path.abspath(target))
    _make_parent(target, absolute)
    partial = _new_sibling(absolute, "partial", create=False)
    try:
        yield partial
        _sync_path(partial)
        _check_target_file(target, overwrite)  # again: another process may have written there in the meantime
        os.replace(partial, absolute)
        _sync_path(absolute.parent)
    finally:
        partial.unlink(missing_ok=True)


def _check_target_file(path: str | os.PathLike, overwrite: bool) -> Path:
    """The checks of :func:`check_output_file` on the target itself."""
    path = _output_path(path, overwrite, "file")
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder; name the file to write")
    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError(
            f"{path} exists; pass --overwrite (overwrite=True) to replace it, or choose another file"
        )
    return path


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
