"""MetaIDConfig: a T5 configuration plus every field needed to rebuild the META ID augmentation exactly."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import T5Config


@strict
class MetaIDConfig(T5Config):
    r"""
    Configuration of :class:`MetaIDForConditionalGeneration`: all of :class:`~transformers.T5Config`, plus

    metaid_alpha (`float`, defaults to 0.1):
        Weight α of the representation augmentation: the encoder input of a new token t is E[t] + α·F(v_t).
        0.1 in every released META ID run.
    metaid_vector_dim (`int`, defaults to 64):
        Dimension of the fixed vectors v_t (cluster centroids, rank-token vectors) that F maps to `d_model`.
    metaid_first_new_id (`int`, defaults to 0):
        Token id of the first new (ID) token; the new tokens occupy `[first, first + metaid_num_new_tokens)`.
    metaid_num_new_tokens (`int`, defaults to 0):
        Number of ID tokens (cluster tokens, then rank tokens). 0 means a plain T5 with no augmentation.
    metaid_num_clusters (`int`, defaults to 0):
        How many of the new tokens are cluster tokens (the first level of every ID).
    metaid_vocab_fingerprint (`str`, defaults to `""`):
        Fingerprint of the entity vocabulary the model was built for; a tokenizer with another one is refused.
    metaid_augment_generation (`bool`, defaults to `True`):
        Apply F during `generate()` and `recommend()` too. `False` reproduces the original research code, where F
        acted in training only (HF `generate()` bypassed it); keep it for comparisons, not for use.
    metaid_prompt_templates (`dict`, *optional*):
        The prompt templates the model was trained with, shaped like `hf_metaid.prompt_templates.TEMPLATES`
        (`{task: {"seen": [...], "unseen": [...]}}`). `recommend()` and evaluation default to them, so a model
        trained on its own templates is queried the way it learned. `None`: the library's OpenP5-style templates.
    metaid_max_history (`int`, defaults to 10):
        How many of the latest history items a sequential prompt showed in training (the default at inference).
    metaid_tree_softmax (`bool`, defaults to `False`):
        Normalise every step of an item ID over the tokens that can follow in a real item ID (the item table is a
        buffer saved with the weights); see `MetaIDForConditionalGeneration.set_tree_softmax`. `False`: the
        paper's softmax over the whole vocabulary.
    metaid_history_in_decoder (`bool`, defaults to `False`):
        Where the history goes. `False` (the paper's prompt mode): the encoder reads a sequential prompt that lists
        the latest `metaid_max_history` history items, and the decoder writes one item. `True`: the encoder reads
        the user alone (the direct task's template) and the DECODER reads the latest `metaid_max_history` history
        items' ID tokens as its prefix `[start, c1, r1, ..., cn, rn]`, then writes the next item's two tokens. In
        training every position of the sequence is a target, so one forward pass learns every next item of a user
        (see `hf_metaid.build_decoder_history_examples`); `recommend` and evaluation feed the history to the
        decoder the same way.
    metaid_augment_decoder (`bool`, defaults to `False`):
        Add α·F(v_t) to the decoder's input vector of ID token t too (the encoder always has it). With the history
        in the decoder, that is where a model reads the items it conditions on; the research code, whose history
        was in the prompt, augmented the encoder only. `generate` with `metaid_augment_generation=False` skips it
        as it skips the encoder's.
    metaid_item_output (`bool`, defaults to `False`):
        The item-aware rank step: the logit of rank token r after cluster token c gets `h · u_i + b_i`, where
        u_i, b_i are item i = (c, r)'s own output vector and bias (see `hf_metaid.item_output`), so the items of
        one cluster stop sharing one output row per rank. `False`: the paper's rank step.
    metaid_item_input (`bool`, defaults to `False`):
        The encoder embedding of an item's rank token (the one after its cluster token) gets the item's own vector
        w_i, so the encoder reads which item, not only which cluster and which rank (see `hf_metaid.item_output`).
    metaid_item_loss (`float`, defaults to 0.0):
        Weight of a second training objective beside the two-token one: each target item's cross-entropy over every
        item, scored with the item output's vectors from the state that predicts its cluster token (see
        `MetaIDItemOutput.all_items_loss`). Needs `metaid_item_output`; 0: the two-token objective alone.
    metaid_item_loss_negatives (`int`, defaults to 0):
        With `metaid_item_loss`: score each target against the batch's targets plus this many items drawn uniformly
        instead of every item (cheaper on a large catalogue); 0: every item.
    metaid_repeat_bias (`bool`, defaults to `False`):
        With the history in the decoder: a learned scalar β added to the rank-step logit (and the all-items score) of
        every item the decoder has already read in the sequence, so the model learns from the data whether users
        take an item again (see `hf_metaid.repeat_bias`). `False`: read items are scored like any other.
    metaid_num_items (`int`, defaults to 0):
        How many items the item output and the item input hold (their rows), numbered over the item table.
    """

    model_type = "metaid"

    metaid_alpha: float = 0.1
    metaid_vector_dim: int = 64
    metaid_first_new_id: int = 0
    metaid_num_new_tokens: int = 0
    metaid_num_clusters: int = 0
    metaid_vocab_fingerprint: str = ""
    metaid_augment_generation: bool = True
    metaid_prompt_templates: dict | None = None
    metaid_max_history: int = 10
    metaid_tree_softmax: bool = False
    metaid_history_in_decoder: bool = False
    metaid_augment_decoder: bool = False
    metaid_item_output: bool = False
    metaid_item_input: bool = False
    metaid_item_loss: float = 0.0
    metaid_item_loss_negatives: int = 0
    metaid_repeat_bias: bool = False
    metaid_num_items: int = 0

    @property
    def metaid_token_range(self) -> range:
        """Token ids of the ID tokens."""
        return range(self.metaid_first_new_id, self.metaid_first_new_id + self.metaid_num_new_tokens)
