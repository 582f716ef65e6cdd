"""The library's recipe, stage by stage: index → tokenizer → model → prompts → train → save.

Each stage is one function with explicit, typed parameters, so a script, a benchmark or the ``hf-metaid`` command
runs the same recipe by calling them (the command only parses its options into the settings below and prints).
The settings are grouped by stage in small dataclasses whose fields carry their help text (the command's help is
written from them), and :mod:`hf_metaid.recipes` names the whole recipes worth choosing (``fast``, the one
``hf-metaid demo`` uses, chosen on Beauty's validation split; ``best``; ``paper``)::

    recipe = Recipe.from_name("fast")
    splits, names = split_data("beauty")
    vocabulary = build_vocabulary(splits["train"], names, recipe.index)
    run = train(splits["train"], vocabulary, "runs/demo", recipe.model, recipe.training)
    save_for_inference(run.trainer, run.tokenizer, "metaid-demo")
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from huggingface_hub.errors import StrictDataclassError
from transformers import Seq2SeqTrainer

from .config_arguments import option_field, validate_fields
from .configuration_metaid import OPTION_NAMES, OPTIONS, MetaIDConfig, check_model_options
from .data import (
    build_decoder_history_examples,
    build_training_prompts,
    catalogue,
    leave_one_out,
    load_interactions,
    repeated_pairs,
)
from .entity_vocabulary import EntityVocabulary
from .errors import InvalidArgumentError, MetaIDError, SavedFileError
from .indexing import (
    CollaborativeIndexer,
    IndependentIndexer,
    MetaIDIndexer,
    MetaIDIndexerConfig,
    RandomIndexer,
    SequentialIndexer,
)
from .indexing.base import BaseIndexer, ConfiguredIndexer
from .indexing.config import SeededConfig
from .modeling_metaid import MetaIDForConditionalGeneration
from .prompt_templates import TEMPLATE_SETS, TEMPLATES, check_templates
from .saving import looks_like_hub_repository
from .tokenization_metaid import MetaIDTokenizer
from .training import build_trainer, training_arguments
from .vocabulary_growth import DEFAULT_MIN_INTERACTIONS, MIN_KNOWN_ITEMS, extend_tokenizer

# The ID schemes by name: META ID and the baselines (OpenP5's sequential, random and collaborative indexing, and one
# token per entity). Every one builds an EntityVocabulary that the same tokenizer, model, trainer and evaluation take.
INDEXERS: dict[str, type[ConfiguredIndexer]] = {
    "metaid": MetaIDIndexer,
    "sequential": SequentialIndexer,
    "random": RandomIndexer,
    "collaborative": CollaborativeIndexer,
    "independent": IndependentIndexer,
}
SCHEMES = tuple(INDEXERS)


# ------------------------------------------------------------------------------------------------------ settings
# Fields carry their help text and limits (hf_metaid.config_arguments): the same description validates a value,
# documents it and becomes the command's option.
@dataclass(frozen=True, kw_only=True)
class ModelSettings:
    """The model (:func:`build_model`): the backbone (the built-in tiny T5 from these sizes, or a T5 checkpoint as it
    is), how the ID tokens' rows start, and the model's options as :class:`~hf_metaid.MetaIDConfig` documents and
    checks them, its prompt format (templates, history) included."""

    base: str = field(
        default="tiny",
        metadata={
            "help": "'tiny' (small T5 from a config, offline) or a T5 checkpoint name/path such as t5-small (needs "
            "the Hub or a local copy)"
        },
    )
    d_model: int = field(default=128, metadata={"help": "width of the tiny T5", "minimum": 8})
    d_ff: int = field(default=0, metadata={"help": "feed-forward width of the tiny T5 (0: 2 x d_model)", "minimum": 0})
    layers: tuple[int, int] = field(
        default=(2, 2), metadata={"help": "encoder and decoder layers of the tiny T5", "minimum": 1}
    )
    dropout: float = field(default=0.0, metadata={"help": "dropout of the tiny T5", "minimum": 0})
    init_new_rows: str = field(
        default="resize",
        metadata={
            "help": "start of the ID tokens' embedding rows: 'resize' (transformers' mean and covariance of the old "
            "rows) or 'centroid' (a seeded random projection of each token's vector v_t)",
            "choices": ("resize", "centroid"),
        },
    )
    # The model's options (MetaIDConfig's table, hf_metaid.configuration_metaid.MODEL_OPTIONS): defaults, help texts
    # and limits come from it, and the config's rules between them are checked on construction.
    alpha: float = option_field(OPTIONS["alpha"])
    augment_generation: bool = option_field(OPTIONS["augment_generation"])
    augment_decoder: bool = option_field(OPTIONS["augment_decoder"])
    tree_softmax: bool = option_field(OPTIONS["tree_softmax"])
    history_in_decoder: bool = option_field(OPTIONS["history_in_decoder"])
    max_history: int = option_field(OPTIONS["max_history"])
    templates: str = option_field(
        OPTIONS["templates"],
        default="openp5",
        spelling="As a setting and on the command line: a built-in set by name, 'openp5' (the library's: 5 seen + 1 "
        "unseen per task), 'compact' (one short template per task) or 'anonymous' (no user ID, for the history in the "
        "decoder), or a JSON file of that shape.",
    )
    item_input: bool = option_field(OPTIONS["item_input"])
    item_output: bool = option_field(OPTIONS["item_output"])
    item_loss: float = option_field(OPTIONS["item_loss"])
    item_loss_negatives: int = option_field(OPTIONS["item_loss_negatives"])
    repeat_bias: bool = option_field(OPTIONS["repeat_bias"])

    def __post_init__(self) -> None:
        validate_fields(self)
        check_model_options({name: getattr(self, name) for name in OPTION_NAMES if name != "templates"})
        if self.d_model % 4:
            raise InvalidArgumentError(f"d_model must be a multiple of 4 (the tiny T5 has 4 heads), got {self.d_model}")

    def model_options(self) -> dict[str, object]:
        """The model's options as ``from_base`` and ``model.configure`` take them: the templates read from their name
        or file (the library's own as ``None``).

        Raises:
            MetaIDError: templates that are no built-in set and no readable templates file.
        """
        options = {name: getattr(self, name) for name in OPTION_NAMES}
        templates = load_templates(self.templates)
        options["templates"] = None if templates is TEMPLATES else templates
        return options

    @property
    def feed_forward_width(self) -> int:
        """``d_ff``, where 0 means twice ``d_model``."""
        return self.d_ff or 2 * self.d_model


@dataclass(frozen=True, kw_only=True)
class TrainingSettings:
    """The Trainer run (:func:`train`): its length, batches, optimiser and seed, and which tasks' prompts it trains on
    (the prompts' format is the model's: :class:`ModelSettings`)."""

    epochs: float = field(default=2.0, metadata={"help": "passes over the training prompts", "exclusive_minimum": 0})
    max_steps: int = field(default=0, metadata={"help": "stop after this many steps (0: use the epochs)", "minimum": 0})
    batch_size: int = field(default=64, metadata={"help": "prompts per step", "minimum": 1})
    learning_rate: float = field(
        default=2e-3, metadata={"help": "peak learning rate (AdamW, linear decay)", "exclusive_minimum": 0}
    )
    warmup_steps: int = field(default=100, metadata={"help": "warm-up steps", "minimum": 0})
    tasks: str = field(
        default="sequential",
        metadata={"help": "training tasks", "choices": ("sequential", "direct", "sequential,direct")},
    )
    lora: bool = field(default=False, metadata={"help": "LoRA (new-token rows and F trained in full)"})
    logging_steps: int = field(default=100, metadata={"help": "log the loss every this many steps", "minimum": 1})
    bf16: str = field(
        default="auto",
        metadata={
            "help": "bf16 mixed precision (auto: where the hardware runs it natively)",
            "choices": ("auto", "on", "off"),
        },
    )
    seed: int = field(
        default=0, metadata={"help": "seed of the initial weights, the template draw and the data order", "minimum": 0}
    )

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A whole recipe: the ID scheme and the settings of every stage, and whether evaluation leaves the history out
    of the ranking (``None``: decided from the data by :func:`decide_exclude_seen`)."""

    scheme: str = "metaid"
    index: MetaIDIndexerConfig = field(default_factory=MetaIDIndexerConfig)
    model: ModelSettings = ModelSettings()
    training: TrainingSettings = TrainingSettings()
    exclude_seen: bool | None = False
    threads: int = 0  # torch CPU threads the recipe runs fastest with (0: torch's default, one per core)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise InvalidArgumentError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")

    @classmethod
    def from_name(cls, name: str) -> Recipe:
        """The recipe called ``name`` in :mod:`hf_metaid.recipes` (``fast``, ``best``, ``paper``, ...).

        Raises:
            InvalidArgumentError: an unknown name; the message lists the known ones.
        """
        from .recipes import get  # the registry is built from this module's classes: imported when asked

        return get(name)


def decide_exclude_seen(train: datasets.Dataset) -> tuple[bool, str]:
    """``(exclude_seen, reason)`` for data whose recipe leaves the choice open: leave the history out of the ranking
    only where no training pair (user, item) repeats. Where users come back to items (check-ins, groceries, music),
    a history item is often the answer, and leaving them out lowers every method's hit rate."""
    repeats = repeated_pairs(train)
    if repeats:
        return False, f"history items kept: {repeats} training rows repeat a user-item pair (repeat consumption)"
    return True, "history items left out: no user meets an item twice in the training data"


# -------------------------------------------------------------------------------------------------------- stages
def split_data(data: str | os.PathLike | datasets.Dataset | None = "beauty", **load_options):
    """``(leave-one-out splits, catalogue of every user and item)`` of an interaction file, a table, or ``"beauty"``
    / ``None`` for the embedded Beauty data; ``load_options`` go to :func:`~hf_metaid.load_interactions` (column
    names, ``min_interactions``, ``drop_duplicates``)."""
    interactions = load_interactions(None if data == "beauty" else data, **load_options)
    return leave_one_out(interactions), catalogue(interactions)


def build_indexer(scheme: str = "metaid", config: SeededConfig | None = None) -> BaseIndexer:
    """The indexer of ``scheme`` (one of :data:`SCHEMES`).

    ``config`` is the scheme's own settings object (e.g. a ``CollaborativeIndexerConfig`` for ``"collaborative"``),
    or a ``MetaIDIndexerConfig``, of which the baselines take only the seed and the vector size (so one recipe's
    settings serve every scheme); ``None``: the scheme's defaults.

    Raises:
        InvalidArgumentError: an unknown scheme, or settings of another scheme.
    """
    if scheme not in INDEXERS:
        raise InvalidArgumentError(f"unknown scheme {scheme!r}; use one of {SCHEMES}")
    indexer_class = INDEXERS[scheme]
    if config is None or isinstance(config, indexer_class.config_class):
        return indexer_class(config)
    if isinstance(config, MetaIDIndexerConfig):
        return indexer_class(seed=config.seed, dim=config.dim)
    raise InvalidArgumentError(
        f"config for scheme {scheme!r} must be a {indexer_class.config_class.__name__} or a MetaIDIndexerConfig, "
        f"got {type(config).__name__}"
    )


def build_vocabulary(
    train: datasets.Dataset,
    names: dict | None = None,
    config: SeededConfig | None = None,
    scheme: str = "metaid",
    source: str | None = None,
) -> EntityVocabulary:
    """The ID vocabulary of the training split (``names``: the catalogue, whose unseen entities get cold-start IDs;
    ``source``: the data's name, recorded with the training rows' hash, see :func:`data_name`)."""
    return build_indexer(scheme, config).fit(train, catalogue=names, source=source)


def data_name(data: str | os.PathLike | datasets.Dataset | None) -> str:
    """A short public name for the data of :func:`split_data`: ``"beauty"`` for the embedded Amazon Beauty data,
    a file's name without its folders (a card on the Hub should not show someone's paths), ``"<dataset>"`` for a
    table."""
    if data is None or data == "beauty":
        return "beauty"
    if isinstance(data, datasets.Dataset):
        return "<dataset>"
    return Path(data).name


def tiny_t5_config(**overrides) -> MetaIDConfig:
    """A small T5 (about 1M parameters with the defaults) for tests, the offline demo and CPU experiments."""
    fields = {
        "vocab_size": 512,
        "d_model": 128,
        "d_kv": 32,
        "d_ff": 256,
        "num_layers": 2,
        "num_decoder_layers": 2,
        "num_heads": 4,
        "dropout_rate": 0.1,
        "decoder_start_token_id": 0,
    }
    unknown = sorted(set(overrides) - set(MetaIDConfig.__dataclass_fields__) - set(MetaIDConfig().to_dict()))
    if unknown:  # T5Config would keep a misspelt field as an attribute that nothing reads
        raise InvalidArgumentError(f"tiny_t5_config: unknown config field(s) {unknown}")
    fields.update(overrides)
    try:
        return MetaIDConfig(**fields)
    except StrictDataclassError as err:
        raise InvalidArgumentError(f"tiny_t5_config: {' '.join(str(err).split())}") from None


def build_tokenizer(vocabulary: EntityVocabulary, base: str = "tiny") -> MetaIDTokenizer:
    """The vocabulary's tokenizer over the offline word-level base (``"tiny"``) or a checkpoint's tokenizer."""
    return MetaIDTokenizer.from_base(None if base == "tiny" else checkpoint(base), vocabulary)


def checkpoint(name: str) -> str:
    """``name`` if it is a local folder or could be a Hub checkpoint; a mistyped local path (one that cannot be a Hub
    name, or whose first part is a local folder) fails at once instead of after the Hub's retries.

    Raises:
        SavedFileError: naming the path.
    """
    local = os.path.expanduser(name)
    if os.path.isdir(local):
        return local
    if os.path.exists(local):
        raise SavedFileError(f"base {name}: a file, not a checkpoint folder")
    if not looks_like_hub_repository(name, bare_names=True):
        raise SavedFileError(f"base {name}: no such folder (and not a Hub checkpoint name)")
    return name


def build_model(
    tokenizer: MetaIDTokenizer, settings: ModelSettings = ModelSettings(), seed: int = 0
) -> MetaIDForConditionalGeneration:
    """The tiny T5 of ``settings`` (seeded), or the checkpoint ``settings.base`` with the ID tokens and F added, with
    the settings' model options (their prompt format included)."""
    options = settings.model_options()  # reads a templates file: before any model is built
    if settings.base == "tiny":
        encoder_layers, decoder_layers = settings.layers
        base: MetaIDConfig | str = tiny_t5_config(
            d_model=settings.d_model,
            d_ff=settings.feed_forward_width,
            d_kv=settings.d_model // 4,
            num_layers=encoder_layers,
            num_decoder_layers=decoder_layers,
            dropout_rate=settings.dropout,
        )
    else:
        base = checkpoint(settings.base)
    return MetaIDForConditionalGeneration.from_base(
        base, tokenizer, seed=seed, init_new_rows=settings.init_new_rows, **options
    )


def load_templates(spec: str) -> dict:
    """A built-in template set (``openp5``, ``compact``, ``anonymous``) or a JSON file
    ``{task: {"seen": [...], ...}}``."""
    if spec in TEMPLATE_SETS:
        return TEMPLATE_SETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise MetaIDError(f"templates {spec!r}: not one of {', '.join(TEMPLATE_SETS)} and not a file")
    try:
        return check_templates(json.loads(path.read_text(encoding="utf-8-sig")))
    except (json.JSONDecodeError, ValueError) as err:
        raise MetaIDError(f"{path}: bad templates file: {err}") from None


@dataclass
class TrainingRun:
    """What :func:`train` returns: the trained model (a PEFT model with LoRA), its tokenizer, the Trainer (for
    :func:`~hf_metaid.save_for_inference`), the training seconds and the mean training loss."""

    model: object
    tokenizer: MetaIDTokenizer
    trainer: Seq2SeqTrainer
    seconds: float
    loss: float


def train(
    train_split: datasets.Dataset,
    vocabulary: EntityVocabulary,
    output_dir: str | os.PathLike,
    model_settings: ModelSettings = ModelSettings(),
    settings: TrainingSettings = TrainingSettings(),
    arguments: Mapping[str, object] | None = None,
    **trainer_kwargs,
) -> TrainingRun:
    """Tokenizer → model → prompts → Trainer run; checkpoints (if any) go under ``output_dir/checkpoints``.

    The prompt format (``model_settings``' templates, history length, history in the decoder) is recorded in the
    model's config, so evaluation and ``recommend`` ask in the words the model learned. ``arguments`` override the
    training arguments the settings give (:func:`~hf_metaid.training_arguments` keywords); ``trainer_kwargs`` go to
    :func:`~hf_metaid.build_trainer`.
    """
    model_settings.model_options()  # a bad templates file fails before the tokenizer is built
    tokenizer = build_tokenizer(vocabulary, model_settings.base)
    model = build_model(tokenizer, model_settings, seed=settings.seed)
    return fine_tune(model, tokenizer, train_split, output_dir, settings, arguments, **trainer_kwargs)


def fine_tune(
    model: MetaIDForConditionalGeneration,
    tokenizer: MetaIDTokenizer,
    train_split: datasets.Dataset,
    output_dir: str | os.PathLike,
    settings: TrainingSettings = TrainingSettings(),
    arguments: Mapping[str, object] | None = None,
    **trainer_kwargs,
) -> TrainingRun:
    """Train ``model`` (built by :func:`build_model`, or a saved one, e.g. after :func:`extend_model`) on
    ``train_split``: interaction rows (``user``, ``item``, ``position``), turned into prompts in the format the
    model's config records (templates, history length, history in the decoder); or prompts already built (columns
    ``source`` and ``target``), e.g. only those whose target is new. ``settings`` drive the run as in :func:`train`."""
    config = model.config
    templates = config.metaid_prompt_templates or TEMPLATES
    if {"source", "target"} <= set(train_split.column_names):
        prompts = train_split
    elif config.metaid_history_in_decoder:
        prompts = build_decoder_history_examples(
            train_split, tokenizer, templates=templates, max_history=config.metaid_max_history, seed=settings.seed
        )
    else:
        prompts = build_training_prompts(
            train_split,
            tokenizer,
            tasks=tuple(settings.tasks.split(",")),
            templates=templates,
            max_history=config.metaid_max_history,
            seed=settings.seed,
        )
    training = training_arguments(
        Path(output_dir) / "checkpoints",
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_steps,
        save_strategy="no",
        logging_steps=max(1, settings.logging_steps),
        seed=settings.seed,
        disable_tqdm=False,
        bf16={"on": True, "off": False}.get(settings.bf16, settings.bf16),
        # Decoder sequences range from 1 to max_history items: batches of similar length waste little on padding.
        train_sampling_strategy="group_by_length" if config.metaid_history_in_decoder else "random",
        **(arguments or {}),
    )
    trainer = build_trainer(model, tokenizer, prompts, training, lora=True if settings.lora else None, **trainer_kwargs)
    started = time.perf_counter()
    result = trainer.train()
    return TrainingRun(trainer.model, tokenizer, trainer, time.perf_counter() - started, result.training_loss)


# --------------------------------------------------------------------------------------------- a growing catalogue
def load_for_training(folder: str | os.PathLike) -> tuple[MetaIDForConditionalGeneration, MetaIDTokenizer]:
    """A saved model folder (full or LoRA) as a full model to train further, with its tokenizer.

    A LoRA adapter is merged into its base (``merge_and_unload``), so a further run may train in full or with a
    fresh adapter. Every parameter is trainable, as in a model :func:`build_model` builds: the merged model would
    otherwise keep the adapter's frozen base weights, and a full run on it would have nothing to train (a LoRA run
    freezes them again itself). The model forgets where it was loaded from: a LoRA run on it then saves the base's
    weights beside the adapter (``base/``), since they are no longer those of any checkpoint.
    """
    from .peft_utils import is_peft
    from .saving import load_for_inference

    model, tokenizer = load_for_inference(folder)
    if is_peft(model):
        model = model.merge_and_unload()
    model.requires_grad_(True)
    model.config.name_or_path = ""
    return model.train(), tokenizer


def extend_model(
    model: MetaIDForConditionalGeneration,
    tokenizer: MetaIDTokenizer,
    interactions: datasets.Dataset,
    min_interactions: int = DEFAULT_MIN_INTERACTIONS,
    min_known_items: float = MIN_KNOWN_ITEMS,
    source: str | None = None,
) -> tuple[MetaIDForConditionalGeneration, MetaIDTokenizer]:
    """IDs for the users and items of ``interactions`` the model's vocabulary lacks (``EntityVocabulary.extend``),
    the tokenizer that spells them with every old token id kept, and ``model`` grown to it in place
    (:meth:`~hf_metaid.MetaIDForConditionalGeneration.extend_vocabulary`); then :func:`fine_tune` on new data.

    Data of which the vocabulary knows less than ``min_known_items`` of the items is refused before anything grows
    (``UnknownDataError``; 0 grows it anyway); ``source`` names the data in the grown vocabulary's metadata
    (:func:`~hf_metaid.vocabulary_growth.extend_vocabulary`)."""
    vocabulary = tokenizer.entity_vocabulary.extend(
        interactions, min_interactions=min_interactions, min_known_items=min_known_items, source=source
    )
    grown = extend_tokenizer(tokenizer, vocabulary)
    return model.extend_vocabulary(grown), grown
