"""The model card of a saved META ID model, written from what the folder records, never from typed-in numbers.

A model folder carries two small records beside its weights:

- ``metaid_training.json`` (:func:`training_record`): the Trainer's settings, steps, time and loss, written by
  :func:`~hf_metaid.save_for_inference` when it is given the Trainer;
- ``metaid_evaluation.json`` (:func:`evaluation_record`): the metrics of each evaluation run and its protocol (data,
  split, template, history items kept or left out, beam or exact decoding), written by ``hf-metaid evaluate
  --save-to-card``, by the demo, or by ``save_for_inference(..., evaluation=...)``.

:func:`model_card` turns them, the config and the vocabulary into a ``huggingface_hub.ModelCard`` (``README.md``):
Hub metadata with a ``model-index`` of the measured HR@k / NDCG@k, the training settings, the vocabulary it needs
(its fingerprint, and its dataset repository where pushed), the prompt format, loading with and without the library,
and the paper's citation. A model never evaluated says so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..configuration_metaid import MODEL_OPTIONS
from ..errors import InvalidArgumentError, SavedFileError
from ..prompt_templates import TEMPLATES
from ..tokenization_metaid import VOCAB_FILE
from ..vocabulary.card import PAPER, citation_section
from ..vocabulary.card import TAGS as VOCABULARY_TAGS
from .output_folders import read_json_object, replace_file

TRAINING_FILE = "metaid_training.json"
EVALUATION_FILE = "metaid_evaluation.json"
CARD_FILE = "README.md"
BASE_RECORD = "metaid_base.json"  # saving.BASE_RECORD (saving imports this module)
ADAPTER_CONFIG = "adapter_config.json"
TAGS = (*VOCABULARY_TAGS, "t5", "text2text-generation")
DEFAULT_LICENSE = "apache-2.0"
PROTOCOL_FIELDS = ("data", "split", "template", "mode", "exclude_seen")


# ----------------------------------------------------------------------------------------------------- records
def training_record(trainer, lora: bool) -> dict:
    """What the Trainer ran: its settings, the steps taken, the training seconds and mean loss (from the Trainer's
    own log), and the base checkpoint where the model was loaded from one."""
    args, state = trainer.args, trainer.state
    summary = next((entry for entry in reversed(state.log_history) if "train_runtime" in entry), {})
    model = trainer.model
    base = getattr(getattr(model, "get_base_model", lambda: model)(), "config", None)
    source = getattr(base, "name_or_path", "") or ""
    return {
        "mode": "LoRA" if lora else "full",
        "base_checkpoint": source if source and not os.path.isdir(source) else None,
        "epochs": float(args.num_train_epochs),
        "max_steps": int(args.max_steps) if args.max_steps and args.max_steps > 0 else None,
        "steps": int(state.global_step),
        "batch_size": int(args.per_device_train_batch_size) * max(1, int(args.world_size)),
        "learning_rate": float(args.learning_rate),
        "warmup_steps": int(args.warmup_steps),
        "weight_decay": float(args.weight_decay),
        "seed": int(args.seed),
        "bf16": bool(args.bf16),
        "train_seconds": summary.get("train_runtime"),
        "train_loss": summary.get("train_loss"),
    }


def evaluation_record(
    metrics: Mapping[str, float],
    *,
    split: str,
    data: str,
    template: str = "seen",
    mode: str = "beam",
    exclude_seen: bool = False,
) -> dict:
    """One evaluation run for the card: ``metrics`` as :func:`~hf_metaid.evaluate_recommender` returned them and
    the protocol they were measured under (``data``: the data's name, as in the vocabulary's ``source``)."""
    if not isinstance(metrics, Mapping) or not any(key.startswith("hr@") for key in metrics):
        raise InvalidArgumentError("metrics must be evaluate_recommender's output (hr@k, ndcg@k, ...)")
    for name, value in (("split", split), ("data", data), ("template", template), ("mode", mode)):
        if not isinstance(value, str) or not value:
            raise InvalidArgumentError(f"{name} must be a non-empty string, got {value!r}")
    if not isinstance(exclude_seen, bool):
        raise InvalidArgumentError(f"exclude_seen must be True or False, got {exclude_seen!r}")
    return {
        "data": data,
        "split": split,
        "template": template,
        "mode": mode,
        "exclude_seen": exclude_seen,
        "metrics": {key: float(value) for key, value in sorted(metrics.items())},
    }


def merge_evaluations(previous: Sequence[Mapping], new: Sequence[Mapping]) -> list[dict]:
    """``previous`` with ``new`` added; a new run replaces an earlier one under the same protocol."""
    key = lambda record: tuple(record.get(name) for name in PROTOCOL_FIELDS)  # noqa: E731
    merged = {key(record): dict(record) for record in previous}
    merged.update({key(record): dict(record) for record in new})
    return [merged[k] for k in sorted(merged, key=lambda k: json.dumps(k))]


def write_records(folder: Path, training: Mapping | None, evaluations: Sequence[Mapping]) -> None:
    """Write the records into a folder being built (the caller makes the folder atomic)."""
    if training is not None:
        _write_json(folder / TRAINING_FILE, training)
    if evaluations:
        _write_json(folder / EVALUATION_FILE, {"results": list(evaluations)})


def add_evaluation(folder: str | os.PathLike, record: Mapping, license: str | None = None) -> Path:
    """Add one evaluation run to a saved model folder and rewrite its card (keeping its license unless ``license``
    is given); each file is replaced whole."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise SavedFileError(f"{folder}: not a model folder (no config.json)")
    if license is None and (folder / CARD_FILE).is_file():
        license = ModelCard.load(folder / CARD_FILE).data.license
    results = merge_evaluations(read_evaluations(folder), [record])
    replace_file(folder / EVALUATION_FILE, json.dumps({"results": results}, indent=2, sort_keys=True) + "\n")
    replace_file(folder / CARD_FILE, str(model_card(folder, license=license or DEFAULT_LICENSE)))
    return folder / CARD_FILE


def read_evaluations(folder: Path) -> list[dict]:
    path = folder / EVALUATION_FILE
    if not path.is_file():
        return []
    results = read_json_object(path).get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) and "metrics" in r for r in results):
        raise SavedFileError(f"{path}: damaged evaluation record (expected {{'results': [{{..., 'metrics': ...}}]}})")
    return results


def _write_json(path: Path, data: Mapping) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# -------------------------------------------------------------------------------------------------------- card
def model_card(
    folder: str | os.PathLike,
    model_repo: str | None = None,
    vocab_repo: str | None = None,
    license: str = DEFAULT_LICENSE,
    name: str | None = None,
) -> ModelCard:
    """The card of the model folder ``folder`` (full or LoRA), from its config, records and vocabulary;
    ``model_repo`` / ``vocab_repo``: where the model and its vocabulary are (to be) pushed, for the links; ``name``:
    the model's name where it is not pushed (default: the folder's name)."""
    folder = Path(folder)
    config = read_json_object(folder / "config.json")
    lora = (folder / ADAPTER_CONFIG).is_file()
    base_record = read_json_object(folder / BASE_RECORD) if (folder / BASE_RECORD).is_file() else {}
    training = read_json_object(folder / TRAINING_FILE) if (folder / TRAINING_FILE).is_file() else None
    evaluations = read_evaluations(folder)
    vocabulary = read_json_object(folder / VOCAB_FILE) if (folder / VOCAB_FILE).is_file() else {}
    fingerprint = config.get("metaid_vocab_fingerprint") or vocabulary.get("fingerprint")
    name = model_repo or name or folder.name
    base = base_record.get("checkpoint") or (training or {}).get("base_checkpoint")
    hub_base = base if base and not os.path.isabs(base) else None
    data = ModelCardData(
        library_name="peft" if lora else "transformers",
        pipeline_tag="text2text-generation",
        tags=[*TAGS, *(["lora"] if lora else [])],
        license=license,
        datasets=[vocab_repo] if vocab_repo else None,
        base_model=hub_base,
        model_name=name,
        eval_results=_eval_results(evaluations) or None,
    )
    source = (vocabulary.get("metadata") or {}).get("source") or {}
    lines = [
        f"# {name}",
        "",
        f"A T5 recommender that reads and writes users and items as META ID tokens ({PAPER}): every user and "
        "item is two out-of-vocabulary tokens, a cluster token and a rank token, and the encoder adds the paper's "
        "representation augmentation `E[t] + α·F(v_t)` to them. It recommends by decoding constrained to real "
        f"items. {'A LoRA adapter' if lora else 'A full model'} trained with the `hf_metaid` library.",
        "",
        *_evaluation_section(evaluations),
        *_training_section(training, base_record, base, hub_base, config, source),
        *_vocabulary_section(fingerprint, vocab_repo, vocabulary),
        *_prompt_section(config),
        *_usage_section(name, lora),
        *citation_section(),
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def write_model_card(
    folder: Path, model_repo=None, vocab_repo=None, license: str = DEFAULT_LICENSE, name: str | None = None
) -> None:
    """Write :func:`model_card` as ``README.md`` into ``folder`` (a folder being built: see :func:`add_evaluation`
    for a saved one)."""
    card = model_card(folder, model_repo, vocab_repo, license, name)
    (folder / CARD_FILE).write_text(str(card), encoding="utf-8")


def _protocol(record: Mapping) -> str:
    history = "history items left out of the ranking" if record.get("exclude_seen") else "history items kept"
    return f"{record.get('split')} split of {record.get('data')}, {history}, {record.get('mode')} decoding"


def _eval_results(evaluations: Sequence[Mapping]) -> list[EvalResult]:
    results = []
    for record in evaluations:
        ks = sorted(int(key[3:]) for key in record["metrics"] if key.startswith("hr@"))
        for metric in ("hr", "ndcg"):
            for k in ks:
                value = record["metrics"].get(f"{metric}@{k}")
                if value is None:
                    continue
                results.append(
                    EvalResult(
                        task_type="text2text-generation",
                        task_name="Sequential recommendation (next item, full ranking)",
                        dataset_type=str(record.get("data")),
                        dataset_name=str(record.get("data")),
                        dataset_split=str(record.get("split")),
                        metric_type=f"{metric}@{k}",
                        metric_name=f"{metric.upper()}@{k} ({_protocol(record)})",
                        metric_value=round(float(value), 6),
                        metric_args={
                            "k": k,
                            "history_items": "left out" if record.get("exclude_seen") else "kept",
                            "decoding": record.get("mode"),
                            "template": record.get("template"),
                        },
                    )
                )
    return results


def _evaluation_section(evaluations: Sequence[Mapping]) -> list[str]:
    lines = ["## Evaluation", ""]
    if not evaluations:
        return [
            *lines,
            "Not evaluated: this folder holds no evaluation run. `hf-metaid evaluate MODEL --save-to-card` measures "
            "HR@k / NDCG@k on a leave-one-out split and writes them here.",
            "",
        ]
    lines += [
        "Leave-one-out, one held-out next item per user, ranked against every item (full ranking); measured by "
        "`hf_metaid.evaluate_recommender` on this model.",
        "",
    ]
    for record in evaluations:
        metrics = record["metrics"]
        ks = sorted(int(key[3:]) for key in metrics if key.startswith("hr@"))
        users = metrics.get("num_users")
        lines += [
            f"**{_protocol(record)}**, template `{record.get('template')}`"
            + (f", {int(users)} users" if users is not None else "")
            + (f", {metrics['seconds']:.1f} s" if "seconds" in metrics else ""),
            "",
            "| cut-off | HR | NDCG | MRR |",
            "|---|---|---|---|",
            *(
                f"| @{k} | {metrics[f'hr@{k}']:.4f} | {metrics.get(f'ndcg@{k}', float('nan')):.4f} | "
                f"{metrics.get(f'mrr@{k}', float('nan')):.4f} |"
                for k in ks
            ),
            "",
        ]
    return lines


# config field -> what the card says of it when it is on (the options' own words, MODEL_OPTIONS)
ITEM_OPTIONS = tuple((option.field, option.card) for option in MODEL_OPTIONS if option.card)


def _item_options(config: dict) -> list[str]:
    """What the model adds to the paper's, in the card's words: the options that are on, and the all-items
    objective with its weight and sample."""
    options = [words for field, words in ITEM_OPTIONS if config.get(field)]
    if config.get("metaid_item_loss"):
        drawn = config.get("metaid_item_loss_negatives")
        options.append(
            f"an all-items objective (weight {config['metaid_item_loss']:g}"
            + (f", against {drawn} drawn items)" if drawn else ", against every item)")
        )
    return options


def _training_section(training, base_record, checkpoint, hub_base, config, source) -> list[str]:
    lines = ["## Training", ""]
    if base_record.get("folder"):
        base = f"a T5 built from a configuration (weights in `{base_record['folder']}/`)"
    elif hub_base:
        base = f"[{hub_base}](https://huggingface.co/{hub_base})"
    elif checkpoint:
        base = "a local T5 checkpoint"
    else:
        base = "a T5 built from a configuration (random initialisation)"
    shape = (
        f"d_model {config.get('d_model')}, {config.get('num_layers')} encoder and "
        f"{config.get('num_decoder_layers')} decoder layers, d_ff {config.get('d_ff')}"
    )
    lines += [f"- base: {base}; {shape}", f"- augmentation weight α: {config.get('metaid_alpha')}"]
    lines.append(f"- tree softmax: {'on' if config.get('metaid_tree_softmax') else 'off (the paper objective)'}")
    lines.append(f"- beyond the paper's model: {', '.join(_item_options(config)) or 'nothing'}")
    if source:
        lines.append(f"- data: {source.get('name')} (sha256 of the training rows `{source.get('train_sha256')}`)")
    if training is None:
        lines += ["", "Training settings not recorded (saved from a model without its Trainer).", ""]
        return lines
    seconds, loss = training.get("train_seconds"), training.get("train_loss")
    lines += [
        f"- mode: {training['mode']}; {training['steps']} steps"
        + (
            f" (max_steps {training['max_steps']})" if training.get("max_steps") else f", {training['epochs']:g} epochs"
        ),
        f"- batch size {training['batch_size']}, learning rate {training['learning_rate']:g}, warm-up "
        f"{training['warmup_steps']} steps, weight decay {training['weight_decay']:g}, seed {training['seed']}, "
        f"bf16 {'on' if training['bf16'] else 'off'}",
        f"- training time: {seconds:.1f} s" if seconds is not None else "- training time: not recorded",
        f"- mean training loss: {loss:.4f}" if loss is not None else "- mean training loss: not recorded",
        "",
    ]
    return lines


def _vocabulary_section(fingerprint, vocab_repo, vocabulary) -> list[str]:
    users, items = len(vocabulary.get("users") or ()), len(vocabulary.get("items") or ())
    where = (
        f"shared as the dataset [{vocab_repo}](https://huggingface.co/datasets/{vocab_repo})"
        if vocab_repo
        else f"in this folder (`{VOCAB_FILE}`)"
    )
    return [
        "## ID vocabulary",
        "",
        f"The model needs the ID vocabulary with fingerprint `{fingerprint}` ({users} users, {items} items), "
        f"{where}; the tokenizer in this repository carries it, and a tokenizer for another vocabulary is refused.",
        "",
    ]


def _prompt_section(config: Mapping) -> list[str]:
    templates = config.get("metaid_prompt_templates") or TEMPLATES
    history = config.get("metaid_max_history")
    lines = ["## Prompt format", ""]
    if config.get("metaid_history_in_decoder"):
        lines.append(
            f"The encoder reads the user in the direct template; the decoder reads the latest {history} history "
            "items' ID tokens and writes the next item's two tokens."
        )
    else:
        lines.append(
            f"`{{user}}` is the user's two ID tokens, `{{history}}` the latest {history} items' ID tokens joined "
            "with ` , `; the answer is the next item's two tokens."
        )
    lines.append("")
    for task in sorted(templates):
        for kind in ("seen", "unseen"):
            for template in templates[task].get(kind, ()):
                lines.append(f"- {task}, {kind}: `{template}`")
    return [*lines, ""]


def _usage_section(name: str, lora: bool) -> list[str]:
    with_library = [
        "```python",
        "import hf_metaid as hm",
        f'model, tokenizer = hm.load_for_inference("{name}")',
        'model.recommend(tokenizer, user="USER_ID", k=10)  # [(raw item id, log-prob), ...]',
        "```",
    ]
    without = [
        "```python",
        "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer",
        f'tokenizer = AutoTokenizer.from_pretrained("{name}", trust_remote_code=True)',
        f'model = AutoModelForSeq2SeqLM.from_pretrained("{name}", trust_remote_code=True)',
        'model.recommend(tokenizer, user="USER_ID", k=10)',
        "```",
    ]
    lines = ["## How to use", "", "With the library (`pip install hf-metaid`):", "", *with_library, ""]
    if lora:
        lines += [
            "This is a LoRA adapter: `load_for_inference` rebuilds its base and checks the base's fingerprint.",
            "",
        ]
    else:
        lines += ["Without it, the code files travel with the model:", "", *without, ""]
    return lines
