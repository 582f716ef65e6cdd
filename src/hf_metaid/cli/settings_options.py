"""Settings <-> options: which settings fields each command offers, and the settings built back from them."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence

from ..configuration_metaid import OPTIONS
from ..errors import InvalidArgumentError
from ..indexing import CollaborativeIndexerConfig, MetaIDIndexerConfig
from ..settings.fields import add_config_arguments, config_from_arguments
from ..workflow import recipes
from ..workflow.recipes import Recipe
from ..workflow.settings import ModelSettings, TrainingSettings

# ----------------------------------------------------------------------------------- settings <-> options
# The options each command offers, per settings class of hf_metaid.workflow.settings; type, default, rule and help text
# come from the fields (hf_metaid.settings.fields). The seed is one option for every stage, --layers has its own syntax.
INDEX_FIELDS = ("num_clusters", "dim", "embedding", "rank_by", "svd_precision", "max_cluster_size", "user_ids")
COLLABORATIVE_FIELDS = ("num_groups", "leaf_size")
COLLABORATIVE_TITLE = "collaborative IDs (--scheme collaborative)"
# Every model setting, the model's options (MetaIDConfig's) included, in ModelSettings' order; --layers has its own.
MODEL_FIELDS = tuple(field.name for field in dataclasses.fields(ModelSettings) if field.name != "layers")
TRAINING_FIELDS = (
    "epochs",
    "max_steps",
    "time_budget",
    "batch_size",
    "learning_rate",
    "warmup_steps",
    "tasks",
    "lora",
    "logging_steps",
    "bf16",
)
MODEL_HELP = (
    "model folder written by 'hf-metaid train' (full or LoRA), or a Hub repository namespace/name holding one; "
    "a path that does not exist fails at once"
)
DATA_HELP = (
    "interactions: a file (P5/OpenP5 text, CSV, TSV, Parquet, JSONL), 'beauty' (embedded), 'markov' (a synthetic "
    "log with a known best ranking), 'markov-repeats' (the same, where users come back to items) or 'markov-large' "
    "(the same process over 36,000 users)"
)
# Each option has one spelling. Spellings the commands once took, with the one that means the same now: refused like
# any unknown word, with the new name in the error, where the command takes it.
RENAMED = {
    "--clusters": "--num-clusters",
    "--lr": "--learning-rate",
    "--warmup": "--warmup-steps",
    "--resume-from": "--start-from",  # not the Trainer's resume_from_checkpoint: a trained model to start from
    "--k": "--cutoffs",  # evaluate and demo: the cut-offs of the metrics; recommend's --k is the number of items
    "--min-interactions": "--min-neighbour-rows",  # extend: rows that place a new entity by its neighbours
}
# The help of an option whose default is the chosen recipe's: the default recipe's value as the example.
FROM_RECIPE = f"the recipe's; {recipes.DEFAULT}: {{value}}"


def _add_settings(
    parser: argparse.ArgumentParser, title: str, defaults: object, names: Sequence[str], stage: str | None = None
) -> None:
    """Options for ``names`` of a settings object's class. With ``stage`` (the :class:`Recipe` field the settings
    are: ``index``, ``model`` or ``training``), an option not given takes the value of the recipe ``--recipe`` names
    (see :class:`_Parser`) and its help shows the default recipe's, ``defaults``; without it ``defaults``'s values
    are the options' defaults."""
    group = parser.add_argument_group(title)
    add_config_arguments(
        group,
        type(defaults),
        names,
        defaults={name: getattr(defaults, name) for name in names},
        defaults_from=None if stage is None else FROM_RECIPE,
    )
    if stage is not None:
        for name in names:
            parser.from_recipe[f"{type(defaults).__name__}.{name}"] = _recipe_field(stage, name)


def _recipe_field(stage: str, name: str) -> Callable[[Recipe], object]:
    """The value of ``recipe.<stage>.<name>`` (``stage`` empty: ``recipe.<name>``) of a recipe given later."""
    return lambda recipe: getattr(getattr(recipe, stage) if stage else recipe, name)


def _from_options(args: argparse.Namespace, current, names: Sequence[str], **fixed):
    """``current`` (a settings object) with the parsed values of the options ``names`` and the ``fixed`` fields."""
    kept = {f.name: getattr(current, f.name) for f in dataclasses.fields(current) if f.name not in (*names, *fixed)}
    return config_from_arguments(args, type(current), **kept, **fixed)


def _index_config(args: argparse.Namespace) -> MetaIDIndexerConfig | CollaborativeIndexerConfig:
    """The settings of ``--scheme``'s indexer: META ID's (the recipe's, with the options given), or a baseline's
    (which take its seed and ``--dim``)."""
    preset = recipes.get(args.recipe).index
    seed = preset.seed if args.seed is None else args.seed
    joint = False if getattr(args, "separate", False) else preset.joint
    config = _from_options(args, preset, INDEX_FIELDS, seed=seed, joint=joint)
    if args.scheme == "collaborative":
        return config_from_arguments(args, CollaborativeIndexerConfig, seed=config.seed, dim=config.dim)
    return config


def _model_and_training(args: argparse.Namespace) -> tuple[ModelSettings, TrainingSettings]:
    """The model and training settings: the recipe's, with the options given, and the run's length as
    :func:`_length_given` decides it."""
    preset = recipes.get(args.recipe)
    seed = preset.training.seed if args.seed is None else args.seed
    _drop_what_the_history_off_leaves_unread(args, preset.model)
    model = _from_options(args, preset.model, MODEL_FIELDS, layers=args.layers)
    return model, _length_given(args, _from_options(args, preset.training, TRAINING_FIELDS, seed=seed))


def _drop_what_the_history_off_leaves_unread(args: argparse.Namespace, recipe: ModelSettings) -> None:
    """Turn off the recipe's options that read the decoder's history (the repeat bias, the chain prior) where the user
    turns the history in the decoder off (``--no-history-in-decoder``) and did not ask for those options themselves:
    the recipe's extras follow the mode the user chose, and a note says so."""
    recipe_filled = getattr(args, "recipe_filled", None)
    if recipe_filled is None or "ModelSettings.history_in_decoder" in recipe_filled:
        return
    if getattr(args, "ModelSettings.history_in_decoder", True) or not recipe.history_in_decoder:
        return
    # A reach asked for keeps the recipe's prior, so that the error names the history the two need.
    reach_asked = "ModelSettings.chain_prior_earlier" not in recipe_filled and getattr(
        args, "ModelSettings.chain_prior_earlier", 0
    )
    dropped = [
        name
        for name in ("repeat_bias", "chain_prior", "chain_prior_earlier")
        if getattr(recipe, name)
        and f"ModelSettings.{name}" in recipe_filled
        and not (name == "chain_prior" and reach_asked)
    ]
    for name in dropped:
        setattr(args, f"ModelSettings.{name}", OPTIONS[name].default)
    if dropped:
        names = " and ".join(f"--{name.replace('_', '-')}" for name in dropped)
        print(f"note: --no-history-in-decoder turns off the recipe's {names} (they read the decoder's history)")


def _length_given(args: argparse.Namespace, training: TrainingSettings) -> TrainingSettings:
    """A fixed length the user gives (``--epochs``, ``--max-steps``) wins over the recipe's time budget, which it
    turns off: the same options then train the same steps on any machine. ``--time-budget`` given beside one of them
    (above 0) asks for two lengths, and is refused."""
    recipe_filled = getattr(args, "recipe_filled", None)  # set by the command's parser
    if recipe_filled is None:
        return training
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("epochs", "max_steps")
        if f"TrainingSettings.{name}" in vars(args) and f"TrainingSettings.{name}" not in recipe_filled
    ]
    if not given:
        return training
    if "TrainingSettings.time_budget" not in recipe_filled and training.time_budget > 0:
        raise InvalidArgumentError(
            f"--time-budget {training.time_budget:g} and {' and '.join(given)} both set the run's length: give a "
            "budget or a fixed length (--time-budget 0 turns the budget off)"
        )
    return dataclasses.replace(training, time_budget=0.0)


def _data_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`~hf_metaid.load_interactions` that the data options give
    (:func:`_add_data_options`); a command that does not split the data has no ``--min-interactions`` of its own."""
    options = {
        "user_column": args.user_column,
        "item_column": args.item_column,
        "timestamp_column": args.time_column,
        "drop_duplicates": args.drop_duplicates,
    }
    if hasattr(args, "min_user_interactions"):
        options["min_interactions"] = args.min_user_interactions
    return options
