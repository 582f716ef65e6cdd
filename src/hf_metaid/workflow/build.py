"""The build stage: the tokenizer of a vocabulary and the model (the tiny T5 or a T5 checkpoint) with its ID tokens."""

from __future__ import annotations

import os

from huggingface_hub.errors import StrictDataclassError

from ..configuration_metaid import MetaIDConfig
from ..entity_vocabulary import EntityVocabulary
from ..errors import InvalidArgumentError, SavedFileError
from ..modeling_metaid import MetaIDForConditionalGeneration
from ..saving.hub_upload import looks_like_hub_repository
from ..tokenization_metaid import MetaIDTokenizer
from .settings import ModelSettings


def tiny_t5_config(**overrides) -> MetaIDConfig:
    """A small T5 (about 1M parameters with the defaults) for tests, the offline demo and CPU experiments."""
    fields = {
        "vocab_size": 512,
        "d_model": 128,
        "d_kv": 32,
        "d_ff": 256,
        "num_layers": 2,
        "num_decoder_layers": 2,
        "num_heads": 4,
        "dropout_rate": 0.1,
        "decoder_start_token_id": 0,
    }
    unknown = sorted(set(overrides) - set(MetaIDConfig.__dataclass_fields__) - set(MetaIDConfig().to_dict()))
    if unknown:  # T5Config would keep a misspelt field as an attribute that nothing reads
        raise InvalidArgumentError(f"tiny_t5_config: unknown config field(s) {unknown}")
    fields.update(overrides)
    try:
        return MetaIDConfig(**fields)
    except StrictDataclassError as err:
        raise InvalidArgumentError(f"tiny_t5_config: {' '.join(str(err).split())}") from None


def build_tokenizer(vocabulary: EntityVocabulary, base: str = "tiny") -> MetaIDTokenizer:
    """The vocabulary's tokenizer over the offline word-level base (``"tiny"``) or a checkpoint's tokenizer."""
    return MetaIDTokenizer.from_base(None if base == "tiny" else checkpoint(base), vocabulary)


def checkpoint(name: str) -> str:
    """``name`` if it is a local folder or could be a Hub checkpoint; a mistyped local path (one that cannot be a Hub
    name, or whose first part is a local folder) fails at once instead of after the Hub's retries.

    Raises:
        SavedFileError: naming the path.
    """
    local = os.path.expanduser(name)
    if os.path.isdir(local):
        return local
    if os.path.exists(local):
        raise SavedFileError(f"base {name}: a file, not a checkpoint folder")
    if not looks_like_hub_repository(name, bare_names=True):
        raise SavedFileError(f"base {name}: no such folder (and not a Hub checkpoint name)")
    return name


def build_model(
    tokenizer: MetaIDTokenizer, settings: ModelSettings = ModelSettings(), seed: int = 0
) -> MetaIDForConditionalGeneration:
    """The tiny T5 of ``settings`` (seeded), or the checkpoint ``settings.base`` with the ID tokens and F added, with
    the settings' model options (their prompt format included)."""
    options = settings.model_options()  # reads a templates file: before any model is built
    if settings.base == "tiny":
        encoder_layers, decoder_layers = settings.layers
        base: MetaIDConfig | str = tiny_t5_config(
            d_model=settings.d_model,
            d_ff=settings.feed_forward_width,
            d_kv=settings.d_model // 4,
            num_layers=encoder_layers,
            num_decoder_layers=decoder_layers,
            dropout_rate=settings.dropout,
        )
    else:
        base = checkpoint(settings.base)
    return MetaIDForConditionalGeneration.from_base(
        base, tokenizer, seed=seed, init_new_rows=settings.init_new_rows, **options
    )
