"""Prompt templates of the two OpenP5 tasks, shared by training-data building and ``model.recommend``.

``{user}`` is replaced by the user's ID tokens, ``{history}`` by the history items' ID tokens joined with ", ".
Each task has several "seen" templates (training) and one "unseen" template held out for testing, as in OpenP5.
Plain Python with no imports: it travels with a saved model for ``trust_remote_code`` loading.
"""

from __future__ import annotations

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
TEMPLATE_SETS = {"openp5": TEMPLATES, "compact": COMPACT_TEMPLATES}
HISTORY_SEPARATOR = " , "


def fill_template(template: str, user_tokens: str = "", history_tokens: list[str] | tuple[str, ...] = ()) -> str:
    """Put a user's ID tokens and history item ID tokens into a template."""
    return template.replace("{user}", user_tokens).replace("{history}", HISTORY_SEPARATOR.join(history_tokens))


def first_template(templates: dict, task: str, kind: str = "seen") -> str:
    """The first ``kind`` ("seen" / "unseen") template of ``task`` in a templates mapping, with a clear error."""
    group = tuple(templates.get(task, {}).get(kind, ()))
    if not group:
        raise ValueError(f"no {kind!r} templates for task {task!r} (tasks with templates: {sorted(templates)})")
    return group[0]


def check_templates(templates: dict) -> dict:
    """``templates`` as plain lists (JSON-ready), after checking its shape: ``{task: {"seen": [...], ...}}`` with
    at least one seen template per task, each a string with ``{user}`` or ``{history}``."""
    if not isinstance(templates, dict) or not templates:
        raise ValueError(f"templates must be a non-empty dict {{task: {{'seen': [...]}}}}, got {templates!r}")
    checked = {}
    for task, groups in templates.items():
        if not isinstance(groups, dict) or not groups.get("seen"):
            raise ValueError(f"templates[{task!r}] needs a non-empty 'seen' list, got {groups!r}")
        checked[task] = {}
        for kind, group in groups.items():
            group = [group] if isinstance(group, str) else list(group)
            for text in group:
                if not isinstance(text, str) or ("{user}" not in text and "{history}" not in text):
                    raise ValueError(f"templates[{task!r}][{kind!r}]: {text!r} has neither {{user}} nor {{history}}")
            checked[task][kind] = group
    return checked


def template_words(templates: dict | None = None) -> set[str]:
    """Every plain word of the templates (what a base tokenizer must know to avoid ``<unk>``)."""
    texts = [t for task in (templates or TEMPLATES).values() for group in task.values() for t in group]
    texts.append(COLD_USER_SEQUENTIAL)
    return {word.lower() for text in texts for word in fill_template(text).replace(",", " ").split() if word.isalpha()}
