"""The library's recipe, stage by stage: index → tokenizer → model → prompts → train → save.

Each stage is one function with explicit, typed parameters, so a script, a benchmark or the ``hf-metaid`` command
runs the same recipe by calling them (the command only parses its options into the settings below and prints).
The settings are grouped by stage in small dataclasses whose fields carry their help text (the command's help is
written from them), and :data:`DEMO` names the settings ``hf-metaid demo`` uses, chosen on Beauty's validation
split (``benchmarks/results/demo.md``)::

    splits, names = split_data("beauty")
    vocabulary = build_vocabulary(splits["train"], names, DEMO.index)
    run = train(splits["train"], vocabulary, "runs/demo", DEMO.model, DEMO.training)
    save_for_inference(run.trainer, run.tokenizer, "metaid-demo")
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import datasets
from huggingface_hub.errors import StrictDataclassError
from transformers import Seq2SeqTrainer

from .config_arguments import validate_fields
from .configuration_metaid import MetaIDConfig
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
from .vocabulary_growth import DEFAULT_MIN_INTERACTIONS, extend_tokenizer

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
    """The backbone (:func:`build_model`): the built-in tiny T5 from these sizes, or a T5 checkpoint as it is."""

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
    tree_softmax: bool = field(
        default=False,
        metadata={
            "help": "normalise each ID step over the tokens a real item can continue with (off: the paper's plain "
            "softmax over the vocabulary)"
        },
    )
    item_output: bool = field(
        default=False,
        metadata={
            "help": "give every item its own output vector and bias at the rank step, so the items of a cluster stop "
            "sharing one output row per rank (off: the paper's rank step)"
        },
    )
    item_input: bool = field(
        default=False,
        metadata={
            "help": "give every item its own input vector, added at its rank token where the history is read (the "
            "encoder; with --history-in-decoder the decoder), so the model reads which item and not only which "
            "cluster and rank (off: the paper's embeddings)"
        },
    )

    alpha: float = field(
        default=0.1,
        metadata={
            "help": "weight α of the augmentation F: the encoder's input vector of an ID token is E[t] + α·F(v_t) (0: "
            "no F; the paper uses 0.1). F acts where the encoder reads ID tokens, so not under an anonymous prompt "
            "with the history in the decoder",
            "minimum": 0,
        },
    )
    augment_decoder: bool = field(
        default=False,
        metadata={
            "help": "add α·F(v_t) to the decoder's ID-token inputs too, where the history is read with "
            "--history-in-decoder (off: F in the encoder only, as the research code had it)"
        },
    )
    init_new_rows: str = field(
        default="resize",
        metadata={
            "help": "start of the ID tokens' embedding rows: 'resize' (transformers' mean and covariance of the old "
            "rows) or 'centroid' (a seeded random projection of each token's vector v_t)",
            "choices": ("resize", "centroid"),
        },
    )
    item_loss: float = field(
        default=0.0,
        metadata={
            "help": "weight of a second objective with --item-output: each target item's cross-entropy over every "
            "item (the items' output vectors, from the state that predicts its cluster), so every item learns "
            "from every target (0: the two-token objective alone)",
            "minimum": 0,
        },
    )
    item_loss_negatives: int = field(
        default=0,
        metadata={
            "help": "with --item-loss: score each target against the batch's targets plus this many items drawn "
            "uniformly instead of every item, so its cost grows with the sample, not the catalogue (0: every item)",
            "minimum": 0,
        },
    )

    repeat_bias: bool = field(
        default=False,
        metadata={
            "help": "with --history-in-decoder: learn one score β added to every item the decoder has already read, "
            "so the model learns from the data whether users take an item again (off: read items are scored like "
            "any other)"
        },
    )

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.item_loss and not self.item_output:
            raise InvalidArgumentError("item_loss needs item_output: it scores items with the item output's vectors")
        if self.item_loss_negatives and not self.item_loss:
            raise InvalidArgumentError("item_loss_negatives needs item_loss: it samples that objective's items")
        if self.d_model % 4:
            raise InvalidArgumentError(f"d_model must be a multiple of 4 (the tiny T5 has 4 heads), got {self.d_model}")

    @property
    def feed_forward_width(self) -> int:
        """``d_ff``, where 0 means twice ``d_model``."""
        return self.d_ff or 2 * self.d_model


@dataclass(frozen=True, kw_only=True)
class TrainingSettings:
    """The prompts and the Trainer run (:func:`train`)."""

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
    templates: str = field(
        default="openp5",
        metadata={
            "help": "prompt templates: 'openp5' (5 seen + 1 unseen per task), 'compact' (one short template per task), "
            "'anonymous' (no user ID, for --history-in-decoder) "
            'or a JSON file {task: {"seen": [...], "unseen": [...]}}'
        },
    )
    max_history: int = field(
        default=10,
        metadata={"help": "history items per prompt (with --history-in-decoder: per decoder sequence)", "minimum": 1},
    )
    history_in_decoder: bool = field(
        default=False,
        metadata={
            "help": "the encoder reads the user, the decoder the history items' ID tokens, trained on every next "
            "item of a user's sequence in one pass (off: the paper's prompts, one target item per prompt)"
        },
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


# The paper's prompt mode at demo scale, the demo's recipe until the decoder recipe below beat it (and the base of
# the earlier benchmarks, which keep it to stay reproducible). Chosen for 2 CPU cores and about 15 minutes on Beauty's
# validation split (benchmarks/results/demo.md): spectral IDs carry more of the sequential signal than skip-gram ones
# at this budget (and take seconds), one encoder layer with three decoder layers and a wide feed-forward learn more
# per second than 2+2 narrow ones in this mode, short prompts train faster per step, the last 5 items beat the last 3
# or 10 at equal time, and batches of 128 pass more prompts per second than 64.
PROMPT_DEMO = Recipe(
    index=MetaIDIndexerConfig(embedding="spectral"),
    model=ModelSettings(d_ff=1024, layers=(1, 3)),
    training=TrainingSettings(
        epochs=4.5, batch_size=128, learning_rate=4e-3, templates="compact", max_history=5, warmup_steps=100
    ),
    exclude_seen=None,
)

# The decoder recipe (benchmarks/results/quality_budget.md): the history in the decoder (every next item of a user's
# sequence learnt in one pass, windows of 20 items), an anonymous encoder prompt (no user ID to memorise), each item's
# own input and output vectors, and a narrow model (d_model 64, d_ff 256, 1+2 layers) that runs many epochs cheaply,
# with dropout 0.3 against memorising the training sequences, as sequential recommenders train. Its matrix products
# are so small that one thread trained it faster than two (0.71x on two; results/demo.md). Whether the ranking
# leaves each user's history out is decided from the data (decide_exclude_seen): on Beauty, which has no repeated
# user-item pair, it does, as a shop does. With K = 100 and the two-token objective alone it was the demo's recipe
# of the eighth round (benchmarks/results/demo.md), and it stays the recipe the benchmarks compare ID schemes,
# ablations and speeds with (benchmarks/quality.py and the others), so their results files stay comparable.
BENCHMARK_RECIPE = Recipe(
    index=MetaIDIndexerConfig(embedding="spectral"),
    model=ModelSettings(d_model=64, d_ff=256, layers=(1, 2), dropout=0.3, item_output=True, item_input=True),
    training=TrainingSettings(
        epochs=16.0,
        batch_size=64,
        learning_rate=4e-3,
        templates="anonymous",
        max_history=20,
        history_in_decoder=True,
        warmup_steps=100,
    ),
    exclude_seen=None,
    threads=1,
)

# The demo's recipe: the decoder recipe with two changes chosen on Beauty's validation split and checked on the
# synthetic markov log (benchmarks/results/quality_budget.md, demo.md ninth round): K = 200 clusters, and the
# all-items objective beside the two-token one, each target scored against the batch's targets and 1,024 drawn
# items (as good as against every item on validation, at a fraction of its cost).
DEMO = replace(
    BENCHMARK_RECIPE,
    index=replace(BENCHMARK_RECIPE.index, num_clusters=200),
    model=replace(BENCHMARK_RECIPE.model, item_loss=1.0, item_loss_negatives=1024),
)


def decide_exclude_seen(train: datasets.Dataset) -> tuple[bool, str]:
    """``(exclude_seen, reason)`` for data whose recipe leaves the choice open: leave the history out of the ranking
    only where no training pair (user, item) repeats. Where users come back to items (check-ins, groceries, music),
    a history item is often the answer, and leaving them out lowers every method's hit rate."""
    repeats = repeated_pairs(train)
    if repeats:
        return False, f"history items kept: {repeats} training rows repeat a user-item pair (repeat consumption)"
    return True, "history items left out: no user meets an item twice in the training data"


# -------------------------------------------------------------------------------------------------------- stages
def split_data(data: str | os.PathLike | datasets.Dataset | None = "beauty"):
    """``(leave-one-out splits, catalogue of every user and item)`` of an interaction file, a table, or ``"beauty"``
    / ``None`` for the embedded Beauty data."""
    interactions = load_interactions(None if data == "beauty" else data)
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
    """The tiny T5 of ``settings`` (seeded), or the checkpoint ``settings.base`` with the ID tokens and F added."""
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
    model = MetaIDForConditionalGeneration.from_base(
        base,
        tokenizer,
        seed=seed,
        tree_softmax=settings.tree_softmax,
        item_output=settings.item_output,
        item_input=settings.item_input,
        alpha=settings.alpha,
        init_new_rows=settings.init_new_rows,
        augment_decoder=settings.augment_decoder,
    )
    model.config.metaid_item_loss = settings.item_loss
    model.config.metaid_item_loss_negatives = settings.item_loss_negatives
    return model


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

    The prompt format (templates, history length) is recorded in the model's config, so evaluation and
    ``recommend`` ask in the words the model learned. ``arguments`` override the training arguments the settings
    give (:func:`~hf_metaid.training_arguments` keywords); ``trainer_kwargs`` go to :func:`~hf_metaid.build_trainer`.
    """
    if model_settings.repeat_bias and not settings.history_in_decoder:
        raise InvalidArgumentError(
            "repeat_bias needs history_in_decoder (--history-in-decoder): it scores the items the decoder has read"
        )
    templates = load_templates(settings.templates)
    tokenizer = build_tokenizer(vocabulary, model_settings.base)
    model = build_model(tokenizer, model_settings, seed=settings.seed)
    model.set_prompt_format(
        None if templates is TEMPLATES else templates, settings.max_history, settings.history_in_decoder
    )
    if model_settings.repeat_bias:
        model.set_repeat_bias()  # it reads the decoder's history: after the prompt format
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
    model's config records (templates, history length, history in the decoder), whatever ``settings`` say of it;
    or prompts already built (columns ``source`` and ``target``), e.g. only those whose target is new. The rest of
    ``settings`` drive the run as in :func:`train`."""
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
    fresh adapter. The model forgets where it was loaded from: a LoRA run on it then saves the base's weights
    beside the adapter (``base/``), since they are no longer those of any checkpoint.
    """
    from .peft_utils import is_peft
    from .saving import load_for_inference

    model, tokenizer = load_for_inference(folder)
    if is_peft(model):
        model = model.merge_and_unload()
    model.config.name_or_path = ""
    return model.train(), tokenizer


def extend_model(
    model: MetaIDForConditionalGeneration,
    tokenizer: MetaIDTokenizer,
    interactions: datasets.Dataset,
    min_interactions: int = DEFAULT_MIN_INTERACTIONS,
) -> tuple[MetaIDForConditionalGeneration, MetaIDTokenizer]:
    """IDs for the users and items of ``interactions`` the model's vocabulary lacks (``EntityVocabulary.extend``),
    the tokenizer that spells them with every old token id kept, and ``model`` grown to it in place
    (:meth:`~hf_metaid.MetaIDForConditionalGeneration.extend_vocabulary`); then :func:`fine_tune` on new data."""
    vocabulary = tokenizer.entity_vocabulary.extend(interactions, min_interactions=min_interactions)
    grown = extend_tokenizer(tokenizer, vocabulary)
    return model.extend_vocabulary(grown), grown
