"""The parser of ``hf-metaid``: every subcommand, its options and help, and hints for renamed options."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from ..data.interactions import DEFAULT_TIMESTAMP_COLUMN
from ..data.screening import LEAVE_ONE_OUT_MINIMUM
from ..evaluation.evaluator import MIN_KNOWN_TARGETS
from ..evaluation.metrics import DEFAULT_KS
from ..indexing import CollaborativeIndexerConfig
from ..vocabulary.growth import DEFAULT_MIN_INTERACTIONS, MIN_KNOWN_ITEMS
from ..workflow import recipes
from ..workflow.recipes import Recipe
from ..workflow.schemes import SCHEMES
from .commands import TABLE_FORMATS, run_demo, run_evaluate, run_extend, run_index, run_push, run_recommend, run_train
from .option_types import _int_from, _ks, _layers, _non_negative_int, _positive_int
from .settings_options import (
    COLLABORATIVE_FIELDS,
    COLLABORATIVE_TITLE,
    DATA_HELP,
    FROM_RECIPE,
    INDEX_FIELDS,
    MODEL_FIELDS,
    MODEL_HELP,
    RENAMED,
    TRAINING_FIELDS,
    _add_settings,
    _recipe_field,
)


# ------------------------------------------------------------------------------------------------------ parser
def _add_recipe(parser: argparse.ArgumentParser) -> None:
    """``--recipe``: the named recipe (:mod:`hf_metaid.workflow.recipes`) whose settings the options below default
    to."""
    listed = "; ".join(f"{name}: {recipes.entry(name).summary}" for name in recipes.names())
    parser.add_argument(
        "--recipe",
        choices=recipes.names(),
        default=recipes.DEFAULT,
        help="the settings every option below defaults to, each option given overriding its field "
        "(hf_metaid.workflow.recipes.describe(NAME) gives a recipe's measured figures): "
        + listed.replace("%", "%%")
        + " (default: %(default)s)",
    )


def _from_recipe(
    parser: argparse.ArgumentParser, *flags: str, value_of: Callable[[Recipe], object], group=None, **options
) -> None:
    """An option (in ``group`` of ``parser``, if given) whose default is the chosen recipe's, ``value_of(recipe)``,
    filled in after parsing (:class:`_Parser`); its help shows the default recipe's."""
    example = value_of(recipes.get(recipes.DEFAULT))
    shown = "+".join(map(str, example)) if isinstance(example, tuple) else example
    options["help"] += f" (default: {FROM_RECIPE.format(value=shown)})".replace("%", "%%")
    action = (group or parser).add_argument(*flags, default=argparse.SUPPRESS, **options)
    parser.from_recipe[action.dest] = value_of


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    preset = recipes.get(recipes.DEFAULT)
    _add_settings(parser, "model", preset.model, MODEL_FIELDS, stage="model")
    _from_recipe(
        parser,
        "--layers",
        type=_layers,
        value_of=_recipe_field("model", "layers"),
        help="layers of the tiny T5: N (N encoder + N decoder) or E+D, e.g. 1+3",
    )
    _add_settings(parser, "training", preset.training, TRAINING_FIELDS, stage="training")
    _from_recipe(
        parser,
        "--threads",
        type=_non_negative_int,
        value_of=_recipe_field("", "threads"),
        help="torch CPU threads (0: torch's default, one per core)",
    )


def _add_eval_options(parser: argparse.ArgumentParser, from_recipe: bool = False) -> None:
    """The evaluation options; ``from_recipe``: the history's place in the ranking is the recipe's unless asked
    (``None`` there: decided from the data)."""
    group = parser.add_argument_group("evaluation")
    group.add_argument("--split", choices=("test", "validation"), default="test")
    group.add_argument("--template", default="seen", help="'seen', 'unseen' or a template with {user}/{history}")
    group.add_argument("--mode", choices=("beam", "exact"), default="beam")
    group.add_argument(
        "--cutoffs",
        type=_ks,
        default=DEFAULT_KS,
        metavar="K,K,...",
        help="the cut-offs k of HR@k, NDCG@k and MRR@k, comma-separated (default: 5,10)",
    )
    exclude_help = (
        "leave the user's history items out of the ranking: right where a user meets an item once, as in Beauty (the "
        "paper's protocol keeps them)"
    )
    if from_recipe:
        _from_recipe(
            parser,
            "--exclude-seen",
            group=group,
            action=argparse.BooleanOptionalAction,
            value_of=_recipe_field("", "exclude_seen"),
            help=exclude_help + "; None: from the data (left out when no training user-item pair repeats)",
        )
    else:
        group.add_argument("--exclude-seen", action=argparse.BooleanOptionalAction, default=False, help=exclude_help)
    group.add_argument("--limit", type=_positive_int, default=None, help="evaluate only the first N users")
    group.add_argument("--eval-batch-size", dest="batch_size", type=_positive_int, default=128)


def _add_scheme(parser: argparse.ArgumentParser) -> None:
    _from_recipe(
        parser,
        "--scheme",
        choices=SCHEMES,
        value_of=_recipe_field("", "scheme"),
        help="ID scheme: metaid (the paper's), sequential or random (OpenP5's SID / RID: numbered entities in blocks), "
        "collaborative (OpenP5's CID: recursive spectral clustering of item co-occurrence; users in sequential "
        "blocks), independent (IID: one token per entity). The baselines read --seed and --dim of the indexing "
        "options; --num-clusters, --embedding, --rank-by and --svd-precision are META ID's",
    )


def _add_seed(parser: argparse.ArgumentParser) -> None:
    seed = recipes.get(recipes.DEFAULT).training.seed
    parser.add_argument(
        "--seed",
        type=_non_negative_int,
        default=None,
        help="seed of every random choice, indexing and training (default: the recipe's seed of each; "
        f"{recipes.DEFAULT}: {seed})",
    )


def _add_data_options(
    parser: argparse.ArgumentParser,
    split: bool = True,
    default: str | None = "beauty",
    required: bool = False,
    data_help: str = DATA_HELP,
) -> None:
    """The interaction data, ``--data`` on every command that reads some, and how the file is read (its columns,
    copied rows and, where it is split, users too short for leave-one-out), passed on by :func:`_data_options`."""
    group = parser.add_argument_group("data")
    if default is not None:
        data_help += " (default: %(default)s)"
    group.add_argument("--data", default=default, required=required, help=data_help)
    group.add_argument("--user-column", default="user", help="the user column of a CSV/TSV/Parquet/JSONL file")
    group.add_argument("--item-column", default="item", help="the item column of a CSV/TSV/Parquet/JSONL file")
    group.add_argument(
        "--time-column",
        default=DEFAULT_TIMESTAMP_COLUMN,
        help="the timestamp column, ties kept in file order (default: %(default)s, read where present; without one "
        "the file order is the time order)",
    )
    copies = group.add_mutually_exclusive_group()
    copies.add_argument(
        "--drop-duplicates",
        action="store_true",
        default=None,
        help="drop the copies of an interaction (same user, item and timestamp; without timestamps, the same item "
        "again right after itself); by default they are counted and kept, and a file where half the interactions "
        "have a copy is refused",
    )
    copies.add_argument(
        "--keep-duplicates", dest="drop_duplicates", action="store_false", default=None, help="keep the copies, counted"
    )
    if split:
        group.add_argument(
            "--min-interactions",
            dest="min_user_interactions",
            type=_int_from(LEAVE_ONE_OUT_MINIMUM),
            default=None,
            metavar="N",
            help=f"drop the users with fewer than N interactions (N >= {LEAVE_ONE_OUT_MINIMUM}: leave-one-out keeps "
            "the last two for validation and test), printing how many; by default such a user is refused",
        )


def _add_output(parser: argparse.ArgumentParser, default: str | None, what: str) -> None:
    parser.add_argument("--out", required=default is None, default=default, help=f"folder for {what}")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out if it holds a folder hf-metaid wrote (the new folder is written beside it and swapped "
        "in when complete); without it a non-empty --out is refused",
    )


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose mistakes are one line, ``hf-metaid <command>: error: ...``, like every other
    user mistake (argparse would print the usage first), and whose options may default to the recipe that
    ``--recipe`` names: ``from_recipe`` maps such an option's destination to its value in a recipe, filled in after
    parsing where the option was not given (such options have no default of their own). Each option is taken only as
    it is spelt (no abbreviations), and a word the command does not know is refused by the command itself, naming the
    spelling it takes now where the word is one it once took (:data:`RENAMED`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.from_recipe: dict[str, Callable[[Recipe], object]] = {}

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            commands = [a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)]
            command = commands[0].get(getattr(namespace, "command", None), self) if commands else self
            command.error(f"unrecognized arguments: {' '.join(extras)}{_renaming_hints(command, extras)}")
        return namespace

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if self.from_recipe:
            recipe = recipes.get(namespace.recipe)
            filled = [dest for dest in self.from_recipe if not hasattr(namespace, dest)]
            for dest in filled:
                setattr(namespace, dest, self.from_recipe[dest](recipe))
            # What the user did not give: a fixed length given turns the recipe's time budget off.
            namespace.recipe_filled = frozenset(filled)
        return namespace, extras

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _renaming_hints(parser: argparse.ArgumentParser, words: Sequence[str]) -> str:
    """`` (--lr is now --learning-rate; ...)`` for the unknown ``words`` that ``parser`` once took: a renamed option,
    or the data as a positional word where the command now takes ``--data``; empty where none is."""
    known, hints, after_option = parser._option_string_actions, [], False
    for word in words:
        flag = word.split("=", 1)[0]
        if word.startswith("-"):
            if RENAMED.get(flag) in known and flag not in known:
                hints.append(f"{flag} is now {RENAMED[flag]}")
            after_option = "=" not in word  # the next word is likely its value
        elif not after_option and "--data" in known:
            hints.append(f"the data is given as --data {word}")
        else:
            after_option = False
    return f" ({'; '.join(dict.fromkeys(hints))})" if hints else ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hf-metaid", description="META ID recommendation with Hugging Face models.")
    commands = parser.add_subparsers(dest="command", required=True)
    fast = recipes.get(recipes.DEFAULT)  # the help shows the default recipe's values

    index = commands.add_parser("index", help="build an ID vocabulary from the training split")
    _add_data_options(index)
    _add_output(index, None, "metaid_vocab.json")
    _add_recipe(index)
    _add_scheme(index)
    index.add_argument("--separate", action="store_true", help="cluster users and items separately")
    _add_seed(index)
    _add_settings(index, "indexing", fast.index, INDEX_FIELDS, stage="index")
    _add_settings(index, COLLABORATIVE_TITLE, CollaborativeIndexerConfig(), COLLABORATIVE_FIELDS)
    index.set_defaults(func=run_index)

    train = commands.add_parser("train", help="fine-tune a model on the training prompts")
    _add_data_options(train)
    train.add_argument(
        "--vocab",
        default=None,
        help="the ID vocabulary of a new model: the folder 'hf-metaid index' wrote, a metaid_vocab.json file, a model "
        "folder, or a Hub dataset repository namespace/name shared with EntityVocabulary.push_to_hub or "
        "'hf-metaid push'",
    )
    train.add_argument(
        "--start-from",
        default=None,
        metavar="MODEL",
        help="instead of a new model, train a saved one further, from its weights (e.g. after 'hf-metaid extend'), "
        "with a fresh optimizer and schedule; a LoRA folder is merged into its base first, and --lora trains a fresh "
        "adapter. The model is its own: the model options (--templates, --max-history, --history-in-decoder, "
        "--item-output, ...) do not apply",
    )
    _add_output(train, None, "the model (or adapter) and tokenizer")
    _add_recipe(train)
    _add_seed(train)
    _add_training_options(train)
    train.set_defaults(func=run_train)

    extend = commands.add_parser(
        "extend",
        help="give IDs to the new users and items of NEW_DATA, every existing ID kept (a grown vocabulary or model)",
    )
    extend.add_argument(
        "source", metavar="VOCAB_OR_MODEL", help="metaid_vocab.json (or its folder), or a model folder (full or LoRA)"
    )
    # every new user is taken (no --min-interactions): --min-neighbour-rows is about placing them
    _add_data_options(
        extend,
        split=False,
        default=None,
        required=True,
        data_help="the new interactions (NEW_DATA): a file (P5/OpenP5 text, CSV, TSV, Parquet, JSONL)",
    )
    _add_output(
        extend, None, "the grown metaid_vocab.json, or the grown model (a LoRA model is merged into a full one)"
    )
    extend.add_argument(
        "--min-neighbour-rows",
        type=_positive_int,
        default=DEFAULT_MIN_INTERACTIONS,
        metavar="N",
        help="rows of NEW_DATA a new user or item needs to be placed by its neighbours (the Python argument "
        "min_interactions of EntityVocabulary.extend); fewer: the cold-start cluster (default: %(default)s)",
    )
    extend.add_argument(
        "--force",
        action="store_true",
        help=f"extend even when the vocabulary knows under {MIN_KNOWN_ITEMS * 100:g}%% of NEW_DATA's (distinct) items "
        "(refused otherwise, as evaluate refuses such a split: that is other data than the vocabulary's, whose new "
        "items would find no known neighbours and fill the cold-start cluster)",
    )
    extend.set_defaults(func=run_extend)

    evaluate = commands.add_parser("evaluate", help="full-ranking HR/NDCG/MRR of a saved model")
    evaluate.add_argument("model", help=MODEL_HELP)
    _add_data_options(evaluate)
    _add_eval_options(evaluate)
    evaluate.add_argument(
        "--force",
        action="store_true",
        help=f"evaluate even when the model's vocabulary knows under {MIN_KNOWN_TARGETS * 100:g}%% of the split's "
        "target items (refused otherwise: that is other data than the model's, and its HR would read as a bad model)",
    )
    evaluate.add_argument(
        "--save-to-card",
        action="store_true",
        help="record the metrics and their protocol in the model folder (metaid_evaluation.json) and rewrite its "
        "model card (README.md) with them; a run under the same protocol replaces the earlier one",
    )
    evaluate.set_defaults(func=run_evaluate)

    recommend = commands.add_parser(
        "recommend", help="the top k items of one user, or of every user of --data written to --out"
    )
    recommend.add_argument("model", help=MODEL_HELP)
    one = recommend.add_argument_group("one user, printed")
    one.add_argument("--user", default=None, help="raw user id (omit for a new user with --history)")
    one.add_argument("--history", default="", help="comma-separated raw item ids, oldest first")
    _add_data_options(
        recommend,
        split=False,
        default=None,
        data_help="instead of one user, every user of these interactions, each with all of their interactions as the "
        "history (users the model does not know: asked as new users from their known items, counted): a file "
        "(P5/OpenP5 text, CSV, TSV, Parquet, JSONL) or 'beauty', 'markov', 'markov-repeats', 'markov-large'; the table "
        "goes to --out",
    )
    every = recommend.add_argument_group("every user of --data, written")
    every.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help=f"the table of every user's top k, one row per item: user, rank (1 = best), item, score (log-prob); "
        f"{', '.join(TABLE_FORMATS)} by the suffix, written whole or not at all",
    )
    every.add_argument("--overwrite", action="store_true", help="replace --out if it exists (refused otherwise)")
    recommend.add_argument("--k", type=_positive_int, default=10, help="items per user (default: %(default)s)")
    recommend.add_argument("--mode", choices=("beam", "exact"), default="beam")
    recommend.add_argument(
        "--exclude-seen",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="leave the user's history items out of its top k (default: for one user, kept; for --data, decided "
        "from the data as the demo decides: left out where no user meets an item twice)",
    )
    recommend.set_defaults(func=run_recommend)

    demo = commands.add_parser("demo", help="the whole pipeline on the embedded Beauty data, offline")
    _add_data_options(demo)
    _add_output(demo, "metaid-demo", "the trained model and tokenizer")
    _add_recipe(demo)
    _add_seed(demo)
    _add_scheme(demo)
    _add_settings(demo, "indexing", fast.index, INDEX_FIELDS, stage="index")
    _add_settings(demo, COLLABORATIVE_TITLE, CollaborativeIndexerConfig(), COLLABORATIVE_FIELDS)
    _add_training_options(demo)
    _add_eval_options(demo, from_recipe=True)
    demo.set_defaults(func=run_demo)

    push = commands.add_parser(
        "push", help="upload a model folder with its model card, and optionally its vocabulary as a dataset"
    )
    push.add_argument("model", help="local model folder written by 'hf-metaid train' or 'demo' (full or LoRA)")
    push.add_argument("repo_id", help="the model repository on the Hub, namespace/name (created if needed)")
    push.add_argument(
        "--vocab-repo",
        default=None,
        help="also push the model's ID vocabulary as this dataset repository (namespace/name); the two cards link "
        "each other",
    )
    push.add_argument("--private", action="store_true", help="create the repositories private")
    push.add_argument("--token", default=None, help="Hub token (default: the one 'hf auth login' stored, or HF_TOKEN)")
    push.add_argument("--commit-message", default=None, help="message of the model repository's commit")
    push.add_argument("--license", default="apache-2.0", help="license in the model card's metadata")
    push.set_defaults(func=run_push)
    return parser
