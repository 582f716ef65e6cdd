"""An ID vocabulary as a dataset folder or Hub dataset repository: save, load back, push.

The folder (``EntityVocabulary.save_pretrained``) holds

- ``vocabulary.parquet``: one row per user, item and ID token (``EntityVocabulary.to_dataset``), which
  ``datasets.load_dataset(folder_or_repo)`` reads as it is;
- ``vocabulary_info.json``: the fingerprint, scheme, seed, token spelling and the indexer's metadata (fit settings,
  cold-start entities, source data and its hash), the card's numbers, and the fit's timings where given;
- ``README.md``: the dataset card (:mod:`hf_metaid.vocabulary.card`) with ``cluster_sizes.png``;
- ``metaid_vocab.json``: the same vocabulary as the tokenizer stores it, so the folder also serves where a
  vocabulary file is expected (``hf-metaid train --vocab``) and marks it as written by hf_metaid.

Loading reads the Parquet rows and refuses them when their fingerprint differs from the one recorded beside them
(both shown): rows edited or mixed from two vocabularies would give a model other IDs than it was trained with.
Everything but the timings is the same, byte for byte, for the same vocabulary.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..entity_vocabulary import FORMAT_VERSION, EntityVocabulary
from ..errors import InvalidArgumentError, MetaIDError, SavedFileError
from ..saving.hub_upload import check_repo_id, looks_like_hub_repository, upload_folder
from ..saving.output_folders import atomic_folder, read_json_object
from ..tokenization_metaid import VOCAB_FILE
from .card import HISTOGRAM_BINS, HISTOGRAM_FILE, ROWS_FILE, cluster_sizes, vocabulary_card, vocabulary_summary
from .histogram import bar_chart_png, histogram_bins

INFO_FILE = "vocabulary_info.json"
CARD_FILE = "README.md"


# ------------------------------------------------------------------------------------------------------- saving
def save_vocabulary(
    vocabulary: EntityVocabulary,
    save_directory: str | os.PathLike,
    *,
    overwrite: bool = False,
    timings: Mapping[str, float] | None = None,
    repo_id: str | None = None,
    model_repo: str | None = None,
    license: str | None = None,
) -> str:
    """Write ``vocabulary`` as a dataset folder (module docstring), atomically; returns the folder's path.

    Args:
        overwrite: replace an existing folder hf_metaid wrote.
        timings: seconds per fit stage (an indexer's ``timings_``), shown on the card; not part of the vocabulary.
        repo_id: the dataset repository it will be pushed to, for the card's usage lines.
        model_repo: a model repository trained on it, linked from the card.
        license: the card's license (``apache-2.0``, ...), where the data allow one.

    Raises:
        OutputExistsError: the folder holds files and ``overwrite`` is not set.
    """
    _check_vocabulary(vocabulary)
    with atomic_folder(save_directory, overwrite) as staging:
        write_vocabulary_folder(vocabulary, staging, timings, repo_id, model_repo, license)
    return str(save_directory)


def write_vocabulary_folder(
    vocabulary: EntityVocabulary,
    folder: Path,
    timings: Mapping[str, float] | None = None,
    repo_id: str | None = None,
    model_repo: str | None = None,
    license: str | None = None,
) -> None:
    """The folder's files, into an existing empty ``folder`` (the caller makes it atomic)."""
    for name, value in (("repo_id", repo_id), ("model_repo", model_repo)):
        if value is not None:
            check_repo_id(value, name)
    vocabulary.save(folder / VOCAB_FILE)
    with _quiet_datasets():
        vocabulary.to_dataset().to_parquet(str(folder / ROWS_FILE))
    summary = vocabulary_summary(vocabulary, timings)
    info = {
        "format_version": FORMAT_VERSION,
        "fingerprint": vocabulary.fingerprint,
        "scheme": vocabulary.scheme,
        "seed": vocabulary.seed,
        "cluster_prefix": vocabulary.cluster_prefix,
        "rank_prefix": vocabulary.rank_prefix,
        "metadata": vocabulary.metadata,
        "summary": summary,
        "model_repo": model_repo,
    }
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    counts, _ = histogram_bins(cluster_sizes(vocabulary).tolist(), HISTOGRAM_BINS)
    (folder / HISTOGRAM_FILE).write_bytes(bar_chart_png(counts))
    vocabulary_card(vocabulary, summary, repo_id, model_repo, license).save(folder / CARD_FILE)


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No progress bar for writing one small file (it would stand before a command's one-line answer)."""
    import datasets

    was_enabled = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def push_vocabulary(
    vocabulary: EntityVocabulary,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    model_repo: str | None = None,
    timings: Mapping[str, float] | None = None,
    license: str | None = None,
) -> str:
    """Upload the :func:`save_vocabulary` folder as the dataset repository ``repo_id`` (created if needed, private
    with ``private=True``); the folder is built in a temporary place first. Returns the commit's URL.

    Raises:
        HubError: the Hub could not be reached or refused, in one line.
    """
    _check_vocabulary(vocabulary)
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="hf-metaid-vocabulary-") as scratch:
        folder = Path(scratch)
        write_vocabulary_folder(vocabulary, folder, timings, repo_id, model_repo, license)
        message = commit_message or f"ID vocabulary {vocabulary.fingerprint}"
        return upload_folder(folder, repo_id, repo_type="dataset", private=private, token=token, commit_message=message)


def _check_vocabulary(vocabulary: object) -> None:
    if not isinstance(vocabulary, EntityVocabulary):
        raise InvalidArgumentError(f"expected an EntityVocabulary, got {type(vocabulary).__name__}")


# ------------------------------------------------------------------------------------------------------ loading
def load_vocabulary(
    name: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> EntityVocabulary:
    """A shared vocabulary from a folder :func:`save_vocabulary` wrote, a folder holding only ``metaid_vocab.json``
    (what ``hf-metaid index`` wrote before, or a model folder), a ``metaid_vocab.json`` file, or a Hub dataset
    repository ``namespace/name`` (downloaded with ``revision``, ``token``, ``cache_dir``, ``local_files_only``; only
    asked of the Hub when no local path of that name exists).

    Raises:
        SavedFileError: a missing path, a repository the Hub cannot give, a damaged file, or rows whose fingerprint
            differs from the recorded one (both shown).
    """
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise InvalidArgumentError(f"the vocabulary must be a folder, a file or a Hub repository, got {name!r}")
    path = Path(name).expanduser()
    if path.is_file():
        return EntityVocabulary.load(path)
    if not path.is_dir():
        path = _download(os.fspath(name), revision, token, cache_dir, local_files_only)
    return _load_folder(path)


def _download(name: str, revision, token, cache_dir, local_files_only) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if not looks_like_hub_repository(name):
        raise SavedFileError(f"{name}: no such vocabulary file or folder")
    try:
        folder = snapshot_download(
            name,
            repo_type="dataset",
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        raise SavedFileError(
            f"{name}: no such local vocabulary, and the Hub gave no dataset repository of that name ({reason})"
        ) from None
    return Path(folder)


def _load_folder(folder: Path) -> EntityVocabulary:
    rows = folder / ROWS_FILE
    if not rows.is_file():
        if (folder / VOCAB_FILE).is_file():
            return EntityVocabulary.load(folder / VOCAB_FILE)
        raise SavedFileError(f"{folder}: no vocabulary here (neither {ROWS_FILE} with {INFO_FILE} nor {VOCAB_FILE})")
    info = _info(folder / INFO_FILE)
    vocabulary = _from_rows(rows, info)
    recorded = info.get("fingerprint")
    if vocabulary.fingerprint != recorded:
        raise SavedFileError(
            f"{rows}: the rows give the vocabulary fingerprint {vocabulary.fingerprint}, but {INFO_FILE} records "
            f"{recorded}; the rows were edited or come from another vocabulary, so a model trained on these IDs "
            "would read other ones"
        )
    if (folder / VOCAB_FILE).is_file():
        beside = read_json_object(folder / VOCAB_FILE).get("fingerprint")
        if beside != recorded:
            raise SavedFileError(
                f"{folder / VOCAB_FILE}: records the vocabulary fingerprint {beside}, but the rows and {INFO_FILE} "
                f"give {recorded}; the folder mixes two vocabularies"
            )
    return vocabulary


def _info(path: Path) -> dict:
    if not path.is_file():
        raise SavedFileError(f"{path}: missing; it records the fingerprint and settings the rows belong to")
    info = read_json_object(path)
    if info.get("format_version") != FORMAT_VERSION:
        raise SavedFileError(f"{path}: unsupported format_version {info.get('format_version')!r}")
    return info


def _from_rows(rows: Path, info: Mapping) -> EntityVocabulary:
    import datasets
    import pyarrow.parquet as pq
    from pyarrow import ArrowException

    try:
        table = datasets.Dataset(pq.read_table(rows))
        return EntityVocabulary.from_dataset(table, header=info)
    except MetaIDError as err:
        raise SavedFileError(f"{rows}: {err}") from None
    except (ArrowException, OSError, ValueError, KeyError, TypeError, StopIteration) as err:
        reason = f"missing column or field {err}" if isinstance(err, KeyError) else " ".join(str(err).split())
        raise SavedFileError(f"{rows}: not a valid vocabulary table ({reason or type(err).__name__})") from None


# EntityVocabulary's sharing methods call these (the shipped class cannot import the library itself).
EntityVocabulary.register_library_hook("save_pretrained", save_vocabulary)
EntityVocabulary.register_library_hook("from_pretrained", load_vocabulary)
EntityVocabulary.register_library_hook("push_to_hub", push_vocabulary)
