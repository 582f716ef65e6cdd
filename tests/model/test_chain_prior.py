"""The chain prior (the item chain's counts from the last item read, with learned weights γ_c and γ_r, and from the
items before it at a learned decay where asked): its counting, its arithmetic at both decoding steps, leave-one-out
while training, every decoding path reading it alike, the all-items objective, growth, saving (full, LoRA, remote
code) and the settings."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForSeq2SeqLM

import hf_metaid as hm
from conftest import fixed_batch, logits_of, quiet_args, tiny_model, with_item_vectors
from hf_metaid.chain_prior import MetaIDChainPrior, transition_codes
from hf_metaid.item_output import MetaIDItemOutput
from hf_metaid.training.trainer import build_trainer, lora_config
from ranking_checks import assert_same_recommendations
from remote_code import REMOTE_RECOMMEND, run_remote
from test_decoder_history import assert_prefix_paths_agree, decoder_pair, prefixes, user_prompts
from test_decoding import SHAPES

pytestmark = pytest.mark.numerics  # every decoding path and a reload read the prior alike: rerun under other kernels

FIRST, CLUSTERS, RANKS = 10, 3, 4  # cluster tokens 10..12, rank tokens 13..16
# 9 items, numbered row-major: (0,0)=0 (0,1)=1 (0,2)=2 | (1,0)=3 (1,1)=4 | (2,0)=5 (2,1)=6 (2,2)=7 (2,3)=8
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.uint8)


def token(cluster=None, rank=None) -> int:
    return FIRST + cluster if rank is None else FIRST + CLUSTERS + rank


def code(cluster: int, rank: int) -> int:
    return cluster * RANKS + rank


def prior_with(pairs, successors=3, gammas=(1.0, 1.0)) -> MetaIDChainPrior:
    module = MetaIDChainPrior(9, successors, CLUSTERS, RANKS)
    module.set_counts(torch.tensor(pairs), MASK)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(gammas))
    return module


# (0,1) -> (2,3) three times, (0,1) -> (1,0) twice, (0,1) -> (2,0) once, (0,1) -> (0,2) once; (2,3) -> (0,1) once
PAIRS = (
    [[code(0, 1), code(2, 3)]] * 3
    + [[code(0, 1), code(1, 0)]] * 2
    + [[code(0, 1), code(2, 0)], [code(0, 1), code(0, 2)]]
)
PAIRS += [[code(2, 3), code(0, 1)]]


# ------------------------------------------------------------------------------------------------- counting
def test_the_most_frequent_followers_are_kept_ties_by_item_number():
    module = prior_with(PAIRS, successors=3)
    assert module.followers[1].tolist() == [8, 3, 2]  # 3, 2, then the tie of 1 and 1: item 2 before item 5
    assert module.counts[1].tolist() == [3.0, 2.0, 1.0]
    assert module.followers[8].tolist() == [1, -1, -1] and module.counts[8].tolist() == [1.0, 0.0, 0.0]
    assert (module.followers[[0, 2, 3, 4, 5, 6, 7]] == -1).all() and module.counts.sum() == 7
    # every transition counts towards its target's popularity, kept as a follower or not (item 5)
    assert module.targets.tolist() == [0.0, 1.0, 1.0, 2.0, 0.0, 1.0, 0.0, 0.0, 3.0]


def expected_counts(pseudo_count: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    """a p(i) and a p(c) of PAIRS by hand: targets + 1 = [1, 2, 2, 3, 1, 2, 1, 1, 4] (sum 17); clusters hold items
    0-2, 3-4 and 5-8."""
    per_item = pseudo_count * torch.tensor([1.0, 2, 2, 3, 1, 2, 1, 1, 4]) / 17
    return per_item, torch.stack([per_item[:3].sum(), per_item[3:5].sum(), per_item[5:].sum()])


def test_counts_are_read_against_popularity_with_a_learned_pseudo_count():
    module = prior_with(PAIRS)
    per_item, per_cluster = module.expected_counts()
    torch.testing.assert_close(per_item, expected_counts()[0])
    torch.testing.assert_close(per_cluster, expected_counts()[1])
    lift = module.lift(module.followers[1], module.counts[1])  # followers 8, 3, 2 with counts 3, 2, 1
    torch.testing.assert_close(lift, torch.log1p(torch.tensor([3.0, 2, 1]) / per_item[[8, 3, 2]]))
    # at γ = 1 on logits holding log p(i), an item scores log(n + a p(i)) - log a: the chain smoothed by popularity
    share = per_item / 100.0
    torch.testing.assert_close(
        share[[8, 3, 2]].log() + lift,
        (torch.tensor([3.0, 2, 1]) + per_item[[8, 3, 2]]).log() - torch.tensor(100.0).log(),
    )
    module.item_scores(module.followers[1], module.counts[1]).sum().backward()  # a learns with γ
    assert module.log_pseudo_count.grad is not None and module.log_pseudo_count.grad != 0


def test_counts_are_refused_for_another_item_table():
    module = MetaIDChainPrior(9, 2, CLUSTERS, RANKS)
    with pytest.raises(ValueError, match="holds 9 items but the item table 8"):
        module.set_counts(
            torch.tensor(PAIRS),
            MASK.clone().index_put_((torch.tensor(2), torch.tensor(3)), torch.tensor(0, dtype=torch.uint8)),
        )
    with pytest.raises(ValueError, match="outside the item table"):
        module.set_counts(torch.tensor([[0, 99]]), MASK)


def test_transition_codes_pair_consecutive_items_of_each_sequence():
    pairs = transition_codes([[(0, 1), (2, 3), (1, 0)], [(2, 0)], []], RANKS)
    assert pairs.tolist() == [[code(0, 1), code(2, 3)], [code(2, 3), code(1, 0)]]


def test_a_grown_table_keeps_every_count_under_the_items_new_numbers():
    module = prior_with(PAIRS)
    grown = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.uint8)  # new items in between
    module.regrow(grown)
    numbers = {(c, r): n for n, (c, r) in enumerate(grown.nonzero().tolist())}
    assert module.followers.shape == (12, 3)
    assert module.followers[numbers[0, 1]].tolist() == [numbers[2, 3], numbers[1, 0], numbers[0, 2]]
    assert module.counts[numbers[0, 1]].tolist() == [3.0, 2.0, 1.0]
    assert module.followers[numbers[0, 3]].tolist() == [-1, -1, -1]  # a new item has no followers yet
    assert module.targets[numbers[2, 3]] == 3.0 and module.targets[numbers[0, 3]] == 0.0  # nor a target count


# ------------------------------------------------------------------------------------------------ arithmetic
def test_the_prior_lands_on_clusters_after_an_item_and_on_ranks_inside_the_chosen_cluster():
    module = prior_with(PAIRS, gammas=(0.5, 2.0))
    # start, item (0, 1) read, then cluster 2 open (rank step), then rank 0 of cluster 2 read (item (2, 0))
    sequence = torch.tensor([[0, token(0), token(rank=1), token(2), token(rank=0)]])
    logits = torch.randn(1, 5, 20, generator=torch.Generator().manual_seed(0))
    followers, counts = module.followers_at(sequence, sequence, FIRST)
    got = module(logits, sequence, followers, counts, FIRST)
    expected = logits.clone()
    per_item, per_cluster = expected_counts()
    # position 2 (after item (0, 1)): the cluster step over the 3 followers kept, (2, 3), (1, 0) and (0, 2), whose
    # counts per cluster are c0 1, c1 2, c2 3 ((2, 0), tied with (0, 2) and numbered after it, is not kept)
    expected[0, 2, token(0) : token(0) + 3] += 0.5 * torch.log1p(torch.tensor([1.0, 2.0, 3.0]) / per_cluster)
    # position 3 (cluster 2 open, last item (0, 1)): the rank of (2, 3) (item 8), its one kept follower in cluster 2
    expected[0, 3, token(rank=3)] += 2.0 * torch.log1p(3.0 / per_item[8])
    # position 4 (after item (2, 0), which has no followers): the cluster step adds log(1 + 0) = 0
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # the last T positions only (generate's one new token with the whole sequence beside it)
    last = module.followers_at(sequence, sequence[:, -2:], FIRST)
    torch.testing.assert_close(
        module(logits[:, -2:], sequence[:, -2:], *last, FIRST), expected[:, -2:], atol=1e-6, rtol=0
    )
    # one sequence per position (beams): the same as the positions of one sequence
    beams = torch.stack([sequence[0, :4], sequence[0, 1:5]])[None]  # (1, 2, 4): positions 3 and 4, each its own
    per_beam = module.followers_at(beams, sequence[:, 3:5], FIRST)
    assert per_beam[0].tolist() == [[[8, 3, 2], [-1, -1, -1]]]


def read(followers: torch.Tensor, counts: torch.Tensor, position: int) -> dict[int, float]:
    """The first sequence's followers at ``position`` with their counts (the absent ones left out)."""
    pairs = zip(followers[0, position].tolist(), counts[0, position].tolist(), strict=True)
    return {follower: count for follower, count in pairs if follower >= 0}


def test_earlier_items_lend_their_followers_at_a_decaying_weight_each_follower_once():
    # item 8 -> 1 and -> 3 once each, item 2 -> 3 once, beside PAIRS (item 1 -> 8, 3, 2 kept: 3, 2 and 1 times)
    pairs = [*PAIRS, [code(2, 3), code(1, 0)], [code(0, 2), code(1, 0)]]
    module = MetaIDChainPrior(9, 3, CLUSTERS, RANKS, earlier=2)
    module.set_counts(torch.tensor(pairs), MASK)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([0.5, 2.0]))
        module.decay_logit.fill_(math.log(1 / 3))  # ρ = 1/4
    # reads item 2 (0, 2), item 8 (2, 3), item 1 (0, 1); then cluster 1 opens
    labels = torch.tensor(
        [[token(0), token(rank=2), token(2), token(rank=3), token(0), token(rank=1), token(1), token(rank=0)]]
    )
    sequence = torch.cat([torch.zeros(1, 1, dtype=torch.long), labels[:, :-1]], dim=1)

    followers, counts = module.followers_at(sequence, sequence, FIRST)
    assert followers.shape == (1, 8, 9)  # three items' three followers, each follower once
    assert read(followers, counts, 1) == {}
    assert read(followers, counts, 3) == {3: 1.0}  # item 2's
    assert read(followers, counts, 5) == pytest.approx({1: 1.0, 3: 1.0 + 1 / 4})  # item 8's, item 2's at ρ
    expected_read = {8: 3.0, 3: 2.0 + 1 / 4 + 1 / 16, 2: 1.0, 1: 1 / 4}  # item 1's, item 8's at ρ, item 2's at ρ²
    assert read(followers, counts, 6) == pytest.approx(expected_read) == read(followers, counts, 7)
    # scored: the cluster step sums each cluster's counts, the rank step adds item 3's summed count once
    logits = torch.randn(1, 8, 20, generator=torch.Generator().manual_seed(0))
    got = module(logits, sequence, followers, counts, FIRST).detach()
    per_item, per_cluster = (part.detach() for part in module.expected_counts())  # checked above, on PAIRS
    expected = logits.clone()
    per_cluster_counts = torch.tensor([1.0 + 1 / 4, 2.0 + 1 / 4 + 1 / 16, 3.0])
    expected[0, 6, token(0) : token(0) + 3] += 0.5 * torch.log1p(per_cluster_counts / per_cluster)
    expected[0, 7, token(rank=0)] += 2.0 * torch.log1p((2.0 + 1 / 4 + 1 / 16) / per_item[3])
    torch.testing.assert_close(got[0, 6:], expected[0, 6:], rtol=0, atol=1e-5)
    # while training, only the last item's transition to the target is its own
    held_out = module.followers_at(sequence, sequence, FIRST, labels)
    assert read(*held_out, 7) == pytest.approx({**expected_read, 3: 1.0 + 1 / 4 + 1 / 16})
    # one sequence per position (a beam's) reads what the position of the whole sequence reads
    beam = module.followers_at(sequence[:, None], sequence[:, -1:], FIRST)
    assert torch.equal(beam[0], followers[:, -1:]) and torch.equal(beam[1], counts[:, -1:])


def test_the_targets_own_transition_leaves_every_count_read_from_the_last_item():
    """Read (0, 1), (2, 3), (0, 1) again, then the target (2, 3): item 1 -> 8 is the target's own transition in the
    count of the last item and in that of the same item read two before it (ρ² = 1/4)."""
    module = MetaIDChainPrior(9, 3, CLUSTERS, RANKS, earlier=2)
    module.set_counts(torch.tensor(PAIRS), MASK)
    labels = torch.tensor([[token(0), token(rank=1), token(2), token(rank=3)] * 2])
    sequence = torch.cat([torch.zeros(1, 1, dtype=torch.long), labels[:, :-1]], dim=1)
    followers, counts = module.followers_at(sequence, sequence, FIRST, labels)
    # item 1's followers 8 (3), 3 (2), 2 (1) at 1 and at 1/4; item 8's follower 1 (1, to a target other than 8) at 1/2
    assert read(followers, counts, 6) == pytest.approx(
        {8: 2.0 + 2.0 / 4, 3: 2.0 + 2.0 / 4, 2: 1.0 + 1.0 / 4, 1: 1.0 / 2}
    )


def test_a_prior_of_the_last_item_alone_reads_as_before_and_changes_reach_in_place(tmp_path):
    tokenizer, model, chain = chain_pair(SHAPES[1], (1.0, 1.0))
    sequence = torch.tensor([prefixes(tokenizer, [chain[0][:3]])[0]])
    alone = model.metaid_chain_prior.followers_at(sequence, sequence, model.config.metaid_first_new_id)
    assert alone[0].shape[-1] == 4 and "decay_logit" not in model.metaid_chain_prior._parameters
    counts = model.metaid_chain_prior.counts.clone()
    model.configure(tokenizer, chain_prior_earlier=2)
    assert torch.equal(model.metaid_chain_prior.counts, counts)  # the counts stay; ρ starts at 1/2
    assert float(torch.sigmoid(model.metaid_chain_prior.decay_logit.detach())) == 0.5
    wider = model.metaid_chain_prior.followers_at(sequence, sequence, model.config.metaid_first_new_id)
    assert wider[0].shape[-1] == 12 and wider[1].sum() > alone[1].sum()
    model.configure(tokenizer, chain_prior_earlier=0)
    assert "decay_logit" not in model.metaid_chain_prior._parameters
    model.save_pretrained(tmp_path)  # saves what a prior of the last item alone always saved
    with safe_open(tmp_path / "model.safetensors", "pt") as saved:
        names = set(saved.keys())
    assert {name for name in names if "chain_prior" in name} == {
        f"metaid_chain_prior.{name}"
        for name in ("weight", "log_pseudo_count", "item_mask", "followers", "counts", "targets")
    }


def test_training_takes_each_targets_own_transition_out_of_its_count():
    module = prior_with(PAIRS)
    # labels: (0, 1), then (2, 3): the decoder reads them shifted right
    labels = torch.tensor([[token(0), token(rank=1), token(2), token(rank=3)]])
    inputs = torch.cat([torch.zeros(1, 1, dtype=torch.long), labels[:, :-1]], dim=1)
    _, plain = module.followers_at(inputs, inputs, FIRST)
    _, held_out = module.followers_at(inputs, inputs, FIRST, labels)
    # position 2 predicts cluster 2 of target (2, 3), position 3 its rank: both take (0,1) -> (2,3) out once
    assert plain[0, 2].tolist() == [3.0, 2.0, 1.0] and held_out[0, 2].tolist() == [2.0, 2.0, 1.0]
    assert held_out[0, 3].tolist() == [2.0, 2.0, 1.0]
    assert torch.equal(plain[0, :2], held_out[0, :2])  # nothing read yet: nothing to take out


def test_an_untrained_prior_changes_nothing():
    tokenizer, model = decoder_pair(SHAPES[0])
    batch = user_prompts(tokenizer, count=2)
    lists = [["i1", "i2", "i3"], ["i4", "i5", "i6"]]
    labels = torch.tensor(prefixes(tokenizer, lists))
    before = logits_of(model, {**batch, "labels": labels})
    model.set_chain_prior(tokenizer, lists * 3, successors=4)
    assert model.metaid_chain_prior.counts.sum() > 0
    torch.testing.assert_close(logits_of(model, {**batch, "labels": labels}), before, rtol=0, atol=0)


def test_the_all_items_objective_adds_the_prior_to_the_followers_scores():
    module, prior = MetaIDItemOutput(9, 8), prior_with(PAIRS, gammas=(0.0, 1.5))
    with torch.no_grad():
        module.weight.normal_(generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[token(0), token(rank=1), token(2), token(rank=3)]])  # items 1, then 8
    inputs = torch.cat([torch.zeros(1, 1, dtype=torch.long), labels[:, :-1]], dim=1)
    hidden = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(1))
    followers, counts = prior.followers_at(inputs, inputs, FIRST, labels)
    got = module.all_items_loss(hidden, labels, MASK, FIRST, prior=(followers, prior.item_scores(followers, counts)))
    scores = hidden[0, [0, 2]] @ module.weight.T + module.bias
    # the state before item 8 has read item 1: followers 8 (3 - 1 of its own), 3 (2), 2 (1)
    scores[1, [8, 3, 2]] += 1.5 * torch.log1p(torch.tensor([2.0, 2.0, 1.0]) / expected_counts()[0][[8, 3, 2]])
    torch.testing.assert_close(got, torch.nn.functional.cross_entropy(scores, torch.tensor([1, 8])))
    torch.manual_seed(3)
    sampled = module.all_items_loss(
        hidden, labels, MASK, FIRST, negatives=2, prior=(followers, prior.item_scores(followers, counts))
    )
    torch.manual_seed(3)
    candidates = sorted({1, 8} | set(torch.randint(9, (2,)).tolist()))
    targets = torch.tensor([candidates.index(i) for i in (1, 8)])
    torch.testing.assert_close(sampled, torch.nn.functional.cross_entropy(scores[:, candidates], targets))


# -------------------------------------------------------------------------------------------- decoding paths
def chain_pair(shape, gammas, item_output=True, earlier=0):
    """A decoder-history model with a chain prior counted from a fixed chain over the items in cluster order, reading
    ``earlier`` items before the last at ρ = 0.3."""
    tokenizer, model = decoder_pair(shape)
    if item_output:
        with_item_vectors(model, tokenizer, seed=shape[0])
    items = sorted(tokenizer.entity_vocabulary.items, key=lambda item: tokenizer.item_token_ids(item)[::-1])
    chain = [items[i::3] for i in range(3)]  # each item's follower lies in another cluster, mostly
    model.set_chain_prior(tokenizer, chain * 2, successors=4, earlier=earlier)
    with torch.no_grad():
        model.metaid_chain_prior.weight.copy_(torch.tensor(gammas))
        if earlier:
            model.metaid_chain_prior.decay_logit.fill_(math.log(0.3 / 0.7))
    return tokenizer, model.eval(), chain


@pytest.mark.parametrize("earlier", [0, 2], ids=["last", "earlier2"])
@pytest.mark.parametrize("item_output", [True, False], ids=["item-output", "plain"])
@pytest.mark.parametrize("shape", SHAPES[:3], ids=lambda s: f"seed{s[0]}")
def test_every_decoding_path_reads_the_chain_prior(shape, item_output, earlier):
    """generate (one token per step, the sequence beside it) = the fast path = the public forward, and exact mode
    fast = generic; with large weights the follower of the last item read comes first (the items before it lend
    theirs at ρ = 0.3)."""
    tokenizer, model, chain = chain_pair(shape, (12.0, 12.0), item_output, earlier)
    follows = {a: b for sequence in chain for a, b in itertools.pairwise(sequence)}
    lists = [sequence[start : start + 3] for sequence, start in zip(chain, (0, 1, 2), strict=True)]
    lists = [items for items in lists if items[-1] in follows][:3]
    batch = user_prompts(tokenizer, count=len(lists))
    items, _ = assert_prefix_paths_agree(model, tokenizer, batch, prefixes(tokenizer, lists))
    tree = model.item_tree(tokenizer)
    for row, history in zip(items.tolist(), lists, strict=True):
        assert tree.items[row[0]] == follows[history[-1]]


def test_the_training_gradient_trusts_counts_where_the_data_follow_the_chain():
    tokenizer, model, chain = chain_pair(SHAPES[1], (0.0, 0.0))
    model.train()
    lists = [sequence[:4] for sequence in chain]
    batch = user_prompts(tokenizer, count=len(lists))
    model(**batch, labels=torch.tensor(prefixes(tokenizer, lists))).loss.backward()
    assert (model.metaid_chain_prior.weight.grad < 0).all()  # gradient descent raises both weights


def test_the_earlier_items_decay_learns():
    tokenizer, model, chain = chain_pair(SHAPES[1], (1.0, 1.0), earlier=2)
    model.train()
    lists = [sequence[:4] for sequence in chain]
    batch = user_prompts(tokenizer, count=len(lists))
    model(**batch, labels=torch.tensor(prefixes(tokenizer, lists))).loss.backward()
    assert model.metaid_chain_prior.decay_logit.grad.abs() > 0


# ------------------------------------------------------------------------------------------- saving, growth
@pytest.mark.parametrize("earlier", [0, 2], ids=["last", "earlier2"])
def test_the_chain_prior_survives_save_and_auto_model_reload(tmp_path, earlier):
    tokenizer, model, chain = chain_pair(SHAPES[1], (0.75, 1.25), earlier=earlier)
    with torch.no_grad():
        model.metaid_chain_prior.log_pseudo_count.fill_(2.0)  # a learned pseudo-count, not the starting one
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.metaid_chain_prior == 4 and reloaded.config.metaid_chain_prior_earlier == earlier
    for name in ("followers", "counts", "targets", "weight", "log_pseudo_count", *(["decay_logit"] * bool(earlier))):
        assert torch.equal(getattr(reloaded.metaid_chain_prior, name), getattr(model.metaid_chain_prior, name)), name
    assert reloaded.metaid_chain_prior.weight.tolist() == [0.75, 1.25]
    history = chain[0][:3]
    got = reloaded.recommend(tokenizer, user="u1", history=history, k=5)
    assert_same_recommendations(got, model.recommend(tokenizer, user="u1", history=history, k=5), atol=1e-5)
    with pytest.raises(hm.InvalidArgumentError, match="chain_prior needs history_in_decoder"):
        model.set_prompt_format(max_history=8, history_in_decoder=False)
    model.set_chain_prior(tokenizer, successors=0)
    assert "metaid_chain_prior" not in model._modules and not model.config.metaid_chain_prior


@pytest.mark.parametrize("earlier", [0, 2], ids=["last", "earlier2"])
def test_lora_trains_and_saves_the_chain_prior(tiny, tmp_path, earlier):
    pytest.importorskip("peft")
    split, tokenizer, _ = tiny
    base = tiny_model(tokenizer)
    base.set_prompt_format(max_history=8, history_in_decoder=True)
    train = hm.build_decoder_history_examples(split["train"], tokenizer, max_history=8)
    hm.set_chain_counts(base, tokenizer, split["train"], successors=8)
    base.configure(tokenizer, chain_prior_earlier=earlier)
    config = lora_config(base, r=4)
    assert "metaid_chain_prior" in config.modules_to_save
    trainer = build_trainer(base, tokenizer, train, quiet_args(tmp_path / "run", max_steps=3), lora=config)
    trainer.train()
    wrapper = trainer.model.get_base_model().metaid_chain_prior
    trained = next(iter(wrapper.modules_to_save.values()))
    assert (trained.weight != 0).any()  # the trained copy moved
    if earlier:
        assert trained.decay_logit != 0
    with pytest.raises(hm.InvalidArgumentError, match="cannot change while the chain prior is wrapped"):
        trainer.model.get_base_model().configure(tokenizer, chain_prior_earlier=earlier + 1)
    folder = hm.save_for_inference(trainer, tokenizer, tmp_path / "adapter")
    loaded, _ = hm.load_for_inference(folder)
    batch = fixed_batch(tokenizer, train)
    torch.testing.assert_close(logits_of(loaded, batch), logits_of(trainer.model, batch), rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------------------------- settings
def test_a_training_run_counts_its_split_and_the_option_needs_the_history_in_the_decoder(tiny, tmp_path):
    from hf_metaid.cli import build_parser
    from hf_metaid.cli.settings_options import _model_and_training
    from hf_metaid.workflow.settings import ModelSettings, TrainingSettings
    from hf_metaid.workflow.training_run import train

    split, tokenizer, _ = tiny
    with pytest.raises(hm.InvalidArgumentError, match="chain_prior needs history_in_decoder"):
        ModelSettings(chain_prior=8)
    run = train(
        split["train"],
        tokenizer.entity_vocabulary,
        tmp_path,
        ModelSettings(d_model=32, chain_prior=8, history_in_decoder=True),
        TrainingSettings(max_steps=2, batch_size=8, warmup_steps=0),
    )
    prior = run.model.metaid_chain_prior
    users = len(set(split["train"]["user"]))
    assert int(prior.counts.sum()) == split["train"].num_rows - users  # every consecutive pair, each user's own
    assert (prior.weight != 0).any()
    args = build_parser().parse_args(["demo", "--chain-prior", "16", "--chain-prior-earlier", "2"])
    assert _model_and_training(args)[0].chain_prior == 16 and _model_and_training(args)[0].chain_prior_earlier == 2


@pytest.mark.slow
@pytest.mark.parametrize("earlier", [0, 2], ids=["last", "earlier2"])
def test_remote_code_reads_the_chain_prior_without_the_package(tmp_path, earlier):
    tokenizer, model, chain = chain_pair(SHAPES[1], (3.0, 3.0), earlier=earlier)
    with torch.no_grad():
        model.metaid_chain_prior.log_pseudo_count.fill_(0.5)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "chain_prior.py").is_file()
    history = chain[1][:3]
    remote = run_remote(REMOTE_RECOMMEND, tmp_path, json.dumps(history))
    assert remote["module"].startswith("transformers_modules")
    expected = model.recommend(tokenizer, user="u1", history=history, k=5)
    assert_same_recommendations(remote["recs"], expected, atol=1e-5)


def test_turning_the_history_off_drops_the_recipes_prior_but_not_one_asked_for(capsys):
    from hf_metaid.cli import build_parser
    from hf_metaid.cli.settings_options import _model_and_training

    parse = build_parser().parse_args
    assert _model_and_training(parse(["demo"]))[0].chain_prior == hm.recipes.get("fast").model.chain_prior > 0
    model = _model_and_training(parse(["demo", "--no-history-in-decoder"]))[0]
    assert not model.history_in_decoder and model.chain_prior == 0
    assert "turns off the recipe's --chain-prior" in capsys.readouterr().out
    with pytest.raises(hm.InvalidArgumentError, match="chain_prior needs history_in_decoder"):
        _model_and_training(parse(["demo", "--no-history-in-decoder", "--chain-prior", "5"]))
    with pytest.raises(hm.InvalidArgumentError, match="chain_prior needs history_in_decoder"):  # not the reach's rule
        _model_and_training(parse(["demo", "--no-history-in-decoder", "--chain-prior-earlier", "2"]))
