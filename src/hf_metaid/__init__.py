"""hf_metaid: META ID out-of-vocabulary user/item tokens for LLM recommenders, as Hugging Face citizens."""

from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

from .configuration_metaid import MetaIDConfig, tiny_t5_config
from .data import (
    build_eval_prompts,
    build_prompts,
    build_training_prompts,
    catalogue,
    count_training_samples,
    embedded_beauty_path,
    leave_one_out,
    load_interactions,
    tokenize_prompts,
    user_sequences,
)
from .decoding import decode_items
from .entity_vocabulary import EntityVocabulary
from .errors import InteractionFormatError, MetaIDError, UnknownEntityError, VocabularyMismatchError
from .indexing import BaseIndexer, MetaIDIndexer, RandomIndexer, SequentialIndexer
from .item_tree import ItemTree
from .modeling_metaid import MetaIDForConditionalGeneration
from .protocol import evaluate_recommender
from .tokenization_metaid import MetaIDTokenizer
from .training import (
    RecommendationEvalCallback,
    build_trainer,
    load_for_inference,
    lora_config,
    save_for_inference,
    training_arguments,
)

# The Auto classes learn "metaid" at import; register_for_auto_class makes saved folders carry `auto_map` and the
# code files, so they also load with trust_remote_code=True where hf_metaid is not installed (the Hub case).
AutoConfig.register("metaid", MetaIDConfig, exist_ok=True)
AutoTokenizer.register(MetaIDConfig, tokenizer_class=MetaIDTokenizer, exist_ok=True)
AutoModelForSeq2SeqLM.register(MetaIDConfig, MetaIDForConditionalGeneration, exist_ok=True)
MetaIDConfig.register_for_auto_class()
MetaIDTokenizer.register_for_auto_class("AutoTokenizer")
MetaIDForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")

__version__ = "0.1.0"

__all__ = [
    "BaseIndexer",
    "EntityVocabulary",
    "InteractionFormatError",
    "ItemTree",
    "MetaIDConfig",
    "MetaIDError",
    "MetaIDForConditionalGeneration",
    "MetaIDIndexer",
    "MetaIDTokenizer",
    "RandomIndexer",
    "RecommendationEvalCallback",
    "SequentialIndexer",
    "UnknownEntityError",
    "VocabularyMismatchError",
    "build_eval_prompts",
    "build_prompts",
    "build_trainer",
    "build_training_prompts",
    "catalogue",
    "count_training_samples",
    "decode_items",
    "embedded_beauty_path",
    "evaluate_recommender",
    "leave_one_out",
    "load_for_inference",
    "load_interactions",
    "lora_config",
    "save_for_inference",
    "tiny_t5_config",
    "tokenize_prompts",
    "training_arguments",
    "user_sequences",
]
