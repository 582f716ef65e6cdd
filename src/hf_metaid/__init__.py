"""hf_metaid: META ID out-of-vocabulary user/item tokens for LLM recommenders, as Hugging Face citizens."""

from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

from .configuration_metaid import MetaIDConfig
from .data import (
    build_decoder_history_examples,
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
from .errors import (
    BaseModelMismatchError,
    DataWarning,
    InteractionFormatError,
    InvalidArgumentError,
    LeftoverWarning,
    MetaIDError,
    OutputExistsError,
    SavedFileError,
    UnknownDataError,
    UnknownEntityError,
    UnwritableOutputError,
    VocabularyMismatchError,
)
from .evaluation.chain_calibration import ChainCalibration, calibrate_chain_prior
from .evaluation.evaluator import RecommendationEvaluator, evaluate_recommender
from .indexing import (
    BaseIndexer,
    BlockIndexerConfig,
    CollaborativeIndexer,
    CollaborativeIndexerConfig,
    IndependentIndexer,
    IndependentIndexerConfig,
    MetaIDIndexer,
    MetaIDIndexerConfig,
    RandomIndexer,
    SequentialIndexer,
    SkipGramConfig,
)
from .item_tree import ItemTree
from .modeling_metaid import MetaIDForConditionalGeneration
from .saving.hub_push import push_model
from .saving.inference_folder import load_for_inference, save_for_inference
from .saving.model_card import evaluation_record
from .tokenization_metaid import MetaIDTokenizer
from .training.collator import MetaIDDataCollator
from .training.trainer import MetaIDTrainer, RecommendationEvalCallback, build_trainer, lora_config, training_arguments
from .vocabulary import hub as _vocabulary_hub  # noqa: F401  (registers EntityVocabulary's Hub methods)
from .vocabulary.growth import extend_tokenizer, extend_vocabulary
from .workflow import recipes
from .workflow.build import tiny_t5_config
from .workflow.recipes import Recipe
from .workflow.recommendation_table import recommend_all
from .workflow.settings import ModelSettings, TrainingSettings
from .workflow.training_run import set_chain_counts

# The files that travel with every saved model folder, so that it loads with trust_remote_code=True where hf_metaid
# is not installed: they import only each other, the standard library, torch, transformers and transformers' own
# requirements (numpy, tokenizers, huggingface_hub); datasets only inside EntityVocabulary.to_dataset/from_dataset.
# tests/model/test_shipped_code.py holds them to that.
SHIPPED_FILES = (
    "configuration_metaid.py",
    "modeling_metaid.py",
    "recommendation.py",
    "tokenization_metaid.py",
    "offline_base_tokenizer.py",
    "entity_vocabulary.py",
    "prompt_templates.py",
    "item_tree.py",
    "decoding.py",
    "t5_fast_path.py",
    "tree_softmax.py",
    "item_output.py",
    "repeat_bias.py",
    "chain_prior.py",
    "errors.py",
    "checks.py",
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
    "SHIPPED_FILES",
    "BaseIndexer",
    "BaseModelMismatchError",
    "BlockIndexerConfig",
    "ChainCalibration",
    "CollaborativeIndexer",
    "CollaborativeIndexerConfig",
    "DataWarning",
    "EntityVocabulary",
    "IndependentIndexer",
    "IndependentIndexerConfig",
    "InteractionFormatError",
    "InvalidArgumentError",
    "ItemTree",
    "LeftoverWarning",
    "MetaIDConfig",
    "MetaIDDataCollator",
    "MetaIDError",
    "MetaIDForConditionalGeneration",
    "MetaIDIndexer",
    "MetaIDIndexerConfig",
    "MetaIDTokenizer",
    "MetaIDTrainer",
    "ModelSettings",
    "OutputExistsError",
    "RandomIndexer",
    "Recipe",
    "RecommendationEvalCallback",
    "RecommendationEvaluator",
    "SavedFileError",
    "SequentialIndexer",
    "SkipGramConfig",
    "TrainingSettings",
    "UnknownDataError",
    "UnknownEntityError",
    "UnwritableOutputError",
    "VocabularyMismatchError",
    "build_decoder_history_examples",
    "build_eval_prompts",
    "build_prompts",
    "build_trainer",
    "build_training_prompts",
    "calibrate_chain_prior",
    "catalogue",
    "count_training_samples",
    "decode_items",
    "embedded_beauty_path",
    "evaluate_recommender",
    "evaluation_record",
    "extend_tokenizer",
    "extend_vocabulary",
    "leave_one_out",
    "load_for_inference",
    "load_interactions",
    "lora_config",
    "push_model",
    "recipes",
    "recommend_all",
    "save_for_inference",
    "set_chain_counts",
    "tiny_t5_config",
    "tokenize_prompts",
    "training_arguments",
    "user_sequences",
]
