"""The settings of the model and training stages, as dataclasses whose fields carry their help text and limits."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..configuration_metaid import OPTION_NAMES, OPTIONS, check_model_options
from ..errors import InvalidArgumentError, MetaIDError
from ..prompt_templates import TEMPLATE_SETS, TEMPLATES, check_templates
from ..settings.fields import option_field, validate_fields


# ------------------------------------------------------------------------------------------------------ settings
# Fields carry their help text and limits (hf_metaid.settings.fields): the same description validates a value,
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
    chain_prior: int = option_field(OPTIONS["chain_prior"])
    chain_prior_earlier: int = option_field(OPTIONS["chain_prior_earlier"])
    num_beams: int = option_field(OPTIONS["num_beams"])

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
    (the prompts' format is the model's: :class:`ModelSettings`).

    The length is one of: ``max_steps`` where > 0; else ``time_budget`` minutes where > 0 (the steps that fit,
    :mod:`hf_metaid.training.time_budget`; ``epochs`` is then unused); else ``epochs``. For a fixed length from a
    recipe with a budget, set ``time_budget=0`` beside the epochs (``replace(recipe.training, epochs=8,
    time_budget=0)``) or give ``max_steps``."""

    epochs: float = field(default=2.0, metadata={"help": "passes over the training prompts", "exclusive_minimum": 0})
    max_steps: int = field(default=0, metadata={"help": "stop after this many steps (0: use the epochs)", "minimum": 0})
    time_budget: float = field(
        default=0.0,
        metadata={
            "help": "minutes the whole run may take from its start (data and indexing count, and the demo keeps "
            "time for its evaluation): the steps that fit are set from the step rate measured on the first steps, "
            "warm-up and decay ending inside it; 0: a fixed length (epochs, or max steps). A fixed length given "
            "(--epochs, --max-steps) turns a recipe's budget off",
            "minimum": 0,
        },
    )
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
            "help": "bf16 mixed precision (auto: on a GPU that runs it natively, float32 on a CPU)",
            "choices": ("auto", "on", "off"),
        },
    )
    seed: int = field(
        default=0, metadata={"help": "seed of the initial weights, the template draw and the data order", "minimum": 0}
    )

    def __post_init__(self) -> None:
        validate_fields(self)


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
