"""Prompt templates of the two OpenP5 tasks, and the one place where a template is chosen and filled.

``{user}`` is replaced by the user's ID tokens, ``{history}`` by the latest history items' ID tokens joined with
" , ". Each task has several "seen" templates (training) and one "unseen" template held out for testing, as in
OpenP5. Training prompts (``data.prompts``), evaluation and ``model.recommend`` all choose their template with
:func:`resolve_template` and write the prompt with :func:`format_prompt`, so the words a model is asked in at
inference are the words it was trained on.
Plain Python (standard library only): it travels with a saved model for ``trust_remote_code`` loading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import InvalidArgumentError

SEQUENTIAL_SEEN = (
    "User {user} has interacted with items {history} . What is the next item to recommend to the user ?",
    "Given the following interaction history of user {user} : {history} , what is the next item the user will "
    "interact with ?",
    "Here is the purchase history of user {user} : {history} . What to recommend next for the user ?",
    "User {user} has purchased items {history} , predict the next item the user will buy .",
    "According to the history {history} of user {user} , which item should be recommended next ?",
)
SEQUENTIAL_UNSEEN = (
    "Considering user {user} has interacted with {history} , what is the next recommendation for the user ?"
)
DIRECT_SEEN = (
    "What should we recommend for user {user} ?",
    "Which item would user {user} like to buy ?",
    "Please recommend an item to user {user} .",
    "Suggest a product that user {user} is likely to purchase .",
    "What item will user {user} interact with ?",
)
DIRECT_UNSEEN = "Which item is most likely to be chosen by user {user} ?"
# For a user the vocabulary does not know (cold start): the history alone.
COLD_USER_SEQUENTIAL = "A user has interacted with items {history} . What is the next item to recommend to the user ?"

TEMPLATES = {
    "sequential": {"seen": SEQUENTIAL_SEEN, "unseen": (SEQUENTIAL_UNSEEN,)},
    "direct": {"seen": DIRECT_SEEN, "unseen": (DIRECT_UNSEEN,)},
}
# Terse templates for small backbones trained from scratch: a prompt about a third as long trains faster per step
# and leaves the model less text to look past (benchmarks/results/demo.md has the measurement behind the demo's choice).
COMPACT_TEMPLATES = {
    "sequential": {"seen": ("user {user} items {history}",), "unseen": ("user {user} history {history}",)},
    "direct": {"seen": ("user {user}",), "unseen": ("recommend for user {user}",)},
}
# For a model that reads the history in its decoder: the encoder's prompt names no user (no ID to memorise; the history
# decides), and the sequential templates serve a model switched back to prompt mode.
ANONYMOUS_TEMPLATES = {
    "sequential": {"seen": ("items {history}",), "unseen": ("history {history}",)},
    "direct": {"seen": ("next item",), "unseen": ("what is next",)},
}
TEMPLATE_SETS = {"openp5": TEMPLATES, "compact": COMPACT_TEMPLATES, "anonymous": ANONYMOUS_TEMPLATES}
HISTORY_SEPARATOR = " , "


TASKS = ("sequential", "direct")
KINDS = ("seen", "unseen")
# What a template of each task must show: a sequential prompt without the history, or a direct one without the user,
# would ask every user the same question. One exception: a direct template with no placeholder at all is an anonymous
# prompt, for a model that reads the history in its decoder (the same question for every user on purpose: the model
# then learns from the history alone, with no user ID to memorise).
PLACEHOLDERS = {"sequential": "{history}", "direct": "{user}"}


def template_shows_its_task(task: str, template: str) -> bool:
    """Whether ``template`` shows what a ``task`` prompt must (:data:`PLACEHOLDERS`; a direct template may instead
    show nothing at all, the anonymous prompt; any other ``{...}`` is a typo and fails)."""
    if PLACEHOLDERS[task] in template:
        return True
    return task == "direct" and "{" not in template and "}" not in template


def fill_template(template: str, user_tokens: str = "", history_tokens: Sequence[str] = ()) -> str:
    """Put a user's ID tokens and history item ID tokens into a template (no cutting: see :func:`format_prompt`)."""
    return template.replace("{user}", user_tokens).replace("{history}", HISTORY_SEPARATOR.join(history_tokens))


def format_prompt(template: str, user_tokens: str | None, history_tokens: Sequence[str], max_history: int) -> str:
    """The prompt for one user: ``template`` filled with the user's ID tokens (``None``: an unknown user) and the
    ID tokens of the latest ``max_history`` history items, oldest first."""
    return fill_template(template, user_tokens or "", list(history_tokens)[-check_max_history(max_history) :])


def check_max_history(max_history: int) -> int:
    """``max_history`` after checking it is an integer >= 1 (a float or a bool is refused, not rounded)."""
    if isinstance(max_history, bool) or not isinstance(max_history, int) or max_history < 1:
        raise InvalidArgumentError(f"max_history must be an integer >= 1, got {max_history!r}")
    return max_history


def seen_templates(templates: Mapping | None, task: str) -> tuple[str, ...]:
    """Every training ("seen") template of ``task`` (``templates=None``: the library's :data:`TEMPLATES`)."""
    return _group(templates, task, "seen")


def resolve_template(
    task: str, template: str = "seen", templates: Mapping | None = None, *, cold_user: bool = False
) -> str:
    """The template to ask a model with.

    Args:
        task: ``"sequential"`` (history in the prompt) or ``"direct"`` (user only).
        template: ``"seen"`` / ``"unseen"`` (the task's first template of that kind) or a template string with
            ``{user}`` / ``{history}``, used as is.
        templates: the model's recorded templates (``None``: the library's :data:`TEMPLATES`).
        cold_user: the user has no ID; with the library's templates a sequential prompt then says "A user" instead
            of leaving a blank where the user's tokens would go.
    """
    if not isinstance(template, str):
        raise InvalidArgumentError(f"template must be a string, got {type(template).__name__}")
    if template in KINDS:
        if cold_user and templates is None and task == "sequential" and template == "seen":
            return COLD_USER_SEQUENTIAL
        return _group(templates, task, template)[0]
    _group(templates, task, "seen")  # the task must exist
    if not template_shows_its_task(task, template):
        raise InvalidArgumentError(
            f"template must be 'seen', 'unseen' or a {task} template with {PLACEHOLDERS[task]}: {template!r}"
        )
    return template


def first_template(templates: Mapping, task: str, kind: str = "seen") -> str:
    """The first ``kind`` ("seen" / "unseen") template of ``task`` in a templates mapping, with a clear error."""
    return _group(templates, task, kind)[0]


def _group(templates: Mapping | None, task: str, kind: str) -> tuple[str, ...]:
    if task not in TASKS:
        raise InvalidArgumentError(f"unknown task {task!r}; use one of {TASKS}")
    templates = TEMPLATES if templates is None else templates
    group = templates.get(task, {})
    texts = tuple(group.get(kind, ())) if isinstance(group, Mapping) else (tuple(group) if kind == "seen" else ())
    if not texts:
        raise InvalidArgumentError(
            f"no {kind!r} templates for task {task!r} (tasks with templates: {sorted(templates)})"
        )
    return texts


def check_templates(templates: dict) -> dict:
    """``templates`` as plain lists (JSON-ready), after checking its shape: ``{task: {"seen": [...], ...}}`` with
    tasks among :data:`TASKS`, kinds among :data:`KINDS`, at least one seen template per task, and each template a
    string that shows what its task is about (:data:`PLACEHOLDERS`: ``{history}`` for sequential, ``{user}`` for
    direct)."""
    if not isinstance(templates, dict) or not templates:
        raise InvalidArgumentError(f"templates must be a non-empty dict {{task: {{'seen': [...]}}}}, got {templates!r}")
    checked = {}
    for task, groups in templates.items():
        if task not in TASKS:
            raise InvalidArgumentError(f"templates: unknown task {task!r}; use {' and/or '.join(TASKS)}")
        if not isinstance(groups, dict) or not groups.get("seen"):
            raise InvalidArgumentError(f"templates[{task!r}] needs a non-empty 'seen' list, got {groups!r}")
        checked[task] = {}
        for kind, group in groups.items():
            if kind not in KINDS:
                raise InvalidArgumentError(f"templates[{task!r}]: unknown kind {kind!r}; use {' and/or '.join(KINDS)}")
            group = [group] if isinstance(group, str) else list(group)
            for text in group:
                if not isinstance(text, str) or not template_shows_its_task(task, text):
                    raise InvalidArgumentError(
                        f"templates[{task!r}][{kind!r}]: {text!r} lacks {PLACEHOLDERS[task]}, which a {task} prompt "
                        "must show"
                    )
            checked[task][kind] = group
    return checked


def template_words(templates: dict | None = None) -> set[str]:
    """Every plain word of the templates (what a base tokenizer must know to avoid ``<unk>``)."""
    texts = [t for task in (templates or TEMPLATES).values() for group in task.values() for t in group]
    texts.append(COLD_USER_SEQUENTIAL)
    return {word.lower() for text in texts for word in fill_template(text).replace(",", " ").split() if word.isalpha()}
