"""OpenP5-style prompt datasets: training prompts with ID-token targets, evaluation prompts, and tokenization.

Every function works on ``datasets.Dataset`` objects with batched ``map`` calls, so the full Amazon Beauty training
set (131,413 sequential samples per template) is built in seconds and can be cached, sharded or streamed like any
other Hugging Face dataset. Prompts are written with :func:`hf_metaid.prompt_templates.format_prompt`, the same
function ``model.recommend`` uses, so training and inference prompts cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import datasets
import numpy as np

from ..errors import InvalidArgumentError
from ..prompt_templates import TASKS, TEMPLATES, check_max_history, format_prompt, resolve_template, seen_templates

TRAINING_COLUMNS = ("source", "target")


# ---------------------------------------------------------------------------------------------------- helpers
def training_sequences(train: datasets.Dataset) -> tuple[list[str], list[list[str]]]:
    """Users (first-appearance order) and their training items in chronological order (``position`` if present)."""
    columns = train.column_names if isinstance(train, datasets.Dataset) else type(train).__name__
    for column in ("user", "item"):
        if column not in columns:
            raise InvalidArgumentError(
                f"training rows need columns 'user' and 'item' (the train split of leave_one_out), found {columns}"
            )
    users, items = train["user"][:], train["item"][:]
    positions = train["position"][:] if "position" in train.column_names else range(len(users))
    grouped: dict[str, list[tuple[int, str]]] = {}
    for user, item, position in zip(users, items, positions, strict=True):
        grouped.setdefault(user, []).append((position, item))
    order = list(grouped)
    return order, [[item for _, item in sorted(grouped[user], key=lambda pair: pair[0])] for user in order]


def _vocabulary_of(tokenizer):
    vocabulary = getattr(tokenizer, "entity_vocabulary", None)
    if vocabulary is None:
        raise InvalidArgumentError(f"tokenizer must be a MetaIDTokenizer, got {type(tokenizer).__name__}")
    return vocabulary


def user_spelling(vocabulary, templates: Sequence[str]):
    """How the user is written into ``templates``: its ID tokens, or nothing where no template names the user, so
    that a vocabulary without user IDs (``MetaIDIndexer(user_ids=False)``) serves prompts that never need them.

    Raises:
        InvalidArgumentError: a template names the user (``{user}``) and the vocabulary gives users no IDs.
    """
    naming = [template for template in templates if "{user}" in template]
    if not naming:
        return lambda _user: ""
    if vocabulary.items_only:
        raise InvalidArgumentError(
            f"the template {naming[0]!r} names the user, but the ID vocabulary gives users no IDs (indexed with "
            "user_ids=False): use templates without {user} (templates='anonymous') or index with user IDs "
            "(user_ids=True, hf-metaid index --user-ids)"
        )
    return vocabulary.user_tokens


def _map_users(
    users: list[str], sequences: list[list[str]], expand, features: dict, fingerprint: str, desc: str, num_proc
) -> datasets.Dataset:
    """A training builder's rows: ``expand(batch, indices)`` mapped over one row per user (``user``, ``items``), so
    its seeded draws depend on the user's index only, whatever the batch size or ``num_proc``."""
    per_user = datasets.Dataset.from_dict(
        {"user": users, "items": sequences},
        features=datasets.Features(
            {"user": datasets.Value("string"), "items": datasets.List(datasets.Value("string"))}
        ),
    )
    return per_user.map(
        expand,
        batched=True,
        with_indices=True,
        remove_columns=per_user.column_names,
        num_proc=num_proc,
        features=datasets.Features(features),
        new_fingerprint=fingerprint,
        desc=desc,
    )


def _fingerprint(*parts) -> str:
    """A datasets fingerprint from the inputs, so ``map`` need not hash the closure (which holds the tokenizer)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _tokenizer_hash(tokenizer) -> str:
    """Identifies the tokenization itself (base vocabulary and added tokens), for cache fingerprints."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _templates_for_samples(rng: np.random.Generator, num_samples: int, num_templates: int, per_sample) -> np.ndarray:
    """``(num_samples, k)`` template indices: ``k`` distinct seen templates per sample, or all of them."""
    if per_sample == "all":
        return np.broadcast_to(np.arange(num_templates), (num_samples, num_templates))
    if not isinstance(per_sample, int) or isinstance(per_sample, bool) or not 1 <= per_sample <= num_templates:
        raise InvalidArgumentError(
            f"templates_per_sample must be 'all' or an int in [1, {num_templates}], got {per_sample!r}"
        )
    if per_sample == 1:
        return rng.integers(num_templates, size=(num_samples, 1))
    return np.argsort(rng.random((num_samples, num_templates)), axis=1)[:, :per_sample]


def count_training_samples(train: datasets.Dataset, tasks: Sequence[str] = TASKS) -> dict[str, int]:
    """Samples per task *before* template expansion, without building any prompt.

    Sequential: one per training position ``i >= 1`` of every user (``sum(len(items) - 1)``; 131,413 on Beauty).
    Direct: one per training interaction (``sum(len(items))``).
    """
    _, sequences = training_sequences(train)
    counts = {"sequential": sum(max(len(s) - 1, 0) for s in sequences), "direct": sum(len(s) for s in sequences)}
    for task in tasks:
        if task not in TASKS:
            raise InvalidArgumentError(f"unknown task {task!r}; use one of {TASKS}")
    return {task: counts[task] for task in tasks}


# ---------------------------------------------------------------------------------------------------- training
def build_training_prompts(
    train: datasets.Dataset,
    tokenizer,
    tasks: Sequence[str] = TASKS,
    templates: Mapping | None = None,
    max_history: int = 10,
    templates_per_sample: int | str = 1,
    seed: int = 0,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Training prompts with columns ``source`` (prompt text) and ``target`` (ID tokens of the item, ``<CT3><R17>``).

    Args:
        train: the ``train`` split of :func:`leave_one_out` (rows ``user``, ``item``, ``position``).
        tokenizer: a :class:`MetaIDTokenizer` (or anything with ``entity_vocabulary``) that spells users and items.
        tasks: ``"sequential"``: for every user and training position ``i >= 1``, the target is ``items[i]`` and the
            prompt shows ``items[:i][-max_history:]``. ``"direct"``: the prompt shows the user only, and every
            training item of the user (position 0 included) is a target once; the history is not needed, so the
            first item is a valid answer too (OpenP5's "straightforward" task).
        templates: ``{task: {"seen": (...), "unseen": (...)}}``; only the "seen" templates are used for training.
            Defaults to :data:`hf_metaid.prompt_templates.TEMPLATES`.
        max_history: how many of the latest items a sequential prompt shows (10 in OpenP5 and META ID).
        templates_per_sample: ``1`` draws one seen template per sample (seeded); an int ``k`` draws ``k`` distinct
            ones; ``"all"`` writes every sample with every seen template (the authors' 20× expansion).
        seed: seed of the template draw; the draw depends on ``(seed, user index)`` only, so it is the same for any
            batch size or ``num_proc``.
    """
    templates = TEMPLATES if templates is None else templates
    if isinstance(tasks, str):
        tasks = (tasks,)
    seen = {task: seen_templates(templates, task) for task in tasks}
    check_max_history(max_history)
    vocabulary = _vocabulary_of(tokenizer)
    users, sequences = training_sequences(train)
    for group in seen.values():  # fail before any work on a bad templates_per_sample
        _templates_for_samples(np.random.default_rng(0), 0, len(group), templates_per_sample)
    item_tokens = {item: vocabulary.item_tokens(item) for item in dict.fromkeys(i for s in sequences for i in s)}
    spell_user = user_spelling(vocabulary, [template for group in seen.values() for template in group])

    def expand(batch: dict, indices: list[int]) -> dict:
        sources: list[str] = []
        targets: list[str] = []
        for user, items, index in zip(batch["user"], batch["items"], indices, strict=True):
            rng = np.random.default_rng([seed, index])
            user_tokens = spell_user(user)
            tokens = [item_tokens[item] for item in items]
            for task in tasks:
                if task == "sequential":
                    samples = [(tokens[i], tokens[:i]) for i in range(1, len(tokens))]
                else:
                    samples = [(token, []) for token in tokens]
                choice = _templates_for_samples(rng, len(samples), len(seen[task]), templates_per_sample)
                for (target, history), picked in zip(samples, choice, strict=True):
                    for template_index in picked:
                        sources.append(format_prompt(seen[task][template_index], user_tokens, history, max_history))
                        targets.append(target)
        return {"source": sources, "target": targets}

    return _map_users(
        users,
        sequences,
        expand,
        {"source": datasets.Value("string"), "target": datasets.Value("string")},
        _fingerprint(
            "train",
            train._fingerprint,
            vocabulary.fingerprint,
            tuple(tasks),
            seen,
            max_history,
            templates_per_sample,
            seed,
        ),
        "Building training prompts",
        num_proc,
    )


def build_decoder_history_examples(
    train: datasets.Dataset,
    tokenizer,
    templates: Mapping | None = None,
    max_history: int = 50,
    seed: int = 0,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Tokenized training examples for a model with the history in the decoder (``set_prompt_format(...,
    history_in_decoder=True)``): ``input_ids`` / ``attention_mask`` (the encoder reads the user in a seen template
    of the direct task) and ``labels``, the ID tokens of up to ``max_history`` consecutive training items
    ``[c1, r1, ..., cn, rn]``.

    The model shifts the labels right, so the decoder reads ``[start, c1, r1, ..., cn]`` and one forward pass learns
    every item of the window from the items before it (the first from the user alone), where the prompt mode learns
    one item per prompt. A user with more than ``max_history`` training items gives several windows, cut from the
    end (the latest ``max_history`` items, the ``max_history`` before them, ...), so every item is a target once.
    No end token: at inference the item ends after its rank token, and an end token here would only teach where a
    history stops. A ``length`` column (label tokens) serves length-grouped sampling.

    Args:
        train: the ``train`` split of :func:`leave_one_out`.
        templates: as in :func:`build_training_prompts`; the direct task's seen templates are used.
        seed: seed of the template draw, which depends on ``(seed, user index)`` only (as in
            :func:`build_training_prompts`).
    """
    check_max_history(max_history)
    seen = seen_templates(TEMPLATES if templates is None else templates, "direct")
    vocabulary = _vocabulary_of(tokenizer)
    spell_user = user_spelling(vocabulary, seen)
    users, sequences = training_sequences(train)

    def expand(batch: dict, indices: list[int]) -> dict:
        sources: list[str] = []
        labels: list[list[int]] = []
        for user, items, index in zip(batch["user"], batch["items"], indices, strict=True):
            rng = np.random.default_rng([seed, index])
            windows = [items[max(0, end - max_history) : end] for end in range(len(items), 0, -max_history)]
            choice = _templates_for_samples(rng, len(windows), len(seen), 1)
            for window, picked in zip(windows, choice, strict=True):
                sources.append(format_prompt(seen[picked[0]], spell_user(user), [], max_history))
                labels.append([token for item in window for token in tokenizer.item_token_ids(item)])
        encoded = tokenizer(sources)
        lengths = [len(row) for row in labels]
        return {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "labels": labels,
            "length": lengths,
        }

    ids = datasets.List(datasets.Value("int32"))
    return _map_users(
        users,
        sequences,
        expand,
        {"input_ids": ids, "attention_mask": ids, "labels": ids, "length": datasets.Value("int32")},
        _fingerprint(
            "decoder-history",
            train._fingerprint,
            vocabulary.fingerprint,
            _tokenizer_hash(tokenizer),
            seen,
            max_history,
            seed,
        ),
        "Building decoder-history examples",
        num_proc,
    )


# -------------------------------------------------------------------------------------------------- evaluation
def build_eval_prompts(
    split: datasets.Dataset,
    tokenizer,
    task: str = "sequential",
    template: str = "unseen",
    max_history: int = 10,
    templates: Mapping | None = None,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Evaluation prompts: the split's ``user``, ``history`` (full, raw ids) and ``target`` (raw item id) + ``source``.

    Args:
        split: the ``validation`` or ``test`` split of :func:`leave_one_out` (rows ``user``, ``history``, ``target``).
        task: ``"sequential"`` (prompt shows the last ``max_history`` items) or ``"direct"`` (user only).
        template: ``"unseen"`` (OpenP5's held-out template, the default protocol), ``"seen"`` (the first training
            template, which is also ``model.recommend``'s default) or a template string of your own.
    """
    text = resolve_template(task, template, templates)
    columns = split.column_names if isinstance(split, datasets.Dataset) else type(split).__name__
    for column in ("user", "history", "target"):
        if column not in columns:
            raise InvalidArgumentError(f"evaluation rows need columns user, history, target; found {columns}")
    check_max_history(max_history)
    vocabulary = _vocabulary_of(tokenizer)
    spell_user = user_spelling(vocabulary, [text])
    use_history = task == "sequential"

    def write(batch: dict) -> dict:
        sources = []
        for user, history in zip(batch["user"], batch["history"], strict=True):
            shown = [vocabulary.item_tokens(item) for item in history[-max_history:]] if use_history else []
            sources.append(format_prompt(text, spell_user(user), shown, max_history))
        return {"source": sources}

    return split.map(
        write,
        batched=True,
        num_proc=num_proc,
        new_fingerprint=_fingerprint("eval", split._fingerprint, vocabulary.fingerprint, task, text, max_history),
        desc="Building evaluation prompts",
    )


# -------------------------------------------------------------------------------------------------- tokenizing
def tokenize_prompts(
    dataset: datasets.Dataset,
    tokenizer,
    max_source_length: int = 512,
    targets: str = "auto",
    keep_columns: Sequence[str] = (),
    num_proc: int | None = None,
) -> datasets.Dataset:
    """``input_ids`` / ``attention_mask`` of ``source`` and ``labels`` = the target item's ID tokens + ``eos``.

    Args:
        targets: how to read the ``target`` column: ``"tokens"`` (ID token text, as written by
            :func:`build_training_prompts`), ``"items"`` (raw item ids, as in :func:`build_eval_prompts`), or
            ``"auto"`` (``"items"`` when the dataset has a ``history`` column, else ``"tokens"``).
        keep_columns: columns to keep beside the model inputs (all others are dropped, so the Trainer needs no
            column filtering).
    """
    if targets == "auto":
        targets = "items" if "history" in dataset.column_names else "tokens"
    if targets not in ("tokens", "items"):
        raise InvalidArgumentError(f"targets must be 'auto', 'tokens' or 'items', got {targets!r}")
    for column in ("source", "target"):
        if column not in dataset.column_names:
            raise InvalidArgumentError(
                f"tokenize_prompts needs columns 'source' and 'target'; found {dataset.column_names}"
            )
    eos = tokenizer.eos_token_id
    if eos is None:
        raise InvalidArgumentError("the tokenizer has no eos token; labels must end with one")

    def encode(batch: dict) -> dict:
        encoded = tokenizer(batch["source"], truncation=True, max_length=max_source_length)
        if targets == "items":
            labels = [[*tokenizer.item_token_ids(item), eos] for item in batch["target"]]
        else:
            unique = list(dict.fromkeys(batch["target"]))  # a few thousand items: tokenize each once
            pieces = dict(zip(unique, tokenizer(unique, add_special_tokens=False)["input_ids"], strict=True))
            labels = [[*pieces[target], eos] for target in batch["target"]]
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}

    drop = [c for c in dataset.column_names if c not in keep_columns]
    return dataset.map(
        encode,
        batched=True,
        remove_columns=drop,
        num_proc=num_proc,
        new_fingerprint=_fingerprint(
            "tok",
            dataset._fingerprint,
            tokenizer.entity_vocabulary.fingerprint,
            _tokenizer_hash(tokenizer),
            max_source_length,
            targets,
            tuple(keep_columns),
        ),
        desc="Tokenizing prompts",
    )


def build_prompts(splits: datasets.DatasetDict | datasets.Dataset, tokenizer, **kwargs) -> datasets.Dataset:
    """Tokenized training prompts in one call: :func:`build_training_prompts` then :func:`tokenize_prompts`.

    Accepts the whole :func:`leave_one_out` result (its ``train`` split is used) or a training table; keyword
    arguments go to :func:`build_training_prompts`.
    """
    train = splits["train"] if isinstance(splits, datasets.DatasetDict) else splits
    return tokenize_prompts(build_training_prompts(train, tokenizer, **kwargs), tokenizer)
