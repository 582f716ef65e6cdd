"""A growing catalogue: a saved model reopened for further training, and a model grown to new users and items."""

from __future__ import annotations

import os

import datasets

from ..modeling_metaid import MetaIDForConditionalGeneration
from ..tokenization_metaid import MetaIDTokenizer
from ..vocabulary.growth import DEFAULT_MIN_INTERACTIONS, MIN_KNOWN_ITEMS, extend_tokenizer


# --------------------------------------------------------------------------------------------- a growing catalogue
def load_for_training(folder: str | os.PathLike) -> tuple[MetaIDForConditionalGeneration, MetaIDTokenizer]:
    """A saved model folder (full or LoRA) as a full model to train further, with its tokenizer.

    A LoRA adapter is merged into its base (``merge_and_unload``), so a further run may train in full or with a
    fresh adapter. Every parameter is trainable, as in a model :func:`build_model` builds: the merged model would
    otherwise keep the adapter's frozen base weights, and a full run on it would have nothing to train (a LoRA run
    freezes them again itself). The model forgets where it was loaded from: a LoRA run on it then saves the base's
    weights beside the adapter (``base/``), since they are no longer those of any checkpoint.
    """
    from ..saving.inference_folder import load_for_inference
    from ..training.peft_utils import is_peft

    model, tokenizer = load_for_inference(folder)
    if is_peft(model):
        model = model.merge_and_unload()
    model.requires_grad_(True)
    model.config.name_or_path = ""
    return model.train(), tokenizer


def extend_model(
    model: MetaIDForConditionalGeneration,
    tokenizer: MetaIDTokenizer,
    interactions: datasets.Dataset,
    min_interactions: int = DEFAULT_MIN_INTERACTIONS,
    min_known_items: float = MIN_KNOWN_ITEMS,
    source: str | None = None,
) -> tuple[MetaIDForConditionalGeneration, MetaIDTokenizer]:
    """IDs for the users and items of ``interactions`` the model's vocabulary lacks (``EntityVocabulary.extend``),
    the tokenizer that spells them with every old token id kept, and ``model`` grown to it in place
    (:meth:`~hf_metaid.MetaIDForConditionalGeneration.extend_vocabulary`); then :func:`fine_tune` on new data.

    Data of which the vocabulary knows less than ``min_known_items`` of the items is refused before anything grows
    (``UnknownDataError``; 0 grows it anyway); ``source`` names the data in the grown vocabulary's metadata
    (:func:`~hf_metaid.vocabulary.growth.extend_vocabulary`)."""
    vocabulary = tokenizer.entity_vocabulary.extend(
        interactions, min_interactions=min_interactions, min_known_items=min_known_items, source=source
    )
    grown = extend_tokenizer(tokenizer, vocabulary)
    return model.extend_vocabulary(grown), grown
