"""The repeat bias (one learned score β on every item the decoder has read): its arithmetic, every decoding path
reading it alike, the direction training moves it, the all-items objective, saving (full, LoRA, remote code) and
the settings."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

import hf_metaid as hm
from conftest import fixed_batch, logits_of, quiet_args, tiny_model, with_item_vectors
from hf_metaid.item_output import MetaIDItemOutput
from hf_metaid.repeat_bias import MetaIDRepeatBias, codes_read_before, read_item_codes
from hf_metaid.training.trainer import build_trainer, lora_config
from ranking_checks import assert_same_recommendations
from test_decoder_history import assert_prefix_paths_agree, decoder_pair, histories, prefixes, user_prompts
from test_decoding import SHAPES

pytestmark = pytest.mark.numerics  # every decoding path and a reload read the bias alike: rerun under other CPU kernels

FIRST, CLUSTERS, RANKS = 10, 3, 4  # cluster tokens 10..12, rank tokens 13..16


def token(cluster=None, rank=None) -> int:
    return FIRST + cluster if rank is None else FIRST + CLUSTERS + rank


def repeat_pair(shape, beta: float, item_output: bool = True):
    """A decoder-history model (random item vectors where ``item_output``) with the repeat bias at ``beta``."""
    tokenizer, model = decoder_pair(shape)
    if item_output:
        with_item_vectors(model, tokenizer, seed=shape[0])
    model.set_repeat_bias()
    with torch.no_grad():
        model.metaid_repeat_bias.weight.fill_(beta)
    return tokenizer, model.eval()


# ------------------------------------------------------------------------------------------------- arithmetic
def test_read_item_codes_mark_each_item_once_where_its_rank_token_completes_it():
    # start, item (0, 1), item (2, 3), a rank token after a rank token (no item), item (0, 1) again, cluster 2 open
    sequence = torch.tensor([[0, token(0), token(rank=1), token(2), token(rank=3), token(rank=0), token(0)]])
    sequence = torch.cat([sequence, torch.tensor([[token(rank=1), token(2)]])], dim=1)
    codes = read_item_codes(sequence, FIRST, CLUSTERS, RANKS)
    assert codes.tolist() == [[-1, -1, 0 * RANKS + 1, -1, 2 * RANKS + 3, -1, -1, -1, -1]]  # the repeat is not marked
    upto = codes_read_before(sequence, FIRST, CLUSTERS, RANKS)
    assert upto[0, 1].tolist() == [-1] * 9  # nothing read before the first rank token
    assert upto[0, 4].tolist() == [-1, -1, 1, -1, 11, -1, -1, -1, -1]  # its own position's item included


def test_beta_lands_on_the_rank_tokens_of_read_items_of_the_cluster_being_decoded():
    module = MetaIDRepeatBias()
    with torch.no_grad():
        module.weight.fill_(-2.5)
    # read (0, 1), (2, 3), (0, 2); then decoding cluster 0, then cluster 1 (nothing of it read)
    sequence = torch.tensor([[0, token(0), token(rank=1), token(2), token(rank=3), token(0), token(rank=2), token(0)]])
    logits = torch.randn(1, 8, 20, generator=torch.Generator().manual_seed(0))
    expected = torch.zeros_like(logits)
    expected[0, 7, token(rank=1)] = expected[0, 7, token(rank=2)] = -2.5  # position 7 decodes cluster 0
    expected[0, 5, token(rank=1)] = -2.5  # position 5 (cluster 0 again) had read (0, 1) only
    # bit for bit: one float addition per logit, as here (subtracting the logits again would round)
    torch.testing.assert_close(module(logits, sequence, FIRST, CLUSTERS, RANKS), logits + expected, rtol=0, atol=0)
    # the last T positions only (generate's one new token with the whole sequence beside it)
    last = module(logits[:, -1:], sequence, FIRST, CLUSTERS, RANKS)
    torch.testing.assert_close(last, logits[:, -1:] + expected[:, -1:], rtol=0, atol=0)
    # the same item read twice gets beta once
    twice = torch.cat([sequence[:, :3], sequence[:, 1:3], sequence[:, 1:2]], dim=1)
    once = module(torch.zeros(1, 6, 20), twice, FIRST, CLUSTERS, RANKS)
    assert once[0, -1, token(rank=1)].item() == -2.5 and once.abs().sum().item() == 2.5 * 2  # positions 3 and 5


def test_an_untrained_repeat_bias_changes_nothing():
    tokenizer, model = decoder_pair(SHAPES[0])
    batch = user_prompts(tokenizer)
    labels = torch.tensor([row + [-100] * (10 - len(row)) for row in prefixes(tokenizer, histories(tokenizer))])
    before = logits_of(model, {**batch, "labels": labels})
    model.set_repeat_bias()
    torch.testing.assert_close(logits_of(model, {**batch, "labels": labels}), before, rtol=0, atol=0)


# -------------------------------------------------------------------------------------------- decoding paths
@pytest.mark.parametrize("item_output", [True, False], ids=["item-output", "plain"])
@pytest.mark.parametrize("shape", SHAPES[:3], ids=lambda s: f"seed{s[0]}")
def test_every_decoding_path_reads_the_repeat_bias(shape, item_output):
    """generate (one token per step, the sequence beside it) = the fast path = the public forward, and exact mode
    fast = generic; a large positive β brings every read item to the top, a large negative one drops them all."""
    for beta, read_in_top in ((8.0, True), (-8.0, False)):
        tokenizer, model = repeat_pair(shape, beta, item_output)
        batch, batch_histories = user_prompts(tokenizer), histories(tokenizer, seed=shape[0])
        items, _ = assert_prefix_paths_agree(model, tokenizer, batch, prefixes(tokenizer, batch_histories))
        tree = model.item_tree(tokenizer)
        for row, history in zip(items.tolist(), batch_histories, strict=True):
            top = [tree.items[i] for i in row[: len(history)]]
            assert (set(top) == set(history)) if read_in_top else not set(top) & set(history)


def test_the_training_forward_and_the_all_items_objective_score_read_items_with_beta():
    """Training logits move by β exactly at read items' rank tokens; the all-items loss equals a hand computation
    with β on the items each state has read, for the full and the sampled objective."""
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.uint8)  # 9 items, row-major numbers
    module, bias = MetaIDItemOutput(9, 8), MetaIDRepeatBias()
    with torch.no_grad():
        module.weight.normal_(generator=torch.Generator().manual_seed(0))
        bias.weight.fill_(-1.5)
    # labels: items (0, 1) = 1, (2, 3) = 8, (0, 1) = 1 again; the decoder reads them shifted right
    labels = torch.tensor([[token(0), token(rank=1), token(2), token(rank=3), token(0), token(rank=1)]])
    inputs = torch.cat([torch.zeros(1, 1, dtype=torch.long), labels[:, :-1]], dim=1)
    hidden = torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(1))
    codes = codes_read_before(inputs, FIRST, CLUSTERS, RANKS)
    got = module.all_items_loss(hidden, labels, mask, FIRST, repeat=(bias, codes))
    scores = hidden[0, [0, 2, 4]] @ module.weight.T + module.bias
    scores[1, 1] -= 1.5  # the state before item 2 has read item 1
    scores[2, [1, 8]] -= 1.5  # the state before item 3 has read items 1 and 8
    expected = torch.nn.functional.cross_entropy(scores, torch.tensor([1, 8, 1]))
    torch.testing.assert_close(got, expected)
    torch.manual_seed(3)
    sampled = module.all_items_loss(hidden, labels, mask, FIRST, negatives=2, repeat=(bias, codes))
    torch.manual_seed(3)
    candidates = sorted({1, 8} | set(torch.randint(9, (2,)).tolist()))
    picked = scores[:, candidates]
    targets = torch.tensor([candidates.index(i) for i in (1, 8, 1)])
    torch.testing.assert_close(sampled, torch.nn.functional.cross_entropy(picked, targets))


def test_the_model_forward_adds_beta_at_the_read_items_of_each_position():
    tokenizer, model = repeat_pair(SHAPES[1], 0.0)
    batch = user_prompts(tokenizer, count=2)
    lists = [["i1", "i2", "i1", "i5"], ["i4", "i6", "i9", "i4"]]
    labels = torch.tensor(prefixes(tokenizer, lists))
    before = logits_of(model, {**batch, "labels": labels})
    with torch.no_grad():
        model.metaid_repeat_bias.weight.fill_(3.0)
    moved = logits_of(model, {**batch, "labels": labels}) - before
    expected = torch.zeros_like(moved)
    for row, items in enumerate(lists):
        for position, item in enumerate(items):
            cluster, _ = tokenizer.item_token_ids(item)
            for earlier in items[:position]:  # the rank step of item n is position 2n + 1, after its cluster token
                read_cluster, read_rank = tokenizer.item_token_ids(earlier)
                if read_cluster == cluster:  # every read item of the cluster being decoded, the target or not
                    expected[row, 2 * position + 1, read_rank] = 3.0
    assert expected[:, [5, 7]].abs().sum() >= 2 * 3.0  # both rows repeat an item
    torch.testing.assert_close(moved, expected, rtol=0, atol=1e-5)


# -------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("repeats", [False, True], ids=["no-repeats", "repeats"])
def test_training_lowers_beta_where_users_never_repeat_and_raises_it_where_they_do(repeats):
    """The gradient of the loss in β: the probability the model gives read items minus the share of targets that
    are read items. Sequences that never repeat push β down, sequences made of repeats push it up."""
    tokenizer, model = repeat_pair(SHAPES[1], 0.0)
    model.train()
    batch = user_prompts(tokenizer, count=4)
    vocabulary = tokenizer.entity_vocabulary
    by_cluster = sorted(vocabulary.items, key=lambda item: tuple(tokenizer.item_token_ids(item)))
    lists = [by_cluster[row * 3 : row * 3 + 6] for row in range(4)]  # neighbours share clusters: β reaches them
    if repeats:
        lists = [row[:3] + row[:3] for row in lists]
    labels = torch.tensor(prefixes(tokenizer, lists))
    model(**batch, labels=labels).loss.backward()
    gradient = model.metaid_repeat_bias.weight.grad.item()
    assert gradient < 0 if repeats else gradient > 0  # gradient descent moves β against its gradient


def test_lora_trains_and_saves_the_repeat_bias(tiny, tmp_path):
    pytest.importorskip("peft")
    split, tokenizer, _ = tiny
    base = tiny_model(tokenizer)
    base.set_prompt_format(max_history=8, history_in_decoder=True)
    base.set_repeat_bias()
    train = hm.build_decoder_history_examples(split["train"], tokenizer, max_history=8)
    config = lora_config(base, r=4)
    assert "metaid_repeat_bias" in config.modules_to_save
    trainer = build_trainer(base, tokenizer, train, quiet_args(tmp_path / "run", max_steps=3), lora=config)
    trainer.train()
    wrapper = trainer.model.get_base_model().metaid_repeat_bias
    assert next(iter(wrapper.modules_to_save.values())).weight.item() != 0.0  # the trained copy moved
    folder = hm.save_for_inference(trainer, tokenizer, tmp_path / "adapter")
    loaded, _ = hm.load_for_inference(folder)
    batch = fixed_batch(tokenizer, train)
    # float32 rounding: the reloaded weights sit at other memory alignments, which some BLAS kernels round otherwise
    torch.testing.assert_close(logits_of(loaded, batch), logits_of(trainer.model, batch), rtol=1e-5, atol=1e-5)


def test_the_repeat_bias_survives_save_and_auto_model_reload(tmp_path):
    tokenizer, model = repeat_pair(SHAPES[1], -1.25)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.metaid_repeat_bias and reloaded.metaid_repeat_bias.weight.item() == -1.25
    history = ["i3", "i7", "i11"]
    got = reloaded.recommend(tokenizer, user="u1", history=history, k=5)  # float32 rounding: other weight alignments
    assert_same_recommendations(got, model.recommend(tokenizer, user="u1", history=history, k=5), atol=1e-5)
    with pytest.raises(hm.InvalidArgumentError, match="repeat_bias needs history_in_decoder"):
        model.set_prompt_format(max_history=8, history_in_decoder=False)  # the bias would read nothing there
    assert model.config.metaid_history_in_decoder and model.config.metaid_max_history == 8  # nothing changed
    model.set_repeat_bias(False)
    assert "metaid_repeat_bias" not in model._modules and not model.config.metaid_repeat_bias
    model.set_prompt_format(max_history=8, history_in_decoder=False)


# -------------------------------------------------------------------------------------------------- settings
def test_the_repeat_bias_needs_the_history_in_the_decoder(tiny, tmp_path):
    from hf_metaid.cli import build_parser
    from hf_metaid.cli.settings_options import _model_and_training
    from hf_metaid.workflow.settings import ModelSettings, TrainingSettings
    from hf_metaid.workflow.training_run import train

    split, tokenizer, _ = tiny
    with pytest.raises(hm.InvalidArgumentError, match="repeat_bias needs history_in_decoder"):
        tiny_model(tokenizer).set_repeat_bias()
    with pytest.raises(hm.InvalidArgumentError, match="repeat_bias needs history_in_decoder"):
        ModelSettings(repeat_bias=True)  # refused with the settings, before any training
    run = train(  # with the history in the decoder, one ModelSettings builds both
        split["train"],
        tokenizer.entity_vocabulary,
        tmp_path,
        ModelSettings(d_model=32, repeat_bias=True, history_in_decoder=True),
        TrainingSettings(max_steps=1, batch_size=8, warmup_steps=0),
    )
    assert run.model.config.metaid_repeat_bias and "metaid_repeat_bias" in run.model._modules
    args = build_parser().parse_args(["demo", "--repeat-bias"])
    assert _model_and_training(args)[0].repeat_bias
    assert not _model_and_training(build_parser().parse_args(["demo"]))[0].repeat_bias
