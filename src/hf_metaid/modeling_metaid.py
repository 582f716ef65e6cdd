"""MetaIDForConditionalGeneration: T5 with META ID tokens, the representation augmentation F and the tree softmax.

Where F lives matters. It sits on the ENCODER STACK (a ``T5Stack`` subclass), which adds α·F(v_t) to the embeddings
of ID tokens inside its own forward. So the training forward, ``generate()`` (which calls the encoder directly),
``recommend()`` and PEFT-wrapped models all see the same encoder input, and the checkpoint holds F and the fixed
vectors v under ``encoder.metaid_augmentation``. (The original research code added F outside the encoder, so
``generate()`` silently skipped it; ``config.metaid_augment_generation = False`` reproduces that for comparison.)
"""

from __future__ import annotations

import contextlib
import copy
import math
import os

import torch
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration
from transformers import initialization as init
from transformers.models.t5.modeling_t5 import T5Stack
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple

from .chain_prior import INITIAL_PSEUDO_COUNT, MetaIDChainPrior, transition_codes
from .checks import check_choice, check_int
from .configuration_metaid import MODEL_OPTIONS, OPTION_NAMES, OPTIONS, MetaIDConfig, check_model_options
from .errors import InvalidArgumentError, VocabularyMismatchError
from .item_output import MetaIDItemInput, MetaIDItemOutput, regrow_item_rows
from .item_tree import ItemTree
from .recommendation import RecommendationMixin
from .repeat_bias import MetaIDRepeatBias, codes_read_before
from .tree_softmax import check_labels, next_token_table

# The options whose modules read the tokenizer's items (their item tables come from it).
ITEM_TABLE_OPTIONS = ("tree_softmax", "item_output", "item_input", "chain_prior")


class MetaIDAugmentation(nn.Module):
    """F: a trainable linear map from the fixed token vectors v (a buffer, saved with the weights) to ``d_model``.

    Computed over the whole (small) table at every call, so F always takes part in the graph (DDP needs that).
    """

    def __init__(self, num_tokens: int, vector_dim: int, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_model, vector_dim))
        self.bias = nn.Parameter(torch.empty(d_model))
        self.register_buffer("vectors", torch.zeros(num_tokens, vector_dim), persistent=True)

    def forward(self) -> torch.Tensor:
        return nn.functional.linear(self.vectors.to(self.weight.dtype), self.weight, self.bias)


class _ItemInputStack(T5Stack):
    """A T5 stack that may hold the items' own input vectors (``metaid_item_input``) and adds them to its input
    embeddings: the encoder's when the history is in the prompt, the decoder's when it is in the decoder (the model
    places it: ``MetaIDForConditionalGeneration.configure``)."""

    @property
    def has_item_input(self) -> bool:
        return "metaid_item_input" in self._modules

    def item_input_for(self, input_ids: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """The items' own vectors at ``input_ids`` (see :class:`MetaIDItemInput`)."""
        return self.metaid_item_input(input_ids, self.config.metaid_first_new_id, previous)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, MetaIDItemInput):
            init.zeros_(module.weight)  # an untrained item input changes nothing
            init.zeros_(module.item_mask)


class MetaIDEncoderStack(_ItemInputStack):
    """T5 encoder whose input embedding of ID token t is E[t] + α·F(v_t) (plus, with the item input and the history in
    the prompt, the item's own vector at the rank token of each item)."""

    def __init__(self, config: MetaIDConfig) -> None:
        super().__init__(config)
        self.metaid_augmentation = MetaIDAugmentation(
            config.metaid_num_new_tokens, config.metaid_vector_dim, config.d_model
        )
        self.augmentation_active = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, MetaIDAugmentation):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_factor * module.weight.shape[1] ** -0.5)
            init.zeros_(module.bias)
            init.zeros_(module.vectors)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
        if input_ids is not None and inputs_embeds is None:
            inputs_embeds = self.input_embeddings(input_ids)
            input_ids = None
        return super().forward(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
        )

    def input_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The encoder's input vectors for ``input_ids`` (…, L): E[t], + α·F(v_t) at ID tokens, + the item's own
        vector at an item's rank token where the encoder has the item input. The fast encoder reads the same."""
        embeddings = self.embed_tokens(input_ids)
        if self.augmentation_active:
            embeddings = embeddings + self.augmentation_for(input_ids)
        if self.has_item_input:
            embeddings = embeddings + self.item_input_for(input_ids)
        return embeddings

    def augmentation_for(self, input_ids: torch.Tensor) -> torch.Tensor:
        """α·F(v_t) for ID tokens, 0 for every other token; shape ``input_ids.shape + (d_model,)``."""
        projected = self.metaid_augmentation()  # (num_new_tokens, d_model)
        offsets = input_ids - self.config.metaid_first_new_id
        is_new = (offsets >= 0) & (offsets < projected.shape[0])
        gathered = projected[offsets.clamp(0, max(projected.shape[0] - 1, 0))]
        return self.config.metaid_alpha * gathered * is_new.unsqueeze(-1).to(gathered.dtype)

    @contextlib.contextmanager
    def augmentation_disabled(self):
        """Run the encoder without F (only to reproduce the original code's generation behaviour)."""
        previous, self.augmentation_active = self.augmentation_active, False
        try:
            yield
        finally:
            self.augmentation_active = previous


class MetaIDDecoderStack(_ItemInputStack):
    """T5 decoder that, with the item input and the history in the decoder, adds each history item's own vector at
    its rank token (as read from ``input_ids``; a token fed alone has no previous token here, which is right where
    it is fed alone: the cluster token of the item being decoded), and with ``metaid_augment_decoder`` α·F(v_t) at
    every ID token (F is the encoder's module). Otherwise T5's decoder as it is."""

    @property
    def reads_own_inputs(self) -> bool:
        """Whether the decoder's input vectors differ from T5's E[t], so every path must take them from
        :meth:`input_embeddings`."""
        return self.has_item_input or bool(getattr(self.config, "metaid_augment_decoder", False))

    def forward(self, input_ids=None, inputs_embeds=None, **kwargs):
        if self.reads_own_inputs and input_ids is not None and inputs_embeds is None:
            inputs_embeds = self.input_embeddings(input_ids)
            input_ids = None
        return super().forward(input_ids=input_ids, inputs_embeds=inputs_embeds, **kwargs)

    def input_embeddings(self, input_ids: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's input vectors for ``input_ids``: E[t], + α·F(v_t) at ID tokens with the decoder
        augmentation (unless generation skips F), + the item's own vector at an item's rank token where the decoder
        has the item input (``previous``: the token before each one, where it is not the one to its left, as for a
        beam fed one token per step). The fast decoder reads the same."""
        embeddings = self.embed_tokens(input_ids)
        owner = getattr(self, "augmentation_owner", None)
        if getattr(self.config, "metaid_augment_decoder", False) and owner is not None and owner.augmentation_active:
            embeddings = embeddings + owner.augmentation_for(input_ids).to(embeddings.dtype)
        if self.has_item_input:
            embeddings = embeddings + self.item_input_for(input_ids, previous).to(embeddings.dtype)
        return embeddings


class MetaIDForConditionalGeneration(RecommendationMixin, T5ForConditionalGeneration):
    """T5 seq2seq model over META ID tokens. Build with :meth:`from_base`, reload with the Auto classes; the
    recommendation API (``recommend``, ``recommend_batch``, the prompt format) comes from ``recommendation``."""

    config_class = MetaIDConfig
    # T5's forward takes **kwargs, so the Trainer would pass num_items_in_batch, T5 would ignore it, and the logged
    # loss and the gradients would come out multiplied by the world size (and the accumulation steps).
    accepts_loss_kwargs = False

    def __init__(self, config: MetaIDConfig) -> None:
        super().__init__(config)
        encoder_config = copy.deepcopy(config)
        encoder_config.is_decoder = False
        encoder_config.use_cache = False
        self.encoder = MetaIDEncoderStack(encoder_config)
        self.encoder.set_input_embeddings(self.shared)
        # T5's decoder as built (the same weights from the same random draws as before), with the META ID forward.
        self.decoder.__class__ = MetaIDDecoderStack
        # The decoder's F is the encoder's module, not one of the decoder's submodules (one set of weights, saved once).
        object.__setattr__(self.decoder, "augmentation_owner", self.encoder)
        self._build_option_modules()  # the item tables stay empty until a tokenizer or the saved weights fill them
        self.post_init()

    # --------------------------------------------------------------------------------------------- building
    @classmethod
    def from_base(
        cls,
        base: str | os.PathLike | T5Config | dict,
        tokenizer,
        *,
        init_new_rows: str = "resize",
        seed: int = 0,
        **options_and_from_pretrained_kwargs,
    ) -> MetaIDForConditionalGeneration:
        """A META ID model for ``tokenizer``'s ID vocabulary, from a T5 checkpoint or a T5 configuration, with any
        combination of the model's options.

        Args:
            base: a T5 checkpoint name or path (``"t5-small"``; weights are loaded, needs the Hub or a local copy),
                or a ``T5Config`` / dict of config fields (random initialisation, e.g. :func:`tiny_t5_config`).
            tokenizer: the :class:`MetaIDTokenizer` holding the entity vocabulary.
            init_new_rows: ``"resize"`` (transformers' default for new rows: the mean and covariance of the old
                rows) or ``"centroid"`` (each new row starts as a seeded random projection of its vector v_t,
                scaled to the mean norm of the old rows).
            seed: seed of the random initialisation (config path) and of the ``"centroid"`` projection.
            **options_and_from_pretrained_kwargs: the model's options by name (``alpha=0.1``, ``tree_softmax=True``,
                ``item_output=True``, ``history_in_decoder=True``, ``repeat_bias=True``, ...: every option of
                :class:`MetaIDConfig`, documented there), checked together by the config; an option not given keeps
                the base config's value where it records one, else its default. Other keywords go to
                ``from_pretrained`` (a checkpoint base only).

        Raises:
            InvalidArgumentError: a bad argument or option, options that break a rule between them (named), or a
                keyword that is no option for a configuration base.
        """
        vocabulary = getattr(tokenizer, "entity_vocabulary", None)
        if vocabulary is None:
            raise InvalidArgumentError(f"tokenizer must be a MetaIDTokenizer, got {type(tokenizer).__name__}")
        if not isinstance(base, (str, os.PathLike, T5Config, dict)):
            raise InvalidArgumentError(f"base must be a checkpoint name/path, a T5Config or a dict, got {base!r:.80}")
        check_choice("init_new_rows", init_new_rows, ("resize", "centroid"))
        check_int("seed", seed, minimum=0)
        from_pretrained_kwargs = dict(options_and_from_pretrained_kwargs)
        given = {name: from_pretrained_kwargs.pop(name) for name in OPTION_NAMES if name in from_pretrained_kwargs}
        given = {name: OPTIONS[name].check(value) for name, value in given.items()}  # before any download
        checkpoint = isinstance(base, (str, os.PathLike))
        if checkpoint:
            base_config = T5Config.from_pretrained(base).to_dict()
        else:
            base_config = base.to_dict() if isinstance(base, T5Config) else dict(base)
            if from_pretrained_kwargs:
                raise InvalidArgumentError(
                    f"from_base: unknown option(s) {', '.join(sorted(from_pretrained_kwargs))} (other keywords go to "
                    f"from_pretrained, for a checkpoint base); the model options are {', '.join(OPTION_NAMES)}"
                )
        recorded = {option.name: base_config[option.field] for option in MODEL_OPTIONS if option.field in base_config}
        options = check_model_options({**recorded, **given})
        item_vectors = options["item_output"] or options["item_input"] or options["chain_prior"]
        fields = {
            **{OPTIONS[name].field: value for name, value in options.items()},
            "metaid_vector_dim": vocabulary.vector_dim,
            "metaid_first_new_id": tokenizer.id_token_range.start,
            "metaid_num_new_tokens": len(tokenizer.id_token_range),
            "metaid_num_clusters": vocabulary.num_clusters,
            "metaid_vocab_fingerprint": vocabulary.fingerprint,
            "metaid_num_items": _item_count(tokenizer) if item_vectors else 0,
            "decoder_start_token_id": tokenizer.pad_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        config = MetaIDConfig(**{**_t5_fields(base_config), **fields})
        if checkpoint:
            model = cls.from_pretrained(base, config=config, **from_pretrained_kwargs)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # same config + seed → the same initial weights
                model = cls(config)
        old_rows = model.get_input_embeddings().weight.shape[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # new rows are sampled: seed them too
            model.resize_token_embeddings(max(len(tokenizer), old_rows))
        with torch.no_grad():
            model.encoder.metaid_augmentation.vectors.copy_(torch.from_numpy(vocabulary.token_vectors()))
            if init_new_rows == "centroid":
                model._init_rows_from_vectors(old_rows, seed)
        model.generation_config.decoder_start_token_id = tokenizer.pad_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model._build_option_modules(tokenizer)  # fills the item tables of the options on
        return model

    def _init_rows_from_vectors(self, old_rows: int, seed: int) -> None:
        weight = self.get_input_embeddings().weight
        vectors = self.encoder.metaid_augmentation.vectors
        generator = torch.Generator().manual_seed(seed)
        projection = torch.randn(vectors.shape[1], weight.shape[1], generator=generator).to(weight)
        rows = vectors.to(weight) @ projection
        target_norm = weight[: min(old_rows, self.config.metaid_first_new_id)].norm(dim=1).mean()
        rows = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12) * target_norm
        weight[self.config.metaid_token_range.start : self.config.metaid_token_range.stop] = rows

    # ------------------------------------------------------------------------------------------------- growth
    def extend_vocabulary(self, tokenizer) -> MetaIDForConditionalGeneration:
        """Grow the model, in place, to ``tokenizer``'s vocabulary, which must have grown from the model's by
        ``EntityVocabulary.extend`` (its token ids for the old ID tokens are the model's; ``extend_tokenizer``).

        What grows: the embedding rows (and an untied ``lm_head``'s) for the new rank tokens, F's table of fixed
        vectors (the new tokens' vectors from the vocabulary), the tree softmax's item table if it is on, and the
        config's token count and fingerprint. New rows start as the mean of the existing rank-token rows: a rank
        token is shared by every cluster, so it has no centroid of its own, and the mean scores a new item like a
        typical one of its cluster until training moves it (F still adds the token's own fixed vector).

        What stays equal: every existing token's rows and every other weight, bit for bit (spare rows past the old
        tokenizer's last token, which a checkpoint's table may hold, belong to no token and may become new tokens'
        rows), and the encoder input of any prompt made of old tokens. So an old prompt's logits for the old tokens
        are the same numbers (up to the floating-point order of a wider matrix product), and at each step every old
        token's log-probability moves by the same amount, ``log(1 - share)``, where ``share`` is the probability
        the new tokens take (with the tree softmax: what the new items' codes newly allow, e.g. their ranks after
        their cluster); on a checkpoint with spare rows those rows' old share leaves the sum too.

        A LoRA (PEFT) model is refused: its ID-token rows live in the adapter's own table; merge it first
        (``model.merge_and_unload()``), grow, and train again with or without LoRA.

        Raises:
            InvalidArgumentError: a PEFT-wrapped model.
            VocabularyMismatchError: the tokenizer's vocabulary did not grow from the model's, or moves its tokens.
        """
        embeddings = self.get_input_embeddings()
        if type(embeddings) is not nn.Embedding or type(self.encoder.metaid_augmentation) is not MetaIDAugmentation:
            raise InvalidArgumentError(
                "extend_vocabulary needs a full model; this one is wrapped (LoRA): call model.merge_and_unload() "
                "first, grow the merged model, then train again"
            )
        vocabulary = getattr(tokenizer, "entity_vocabulary", None)
        config = self.config
        if vocabulary is None or not vocabulary.descends_from(config.metaid_vocab_fingerprint):
            raise VocabularyMismatchError(
                f"the tokenizer's vocabulary {getattr(vocabulary, 'fingerprint', None)!r} did not grow from the "
                f"model's {config.metaid_vocab_fingerprint!r}; extend the vocabulary the model was built for"
            )
        old_count, new_count = config.metaid_num_new_tokens, len(tokenizer.id_token_range)
        start, ranks = config.metaid_first_new_id, config.metaid_first_new_id + config.metaid_num_clusters
        layout = (tokenizer.id_token_range.start, vocabulary.num_clusters)
        if layout != (start, config.metaid_num_clusters) or new_count < old_count:
            raise VocabularyMismatchError(
                f"the tokenizer moves the model's ID tokens: first id {start} -> {layout[0]}, clusters "
                f"{config.metaid_num_clusters} -> {layout[1]}, tokens {old_count} -> {new_count}"
            )
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            if start + new_count > embeddings.weight.shape[0]:
                self.resize_token_embeddings(start + new_count, mean_resizing=False)
            tables = {self.get_input_embeddings().weight}
            if self.get_output_embeddings() is not None:
                tables.add(self.get_output_embeddings().weight)
            for weight in tables:
                weight[start + old_count : start + new_count] = weight[ranks : start + old_count].mean(dim=0)
            augmentation = self.encoder.metaid_augmentation
            fresh = torch.from_numpy(vocabulary.token_vectors()[old_count:]).to(augmentation.vectors)
            augmentation.vectors = torch.cat([augmentation.vectors, fresh])
        old_items = self.metaid_item_mask.clone() if "metaid_item_mask" in self._buffers else None
        config.metaid_num_new_tokens = new_count
        config.metaid_vocab_fingerprint = vocabulary.fingerprint
        self._metaid_item_tree = None
        self._grow_item_vectors(tokenizer, old_items)
        if config.metaid_tree_softmax:
            self._fill_item_mask(tokenizer)
        return self

    def _grow_item_vectors(self, tokenizer, old_items: torch.Tensor | None) -> None:
        """The items' own vectors (item output, item input) for a grown vocabulary: every old item keeps its vector
        and bias, bit for bit (under its new number: items are numbered in (cluster, rank) order, so new items fall
        in between), and a new item starts at zero, i.e. scored by its shared ID tokens alone until it trains."""
        config = self.config
        if not (config.metaid_item_output or config.metaid_item_input or config.metaid_chain_prior):
            return
        new_items = self._item_table(tokenizer)
        with torch.no_grad():
            if config.metaid_item_output:
                module = self.metaid_item_output
                module.weight = nn.Parameter(regrow_item_rows(module.weight, old_items, new_items))
                module.bias = nn.Parameter(regrow_item_rows(module.bias, old_items, new_items))
                module._tables = None
                self._fill_item_mask(tokenizer)
            if config.metaid_item_input:
                module = self.item_input_stack.metaid_item_input
                module.weight = nn.Parameter(regrow_item_rows(module.weight, module.item_mask, new_items))
                module.item_mask = new_items.to(module.item_mask.device)
                module._index = None
            if config.metaid_chain_prior:
                self.metaid_chain_prior.regrow(new_items)
        self._set_stack_fields(metaid_num_items=int(new_items.sum()))

    # ------------------------------------------------------------------------------------------- tree softmax
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is self and "metaid_item_mask" in self._buffers:
            init.zeros_(self.metaid_item_mask)  # an empty table is refused at use: it must come from a tokenizer
        if isinstance(module, MetaIDItemOutput):
            init.zeros_(module.weight)  # an untrained item output changes no logit
            init.zeros_(module.bias)
        if isinstance(module, (MetaIDRepeatBias, MetaIDChainPrior)):
            init.zeros_(module.weight)  # an untrained repeat bias or chain prior changes no logit
        if isinstance(module, MetaIDChainPrior):
            init.constant_(module.log_pseudo_count, math.log(INITIAL_PSEUDO_COUNT))
            if "decay_logit" in module._parameters:
                init.zeros_(module.decay_logit)  # the earlier items' decay ρ starts at 1/2

    def _register_item_mask(self) -> None:
        clusters = self.config.metaid_num_clusters
        shape = (clusters, self.config.metaid_num_new_tokens - clusters)
        # uint8, not bool: DDP broadcasts buffers, and gloo has no bool type.
        self.register_buffer("metaid_item_mask", torch.zeros(shape, dtype=torch.uint8), persistent=True)

    # ------------------------------------------------------------------------------------------------ options
    def configure(self, tokenizer=None, **options) -> MetaIDForConditionalGeneration:
        """Change any of the model's options (by name, as :class:`MetaIDConfig` documents them), in place.

        The config as it would be is checked first (each option, and the option each one needs: options that need
        each other change together, e.g. ``configure(history_in_decoder=True, repeat_bias=True)``), so a refused
        call changes nothing. Then every option's modules follow the config whatever the order of earlier calls: an
        option on gets its modules (the item tables filled from ``tokenizer``'s items), an option off loses them, and
        a module already there keeps its weights (the item input moves, with them, to the stack that reads the
        history). ``tokenizer`` is needed to turn on an option that reads the items (``tree_softmax``,
        ``item_output``, ``item_input``) and refused if built for another vocabulary. Returns the model.

        Raises:
            InvalidArgumentError: an unknown option, a bad value, a rule between options broken (named), or no
                tokenizer for an option that needs its items.
            VocabularyMismatchError: a tokenizer of another ID vocabulary.
        """
        if tokenizer is not None:
            self.check_tokenizer(tokenizer)
        changes = self.config.check_options(**options)
        prior = self._modules.get("metaid_chain_prior")
        reach = changes.get("chain_prior_earlier", self.config.metaid_chain_prior_earlier)
        if (
            prior is not None
            and not isinstance(prior, MetaIDChainPrior)
            and reach != getattr(getattr(prior, "original_module", None), "earlier", reach)
        ):  # a PEFT copy would keep its trained reach while the config said another
            raise InvalidArgumentError(
                "chain_prior_earlier cannot change while the chain prior is wrapped for training (LoRA's "
                "modules_to_save): configure it on the base model before wrapping"
            )
        if tokenizer is None:
            config = self.config
            missing = [
                name for name in ITEM_TABLE_OPTIONS if changes.get(name) and not getattr(config, OPTIONS[name].field)
            ]
            if missing:
                raise InvalidArgumentError(
                    f"{', '.join(missing)} reads the tokenizer's items: pass it, "
                    f"model.configure(tokenizer, {', '.join(f'{name}=True' for name in missing)})"
                )
        self._set_stack_fields(**{OPTIONS[name].field: value for name, value in changes.items()})
        self._build_option_modules(tokenizer)
        return self

    def set_tree_softmax(self, tokenizer, enabled: bool = True) -> None:
        """Switch the item-tree softmax on (or off) for ``tokenizer``'s items: ``configure(tokenizer,
        tree_softmax=enabled)``.

        On, the decoder's logits are -inf wherever the previous token rules a token out (after the start token:
        clusters holding items; after cluster c: the rank tokens of c's items; after a rank token: the end, or with
        the history in the decoder the next item's cluster), in the training loss, ``generate`` and ``recommend``
        alike. The training objective is then the probability of the target among real items, and a small model no
        longer spends its capacity learning which IDs exist. The item table is a buffer saved with the weights.
        """
        self.configure(tokenizer, tree_softmax=enabled)

    def set_item_output(self, tokenizer, enabled: bool = True) -> None:
        """Give every item of ``tokenizer``'s vocabulary its own output vector at the rank step (or remove them):
        ``configure(tokenizer, item_output=enabled)``.

        On, the logit of rank token r after cluster token c gets ``h · u_i + b_i`` for the item i = (c, r)
        (:mod:`hf_metaid.item_output`), in the training loss, ``generate`` and ``recommend`` alike; u and b start at
        zero (the model's scores are unchanged until it trains) and are saved with the weights, with the item table
        that numbers them. LoRA trains them in full.
        """
        self.configure(tokenizer, item_output=enabled)

    def set_item_input(self, tokenizer, enabled: bool = True) -> None:
        """Give every item of ``tokenizer``'s vocabulary its own input vector where the history is read (or take
        them away): ``configure(tokenizer, item_input=enabled)``.

        On, the input embedding of the rank token that follows cluster token c gets w_i for the item i = (c, r)
        (:class:`~hf_metaid.item_output.MetaIDItemInput`), so a history item reaches the model as itself and not
        only as a cluster and a rank shared with other items: in the encoder, or with the history in the decoder
        in the decoder, where the rank token of history item n predicts item n + 1. w starts at zero and is saved
        with the weights, with the item table that numbers it. LoRA trains it in full.
        """
        self.configure(tokenizer, item_input=enabled)

    def set_repeat_bias(self, enabled: bool = True) -> None:
        """Add (or remove) the learned score β of the items the decoder has already read (:mod:`hf_metaid.repeat_bias`):
        ``configure(repeat_bias=enabled)``.

        On, the rank-step logit of every item read earlier in the decoder's sequence gets β, in the training loss
        (and the all-items objective), ``generate`` and ``recommend`` alike; β starts at 0 and is saved with the
        weights. It needs the history in the decoder, where the sequence holds the items read
        (``configure(history_in_decoder=True, repeat_bias=True)`` sets both). LoRA trains it in full (turn it on
        before wrapping the model: ``lora_config`` lists it). It acts at the rank step: with the tree softmax, which
        normalises that step over the cluster's items, it reorders read items against the unread ones of their
        cluster but cannot lower the cluster's own probability (and has no effect where every item of the cluster
        was read).
        """
        self.configure(repeat_bias=enabled)

    def set_chain_prior(self, tokenizer, sequences=None, successors: int = 50, earlier: int | None = None) -> None:
        """Give the model the item chain's counts as a learned prior (:mod:`hf_metaid.chain_prior`), or take it away
        (``successors=0``, which takes ``chain_prior_earlier`` with it): ``configure(tokenizer,
        chain_prior=successors, chain_prior_earlier=earlier)``, then the counts of ``sequences``. ``earlier``: how
        many items before the last lend their followers too (None: as the config has it).

        ``sequences``: each user's training items (raw ids) in order (the training run passes its split's); items
        the vocabulary lacks are skipped. On, the decoder's cluster and rank steps get
        ``γ log(1 + n / (a p))`` of the transitions from the last item read (n read against the item's popularity p
        with a learned pseudo-count a), in the training loss (each target's own
        transition left out), ``generate`` and ``recommend`` alike; γ starts at 0, and the counts and γ are saved with
        the weights. It needs the history in the decoder. LoRA trains γ in full.
        """
        reach = {} if earlier is None and successors else {"chain_prior_earlier": earlier or 0}
        self.configure(tokenizer, chain_prior=successors, **reach)
        if successors and sequences is not None:
            self.count_transitions(tokenizer, sequences)

    def count_transitions(self, tokenizer, sequences) -> int:
        """Set the chain prior's counts from ``sequences`` (each a user's training items, raw ids, in order; items
        the vocabulary lacks are skipped); returns how many transitions were counted.

        Raises:
            InvalidArgumentError: the model has no chain prior.
        """
        if not self.config.metaid_chain_prior:
            raise InvalidArgumentError("the model has no chain prior: configure(tokenizer, chain_prior=50) first")
        self.check_tokenizer(tokenizer)
        vocabulary = tokenizer.entity_vocabulary
        coded = [[vocabulary.item_code(item) for item in items if vocabulary.has_item(item)] for items in sequences]
        pairs = transition_codes(coded, vocabulary.num_ranks)
        self.metaid_chain_prior.set_counts(pairs, self._item_table(tokenizer))
        return len(pairs)

    @property
    def item_input_stack(self) -> _ItemInputStack:
        """Where the item input lives: the stack that reads the history (the decoder with
        ``config.metaid_history_in_decoder``, else the encoder)."""
        return self.decoder if self.config.metaid_history_in_decoder else self.encoder

    def _build_option_modules(self, tokenizer=None) -> None:
        """Make the modules and buffers match the config's options, whatever order they were set in: what an option
        on needs is added (its item tables filled from ``tokenizer``'s items where given, else left for the saved
        weights), what an option off leaves unused is removed, and a module already there is kept with its weights
        (and any PEFT wrapper)."""
        config = self.config
        device = self.shared.weight.device
        table = None if tokenizer is None else self._item_table(tokenizer)
        self._metaid_tree_table = None
        if config.metaid_tree_softmax or config.metaid_item_output:
            if "metaid_item_mask" not in self._buffers:
                self._register_item_mask()
            if table is not None:
                self.metaid_item_mask = table
        else:
            self._buffers.pop("metaid_item_mask", None)
        if table is not None and (config.metaid_item_output or config.metaid_item_input or config.metaid_chain_prior):
            self._set_num_items(int(table.sum()))
        if not config.metaid_item_output:
            self._modules.pop("metaid_item_output", None)
        elif "metaid_item_output" not in self._modules:
            self.metaid_item_output = MetaIDItemOutput(config.metaid_num_items, config.d_model).to(device)
        reader = self.item_input_stack
        other = self.encoder if reader is self.decoder else self.decoder
        module = other._modules.pop("metaid_item_input", None)
        if not config.metaid_item_input:
            reader._modules.pop("metaid_item_input", None)
        elif "metaid_item_input" not in reader._modules:
            clusters = config.metaid_num_clusters
            if module is None:
                ranks = config.metaid_num_new_tokens - clusters
                module = MetaIDItemInput(config.metaid_num_items, config.d_model, clusters, ranks).to(device)
            reader.metaid_item_input = module
        if config.metaid_item_input and table is not None and isinstance(reader.metaid_item_input, MetaIDItemInput):
            reader.metaid_item_input.item_mask.copy_(table)
        if not config.metaid_repeat_bias:
            self._modules.pop("metaid_repeat_bias", None)
        elif "metaid_repeat_bias" not in self._modules:
            self.metaid_repeat_bias = MetaIDRepeatBias().to(device)
        prior = self._modules.get("metaid_chain_prior")
        if not config.metaid_chain_prior:
            self._modules.pop("metaid_chain_prior", None)
        elif (
            prior is None
            or getattr(prior, "followers", None) is None
            or prior.followers.shape[1] != config.metaid_chain_prior
        ):
            clusters = config.metaid_num_clusters
            ranks = config.metaid_num_new_tokens - clusters
            self.metaid_chain_prior = MetaIDChainPrior(
                config.metaid_num_items, config.metaid_chain_prior, clusters, ranks, config.metaid_chain_prior_earlier
            ).to(device)
        if config.metaid_chain_prior and isinstance(self.metaid_chain_prior, MetaIDChainPrior):
            self.metaid_chain_prior.set_earlier(config.metaid_chain_prior_earlier)  # kept counts, another reach
            if table is not None:
                self.metaid_chain_prior.item_mask.copy_(table)

    def _set_stack_fields(self, **fields) -> None:
        """Set config fields on the model and on both stacks' own copies of the config."""
        for config in (self.config, self.encoder.config, self.decoder.config):
            for name, value in fields.items():
                setattr(config, name, value)

    def _set_num_items(self, count: int) -> None:
        if self.config.metaid_num_items not in (0, count):
            raise VocabularyMismatchError(
                f"the model holds {self.config.metaid_num_items} items, the tokenizer {count}"
            )
        self._set_stack_fields(metaid_num_items=count)

    def _fill_item_mask(self, tokenizer) -> torch.Tensor:
        """The (cluster, rank) → is-an-item table of ``tokenizer``, as the saved buffer ``metaid_item_mask``."""
        if "metaid_item_mask" not in self._buffers:
            self._register_item_mask()
        self.metaid_item_mask = self._item_table(tokenizer)
        self._metaid_tree_table = None
        return self.metaid_item_mask

    def _item_table(self, tokenizer) -> torch.Tensor:
        """``(clusters, ranks)`` uint8, 1 where (cluster, rank) is one of ``tokenizer``'s items, on the model's device:
        what the tree softmax masks by and what numbers the items' own vectors."""
        table = (self.item_tree(tokenizer).item_of_code >= 0).to(torch.uint8)
        return table.to(self.get_input_embeddings().weight.device)

    def next_token_bias(self, tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """The tree softmax's additive bias (0 or -inf, float32) on the logits that follow ``tokens``: shape
        ``tokens.shape + (vocab_size,)``. Built once from the item table, rebuilt if it changes."""
        mask = self.metaid_item_mask
        rank_continues = self.config.metaid_history_in_decoder
        key = (id(mask), mask._version, mask.device, vocab_size, rank_continues)
        cached = getattr(self, "_metaid_tree_table", None)
        if cached is None or cached[0] != key:
            if not bool(mask.any()):  # e.g. a config with the option on but no saved table
                raise ValueError("the tree softmax's item table is empty: call model.set_tree_softmax(tokenizer)")
            config = self.config
            table = next_token_table(
                mask,
                first_cluster_token=config.metaid_first_new_id,
                first_rank_token=config.metaid_first_new_id + config.metaid_num_clusters,
                start_token=config.decoder_start_token_id,
                eos_token=config.eos_token_id,
                vocab_size=vocab_size,
                rank_continues=rank_continues,
            )
            cached = self._metaid_tree_table = (key, *table)
        _, table, row_of = cached
        return table[row_of[tokens.to(row_of.device)]]

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # as T5: old callers keep their cache
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        cache=None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        labels=None,
        use_cache=None,
        **kwargs,
    ):
        """T5's forward (same parameters, which ``generate`` inspects); with the tree softmax, the item output or the
        repeat bias, the
        logits carry them (:meth:`adjust_logits`) and the loss is taken over them."""
        config = self.config
        if labels is not None and config.metaid_item_loss and not config.metaid_item_output:
            config.check_options()  # a config written by hand breaks a rule: raise it rather than train without it
        # generate feeds one new token per step after the first: the whole sequence comes beside it (see
        # prepare_inputs_for_generation), for the repeat bias to see the items read before.
        sequence = kwargs.pop("metaid_decoder_sequence", None)
        adjusted = (
            config.metaid_tree_softmax
            or config.metaid_item_output
            or config.metaid_repeat_bias
            or config.metaid_chain_prior
        )
        if adjusted and decoder_input_ids is None:
            if labels is None or decoder_inputs_embeds is not None:
                raise ValueError(
                    "the tree softmax, the item output, the repeat bias and the chain prior need decoder_input_ids "
                    "or labels (they read the previous tokens)"
                )
            decoder_input_ids = self._shift_right(labels)
        captured: list[torch.Tensor] = []
        hook = (
            self.lm_head.register_forward_hook(lambda _module, args, _out: captured.append(args[0]))
            if config.metaid_item_output
            else None
        )
        try:
            output = super().forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                decoder_input_ids=decoder_input_ids,
                decoder_attention_mask=decoder_attention_mask,
                encoder_outputs=encoder_outputs,
                cache=cache,
                inputs_embeds=inputs_embeds,
                decoder_inputs_embeds=decoder_inputs_embeds,
                labels=None if adjusted else labels,
                use_cache=use_cache,
                return_dict=True,
                **kwargs,
            )
        finally:
            if hook is not None:
                hook.remove()
        if not adjusted:
            return output
        followers = None
        if config.metaid_chain_prior:  # while training, each target's own transition leaves its count
            context = (decoder_input_ids if sequence is None else sequence).to(output.logits.device)
            followers = self.metaid_chain_prior.followers_at(
                context, decoder_input_ids.to(context.device), config.metaid_first_new_id, labels
            )
        output.logits = self.adjust_logits(
            output.logits, captured[-1] if captured else None, decoder_input_ids, sequence, followers
        )
        if labels is not None:
            labels = labels.to(output.logits.device)
            if config.metaid_tree_softmax:
                check_labels(output.logits, labels)
            output.loss = nn.functional.cross_entropy(output.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
            if config.metaid_item_loss:  # the config's rules make it come with the item output
                output.loss = output.loss + config.metaid_item_loss * self.metaid_item_output.all_items_loss(
                    captured[-1],
                    labels,
                    self.metaid_item_mask,
                    config.metaid_first_new_id,
                    config.metaid_item_loss_negatives,
                    self._read_items(decoder_input_ids.to(labels.device)),
                    None if followers is None else (followers[0], self.metaid_chain_prior.item_scores(*followers)),
                )
        return output

    def adjust_logits(
        self,
        logits: torch.Tensor,
        hidden: torch.Tensor | None,
        previous: torch.Tensor,
        sequence: torch.Tensor | None = None,
        followers: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The language-model head's ``logits`` (…, T, V) with the item output's scores, the repeat bias, the chain
        prior and the tree softmax's bias added, float32. ``hidden`` is what the head read (for the item output),
        ``previous`` (…, T) the token each position follows, ``sequence`` the decoder's tokens read so far for the
        repeat bias and the chain prior: (…, S) ending with ``previous``, or (…, T, S) one per position (a beam's)
        ending with its token; default ``previous``. ``followers``: the chain prior's ``(followers, counts)`` at each
        position where the caller has them (the training forward's, with each target's own transition out), else
        read from ``sequence``. The model's forward and the fast decoder both call it, so every decoding path scores
        alike."""
        config = self.config
        logits = logits.float()
        first, clusters, ranks = self._id_layout()
        if config.metaid_item_output:
            logits = self.metaid_item_output(logits, hidden, previous, self.metaid_item_mask, first, first + clusters)
        if config.metaid_repeat_bias:
            sequence = (previous if sequence is None else sequence).to(logits.device)
            per_position = sequence.dim() > previous.dim()  # (…, T, S): one sequence per position, e.g. per beam
            logits = self.metaid_repeat_bias(
                logits.unsqueeze(-2) if per_position else logits, sequence, first, clusters, ranks
            )
            logits = logits.squeeze(-2) if per_position else logits
        if config.metaid_chain_prior:
            prior = self.metaid_chain_prior
            if followers is None:
                context = (previous if sequence is None else sequence).to(logits.device)
                followers = prior.followers_at(context, previous.to(logits.device), first)
            logits = prior(logits, previous, *followers, first)
        if config.metaid_tree_softmax:
            logits = logits + self.next_token_bias(previous, logits.shape[-1]).to(logits.device)
        return logits

    def _read_items(self, decoder_input_ids: torch.Tensor) -> tuple[nn.Module, torch.Tensor] | None:
        """What the all-items objective needs for the repeat bias: the module and, per position of the decoder's
        inputs, the codes of the items read up to it (None without the repeat bias)."""
        if not self.config.metaid_repeat_bias:
            return None
        return self.metaid_repeat_bias, codes_read_before(decoder_input_ids, *self._id_layout())

    def _id_layout(self) -> tuple[int, int, int]:
        """``(first cluster token id, clusters, ranks)``: where the ID tokens sit in the vocabulary."""
        config = self.config
        clusters = config.metaid_num_clusters
        return config.metaid_first_new_id, clusters, config.metaid_num_new_tokens - clusters

    def prepare_inputs_for_generation(self, input_ids, *args, **kwargs):
        """GenerationMixin's inputs, plus (with the repeat bias) the decoder's whole sequence so far: with a cache
        ``generate`` feeds only the newest token, and the repeat bias must see the items read before it."""
        inputs = super().prepare_inputs_for_generation(input_ids, *args, **kwargs)
        if self.config.metaid_repeat_bias or self.config.metaid_chain_prior:
            inputs["metaid_decoder_sequence"] = input_ids
        return inputs

    # ------------------------------------------------------------------------------------------------ pairing
    def check_tokenizer(self, tokenizer) -> None:
        """Refuse a tokenizer built for another ID vocabulary (the message shows both fingerprints)."""
        vocabulary = getattr(tokenizer, "entity_vocabulary", None)
        if vocabulary is None:
            raise VocabularyMismatchError(f"{type(tokenizer).__name__} has no META ID vocabulary; use MetaIDTokenizer")
        config = self.config
        mine = (config.metaid_vocab_fingerprint, config.metaid_num_new_tokens, config.metaid_first_new_id)
        theirs = (vocabulary.fingerprint, len(tokenizer.id_token_range), tokenizer.id_token_range.start)
        if mine != theirs:
            raise VocabularyMismatchError(
                "tokenizer and model were built for different ID vocabularies: "
                f"model fingerprint {mine[0]!r} ({mine[1]} ID tokens from id {mine[2]}), "
                f"tokenizer fingerprint {theirs[0]!r} ({theirs[1]} ID tokens from id {theirs[2]})"
            )

    # --------------------------------------------------------------------------------------------- generation
    def generate(self, *args, **kwargs):
        if self.config.metaid_augment_generation:
            return super().generate(*args, **kwargs)
        with self.encoder.augmentation_disabled():
            return super().generate(*args, **kwargs)


def _item_count(tokenizer) -> int:
    """How many items ``tokenizer``'s vocabulary spells (the rows of the items' own vectors)."""
    return int((ItemTree.from_tokenizer(tokenizer).item_of_code >= 0).sum())


def _t5_fields(config: dict) -> dict:
    """The fields of a T5 config dict that a MetaIDConfig takes (drops names the strict dataclass refuses)."""
    allowed = set(MetaIDConfig.__dataclass_fields__) | {"tie_word_embeddings"}
    skip = {"model_type", "architectures", "transformers_version", "auto_map"}
    return {key: value for key, value in config.items() if key in allowed and key not in skip}
