"""The item output (each item's own output vector at the rank step): its arithmetic, every decoding path reading it
alike, training, saving (full, LoRA, remote code) and the history-in-decoder mode."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

import hf_metaid as hm
from conftest import fixed_batch, logits_of, quiet_args, tiny_model, with_item_vectors
from hf_metaid.decoding import _encoder_states, decode_items
from hf_metaid.item_output import MetaIDItemOutput
from hf_metaid.training.collator import MetaIDDataCollator
from hf_metaid.training.trainer import build_trainer, lora_config
from ranking_checks import assert_same_ranking, assert_same_recommendations
from test_decoder_history import (
    assert_prefix_paths_agree,
    decode,
    decoder_pair,
    histories,
    prefixes,
    user_prompts,
)
from test_decoding import (
    SHAPES,
    assert_beam_parity,
    assert_encoder_states_close,
    brute_force_scores,
    make_pair,
    prompts,
)


def item_pair(shape, tree_softmax=False, input=False):
    tokenizer, model = make_pair(shape, tree_softmax=tree_softmax)
    return tokenizer, with_item_vectors(model, tokenizer, seed=shape[0], input=input)


def decoder_states(model, batch, decoder_input_ids) -> torch.Tensor:
    """What the language-model head reads at every decoder position (T5's scaled final decoder state)."""
    seen = []
    hook = model.lm_head.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    with torch.no_grad():
        model(**batch, decoder_input_ids=decoder_input_ids)
    hook.remove()
    return seen[0]


# ------------------------------------------------------------------------------------------------- arithmetic
@pytest.mark.numerics
def test_untrained_item_output_changes_no_logit():
    tokenizer, plain = make_pair(SHAPES[0])
    _, model = make_pair(SHAPES[0], item_output=True)
    assert model.config.metaid_num_items == len(tokenizer.entity_vocabulary.items)
    batch = prompts(tokenizer)
    start = torch.zeros(len(batch["input_ids"]), 1, dtype=torch.long)
    steps = torch.cat([start, torch.full_like(start, tokenizer.cluster_token_ids[1])], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(
            model(**batch, decoder_input_ids=steps).logits, plain(**batch, decoder_input_ids=steps).logits
        )


@pytest.mark.numerics
def test_rank_logits_after_a_cluster_gain_each_items_own_score():
    """logit(rank r | cluster c) = plain logit + h · u_i + b_i for the item i = (c, r); every other logit as plain."""
    tokenizer, model = item_pair(SHAPES[1])
    vocabulary = tokenizer.entity_vocabulary
    tree = model.item_tree(tokenizer)
    batch = prompts(tokenizer, count=1)
    clusters = sorted({int(c) for c, _ in vocabulary.item_codes})
    start = torch.zeros(len(clusters), 1, dtype=torch.long)
    steps = torch.cat([start, torch.tensor(clusters).unsqueeze(1) + tokenizer.cluster_token_ids.start], dim=1)
    repeated = {key: value.expand(len(clusters), -1) for key, value in batch.items()}
    with torch.no_grad():
        adjusted = model(**repeated, decoder_input_ids=steps).logits
        states = decoder_states(model, repeated, steps)
        plain = model.lm_head(states).float()
    # the item numbering is (cluster, rank) order; the item output's row i belongs to the i-th item in that order
    ordered = sorted(range(len(vocabulary.items)), key=lambda n: tuple(vocabulary.item_codes[n]))
    expected = plain.clone()
    weight, bias = model.metaid_item_output.weight, model.metaid_item_output.bias
    for row, item in enumerate(ordered):
        cluster, rank = (int(x) for x in vocabulary.item_codes[item])
        position = clusters.index(cluster)
        column = tokenizer.rank_token_ids.start + rank
        expected[position, 1, column] += states[position, 1] @ weight[row] + bias[row]
    torch.testing.assert_close(adjusted, expected, rtol=1e-5, atol=1e-5)
    assert tree.items  # the tree the decoders use holds the same items
    assert not torch.equal(adjusted, plain)


@pytest.mark.numerics
def test_sliced_and_gathered_item_scores_agree(monkeypatch):
    """Few clusters: each scored with a slice of u; many (independent IDs): rows gathered. Same logits and gradients."""
    from hf_metaid import item_output

    tokenizer, model = item_pair(SHAPES[1])
    batch = prompts(tokenizer)
    clusters = torch.tensor(sorted({int(c) for c, _ in tokenizer.entity_vocabulary.item_codes}))
    steps = torch.stack([torch.zeros_like(clusters), clusters + tokenizer.cluster_token_ids.start], dim=1)
    rows = {key: value[:1].expand(len(clusters), -1) for key, value in batch.items()}
    results = []
    for cost in (0, 10**9):  # every cluster sliced, then every row gathered
        monkeypatch.setattr(item_output, "SLICE_COST", cost)
        model.zero_grad()
        logits = model(**rows, decoder_input_ids=steps).logits
        (logits.float() ** 2).mean().backward()
        results.append((logits.detach(), model.metaid_item_output.weight.grad.clone()))
    assert len(clusters) > 1
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)


def test_the_scoring_path_follows_the_measured_cost():
    """item_output_paths.md: a few wide clusters are sliced (META ID at K = 200: 181 clusters among 1,280 positions,
    the widest of 1,159 items), many narrow ones gathered (K = 400: 308 of at most 468; IID: one item each)."""
    from hf_metaid.item_output import slices_are_cheaper

    assert slices_are_cheaper(181, 1280, 1159) and slices_are_cheaper(98, 1280, 1439)
    assert not slices_are_cheaper(308, 1280, 468) and not slices_are_cheaper(1093, 1280, 1)


def test_item_output_for_another_vocabulary_is_refused():
    tokenizer, model = item_pair(SHAPES[0])
    other, _ = make_pair(SHAPES[1])
    with pytest.raises(hm.VocabularyMismatchError):
        model.set_item_output(other)
    with pytest.raises(hm.InvalidArgumentError, match="item_output must be True or False"):
        hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(), tokenizer, item_output="yes")


@pytest.mark.numerics
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_item_input_adds_each_items_vector_at_its_rank_token(padding_side):
    """The encoder's input is E[t] + α·F(v_t), plus w_i at the rank token that follows item i's cluster token (not
    at a user's rank token, not at a rank token after anything else); the fast encoder reads the same (to float32
    rounding)."""
    tokenizer, model = item_pair(SHAPES[1], input=True)
    tokenizer.padding_side = padding_side
    batch = prompts(tokenizer, count=5)
    encoder = model.get_encoder()
    ids = batch["input_ids"]
    with torch.no_grad():
        got = encoder.input_embeddings(ids)
        expected = encoder.embed_tokens(ids) + encoder.augmentation_for(ids)
    vocabulary = tokenizer.entity_vocabulary
    ordered = sorted(range(len(vocabulary.items)), key=lambda n: tuple(vocabulary.item_codes[n]))
    row_of = {tuple(int(x) for x in vocabulary.item_codes[n]): row for row, n in enumerate(ordered)}
    first_cluster, first_rank = tokenizer.cluster_token_ids.start, tokenizer.rank_token_ids.start
    added = 0
    for n, position in ((n, p) for n in range(ids.shape[0]) for p in range(1, ids.shape[1])):
        code = (int(ids[n, position - 1]) - first_cluster, int(ids[n, position]) - first_rank)
        if ids[n, position - 1] in tokenizer.cluster_token_ids and code in row_of:
            expected[n, position] += encoder.metaid_item_input.weight[row_of[code]]
            added += 1
    assert added >= 5  # every prompt shows at least one history item
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    with torch.no_grad():
        states = encoder(**batch).last_hidden_state[batch["attention_mask"].bool()]
        packed = _encoder_states(model, ids, batch["attention_mask"]).states
    assert_encoder_states_close(packed, states, model, batch)


# ---------------------------------------------------------------------------------------------- decoding paths
@pytest.mark.numerics
@pytest.mark.parametrize(
    ("tree_softmax", "input"), [(False, False), (True, False), (False, True)], ids=["plain", "tree", "input"]
)
@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[3]], ids=["seed1", "seed3"])
def test_every_decoding_path_reads_the_item_vectors(shape, tree_softmax, input):
    """Beam = ``generate`` + trie, exact = brute force, generic path = fast path, with and without exclusion."""
    tokenizer, model = item_pair(shape, tree_softmax=tree_softmax, input=input)
    # five prompts: the sixth of seed 1 with the item input puts two candidates 2e-5 apart at the beam's cut
    batch = prompts(tokenizer, count=5, seed=shape[0])
    tree = model.item_tree(tokenizer)
    _, beam_items, _ = assert_beam_parity(model, tokenizer, batch)
    exact_items, exact_scores = decode_items(
        model, batch["input_ids"], batch["attention_mask"], tree, k=7, mode="exact"
    )
    brute_scores, brute_items = brute_force_scores(model, tokenizer, batch).topk(7, dim=-1)
    assert_same_ranking(exact_items, exact_scores, brute_items, brute_scores, atol=1e-4)
    for mode in ("beam", "exact"):
        exclude = [row[:2].tolist() for row in beam_items]
        fast = decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=5, mode=mode, exclude=exclude)
        generic = decode_items(
            model, batch["input_ids"], batch["attention_mask"], tree, k=5, mode=mode, exclude=exclude, fast_path=False
        )
        assert_same_ranking(*fast, *generic, atol=1e-4)
    # the item vectors matter: the plain model ranks otherwise
    _, plain = make_pair(shape, tree_softmax=tree_softmax)
    plain_items, _ = decode_items(plain, batch["input_ids"], batch["attention_mask"], tree, k=7, mode="exact")
    assert not torch.equal(plain_items, exact_items)


@pytest.mark.numerics
@pytest.mark.parametrize(
    ("output", "input"), [(True, False), (False, True), (True, True)], ids=["output", "input", "input+output"]
)
@pytest.mark.parametrize("shape", SHAPES[:2], ids=lambda s: f"seed{s[0]}")
def test_history_in_the_decoder_reads_the_item_vectors(shape, output, input):
    """With the history in the decoder (the item input lives in the decoder then), every decoding path reads the
    item vectors alike: fast path and public forward as ``generate`` with the prefix, exact fast = exact generic."""
    tokenizer, model = decoder_pair(shape)
    with_item_vectors(model, tokenizer, seed=shape[0], output=output, input=input)
    assert model.decoder.has_item_input == input and not model.encoder.has_item_input
    batch = user_prompts(tokenizer)
    prefix = prefixes(tokenizer, histories(tokenizer, seed=shape[0]))
    tree = model.item_tree(tokenizer)
    fast = assert_prefix_paths_agree(model, tokenizer, batch, prefix)
    if input:  # the decoder's item vectors matter: without them the same model scores otherwise
        model.decoder.metaid_item_input.weight.data.zero_()
        assert not torch.equal(decode(model, batch, tree, prefix, k=6, mode="exact")[1], fast[1])


def test_the_item_input_follows_the_history_between_encoder_and_decoder():
    tokenizer, model = item_pair(SHAPES[0], input=True)
    module = model.encoder.metaid_item_input
    model.set_prompt_format(history_in_decoder=True)
    assert model.decoder.metaid_item_input is module and not model.encoder.has_item_input
    model.set_prompt_format(history_in_decoder=False)
    assert model.encoder.metaid_item_input is module and not model.decoder.has_item_input
    model.set_item_input(tokenizer, enabled=False)
    assert not (model.encoder.has_item_input or model.decoder.has_item_input or model.config.metaid_item_input)


# ------------------------------------------------------------------------------------------ training and saving
def test_training_moves_the_item_vectors_and_the_loss_reads_them(tiny, tmp_path):
    _, tokenizer, train = tiny
    model = tiny_model(tokenizer)
    model.set_item_output(tokenizer)
    batch = fixed_batch(tokenizer, train)
    before = model(**batch).loss.item()
    with torch.no_grad():
        model.metaid_item_output.bias.add_(torch.randn(model.metaid_item_output.bias.shape))
    assert model(**batch).loss.item() != pytest.approx(before, abs=1e-4)  # the loss is taken over the item scores
    with torch.no_grad():
        model.metaid_item_output.bias.zero_()
    trainer = build_trainer(model, tokenizer, train, quiet_args(tmp_path, max_steps=3, per_device_train_batch_size=8))
    trainer.train()
    assert model.metaid_item_output.weight.abs().sum() > 0
    assert model.metaid_item_output.bias.abs().sum() > 0


@pytest.mark.numerics
@pytest.mark.parametrize("in_decoder", [False, True])
def test_the_all_items_loss_is_each_targets_cross_entropy_over_every_item(tiny, in_decoder):
    """loss = two-token loss + w x mean over target items of CE(h · U^T + b, item), h the state that predicts the
    item's cluster token; w = 0 is the two-token loss alone. Prompts (one item per row) and decoder sequences."""
    split, tokenizer, train = tiny
    model = with_item_vectors(tiny_model(tokenizer), tokenizer, seed=3)
    if in_decoder:
        model.set_prompt_format(max_history=8, history_in_decoder=True)
        rows = hm.build_decoder_history_examples(split["train"], tokenizer, max_history=8)
        batch = MetaIDDataCollator(tokenizer)([rows[i] for i in range(6)])
    else:
        batch = fixed_batch(tokenizer, train, size=6)
    plain = model(**batch).loss
    states = decoder_states(model, batch, model._shift_right(batch["labels"]))
    vocabulary, first = tokenizer.entity_vocabulary, tokenizer.cluster_token_ids.start
    cells = model.metaid_item_mask.nonzero().tolist()  # row-major: the item numbering
    number = {(cluster, rank): n for n, (cluster, rank) in enumerate(cells)}
    scores, targets = [], []
    num_clusters = model.config.metaid_num_clusters
    for row, labels in enumerate(batch["labels"].tolist()):
        for t in range(len(labels) - 1):
            cluster, rank = labels[t] - first, labels[t + 1] - first - num_clusters
            if 0 <= cluster < num_clusters and rank >= 0 and (cluster, rank) in number:
                scores.append(states[row, t] @ model.metaid_item_output.weight.T + model.metaid_item_output.bias)
                targets.append(number[cluster, rank])
    assert len(targets) >= (6 if not in_decoder else 12) and len(set(targets)) > 1
    expected = torch.nn.functional.cross_entropy(torch.stack(scores), torch.tensor(targets))
    model.config.metaid_item_loss = 0.5
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).loss, plain + 0.5 * expected, rtol=1e-5, atol=1e-5)
    assert len(vocabulary.items) == model.config.metaid_num_items


def test_the_all_items_loss_trains_items_outside_the_targets_cluster(tiny, tmp_path):
    """The two-token loss gives u_j a gradient only where the target shares j's cluster; the all-items loss gives
    every item one. Set through ModelSettings, which refuses it without the item output."""
    from hf_metaid.workflow.build import build_model
    from hf_metaid.workflow.settings import ModelSettings

    _, tokenizer, train = tiny
    batch = fixed_batch(tokenizer, train, size=1)  # one target, in one cluster
    targets = {int(c) - tokenizer.cluster_token_ids.start for c in batch["labels"][:, 0]}
    touched = {}
    for weight in (0.0, 1.0):
        model = build_model(tokenizer, ModelSettings(d_model=32, item_output=True, item_loss=weight))
        assert model.config.metaid_item_loss == weight
        model.train()
        model(**batch).loss.backward()
        rows = model.metaid_item_output.weight.grad.abs().sum(dim=1) > 0
        clusters = model.metaid_item_mask.nonzero(as_tuple=True)[0]
        touched[weight] = {int(c) for c in clusters[rows]}
    assert touched[0.0] <= targets and touched[1.0] > targets
    with pytest.raises(hm.InvalidArgumentError, match="item_loss needs item_output"):
        ModelSettings(item_loss=1.0)


def test_training_moves_the_item_input(tiny, tmp_path):
    _, tokenizer, train = tiny
    model = tiny_model(tokenizer)
    model.set_item_input(tokenizer)
    trainer = build_trainer(model, tokenizer, train, quiet_args(tmp_path, max_steps=3, per_device_train_batch_size=8))
    trainer.train()
    assert model.get_encoder().metaid_item_input.weight.abs().sum() > 0


@pytest.mark.numerics
def test_training_moves_the_decoders_item_input_and_it_survives_reload(tiny, tmp_path):
    split, tokenizer, _ = tiny
    model = tiny_model(tokenizer)
    model.set_item_input(tokenizer)
    model.set_prompt_format(max_history=8, history_in_decoder=True)
    examples = hm.build_decoder_history_examples(split["train"], tokenizer, max_history=8)
    trainer = build_trainer(model, tokenizer, examples, quiet_args(tmp_path / "run", max_steps=3))
    trainer.train()
    assert model.decoder.metaid_item_input.weight.abs().sum() > 0
    folder = hm.save_for_inference(trainer, tokenizer, tmp_path / "model")
    loaded, loaded_tokenizer = hm.load_for_inference(folder)
    assert loaded.decoder.has_item_input and not loaded.encoder.has_item_input
    user = tokenizer.entity_vocabulary.users[0]
    history = tokenizer.entity_vocabulary.items[:3]
    assert_same_lists(
        loaded.recommend(loaded_tokenizer, user=user, history=history, k=5),
        model.eval().recommend(tokenizer, user=user, history=history, k=5),
    )


@pytest.mark.numerics
def test_item_vectors_survive_auto_reload_and_can_be_switched_off(tmp_path):
    tokenizer, model = item_pair(SHAPES[2], tree_softmax=True, input=True)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    reloaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.config.metaid_item_output and reloaded.config.metaid_num_items == model.config.metaid_num_items
    user = tokenizer.entity_vocabulary.users[0]
    assert_same_lists(
        reloaded.recommend(reloaded_tokenizer, user=user, k=5), model.recommend(tokenizer, user=user, k=5)
    )
    reloaded.set_item_output(reloaded_tokenizer, enabled=False)
    assert not hasattr(reloaded, "metaid_item_output") and reloaded.config.metaid_tree_softmax
    _, plain = make_pair(SHAPES[2], tree_softmax=True)
    assert_same_lists(
        reloaded.recommend(reloaded_tokenizer, user=user, k=5), plain.recommend(tokenizer, user=user, k=5)
    )


def assert_same_lists(got, expected):
    """Items up to ties; log-probabilities to 1e-5 (sums of order 1 that another memory layout may add up
    otherwise)."""
    assert_same_recommendations(got, expected, atol=1e-5)


@pytest.mark.numerics
@pytest.mark.parametrize("in_decoder", [False, True], ids=["history-in-prompt", "history-in-decoder"])
def test_lora_trains_and_saves_the_item_vectors(tiny, tmp_path, in_decoder):
    pytest.importorskip("peft")
    split, tokenizer, train = tiny
    base = tiny_model(tokenizer)
    base.set_item_output(tokenizer)
    base.set_item_input(tokenizer)
    if in_decoder:
        base.set_prompt_format(max_history=8, history_in_decoder=True)
        train = hm.build_decoder_history_examples(split["train"], tokenizer, max_history=8)
    config = lora_config(base, r=4)
    assert {"metaid_item_output", "metaid_item_input"} <= set(config.modules_to_save)
    trainer = build_trainer(base, tokenizer, train, quiet_args(tmp_path / "run", max_steps=3), lora=config)
    trainer.train()
    trained = trainer.model.get_base_model()
    for wrapper in (trained.metaid_item_output, trained.item_input_stack.metaid_item_input):
        copy = next(iter(wrapper.modules_to_save.values()))
        assert copy.weight.abs().sum() > 0  # the trained copy, the one the forward reads
    folder = hm.save_for_inference(trainer, tokenizer, tmp_path / "adapter")
    loaded, _ = hm.load_for_inference(folder)
    batch = fixed_batch(tokenizer, train)
    # float32 rounding: the reloaded weights sit at other memory alignments, which some BLAS kernels round otherwise
    torch.testing.assert_close(logits_of(loaded, batch), logits_of(trainer.model, batch), rtol=1e-5, atol=1e-5)


def test_the_sampled_all_items_loss_scores_each_target_against_the_batch_targets_and_a_draw():
    """item_loss_negatives: the candidates are the batch's target items plus the drawn ones, each once; with as many
    negatives as items it is the full loss; only candidates' rows get a gradient."""
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.uint8)  # 9 items, row-major numbers
    first, clusters = 100, 3
    module = MetaIDItemOutput(9, 8)
    with torch.no_grad():
        module.weight.normal_(generator=torch.Generator().manual_seed(0))
        module.bias.normal_(generator=torch.Generator().manual_seed(1))
    # item (0, 1) = number 1 after position 0, item (2, 3) = number 8 after position 2
    labels = torch.tensor([[first, first + clusters + 1, first + 2, first + clusters + 3, -100]])
    hidden = torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(2))
    full = module.all_items_loss(hidden, labels, mask, first)
    for many in (9, 50):
        torch.testing.assert_close(module.all_items_loss(hidden, labels, mask, first, negatives=many), full)
    torch.manual_seed(5)
    sampled = module.all_items_loss(hidden.requires_grad_(), labels, mask, first, negatives=3)
    torch.manual_seed(5)
    candidates = sorted({1, 8} | set(torch.randint(9, (3,)).tolist()))
    scores = hidden[0, [0, 2]] @ module.weight[candidates].T + module.bias[candidates]
    expected = torch.nn.functional.cross_entropy(scores, torch.tensor([candidates.index(1), candidates.index(8)]))
    torch.testing.assert_close(sampled, expected)
    assert len(candidates) < 9 and not torch.allclose(sampled, full)
    sampled.backward()
    assert set(torch.nonzero(module.weight.grad.abs().sum(dim=1)).flatten().tolist()) == set(candidates)


def test_item_loss_negatives_travel_through_the_settings_and_the_config(tiny, tmp_path):
    from hf_metaid.workflow.build import build_model
    from hf_metaid.workflow.settings import ModelSettings

    _, tokenizer, _ = tiny
    model = build_model(tokenizer, ModelSettings(d_model=32, item_output=True, item_loss=1.0, item_loss_negatives=64))
    assert model.config.metaid_item_loss_negatives == 64
    model.save_pretrained(tmp_path / "model")
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "model")
    assert (reloaded.config.metaid_item_loss, reloaded.config.metaid_item_loss_negatives) == (1.0, 64)
    from hf_metaid.cli import build_parser
    from hf_metaid.cli.settings_options import _model_and_training

    args = build_parser().parse_args(["demo", "--item-loss", "1", "--item-loss-negatives", "512"])
    assert _model_and_training(args)[0].item_loss_negatives == 512
    with pytest.raises(hm.InvalidArgumentError, match="item_loss_negatives needs item_loss"):
        ModelSettings(item_output=True, item_loss_negatives=64)
