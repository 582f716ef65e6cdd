"""Interaction loading, leave-one-out splitting and prompt building."""

from .interactions import embedded_beauty_path, load_interactions, user_sequences
from .prompts import (
    build_decoder_history_examples,
    build_eval_prompts,
    build_prompts,
    build_training_prompts,
    count_training_samples,
    tokenize_prompts,
)
from .splits import catalogue, leave_one_out, repeated_pairs
from .synthetic import MarkovCatalogue, markov_interactions, oracle_scores

__all__ = [
    "MarkovCatalogue",
    "build_decoder_history_examples",
    "build_eval_prompts",
    "build_prompts",
    "build_training_prompts",
    "catalogue",
    "count_training_samples",
    "embedded_beauty_path",
    "leave_one_out",
    "load_interactions",
    "markov_interactions",
    "oracle_scores",
    "repeated_pairs",
    "tokenize_prompts",
    "user_sequences",
]
