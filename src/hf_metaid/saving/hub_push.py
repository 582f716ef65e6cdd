"""Push a saved model folder (full or LoRA adapter) to the Hub with its card, and its vocabulary as a dataset.

The two repositories link each other: the model card names the vocabulary's dataset repository (in its metadata's
``datasets`` and in its text), and the dataset card names the model. What is uploaded is built first in a temporary
folder beside the model (a copy whose ``README.md`` carries the links), so the model folder itself is never changed,
and an upload that fails leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from ..entity_vocabulary import EntityVocabulary
from ..errors import InvalidArgumentError, SavedFileError
from ..tokenization_metaid import VOCAB_FILE
from ..vocabulary.hub import write_vocabulary_folder
from .hub_upload import check_repo_id, upload_folder
from .inference_folder import check_model_folder
from .model_card import BASE_RECORD, CARD_FILE, DEFAULT_LICENSE, model_card, write_model_card
from .output_folders import read_json_object


def push_model(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    vocab_repo: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    license: str = DEFAULT_LICENSE,
) -> dict[str, str]:
    """Upload the model folder ``model_dir`` (written by :func:`~hf_metaid.save_for_inference` or ``hf-metaid
    train``) as the model repository ``repo_id``, with a model card linking ``vocab_repo``; with ``vocab_repo``, its
    vocabulary goes first, as that dataset repository, with a card linking the model. Repositories are created if
    needed (private with ``private=True``). Returns ``{"model": commit URL[, "vocabulary": commit URL]}``.

    Raises:
        SavedFileError: ``model_dir`` is not a complete model folder (the missing or damaged file named).
        HubError: the Hub could not be reached or refused, in one line; the local folder is as it was. Where the
            vocabulary went up and the model did not, pushing again replaces the vocabulary's files with the same
            ones (a commit with no change) and pushes the model.
    """
    if not isinstance(model_dir, (str, os.PathLike)) or not Path(model_dir).is_dir():
        raise SavedFileError(f"{model_dir}: no such model folder (push takes a local folder)")
    folder = Path(model_dir)
    check_model_folder(folder)
    model_card(folder)  # the records its card is built from: a damaged one is named here, not in the staged copy
    check_repo_id(repo_id)
    if vocab_repo is not None:
        check_repo_id(vocab_repo, "vocab_repo")
        if vocab_repo == repo_id:
            raise InvalidArgumentError(
                "vocab_repo must differ from repo_id: the vocabulary is its own dataset repository"
            )
    _warn_on_local_base(folder)
    vocabulary = EntityVocabulary.load(folder / VOCAB_FILE)
    urls: dict[str, str] = {}
    with tempfile.TemporaryDirectory(dir=folder.resolve().parent, prefix=f".{folder.name}.push-") as scratch:
        staged = Path(scratch) / "model"
        shutil.copytree(folder, staged, ignore=shutil.ignore_patterns(CARD_FILE, ".*"), copy_function=_link_or_copy)
        write_model_card(staged, model_repo=repo_id, vocab_repo=vocab_repo, license=license)
        if vocab_repo is not None:
            vocabulary_folder = Path(scratch) / "vocabulary"
            vocabulary_folder.mkdir()
            write_vocabulary_folder(vocabulary, vocabulary_folder, repo_id=vocab_repo, model_repo=repo_id)
            urls["vocabulary"] = upload_folder(
                vocabulary_folder,
                vocab_repo,
                repo_type="dataset",
                private=private,
                token=token,
                commit_message=f"ID vocabulary {vocabulary.fingerprint} of {repo_id}",
            )
        urls["model"] = upload_folder(
            staged,
            repo_id,
            private=private,
            token=token,
            commit_message=commit_message or f"META ID model (vocabulary {vocabulary.fingerprint})",
        )
    return urls


def _link_or_copy(source: str, target: str) -> str:
    """A hard link where the file system allows one (weights are not copied twice), else a copy. The staged copy's
    only rewritten file, README.md, is never linked."""
    with contextlib.suppress(OSError):
        os.link(source, target)
        return target
    return shutil.copy2(source, target)


def _warn_on_local_base(folder: Path) -> None:
    """An adapter whose base is a checkpoint on this machine only loads where that path exists."""
    record = folder / BASE_RECORD
    if not record.is_file():
        return
    checkpoint = read_json_object(record).get("checkpoint")
    if checkpoint and os.path.isabs(checkpoint):
        warnings.warn(
            f"{folder}: the adapter's base is the local checkpoint {checkpoint}; others can load the pushed adapter "
            "only with that base at hand (load_for_inference(..., base=...))",
            stacklevel=3,
        )
