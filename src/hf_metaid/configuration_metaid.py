"""MetaIDConfig: a T5 configuration plus every field needed to rebuild the META ID augmentation exactly.

Every option of the model is described once, in :data:`MODEL_OPTIONS` (type, default, meaning, limits and the option it
needs): the config's docstring, its checks and the keywords of ``from_base`` / ``configure`` come from that table
here, and the library's ``ModelSettings``, the command's options and the model card from it too. Imports only shipped
files: this file travels with a saved model for ``trust_remote_code`` loading.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass

from huggingface_hub.dataclasses import strict
from transformers import T5Config

from .checks import check_bool, check_int, check_number
from .errors import InvalidArgumentError
from .prompt_templates import check_templates


@dataclass(frozen=True)
class ModelOption:
    """One META ID field of the config: what it means, its type and default, its limits and the option it needs.

    ``name`` is how ``from_base``, ``configure``, ``ModelSettings`` and the command (``--name-with-dashes``) spell
    it; the config stores it as ``field`` (``metaid_<name>``). ``needs``: another option that must be on (true, or
    above 0) while this one is, for the reason ``why``. ``card``: what the model card says of a true option.
    """

    name: str
    kind: str  # the annotation: "bool", "int", "float", "str" or "dict | None"
    default: object
    help: str
    minimum: float | None = None
    needs: str = ""
    why: str = ""
    card: str = ""
    field: str = ""

    def __post_init__(self) -> None:
        if not self.field:
            object.__setattr__(self, "field", f"metaid_{self.name}")

    @property
    def description(self) -> str:
        """The help text with the rule it obeys: the config's docstring and the command show this same text."""
        return self.help + (f" Needs `{self.needs}`: {self.why}." if self.needs else "")

    def check(self, value: object) -> object:
        """``value`` as the config stores it, or :class:`InvalidArgumentError` naming the option and its rule."""
        if self.kind == "bool":
            return check_bool(self.name, value)
        if self.kind == "int":
            return check_int(self.name, value, minimum=None if self.minimum is None else int(self.minimum))
        if self.kind == "float":
            return check_number(self.name, value, minimum=self.minimum)
        if self.kind == "str":
            if not isinstance(value, str):
                raise InvalidArgumentError(f"{self.name} must be a string, got {type(value).__name__} {value!r}")
            return value
        return None if value is None else check_templates(value)


def is_on(value: object) -> bool:
    """Whether an option's value turns it on: ``True``, or a number above 0."""
    return value is True or (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0)


# The options a user chooses, in the order the command and the docstring list them.
MODEL_OPTIONS: tuple[ModelOption, ...] = (
    ModelOption(
        "alpha",
        "float",
        0.1,
        "Weight α of the representation augmentation F: the encoder's input vector of an ID token t is E[t] + "
        "α·F(v_t) (0: no F; the paper and every released META ID run use 0.1). F acts where the encoder reads ID "
        "tokens, so not under an anonymous prompt with the history in the decoder unless `augment_decoder` is on.",
        minimum=0,
    ),
    ModelOption(
        "augment_generation",
        "bool",
        True,
        "Apply F during `generate()` and `recommend()` too. False reproduces the original research code, where F "
        "acted in training only (HF `generate()` bypassed it); keep it for comparisons, not for use.",
    ),
    ModelOption(
        "augment_decoder",
        "bool",
        False,
        "Add α·F(v_t) to the decoder's input vector of ID token t too (the encoder always has it): with the history "
        "in the decoder, that is where the model reads the items it conditions on. False: F in the encoder only, as "
        "the research code had it. Generation without F (`augment_generation` off) skips it as it skips the "
        "encoder's.",
    ),
    ModelOption(
        "tree_softmax",
        "bool",
        False,
        "Normalise every step of an item ID over the tokens that can follow in a real item ID (after the start token: "
        "clusters holding items; after cluster c: the rank tokens of c's items; after a rank token: the end, or with "
        "the history in the decoder the next item's cluster), in the loss, `generate` and `recommend` alike; the item "
        "table is a buffer saved with the weights. False: the paper's softmax over the whole vocabulary.",
    ),
    ModelOption(
        "history_in_decoder",
        "bool",
        False,
        "Where the history goes. False (the paper's prompts): the encoder reads a sequential prompt that lists the "
        "latest `max_history` history items, and the decoder writes one item. True: the encoder reads the user alone "
        "(the direct task's template) and the decoder reads the latest `max_history` history items' ID tokens as its "
        "prefix, then writes the next item; training learns every next item of a user's window in one pass "
        "(`build_decoder_history_examples`), and `recommend` and evaluation feed the history to the decoder alike.",
        card="the history in the decoder",
    ),
    ModelOption(
        "max_history",
        "int",
        10,
        "How many of the latest history items a prompt shows (with `history_in_decoder`: the decoder reads) in "
        "training; the default of `recommend` and evaluation.",
        minimum=1,
    ),
    ModelOption(
        "templates",
        "dict | None",
        None,
        'The prompt templates the model is trained with, `{task: {"seen": [...], "unseen": [...]}}` as '
        "`hf_metaid.prompt_templates.TEMPLATES`; `recommend` and evaluation default to them, so the model is asked "
        "in the words it learned. None: the library's OpenP5-style templates.",
        field="metaid_prompt_templates",
    ),
    ModelOption(
        "item_input",
        "bool",
        False,
        "Give every item its own input vector w_i, added to the input embedding of its rank token (the one after its "
        "cluster token) where the history is read (the encoder; with `history_in_decoder` the decoder), so the model "
        "reads which item and not only which cluster and rank. w starts at zero and is saved with the weights.",
        card="items' own input vectors",
    ),
    ModelOption(
        "item_output",
        "bool",
        False,
        "The item-aware rank step: the logit of rank token r after cluster token c gets h · u_i + b_i, where u_i, b_i "
        "are item i = (c, r)'s own output vector and bias, so the items of one cluster stop sharing one output row per "
        "rank. u and b start at zero and are saved with the weights. False: the paper's rank step.",
        card="items' own output vectors",
    ),
    ModelOption(
        "item_loss",
        "float",
        0.0,
        "Weight of a second training objective beside the two-token one: each target item's cross-entropy over every "
        "item, scored with the item output's vectors from the state that predicts its cluster token, so every item "
        "learns from every target. 0: the two-token objective alone.",
        minimum=0,
        needs="item_output",
        why="it scores the items with the item output's vectors",
    ),
    ModelOption(
        "item_loss_negatives",
        "int",
        0,
        "With `item_loss`: score each target against the batch's targets plus this many items drawn uniformly instead "
        "of every item, so its cost grows with the sample, not the catalogue. 0: every item.",
        minimum=0,
        needs="item_loss",
        why="it draws the items of that objective",
    ),
    ModelOption(
        "repeat_bias",
        "bool",
        False,
        "A learned scalar β added to the rank-step logit (and the all-items score) of every item the decoder has "
        "already read in the sequence, so the model learns from the data whether users take an item again; β starts "
        "at 0 and is saved with the weights. False: read items are scored like any other.",
        needs="history_in_decoder",
        why="it scores the items the decoder has read",
        card="a learned score of items already read",
    ),
    ModelOption(
        "chain_prior",
        "int",
        0,
        "The item chain's counts as a learned prior: how many followers per item to keep of the training sequences' "
        "transition counts n(j → i), each read against the item's popularity p(i) with a pseudo-count a. The logit of "
        "each cluster token gets γ_c · log(1 + n(j → c) / (a p(c))) and the rank token of each item i of the chosen "
        "cluster γ_r · log(1 + n(j → i) / (a p(i))), j the last item the decoder has read; γ starts at 0 and a at 100, "
        "both learned; the counts are set from the training split and saved with the weights. 0: no prior.",
        minimum=0,
        needs="history_in_decoder",
        why="it reads the last item from the decoder's sequence",
        card="the item chain's counts as a learned prior",
    ),
    ModelOption(
        "chain_prior_earlier",
        "int",
        0,
        "How many items read before the last also lend their followers to the chain prior: n(j → i) becomes "
        "Σ_k ρ^k n(j_k → i) over the last item j_0 and the `chain_prior_earlier` items before it, ρ learned (from 1/2) "
        "and saved with the weights. 0: the last item alone.",
        minimum=0,
        needs="chain_prior",
        why="it widens the chain prior's reach",
        card="the chain prior reading the items before the last too",
    ),
    ModelOption(
        "num_beams",
        "int",
        0,
        "The beam width `recommend` and evaluation decode with unless asked otherwise (at least the k asked for): a "
        "wider beam keeps more clusters open at the first step, so an item whose cluster ranks low can still come "
        "out. 0: k, the paper's protocol.",
        minimum=0,
    ),
)

# Fields the tokenizer's vocabulary sets (``from_base``, ``extend_vocabulary``), never chosen.
VOCABULARY_FIELDS: tuple[ModelOption, ...] = (
    ModelOption(
        "vector_dim",
        "int",
        64,
        "Dimension of the fixed vectors v_t (cluster centroids, rank-token vectors) that F maps to `d_model`.",
    ),
    ModelOption(
        "first_new_id",
        "int",
        0,
        "Token id of the first ID token; the ID tokens occupy `[first, first + metaid_num_new_tokens)`.",
    ),
    ModelOption(
        "num_new_tokens",
        "int",
        0,
        "Number of ID tokens (cluster tokens, then rank tokens). 0 means a plain T5 with no augmentation.",
    ),
    ModelOption(
        "num_clusters", "int", 0, "How many of the ID tokens are cluster tokens (the first level of every ID)."
    ),
    ModelOption(
        "vocab_fingerprint",
        "str",
        "",
        "Fingerprint of the entity vocabulary the model was built for; a tokenizer with another one is refused.",
    ),
    ModelOption(
        "num_items",
        "int",
        0,
        "How many items the item output and the item input hold (their rows), numbered over the item table.",
    ),
)

OPTIONS: Mapping[str, ModelOption] = {option.name: option for option in (*MODEL_OPTIONS, *VOCABULARY_FIELDS)}
OPTION_NAMES = tuple(option.name for option in MODEL_OPTIONS)


def check_model_options(values: Mapping[str, object]) -> dict[str, object]:
    """Every model option, from ``values`` (by name; an option not given at its default), checked alone (type, limits)
    and against the others (the option each one needs); returns them as the config stores them.

    The one place the rules live: ``MetaIDConfig`` applies it when it is made, saved or changed by ``configure``,
    and ``ModelSettings`` when it is made.

    Raises:
        InvalidArgumentError: an unknown option, a bad value, or an option on without the one it needs; the message
            names the options and the rule.
    """
    unknown = sorted(set(values) - set(OPTION_NAMES))
    if unknown:
        known = ", ".join(OPTION_NAMES)
        raise InvalidArgumentError(f"unknown model option(s) {', '.join(unknown)}; the options are {known}")
    checked = {option.name: option.check(values.get(option.name, option.default)) for option in MODEL_OPTIONS}
    for option in MODEL_OPTIONS:
        if option.needs and is_on(checked[option.name]) and not is_on(checked[option.needs]):
            raise InvalidArgumentError(
                f"{option.name} needs {option.needs}: {option.why} (got {option.name}={checked[option.name]!r}, "
                f"{option.needs}={checked[option.needs]!r})"
            )
    return checked


def _default(name: str) -> object:
    return OPTIONS[name].default


def _docstring() -> str:
    """The class docstring, written from the tables (an Args section in T5Config's form)."""
    intro = (
        "Configuration of :class:`MetaIDForConditionalGeneration`: all of :class:`~transformers.T5Config`, plus the "
        "META ID fields below. A model option is stored as `metaid_<option>` and set by its option's name: "
        "`MetaIDForConditionalGeneration.from_base(base, tokenizer, item_output=True)`, `model.configure(tokenizer, "
        "...)`, `ModelSettings(...)` and the command (`--item-output`). The rules between options (the option each "
        "one needs) are checked where a config is made, saved or changed by `configure`, and raise "
        "`InvalidArgumentError` naming the options. The vocabulary fields come from the tokenizer."
    )
    lines = [*textwrap.wrap(intro, 116), "", "Args:"]
    for option in (*MODEL_OPTIONS, *VOCABULARY_FIELDS):
        quoted = isinstance(option.default, str) or option.default is None
        default = f"`{option.default!r}`" if quoted else option.default
        lines.append(f"    {option.field} (`{option.kind}`, *optional*, defaults to {default}):")
        text = option.description
        if option.field != f"metaid_{option.name}":
            text = f"Option `{option.name}`. {text}"
        lines += textwrap.wrap(text, 116, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return "\n".join(lines) + "\n"


@strict
class MetaIDConfig(T5Config):
    __doc__ = _docstring()

    model_type = "metaid"

    metaid_alpha: float = _default("alpha")
    metaid_vector_dim: int = _default("vector_dim")
    metaid_first_new_id: int = _default("first_new_id")
    metaid_num_new_tokens: int = _default("num_new_tokens")
    metaid_num_clusters: int = _default("num_clusters")
    metaid_vocab_fingerprint: str = _default("vocab_fingerprint")
    metaid_augment_generation: bool = _default("augment_generation")
    metaid_prompt_templates: dict | None = _default("templates")
    metaid_max_history: int = _default("max_history")
    metaid_tree_softmax: bool = _default("tree_softmax")
    metaid_history_in_decoder: bool = _default("history_in_decoder")
    metaid_augment_decoder: bool = _default("augment_decoder")
    metaid_item_output: bool = _default("item_output")
    metaid_item_input: bool = _default("item_input")
    metaid_item_loss: float = _default("item_loss")
    metaid_item_loss_negatives: int = _default("item_loss_negatives")
    metaid_repeat_bias: bool = _default("repeat_bias")
    metaid_chain_prior: int = _default("chain_prior")
    metaid_chain_prior_earlier: int = _default("chain_prior_earlier")
    metaid_num_beams: int = _default("num_beams")
    metaid_num_items: int = _default("num_items")

    def __post_init__(self, **kwargs) -> None:
        super().__post_init__(**kwargs)
        self.check_options()  # raised here as InvalidArgumentError (the class validator below wraps what it raises)

    def validate_model_options(self) -> None:
        """Part of ``@strict``'s ``validate()`` (run at ``save_pretrained`` too): the rules of :meth:`check_options`."""
        self.check_options()

    def model_options(self) -> dict[str, object]:
        """The model's options by name (as ``from_base`` and ``configure`` take them)."""
        return {option.name: getattr(self, option.field) for option in MODEL_OPTIONS}

    def check_options(self, **changes) -> dict[str, object]:
        """The changed options (by name) as :func:`check_model_options` stores them, after checking every option of the
        config as it would be with ``changes`` made; changes nothing itself (``model.configure`` applies them).

        Raises:
            InvalidArgumentError: an unknown option, a bad value, or a rule between options broken, named.
        """
        checked = check_model_options({**self.model_options(), **changes})
        return {name: checked[name] for name in changes}

    @property
    def metaid_token_range(self) -> range:
        """Token ids of the ID tokens."""
        return range(self.metaid_first_new_id, self.metaid_first_new_id + self.metaid_num_new_tokens)
