"""Saving a trained META ID model into one folder that recommends, and loading it back.

A full model is a plain ``save_pretrained`` folder. A LoRA model is saved as its adapter (LoRA weights, the ID-token
rows, F) beside the base config and the tokenizer, and ``metaid_base.json`` says which base it was trained on: a
checkpoint's name (and revision) to rebuild it from, or, for a base built from a configuration, which has no
checkpoint, the folder ``base/`` that holds its weights. Either way the file records the base's fingerprint, and
loading refuses a base that differs from it, since an adapter on another base loads without a word and ranks other
items. Loading also makes sure F really came back, since PEFT drops saved modules it cannot place without a word.

A folder is written beside its target and renamed into place when complete (:mod:`hf_metaid.saving.output_folders`), so
it is either the old folder or the new one, and an existing one is only replaced with ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel, Seq2SeqTrainer
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

from ..entity_vocabulary import EntityVocabulary
from ..errors import BaseModelMismatchError, InvalidArgumentError, MetaIDError, SavedFileError, VocabularyMismatchError
from ..modeling_metaid import MetaIDForConditionalGeneration
from ..tokenization_metaid import VOCAB_FILE
from ..training.peft_utils import AUGMENTATION_MODULE, is_peft, strip_parallel, unwrap
from .hub_upload import looks_like_hub_repository
from .model_card import DEFAULT_LICENSE, merge_evaluations, training_record, write_model_card, write_records
from .output_folders import atomic_folder

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
BASE_RECORD = "metaid_base.json"
BASE_FOLDER = "base"
MODEL_WEIGHTS = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", VOCAB_FILE)
# Hub download options that from_pretrained also takes; the folder is fetched with them, then loaded locally.
HUB_OPTIONS = ("revision", "token", "cache_dir", "local_files_only")


# ------------------------------------------------------------------------------------------------------- saving
def save_for_inference(
    trainer_or_model,
    tokenizer,
    output_dir: str | os.PathLike,
    overwrite: bool = False,
    evaluation: Mapping | Sequence[Mapping] | None = None,
    license: str = DEFAULT_LICENSE,
) -> Path:
    """Write everything needed to recommend into ONE folder, atomically.

    Full model: ``config.json`` + weights + tokenizer (loads with the Auto classes). LoRA model: the adapter
    (LoRA weights, the ID-token rows, F), the base model's ``config.json``, ``metaid_base.json`` (the base's
    fingerprint and where it comes from: a checkpoint name, or ``base/`` with its weights when it was built from a
    configuration) and the tokenizer; reload with :func:`load_for_inference`.

    Args:
        trainer_or_model: the ``Seq2SeqTrainer`` that trained the model, or the model (a PEFT model for LoRA).
        tokenizer: the model's :class:`~hf_metaid.MetaIDTokenizer`.
        output_dir: the folder; it must be absent or empty unless ``overwrite``.
        overwrite: replace an existing folder that hf_metaid wrote.
        evaluation: the runs to put on the model card, each :func:`~hf_metaid.saving.model_card.evaluation_record` of
            metrics measured on this model (or a list of them); without one the card says it was not evaluated.
            ``hf-metaid evaluate --save-to-card`` (:func:`~hf_metaid.saving.model_card.add_evaluation`) adds runs later.
        license: the model card's license.

    The folder also holds ``README.md``, the model card (:mod:`hf_metaid.saving.model_card`), and, when a Trainer is
    given, ``metaid_training.json`` with its settings, time and loss.

    Raises:
        OutputExistsError: ``output_dir`` holds files and ``overwrite`` is not set.
        VocabularyMismatchError: the tokenizer was built for another ID vocabulary.
    """
    trainer = trainer_or_model if isinstance(trainer_or_model, Seq2SeqTrainer) else None
    model = trainer_or_model.model if trainer is not None else trainer_or_model
    if trainer is not None:
        model = trainer.accelerator.unwrap_model(model)
    model = strip_parallel(model)
    if not hasattr(unwrap(model), "check_tokenizer"):
        raise InvalidArgumentError(
            "trainer_or_model must be a Seq2SeqTrainer or a MetaIDForConditionalGeneration (or a PEFT model around "
            f"one), got {type(trainer_or_model).__name__}"
        )
    if trainer is not None and not trainer.is_world_process_zero():
        return Path(output_dir)
    unwrap(model).check_tokenizer(tokenizer)
    evaluations = _evaluation_records(evaluation)
    with atomic_folder(output_dir, overwrite) as staging:
        if is_peft(model):
            _save_adapter(model, staging)
        else:
            model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        training = None if trainer is None else training_record(trainer, is_peft(model))
        write_records(staging, training, evaluations)
        write_model_card(staging, license=license, name=Path(output_dir).name)
    return Path(output_dir)


def _evaluation_records(evaluation: Mapping | Sequence[Mapping] | None) -> list[dict]:
    """``evaluation`` as a list of records, each checked to carry metrics and a protocol."""
    if evaluation is None:
        return []
    records = [evaluation] if isinstance(evaluation, Mapping) else evaluation
    if isinstance(records, (str, bytes)) or not isinstance(records, Sequence):
        raise InvalidArgumentError(f"evaluation must be an evaluation record or a list of them, got {evaluation!r:.80}")
    for record in records:
        if not isinstance(record, Mapping) or not isinstance(record.get("metrics"), Mapping):
            raise InvalidArgumentError(
                "each evaluation must be hf_metaid.saving.model_card.evaluation_record(metrics, split=..., data=...), "
                f"got {record!r:.80}"
            )
    return merge_evaluations([], records)


def _save_adapter(model, folder: Path) -> None:
    """The adapter, the base's config and ``metaid_base.json`` (with ``base/`` for a base built from a config)."""
    from peft import get_base_model_state_dict

    model.save_pretrained(folder)
    base = model.get_base_model()
    base.config.save_pretrained(folder)
    state = get_base_model_state_dict(model)
    config = model.peft_config[model.active_adapter]
    fingerprint = base_fingerprint(base, state, config.modules_to_save, config.trainable_token_indices)
    record: dict[str, object] = {"fingerprint": fingerprint}
    source = base.config.name_or_path
    if source:
        # A local checkpoint is recorded by its absolute path, so the folder loads from any working directory.
        record["checkpoint"] = os.path.abspath(source) if os.path.isdir(source) else source
        record["revision"] = None if os.path.isdir(source) else _cached_revision(source)
    else:
        # No checkpoint to rebuild it from: its weights travel with the adapter (a rebuild from the configuration
        # and seed would depend on torch's and transformers' initialisation code staying the same).
        base.save_pretrained(folder / BASE_FOLDER, state_dict=state)
        record["folder"] = BASE_FOLDER
    (folder / BASE_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _cached_revision(repository: str) -> str | None:
    """The commit of the Hub checkpoint ``repository`` in the local cache (what ``from_pretrained`` loaded, which
    transformers does not record on the model), or None where it is not cached."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repository, "config.json")
    return Path(cached).parent.name if isinstance(cached, str) else None  # .../snapshots/<commit>/config.json


def base_fingerprint(
    model: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    modules_to_save: Sequence[str] | None = None,
    trainable_token_indices: Mapping[str, Sequence[int]] | Sequence[int] | None = None,
) -> str:
    """sha256 over the base weights an adapter builds on: every tensor of ``state_dict`` (name, dtype, shape and
    bytes, in name order; tied tensors once) except what the adapter carries itself, the modules it saves in full
    (``modules_to_save``: F) and the embedding rows it trains (``trainable_token_indices``: the ID tokens), both as
    in the adapter's ``LoraConfig``.

    ``model`` is the base (plain or PEFT-wrapped); it names the input embedding where the token indices are a list.
    """
    carried_modules = list(modules_to_save or [])
    rows = trainable_token_indices or {}
    if not isinstance(rows, Mapping):
        embedding = model.get_input_embeddings()
        rows = {next(name for name, module in model.named_modules() if module is embedding): rows}
    tied: dict[tuple, list[str]] = {}
    for name in sorted(state_dict):
        tensor = state_dict[name]
        tied.setdefault((tensor.data_ptr(), tensor.dtype, tuple(tensor.shape)), []).append(name)
    digest = hashlib.sha256()
    for names in tied.values():
        if any(_in_module(name, module) for name in names for module in carried_modules):
            continue
        tensor = state_dict[names[0]].detach().cpu()
        skipped = sorted({i for name in names for module, ids in rows.items() if _in_module(name, module) for i in ids})
        if skipped:
            kept = torch.ones(tensor.shape[0], dtype=torch.bool)
            kept[skipped] = False
            tensor = tensor[kept]
        digest.update(json.dumps([names[0], str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _in_module(name: str, module: str) -> bool:
    """Whether the tensor ``name`` lies in a module named ``module`` (PEFT matches module names by suffix)."""
    path = "." + name.rpartition(".")[0]
    return f".{module}." in path + "."


# ------------------------------------------------------------------------------------------------------ loading
def load_for_inference(
    folder: str | os.PathLike, base=None, **from_pretrained_kwargs
) -> tuple[PreTrainedModel, object]:
    """``(model, tokenizer)`` from a folder written by :func:`save_for_inference`, in eval mode.

    Args:
        folder: the saved folder, or a Hub repository ``namespace/name`` holding one. A name that does not exist
            locally is only looked up on the Hub when it has that form and no local folder ``namespace`` exists;
            anything else fails at once, naming the path.
        base: LoRA folders only. ``None`` takes the base the folder names (its ``base/`` weights or the checkpoint
            it was trained on); a string names another checkpoint; a model object is used as is. The base is
            resized to the tokenizer and checked against the fingerprint the folder records.

    Raises:
        SavedFileError: the folder is missing, is not a model folder, or a file in it is damaged.
        BaseModelMismatchError: the base is not the one the adapter was trained on.
    """
    if base is not None and not isinstance(base, (str, os.PathLike, MetaIDForConditionalGeneration)):
        raise InvalidArgumentError(
            f"base must be None, a checkpoint name/path or a MetaIDForConditionalGeneration, got {type(base).__name__}"
        )
    folder = model_folder(folder, {k: v for k, v in from_pretrained_kwargs.items() if k in HUB_OPTIONS})
    lora = check_model_folder(folder)
    if not lora and base is not None:
        raise InvalidArgumentError(f"{folder} holds a full model; base= is only for LoRA adapters")
    vocabulary = EntityVocabulary.load(folder / VOCAB_FILE)  # read here, so that a damaged one is named
    with _damaged_files_named(folder, ValueError):  # the tokenizer's own checks of its ID tokens
        tokenizer = AutoTokenizer.from_pretrained(folder, entity_vocabulary=vocabulary)
    if lora:
        model = _load_adapter(folder, base, tokenizer, **from_pretrained_kwargs)
    else:
        with _damaged_files_named(folder):
            model = AutoModelForSeq2SeqLM.from_pretrained(folder, **from_pretrained_kwargs)
    unwrap(model).check_tokenizer(tokenizer)
    model.eval()
    return model, tokenizer


def model_folder(name: str | os.PathLike, hub_options: Mapping[str, object] | None = None) -> Path:
    """The local folder of ``name``: ``name`` itself when it exists, else a download of the Hub repository
    ``namespace/name`` (only for that form, when no local folder ``namespace`` exists: a mistyped local path fails at
    once instead of waiting for the Hub).

    Raises:
        SavedFileError: ``name`` is a file, or a missing local path, or a repository the Hub cannot give.
    """
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise InvalidArgumentError(f"the model folder must be a non-empty path, got {name!r}")
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise SavedFileError(f"{name} is a file, not a model folder")
    text = os.fspath(name)
    if not looks_like_hub_repository(text):
        raise SavedFileError(f"{name}: no such folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(text, **dict(hub_options or {})))
    except (HfHubHTTPError, LocalEntryNotFoundError) as err:
        raise SavedFileError(
            f"{name}: no such local folder, and the Hub gave no repository of that name ({_reason(err)})"
        ) from err


def check_model_folder(folder: Path) -> bool:
    """Refuse a folder that lacks a file loading needs or holds a damaged one (named); ``True`` for a LoRA folder."""
    lora = (folder / ADAPTER_CONFIG).is_file()
    files = ["config.json", *TOKENIZER_FILES, *([ADAPTER_CONFIG] if lora else [])]
    _require(folder, files, ADAPTER_WEIGHTS if lora else MODEL_WEIGHTS)
    return lora


def _require(folder: Path, files: Iterable[str], weights: Sequence[str]) -> None:
    """Refuse a folder that lacks a file loading needs, naming what is missing."""
    missing = [name for name in files if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in weights):
        missing.append(weights[0])
    if missing:
        raise SavedFileError(
            f"{folder} is not a complete model folder written by hf_metaid: missing {', '.join(missing)}"
        )
    for path in (folder / name for name in files if name.endswith(".json") and name != VOCAB_FILE):
        try:  # a cut JSON file would otherwise surface deep in the loaders, without its name
            json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise SavedFileError(f"{path}: damaged JSON file ({_reason(err)})") from err
    for path in (folder / name for name in weights if name.endswith(".safetensors")):
        if path.is_file():
            try:
                with safe_open(path, "pt"):  # reads the header, which must cover the whole file
                    pass
            except SafetensorError as err:
                raise SavedFileError(f"{path}: damaged weights file ({_reason(err)})") from err


@contextlib.contextmanager
def _damaged_files_named(folder: Path, *foreign: type[Exception]) -> Iterator[None]:
    """Turn what a damaged file raises deep inside the loaders (a cut ``model.safetensors``, a half-written JSON
    file, an unreadable file, and the ``foreign`` errors given) into one :class:`SavedFileError` naming ``folder``."""
    try:
        yield
    except MetaIDError:
        raise
    except (SafetensorError, json.JSONDecodeError, UnicodeDecodeError, OSError, *foreign) as error:
        raise SavedFileError(f"{folder}: a file is damaged or unreadable: {_reason(error)}") from error


def _reason(error: BaseException) -> str:
    """The first line of a foreign error's message (or its class name), for a one-line error."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _load_adapter(folder: Path, base, tokenizer, **from_pretrained_kwargs):
    from peft import PeftModel

    with _damaged_files_named(folder):
        saved = MetaIDForConditionalGeneration.config_class.from_pretrained(folder)
    adapter = _json_object(folder / ADAPTER_CONFIG)
    record = _json_object(folder / BASE_RECORD) if (folder / BASE_RECORD).exists() else {}
    described = "the base given as base="
    if base is None:
        if record.get("folder"):
            base, described = folder / record["folder"], f"the base saved in {folder / record['folder']}"
            _require(base, ["config.json"], MODEL_WEIGHTS)
        else:
            base = record.get("checkpoint") or adapter.get("base_model_name_or_path") or None
            if base is None:
                raise SavedFileError(
                    f"{folder}: the adapter names no base model (saved by an earlier version from a base built from "
                    "a configuration); pass the same base model object as base="
                )
            described = f"the checkpoint {base}"
            if record.get("revision"):
                from_pretrained_kwargs.setdefault("revision", record["revision"])
    if isinstance(base, (str, os.PathLike)):
        try:
            base = _rebuild_base(str(base), tokenizer, saved, **from_pretrained_kwargs)
        except MetaIDError:
            raise
        except (OSError, SafetensorError, json.JSONDecodeError) as error:
            message = f"{folder}: {described} cannot be loaded ({_reason(error)}); pass the base as base="
            raise SavedFileError(message) from error
    base.check_tokenizer(tokenizer)
    if base.get_input_embeddings().weight.shape[0] < len(tokenizer):
        base.resize_token_embeddings(len(tokenizer))
    for field in ("metaid_alpha", "metaid_first_new_id", "metaid_num_new_tokens", "d_model", "metaid_vector_dim"):
        if getattr(base.config, field) != getattr(saved, field):
            mine, theirs = getattr(base.config, field), getattr(saved, field)
            raise VocabularyMismatchError(f"base model {field}={mine!r} differs from the adapter's {theirs!r}")
    # The adapter was trained with the saved options (prompt format, output rule, items' vectors): recommend and
    # evaluation must match. One call: the base's modules follow, those it has already keep their weights.
    base.configure(tokenizer, **saved.model_options())
    _check_base(folder, base, record, adapter, described)
    with _damaged_files_named(folder):
        model = PeftModel.from_pretrained(base, folder, is_trainable=False)
    _check_augmentation_loaded(model, folder, adapter)
    return model


def _json_object(path: Path) -> dict:
    with _damaged_files_named(path.parent):
        data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SavedFileError(f"{path}: not a JSON object")
    return data


def _check_base(folder: Path, base, record: Mapping, adapter: Mapping, described: str) -> None:
    """Refuse a base whose fingerprint differs from the one the adapter was trained on."""
    if "fingerprint" not in record:
        warnings.warn(
            f"{folder} records no fingerprint of its base model (saved by an earlier version): the base cannot be "
            "checked",
            stacklevel=4,  # the caller of load_for_inference
        )
        return
    actual = base_fingerprint(
        base, base.state_dict(), adapter.get("modules_to_save"), adapter.get("trainable_token_indices")
    )
    if actual != record["fingerprint"]:
        raise BaseModelMismatchError(
            f"{folder}: the adapter was trained on a base model with fingerprint {record['fingerprint']}, but "
            f"{described} has fingerprint {actual}; pass the base it was trained on as base="
        )


def _rebuild_base(name: str, tokenizer, saved, **from_pretrained_kwargs) -> MetaIDForConditionalGeneration:
    """A saved META ID model loads as is; a plain T5 checkpoint gets the ID tokens and F first."""
    config = AutoConfig.from_pretrained(name, **{k: v for k, v in from_pretrained_kwargs.items() if k in HUB_OPTIONS})
    if getattr(config, "model_type", None) == MetaIDForConditionalGeneration.config_class.model_type:
        return AutoModelForSeq2SeqLM.from_pretrained(name, **from_pretrained_kwargs)
    return MetaIDForConditionalGeneration.from_base(
        name,
        tokenizer,
        alpha=saved.metaid_alpha,
        augment_generation=saved.metaid_augment_generation,
        **from_pretrained_kwargs,
    )


def _check_augmentation_loaded(model, folder: Path, adapter: Mapping) -> None:
    """PEFT silently skips ``modules_to_save`` entries whose module is missing: make sure F really was loaded."""
    if AUGMENTATION_MODULE not in (adapter.get("modules_to_save") or []):
        return
    from safetensors.torch import load_file

    weights_file = folder / "adapter_model.safetensors"
    if not weights_file.is_file():
        return  # a .bin adapter: nothing cheap to compare against
    saved = {k: v for k, v in load_file(str(weights_file)).items() if AUGMENTATION_MODULE in k and k.endswith("weight")}
    wrapper = getattr(unwrap(model).encoder, AUGMENTATION_MODULE)
    active = getattr(wrapper, "modules_to_save", None)
    if not saved or active is None:
        raise SavedFileError(
            f"{folder}: the augmentation F was not restored from the adapter (saved keys: {list(saved)})"
        )
    loaded = next(iter(active.values())).weight
    if not any(torch.equal(tensor.to(loaded), loaded) for tensor in saved.values()):
        raise SavedFileError(f"{folder}: the augmentation F in the adapter differs from the loaded one")
