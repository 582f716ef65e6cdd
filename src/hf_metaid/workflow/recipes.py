"""Named recipes: the ID scheme and the settings of every stage, by name, each with what it measured.

A recipe is a :class:`~hf_metaid.workflow.recipes.Recipe`; this registry names the ones worth choosing, so the command
(``hf-metaid index|train|demo --recipe NAME``), a script (``hm.recipes.get("best")`` or ``Recipe.from_name``) and a
benchmark ask for the same settings by the same name. Every option of the command still overrides its recipe's
field. The figures quoted are those of ``benchmarks/results`` (Beauty, all 22,363 test users, HR@10 / NDCG@10),
measured on a 2-core CPU unless said; ``CHANGELOG.md`` tells how the recipes came about.

- ``fast`` (the default): the history in the decoder of a narrow T5 with the item chain's counts as a learned prior,
  trained for what a 15-minute budget holds end to end (14 min 4 s on a 2-core CPU);
- ``best``: the same model with the repeat bias, trained for what 60 minutes hold (70.8 epochs gave its figures);
- ``paper``: the paper's model (skip-gram META IDs, OpenP5 prompts with user and history IDs, F in the encoder);
- ``fast-prompt`` and ``decoder-k100``: the recipes the benchmarks compare with (the prompt mode at demo scale, and
  ``fast`` before its all-items objective and its chain prior).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..errors import InvalidArgumentError
from ..indexing import MetaIDIndexerConfig
from .schemes import SCHEMES
from .settings import ModelSettings, TrainingSettings


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
        """The recipe called ``name`` in :mod:`hf_metaid.workflow.recipes` (``fast``, ``best``, ``paper``, ...).

        Raises:
            InvalidArgumentError: an unknown name; the message lists the known ones.
        """
        return get(name)


@dataclass(frozen=True)
class NamedRecipe:
    """A registry entry: the recipe, one line on what it is (the command's help), and its measured figures."""

    recipe: Recipe
    summary: str
    measured: str

    @property
    def description(self) -> str:
        """What the recipe is, then what it measured."""
        return f"{self.summary}. {self.measured}"


# The paper's prompt mode at demo scale, chosen for 2 CPU cores and about 15 minutes on Beauty's validation split
# (benchmarks/results/demo.md): spectral IDs carry more of the sequential signal than skip-gram ones at this budget
# (and take seconds), one encoder layer with three decoder layers and a wide feed-forward learn more per second than
# 2+2 narrow ones in this mode, short prompts train faster per step, the last 5 items beat the last 3 or 10 at equal
# time, and batches of 128 pass more prompts per second than 64.
_FAST_PROMPT = Recipe(
    index=MetaIDIndexerConfig(embedding="spectral"),
    model=ModelSettings(d_ff=1024, layers=(1, 3), templates="compact", max_history=5),
    training=TrainingSettings(epochs=4.5, batch_size=128, learning_rate=4e-3, warmup_steps=100),
    exclude_seen=None,
)

# The decoder recipe (benchmarks/results/quality_budget.md): the history in the decoder (every next item of a user's
# sequence learnt in one pass, windows of 20 items), an anonymous encoder prompt (no user ID to memorise), each item's
# own input and output vectors, and a narrow model (d_model 64, d_ff 256, 1+2 layers) that runs many epochs cheaply,
# with dropout 0.3 against memorising the training sequences, as sequential recommenders train. Its matrix products
# are so small that one thread trained it faster than two (0.71x on two; results/demo_threads.md). Whether the
# ranking leaves each user's history out is decided from the data (pipeline.decide_exclude_seen): on Beauty, which
# has no repeated user-item pair, it does, as a shop does. With K = 100 and the two-token objective alone it is the
# recipe the benchmarks compare ID schemes, ablations and speeds with, so that their results files stay comparable.
_DECODER_K100 = Recipe(
    index=MetaIDIndexerConfig(embedding="spectral"),
    model=ModelSettings(
        d_model=64,
        d_ff=256,
        layers=(1, 2),
        dropout=0.3,
        templates="anonymous",
        max_history=20,
        history_in_decoder=True,
        item_output=True,
        item_input=True,
    ),
    training=TrainingSettings(epochs=16.0, batch_size=64, learning_rate=4e-3, warmup_steps=100),
    exclude_seen=None,
    threads=1,
)

# The decoder recipe with two changes chosen on Beauty's validation split and checked on the synthetic markov log
# (results/quality_budget.md, results/demo.md): the all-items objective beside the two-token one, each target scored
# against the batch's targets and 1,024 drawn items (as good as against every item on validation, at a fraction of its
# cost); and the chain prior (the item chain's counts from the last item read, 50 followers per item, each read against
# the item's popularity; its weights set on validation after training: evaluation.chain_calibration). At 16 epochs the
# prior raised Beauty's validation HR@10 / NDCG@10 (history left out) to 0.1020 / 0.0634 from 0.0846 / 0.0475 without
# it (then on K = 200, which had edged K = 100 without the prior; the prior was measured on K = 100, which the recipe
# keeps), and the synthetic markov log's to 0.2601 / 0.1521, above the item chain's NDCG@10 (0.2656 / 0.1400). It
# decodes with a beam of 20 (num_beams): on markov a beam of 10 left out items whose cluster ranked eleventh or lower
# (validation HR@10 0.2610 at beam 10, 0.2707 at 20, 0.2736 ranking every item), on Beauty it hardly matters (0.1020,
# 0.1025). Its IDs are the items' alone, at most 512 a cluster: the prompt never names a user, and user IDs widened the
# rank vocabulary to the largest cluster's users and items (21,007 new tokens on a 36,000-user log, where the demo then
# trained 54 steps; on Beauty validation 0.1011 / 0.0635 at 16 epochs against 0.1025 / 0.0636 with user IDs, within
# noise). Its length is a time budget of 15 minutes for the whole demo (indexing, training, the chain prior's
# calibration, the test split's evaluation): the steps that fit on the machine at hand (training.time_budget); with the
# budget off (--time-budget 0) it trains 16 epochs. Its chain prior reads the 3 items before the last too
# (chain_prior_earlier): Beauty validation 0.1099 / 0.0683 against 0.1044 / 0.0648 in the same budget (fast-earlier3
# against recipe-fast), the synthetic logs the same within noise (their process is first-order).
_FAST = replace(
    _DECODER_K100,
    index=replace(_DECODER_K100.index, user_ids=False, max_cluster_size=512),
    model=replace(
        _DECODER_K100.model,
        item_loss=1.0,
        item_loss_negatives=1024,
        chain_prior=50,
        chain_prior_earlier=3,
        num_beams=20,
    ),
    training=replace(_DECODER_K100.training, time_budget=15.0),
)

# The fast recipe on K = 100 for a 60-minute budget (60 epochs with the budget off), with the learned repeat score (one
# β on every item the decoder has read), which stops the model spending its top ten on items users already have (6.6%
# of it without the score at 40 epochs, 0.14% with it). Without the chain prior this was the best arm of
# results/quality_budget.md's 60-minute budget (validation HR@10 / NDCG@10 0.1014 / 0.0613, history left out); with
# it, in its budget, 0.1024 / 0.0644 (user IDs too), and 0.1036 / 0.0643 on fast's items-only IDs (recipe-best); with
# fast's chain prior of the last 4 items, 0.1080 / 0.0667 (best-earlier3; the last 3: 0.1062 / 0.0658).
_BEST = replace(
    _FAST,
    index=replace(_FAST.index, num_clusters=100),
    model=replace(_FAST.model, repeat_bias=True),
    training=replace(_FAST.training, epochs=60.0, time_budget=60.0),
)

# The paper's model (examples/paper_recipe.py): META IDs from meta-path walks and skip-gram, K = 100 (the indexer's
# defaults); both OpenP5 tasks with their templates, the user's and the last 10 items' ID tokens in the encoder,
# where F acts (α = 0.1); AdamW at lr 1e-3, linear decay after 100 warm-up steps, 10 epochs, batches of 2,048
# prompts; the history kept in the ranking. The backbone is the tiny T5 (dropout 0.1, as t5-small has) so that it runs
# offline; --base t5-small (ModelSettings.base) gives the paper's.
_PAPER = Recipe(
    index=MetaIDIndexerConfig(),
    model=ModelSettings(dropout=0.1, templates="openp5", max_history=10),
    training=TrainingSettings(
        epochs=10.0, batch_size=2048, learning_rate=1e-3, warmup_steps=100, tasks="sequential,direct"
    ),
    exclude_seen=False,
)

DEFAULT = "fast"
RECIPES: Mapping[str, NamedRecipe] = MappingProxyType(
    {
        "fast": NamedRecipe(
            _FAST,
            "the demo's (hf-metaid demo): the history in the decoder of a narrow T5 with each item's own vectors, "
            "spectral IDs for the items alone (K = 100, at most 512 items a cluster), a sampled all-items objective "
            "and the item chain's counts from the last 4 items read against popularity as a learned prior, decoded "
            "with a beam of 20, on one thread for the steps a 15-minute budget holds end to end (--time-budget 15; "
            "--time-budget 0: 16 epochs)",
            "Beauty test HR@10 / NDCG@10 0.0800 / 0.0507 with the history left out of the ranking, 0.0772 / 0.0474 "
            "with it kept (the paper's protocol), in its 15-minute budget (14 min 10 s end to end, 14.4 epochs, peak "
            "0.97 GB; results/demo.md, thirteenth round); 0.0834 / 0.0516 and 0.0800 / 0.0487 with 16.8 epochs in "
            "846 s of training (results/quality_budget.md, arm fast-earlier3, validation 0.1099 / 0.0683 left out)",
        ),
        "best": NamedRecipe(
            _BEST,
            "fast with the learned repeat score and the chain prior reading the 3 items before the last too, for the "
            "steps a 60-minute budget holds (--time-budget 60; --time-budget 0: 60 epochs): the best recipe of a "
            "60-minute budget",
            "In its budget (61.7 epochs, 3,363 s of training on one thread beside another run): Beauty test HR@10 / "
            "NDCG@10 0.0823 / 0.0502 with the history kept (the paper's protocol), 0.0824 / 0.0504 with it left out "
            "(results/quality_budget.md, best-earlier3; validation 0.1079 / 0.0666 kept, 0.1080 / 0.0667 left out)",
        ),
        "paper": NamedRecipe(
            _PAPER,
            "the paper's model: skip-gram IDs (K = 100), both OpenP5 tasks with user and history IDs, F in the "
            "encoder, lr 1e-3, 10 epochs, batches of 2,048; the tiny T5 offline, --base t5-small for the paper's "
            "backbone",
            "Not measured with these settings in this repository; the paper reports Beauty test HR@10 / NDCG@10 "
            "0.0753 / 0.0432 for t5-small (history kept), with every sample written with every seen template "
            "(examples/paper_recipe.py does that on a GPU; this recipe draws one template per sample)",
        ),
        "fast-prompt": NamedRecipe(
            _FAST_PROMPT,
            "the paper's prompt mode at demo scale (spectral IDs, compact prompts with the last 5 items, 1+3 "
            "layers, 4.5 epochs): the benchmarks' prompt-mode base",
            "Beauty test HR@10 / NDCG@10 0.0403 / 0.0203 with the history left out, 0.0352 / 0.0172 with it kept; "
            "721 s of training on two threads (results/demo.md)",
        ),
        "decoder-k100": NamedRecipe(
            _DECODER_K100,
            "fast on K = 100 with the two-token objective alone: the base the benchmarks compare ID schemes, "
            "ablations and speeds with",
            "Beauty test HR@10 / NDCG@10 0.0580 / 0.0310 with the history left out, 0.0525 / 0.0265 with it kept; "
            "644 s of training on one thread (results/demo.md, results/quality_budget.md)",
        ),
    }
)


def names() -> tuple[str, ...]:
    """The recipes' names, the default first."""
    return tuple(RECIPES)


def entry(name: str) -> NamedRecipe:
    """The registry entry of ``name`` (the recipe with its summary and measured figures).

    Raises:
        InvalidArgumentError: an unknown name; the message lists the known ones.
    """
    if not isinstance(name, str) or name not in RECIPES:
        raise InvalidArgumentError(f"unknown recipe {name!r}; the recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def get(name: str) -> Recipe:
    """The recipe called ``name`` (one of :func:`names`).

    Raises:
        InvalidArgumentError: an unknown name; the message lists the known ones.
    """
    return entry(name).recipe


def describe(name: str) -> str:
    """What the recipe ``name`` is, and what it measured."""
    return entry(name).description
