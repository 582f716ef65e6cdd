"""MetaIDTokenizer: any fast base tokenizer + the ID tokens + the entity vocabulary, saved and loaded together.

The entity vocabulary (raw id → tokens) lives in ``metaid_vocab.json`` beside ``tokenizer.json``, so evaluation can
never silently rebuild a different ID map: whoever has the tokenizer folder has the exact IDs it was trained with.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence

from tokenizers import AddedToken
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.tokenization_utils_tokenizers import TokenizersBackend

from .entity_vocabulary import EntityVocabulary
from .errors import InvalidArgumentError
from .offline_base_tokenizer import SPECIAL_TOKENS, build_offline_base_tokenizer

VOCAB_FILE = "metaid_vocab.json"


class MetaIDTokenizer(TokenizersBackend):
    """A ``tokenizers``-backed tokenizer that knows the META ID tokens of every user and item.

    Build one with :meth:`from_base`; reload one with ``AutoTokenizer.from_pretrained(folder)``.

    Args:
        entity_vocabulary: the :class:`EntityVocabulary` whose tokens this tokenizer holds.
        metaid_vocab_file: path of a saved vocabulary (how ``from_pretrained`` passes it).
        **kwargs: passed to :class:`~transformers.TokenizersBackend` (``tokenizer_object``/``tokenizer_file``,
            special tokens, ...).
    """

    vocab_files_names = {"tokenizer_file": "tokenizer.json", "metaid_vocab_file": VOCAB_FILE}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        *args,
        entity_vocabulary: EntityVocabulary | None = None,
        metaid_vocab_file: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if entity_vocabulary is None:
            if metaid_vocab_file is None or not os.path.isfile(metaid_vocab_file):
                raise ValueError(
                    f"MetaIDTokenizer needs its entity vocabulary: {VOCAB_FILE} is missing from the tokenizer folder"
                )
            entity_vocabulary = EntityVocabulary.load(metaid_vocab_file)
        self.entity_vocabulary = entity_vocabulary
        self._check_id_tokens()

    @classmethod
    def convert_to_native_format(cls, trust_remote_code=False, **kwargs):
        """Keep ``tokenizer.json`` as it is on reload.

        transformers 5 otherwise rebuilds subclasses that define ``__init__`` from the vocabulary alone, which
        silently turns this tokenizer into a character-level BPE.
        """
        return kwargs

    @classmethod
    def from_base(
        cls,
        base: str | PreTrainedTokenizerBase | None,
        vocabulary: EntityVocabulary | str | os.PathLike,
        **kwargs,
    ) -> MetaIDTokenizer:
        """Add ``vocabulary``'s ID tokens to a base tokenizer.

        Args:
            base: a fast Hugging Face tokenizer, a model name or path (``"t5-small"``, needs the Hub or a local
                copy), or ``None`` for the built-in offline word-level base (see ``offline_base_tokenizer``).
            vocabulary: the entity vocabulary from an indexer, or a shared one: a Hub dataset repository
                ``"org/vocab"``, a folder :meth:`EntityVocabulary.save_pretrained` (or ``hf-metaid index``) wrote, or
                a ``metaid_vocab.json`` file (read with :meth:`EntityVocabulary.from_pretrained`).
            **kwargs: extra tokenizer settings (``model_max_length``, ...).
        """
        if isinstance(vocabulary, (str, os.PathLike)):
            vocabulary = EntityVocabulary.from_pretrained(vocabulary)
        if not isinstance(vocabulary, EntityVocabulary):
            raise InvalidArgumentError(f"vocabulary must be an EntityVocabulary, got {type(vocabulary).__name__}")
        if base is None:
            backend = build_offline_base_tokenizer()
            special = dict(zip(("pad_token", "eos_token", "unk_token"), SPECIAL_TOKENS, strict=True))
        else:
            if isinstance(base, (str, os.PathLike)):
                base = AutoTokenizer.from_pretrained(base)
            if not isinstance(base, TokenizersBackend):
                raise InvalidArgumentError(
                    f"base must be None, a checkpoint name/path or a fast (tokenizers-backed) tokenizer, got "
                    f"{type(base).__name__}"
                )
            backend = base.backend_tokenizer
            clash = [t for t in vocabulary.new_tokens[:1] + vocabulary.new_tokens[-1:] if t in base.get_vocab()]
            if clash:
                raise ValueError(f"the base tokenizer already holds ID tokens ({clash[0]}); start from a plain base")
            special = {
                name: getattr(base, name)
                for name in ("pad_token", "eos_token", "unk_token", "bos_token")
                if getattr(base, name, None) is not None
            }
            kwargs.setdefault("model_max_length", base.model_max_length)
        tokenizer = cls(tokenizer_object=backend, entity_vocabulary=vocabulary, **special, **kwargs)
        tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in vocabulary.new_tokens])
        tokenizer._check_id_tokens()
        return tokenizer

    # ------------------------------------------------------------------------------------------------- ID tokens
    def _check_id_tokens(self) -> None:
        """The ID tokens must be present and contiguous (the model's augmentation indexes them as a range)."""
        tokens = self.entity_vocabulary.new_tokens
        ids = self.convert_tokens_to_ids(tokens)
        if any(i is None or i == self.unk_token_id for i in ids):
            if all(i is None or i == self.unk_token_id for i in ids):
                return  # not added yet (from_base adds them right after construction)
            raise ValueError("some ID tokens of the entity vocabulary are missing from the tokenizer")
        if ids != list(range(ids[0], ids[0] + len(ids))):
            raise ValueError("the ID tokens must have contiguous token ids (cluster tokens, then rank tokens)")
        self.first_id_token = ids[0]

    @property
    def id_token_range(self) -> range:
        """Token ids of all ID tokens: cluster tokens first, then rank tokens."""
        return range(self.first_id_token, self.first_id_token + len(self.entity_vocabulary.new_tokens))

    @property
    def cluster_token_ids(self) -> range:
        return range(self.first_id_token, self.first_id_token + self.entity_vocabulary.num_clusters)

    @property
    def rank_token_ids(self) -> range:
        start = self.first_id_token + self.entity_vocabulary.num_clusters
        return range(start, start + self.entity_vocabulary.num_ranks)

    def user_tokens(self, raw_id: str) -> str:
        """The ID token string of a user, e.g. ``<CT3><R17>``; raises ``UnknownEntityError`` for unknown ids."""
        return self.entity_vocabulary.user_tokens(raw_id)

    def item_tokens(self, raw_id: str) -> str:
        """The ID token string of an item; raises ``UnknownEntityError`` for unknown ids."""
        return self.entity_vocabulary.item_tokens(raw_id)

    def item_token_ids(self, raw_id: str) -> list[int]:
        """``[cluster token id, rank token id]`` of an item."""
        cluster, rank = self.entity_vocabulary.item_code(raw_id)
        return [self.cluster_token_ids[cluster], self.rank_token_ids[rank]]

    def token_ids_to_items(self, token_ids: Sequence[int] | Sequence[Sequence[int]]) -> list[str | None]:
        """Map generated token ids back to raw item ids (``None`` where a sequence spells no item).

        Accepts one sequence or a batch (list of lists, or a 1-D/2-D tensor); always returns one entry per sequence.
        """
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        sequences = [token_ids] if token_ids and isinstance(token_ids[0], int) else list(token_ids)
        codes = (self._code_of(sequence) for sequence in sequences)
        return [None if code is None else self.entity_vocabulary.item_at(*code) for code in codes]

    def decode_items(self, token_ids: Sequence[int] | Sequence[Sequence[int]]) -> list[str | None]:
        """Deprecated name of :meth:`token_ids_to_items`, kept so that older code runs (``decode_items`` is now only
        the decoder, ``hf_metaid.decode_items``, which does something else)."""
        warnings.warn(
            "MetaIDTokenizer.decode_items is renamed token_ids_to_items (hf_metaid.decode_items is the decoder)",
            FutureWarning,
            stacklevel=2,
        )
        return self.token_ids_to_items(token_ids)

    def _code_of(self, sequence: Iterable[int]) -> tuple[int, int] | None:
        clusters, ranks = self.cluster_token_ids, self.rank_token_ids
        ids = [t for t in sequence if t in clusters or t in ranks]
        if len(ids) != 2 or ids[0] not in clusters or ids[1] not in ranks:
            return None
        return ids[0] - clusters.start, ids[1] - ranks.start

    # ----------------------------------------------------------------------------------------------- saving
    def _save_pretrained(self, save_directory, file_names, legacy_format=None, filename_prefix=None):
        """Write ``tokenizer.json`` as usual and the entity vocabulary beside it."""
        file_names = super()._save_pretrained(save_directory, file_names, legacy_format, filename_prefix)
        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILE)
        self.entity_vocabulary.save(path)
        return (*file_names, path)
