"""What a trained META ID model is for: ``recommend`` real items for users, in the words it was trained on.

:class:`RecommendationMixin` gives :class:`~hf_metaid.MetaIDForConditionalGeneration` its recommendation API, apart
from the network code (``modeling_metaid``): the prompt format recorded in the config, the valid-item tree of a
tokenizer, and ``recommend`` / ``recommend_batch``, which write each user's prompt with
:func:`~hf_metaid.prompt_templates.format_prompt` and decode real items with the fixed-depth tree decoder.
Only torch and sibling files are imported: the file travels with a saved model for ``trust_remote_code`` loading.
"""

from __future__ import annotations

from collections.abc import Sequence

from .checks import check_bool, check_choice, check_int
from .decoding import decode_items
from .errors import InvalidArgumentError, UnknownEntityError
from .item_tree import ItemTree
from .prompt_templates import TEMPLATES, check_max_history, format_prompt, resolve_template


class RecommendationMixin:
    """``recommend``, ``recommend_batch`` and the recorded prompt format, for a META ID seq2seq model.

    The host class provides ``config`` (a ``MetaIDConfig``), ``configure``, ``check_tokenizer``, ``device``,
    ``training``/``eval`` and what :func:`decode_items` needs (the encoder and decoder).
    """

    # ------------------------------------------------------------------------------------------- prompt format
    @property
    def prompt_templates(self) -> dict:
        """The templates ``recommend`` and evaluation default to: those recorded by :meth:`set_prompt_format` (the
        training ones, saved in the config), else the library's OpenP5-style :data:`TEMPLATES`."""
        return self.config.metaid_prompt_templates or TEMPLATES

    def set_prompt_format(
        self, templates: dict | None = None, max_history: int = 10, history_in_decoder: bool = False
    ) -> None:
        """Record the prompt format the model is trained with, so that it is saved with it and ``recommend`` and
        evaluation ask in the same words (``None``: the library's templates). ``history_in_decoder``: the encoder
        reads the user (the direct task's template) and the decoder the latest ``max_history`` history items (see
        ``MetaIDConfig.metaid_history_in_decoder``). The same as ``configure(templates=..., max_history=...,
        history_in_decoder=...)``, which checks them with the other options (the repeat bias needs the history in
        the decoder) and moves the items' own input vectors to the stack that reads the history."""
        self.configure(templates=templates, max_history=max_history, history_in_decoder=history_in_decoder)

    def item_tree(self, tokenizer) -> ItemTree:
        """The valid-item tree of ``tokenizer`` (cached per vocabulary and token ids; the pairing check runs when
        the cache is filled: hashing a vocabulary costs a tenth of a second, once per batch of an evaluation)."""
        key = (tokenizer.entity_vocabulary, tokenizer.id_token_range)
        cached = getattr(self, "_metaid_item_tree", None)
        if cached is None or cached[0][0] is not key[0] or cached[0][1] != key[1]:
            self.check_tokenizer(tokenizer)
            cached = (key, ItemTree.from_tokenizer(tokenizer))
            self._metaid_item_tree = cached
        return cached[1]

    # ------------------------------------------------------------------------------------------ recommending
    def recommend(
        self,
        tokenizer,
        user: str | None = None,
        history: Sequence[str] | None = None,
        k: int = 10,
        exclude_seen: bool = False,
        **kwargs,
    ) -> list[tuple[str, float]]:
        """Top-``k`` real items for one user: ``[(raw item id, log-probability score), ...]``, best first.

        Without ``history`` the direct (user-only) task is used; with it, the sequential task. An unknown ``user``
        raises ``UnknownEntityError``; ``user=None`` with a history is the cold-start path for a new user.
        Keyword arguments go to :meth:`recommend_batch`.
        """
        if history is not None:
            history = _id_list(history, "history")
        return self.recommend_batch(
            tokenizer, [user], None if history is None else [history], k=k, exclude_seen=exclude_seen, **kwargs
        )[0]

    def recommend_batch(
        self,
        tokenizer,
        users: Sequence[str | None],
        histories: Sequence[Sequence[str]] | None = None,
        k: int = 10,
        exclude_seen: bool = False,
        mode: str = "beam",
        num_beams: int | None = None,
        template: str | None = None,
        max_history: int | None = None,
        batch_size: int = 64,
        exclude: Sequence[Sequence[str]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """:meth:`recommend` for many users at once (one list per user).

        Args:
            histories: per user, the raw item ids of the history (oldest first) that the prompt shows (with
                ``config.metaid_history_in_decoder``: that the decoder reads); ``None``: the direct task (user only).
            mode: ``"beam"`` (HF beam search's top-k, ``num_beams`` wide; a width under k is raised to k; default:
                the model's ``config.metaid_num_beams``, or k) or ``"exact"`` (every item ranked).
            exclude: per user, raw item ids that must not be recommended (unknown ids are ignored); they are cut
                from that user's item tree before decoding, so the k items come from the rest. Works for every
                task, the direct one included.
            exclude_seen: shorthand for ``exclude=histories`` (what a shop shows; Beauty has no repeated user-item
                pairs, so a seen item is never the answer there). Combined with ``exclude``, both are left out.
            template: ``"seen"``, ``"unseen"`` or a prompt template with ``{user}`` / ``{history}``; ``None``:
                per user, the first seen template of its task in :attr:`prompt_templates`.
            max_history: how many of the latest history items the prompt shows (default: the training value,
                ``config.metaid_max_history``).
        """
        users = _id_list(users, "users", allow_none=True)
        if histories is not None:
            histories = [_id_list(h, f"histories[{i}]") for i, h in enumerate(_sequence(histories, "histories"))]
            if len(histories) != len(users):
                raise InvalidArgumentError(f"histories has {len(histories)} entries for {len(users)} users")
        check_int("k", k, minimum=1)
        check_int("batch_size", batch_size, minimum=1)
        check_choice("mode", mode, ("beam", "exact"))
        check_bool("exclude_seen", exclude_seen)
        if num_beams is not None:
            check_int("num_beams", num_beams, minimum=1)
        left_out = _exclusions(users, histories, exclude, exclude_seen)
        tree = self.item_tree(tokenizer)
        max_history = self.config.metaid_max_history if max_history is None else check_max_history(max_history)
        prompts = [
            self._prompt(tokenizer, user, None if histories is None else histories[i], template, max_history)
            for i, user in enumerate(users)
        ]
        prefixes = None
        if self.config.metaid_history_in_decoder:
            check_max_history(max_history)
            prefixes = [
                [token for item in history[-max_history:] for token in tokenizer.item_token_ids(item)]
                for history in histories or [[] for _ in users]
            ]
        numbers = None
        if left_out is not None:
            numbers = [[tree.item_numbers[i] for i in items if i in tree.item_numbers] for items in left_out]
        results: list[list[tuple[str, float]]] = []
        was_training = self.training
        self.eval()
        try:
            for start in range(0, len(prompts), batch_size):
                batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True)
                batch = batch.to(self.device)
                items, scores = decode_items(  # honours metaid_augment_generation itself
                    self,
                    batch["input_ids"],
                    batch["attention_mask"],
                    tree,
                    k=k,
                    num_beams=None if num_beams is None else max(num_beams, k),
                    mode=mode,
                    exclude=None if numbers is None else numbers[start : start + batch_size],
                    decoder_prefix=None if prefixes is None else prefixes[start : start + batch_size],
                )
                for item_row, score_row in zip(items.tolist(), scores.tolist(), strict=True):
                    results.append([(tree.items[i], s) for i, s in zip(item_row, score_row, strict=True) if i >= 0])
        finally:
            self.train(was_training)
        return results

    def _prompt(self, tokenizer, user: str | None, history: list[str] | None, template, max_history: int) -> str:
        """One user's prompt: the recorded (or given) template of the user's task, filled by ``format_prompt``.
        With the history in the decoder the prompt is the direct task's (the user alone): the history is the
        decoder's prefix (a new user's prompt is the template without user tokens)."""
        vocabulary = tokenizer.entity_vocabulary
        if user is not None and not vocabulary.has_user(user):
            if vocabulary.items_only and history:  # a vocabulary without user IDs: the history alone decides
                user = None
            elif vocabulary.items_only:
                raise UnknownEntityError(
                    f"user id {str(user)!r} has no ID: this model's vocabulary gives users none (indexed with "
                    "user_ids=False), so recommend needs the user's history"
                )
            else:
                hint = " (pass user=None with a history to recommend for a new user)" if history else ""
                raise UnknownEntityError(f"unknown user id {str(user)!r}: not in the ID vocabulary{hint}")
        if user is None and not history:
            raise InvalidArgumentError("recommend needs a known user, a history, or both")
        in_prompt = history if not self.config.metaid_history_in_decoder else None
        text = resolve_template(
            "sequential" if in_prompt else "direct",
            "seen" if template is None else template,
            self.config.metaid_prompt_templates,
            cold_user=user is None,
        )
        user_tokens = None if user is None else vocabulary.user_tokens(user)
        return format_prompt(text, user_tokens, [vocabulary.item_tokens(i) for i in in_prompt or []], max_history)


def _sequence(value, name: str) -> list:
    """``value`` as a list, refusing a bare string (which would be read as its characters)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidArgumentError(f"{name} must be a list of ids, got {type(value).__name__} {value!r}")
    return list(value)


def _id_list(value, name: str, allow_none: bool = False) -> list:
    """A list of raw ids (strings or integers, as the loaders accept), each turned into a string."""
    ids = _sequence(value, name)
    for index, raw in enumerate(ids):
        if raw is None and allow_none:
            continue
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise InvalidArgumentError(
                f"{name}[{index}] must be a raw id (str or int), got {type(raw).__name__} {raw!r}"
            )
    return [raw if raw is None else str(raw) for raw in ids]


def _exclusions(users, histories, exclude, exclude_seen: bool) -> list[list[str]] | None:
    """Per user, the raw item ids to leave out: ``exclude`` and, with ``exclude_seen``, the history."""
    if exclude is not None:
        exclude = [_id_list(e, f"exclude[{i}]") for i, e in enumerate(_sequence(exclude, "exclude"))]
        if len(exclude) != len(users):
            raise InvalidArgumentError(f"exclude has {len(exclude)} entries for {len(users)} users")
    if not exclude_seen or histories is None:
        return exclude
    if exclude is None:
        return [list(h) for h in histories]
    return [[*e, *h] for e, h in zip(exclude, histories, strict=True)]
