"""Prompt datasets: sample counts, prompt content, template choice, evaluation prompts and tokenization."""

from __future__ import annotations

import datasets
import pytest

import hf_metaid as hm
from conftest import named_vocabulary, tiny_model
from hf_metaid.data import (
    build_eval_prompts,
    build_training_prompts,
    count_training_samples,
    tokenize_prompts,
)
from hf_metaid.prompt_templates import (
    DIRECT_SEEN,
    SEQUENTIAL_SEEN,
    SEQUENTIAL_UNSEEN,
    TEMPLATE_SETS,
    fill_template,
)

datasets.disable_progress_bars()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def beauty_data():
    interactions = hm.load_interactions()
    users = interactions["user"][:]
    first_users = list(dict.fromkeys(users))[:200]
    end = len(users) - users[::-1].index(first_users[-1])
    subset = interactions.select(range(end))
    names = hm.catalogue(subset)
    tokenizer = hm.MetaIDTokenizer.from_base(None, named_vocabulary(names["users"], names["items"], num_clusters=8))
    return {"full": interactions, "subset": subset, "split": hm.leave_one_out(subset), "tokenizer": tokenizer}


def test_sequential_counts_on_beauty(beauty_data):
    train = beauty_data["split"]["train"]
    sequences = hm.user_sequences(beauty_data["subset"])
    expected = sum(len(items) - 3 for items in sequences.values())  # train part = items[:-2]; targets from i = 1
    prompts = build_training_prompts(train, beauty_data["tokenizer"], tasks=("sequential",))
    assert len(prompts) == expected
    both = build_training_prompts(train, beauty_data["tokenizer"])
    assert len(both) == expected + len(train)  # direct: every training interaction once
    assert count_training_samples(train) == {"sequential": expected, "direct": len(train)}
    # the paper's number, counted without building a prompt
    full_train = hm.leave_one_out(beauty_data["full"])["train"]
    assert count_training_samples(full_train, tasks=("sequential",)) == {"sequential": 131_413}


def test_training_prompt_content():
    interactions = hm.load_interactions(
        datasets.Dataset.from_dict(
            {"user": ["a"] * 6 + ["b"] * 3, "item": ["1", "2", "3", "4", "5", "6", "7", "8", "9"]}
        )
    )
    split = hm.leave_one_out(interactions)
    tokenizer = hm.MetaIDTokenizer.from_base(None, named_vocabulary(["a", "b"], [str(i) for i in range(1, 10)]))
    only = {"sequential": {"seen": ("U {user} H {history}",)}, "direct": {"seen": ("U {user}",)}}
    prompts = build_training_prompts(split["train"], tokenizer, templates=only, max_history=2)
    tok = tokenizer.item_tokens
    user_a = tokenizer.user_tokens("a")
    sequential = [
        (f"U {user_a} H {tok('1')}", tok("2")),
        (f"U {user_a} H {tok('1')} , {tok('2')}", tok("3")),
        (f"U {user_a} H {tok('2')} , {tok('3')}", tok("4")),  # history capped at the last 2
    ]
    direct = [(f"U {user_a}", tok(item)) for item in "1234"]
    rows = list(zip(prompts["source"][:], prompts["target"][:], strict=True))
    assert rows[:7] == sequential + direct
    # user b has a single training item: no sequential sample, one direct sample
    assert rows[7:] == [(f"U {tokenizer.user_tokens('b')}", tok("7"))]


def test_template_choice_is_seeded_and_expandable(beauty_data):
    train, tokenizer = beauty_data["split"]["train"], beauty_data["tokenizer"]
    one = build_training_prompts(train, tokenizer, seed=3)
    again = build_training_prompts(train, tokenizer, seed=3)
    other = build_training_prompts(train, tokenizer, seed=4)
    assert one["source"][:] == again["source"][:]
    assert one["source"][:] != other["source"][:]
    assert one["target"][:] == other["target"][:]
    used = {s for s in SEQUENTIAL_SEEN if any(src.startswith(s.split("{")[0]) for src in one["source"][:])}
    assert len(used) > 1  # templates are mixed, not always the first
    full = build_training_prompts(train, tokenizer, tasks=("direct",), templates_per_sample="all")
    assert len(full) == len(DIRECT_SEEN) * len(train)
    two = build_training_prompts(train, tokenizer, tasks=("direct",), templates_per_sample=2)
    assert len(two) == 2 * len(train)
    pairs = list(zip(two["source"][:], two["target"][:], strict=True))
    assert all(pairs[i] != pairs[i + 1] for i in range(0, len(pairs), 2))  # two distinct templates per sample
    with pytest.raises(ValueError, match="templates_per_sample"):
        build_training_prompts(train, tokenizer, templates_per_sample=99)
    with pytest.raises(ValueError, match="unknown task"):
        build_training_prompts(train, tokenizer, tasks=("rating",))


def test_eval_prompts_match_recommend(beauty_data):
    test, tokenizer = beauty_data["split"]["test"], beauty_data["tokenizer"]
    unseen = build_eval_prompts(test, tokenizer)
    row = unseen[0]
    assert set(unseen.column_names) == {"user", "history", "target", "source"}
    shown = [tokenizer.item_tokens(item) for item in row["history"][-10:]]
    assert row["source"] == fill_template(SEQUENTIAL_UNSEEN, tokenizer.user_tokens(row["user"]), shown)
    # "seen" is the template model.recommend uses by default: evaluation and inference prompts agree
    seen = build_eval_prompts(test, tokenizer, template="seen", max_history=5)
    prompt = tiny_model(tokenizer)._prompt(tokenizer, row["user"], row["history"], None, 5)
    assert seen[0]["source"] == prompt
    direct = build_eval_prompts(test, tokenizer, task="direct")
    assert "{" not in direct[0]["source"] and tokenizer.user_tokens(row["user"]) in direct[0]["source"]
    custom = build_eval_prompts(test, tokenizer, template="{history} -> {user}", max_history=1)
    assert custom[0]["source"] == f"{shown[-1]} -> {tokenizer.user_tokens(row['user'])}"
    with pytest.raises(ValueError, match="template"):
        build_eval_prompts(test, tokenizer, template="no placeholders")


def test_tokenize_prompts_labels(beauty_data):
    split, tokenizer = beauty_data["split"], beauty_data["tokenizer"]
    train = tokenize_prompts(build_training_prompts(split["train"], tokenizer, tasks=("sequential",)), tokenizer)
    assert train.column_names == ["input_ids", "attention_mask", "labels"]
    raw = build_training_prompts(split["train"], tokenizer, tasks=("sequential",))
    first_target = raw[0]["target"]
    ids = tokenizer.convert_tokens_to_ids([t + ">" for t in first_target.split(">")[:-1]])
    assert train[0]["labels"] == [*ids, tokenizer.eos_token_id]
    assert train[0]["input_ids"][-1] == tokenizer.eos_token_id
    assert set(ids) <= set(train[0]["input_ids"]) | set(train[0]["labels"])
    evaluation = tokenize_prompts(build_eval_prompts(split["test"], tokenizer), tokenizer, keep_columns=["user"])
    assert evaluation.column_names == ["user", "input_ids", "attention_mask", "labels"]
    row = split["test"][0]
    assert evaluation[0]["labels"] == [*tokenizer.item_token_ids(row["target"]), tokenizer.eos_token_id]
    short = tokenize_prompts(raw, tokenizer, max_source_length=8)
    assert max(len(ids) for ids in short["input_ids"][:]) == 8


def test_default_prompts_have_no_unknown_words(beauty_data):
    """Every built-in template must tokenize without <unk> on the offline base (else a word is lost)."""
    split, tokenizer = beauty_data["split"], beauty_data["tokenizer"]
    parts = []
    for templates in TEMPLATE_SETS.values():
        parts.append(build_training_prompts(split["train"], tokenizer, templates=templates, templates_per_sample="all"))
        for task in ("sequential", "direct"):
            parts.append(build_eval_prompts(split["test"], tokenizer, task=task, templates=templates))
    prompts = datasets.concatenate_datasets(parts)
    assert prompts.num_rows > 0
    unknown = {
        source
        for source, ids in zip(prompts["source"][:], tokenizer(prompts["source"][:])["input_ids"], strict=True)
        if tokenizer.unk_token_id in ids
    }
    assert not unknown, sorted(unknown)[:3]


# ------------------------------------------------------------------------------------- choosing and writing prompts
def test_resolve_template_is_the_one_place_a_template_is_chosen():
    from hf_metaid.prompt_templates import (
        COLD_USER_SEQUENTIAL,
        COMPACT_TEMPLATES,
        DIRECT_UNSEEN,
        TEMPLATES,
        resolve_template,
    )

    assert resolve_template("sequential") == SEQUENTIAL_SEEN[0]
    assert resolve_template("direct", "unseen") == DIRECT_UNSEEN
    assert resolve_template("sequential", "seen", COMPACT_TEMPLATES) == "user {user} items {history}"
    assert resolve_template("sequential", "seen", None, cold_user=True) == COLD_USER_SEQUENTIAL
    # recorded templates are the model's own words, for a user without an ID too
    assert resolve_template("sequential", "seen", COMPACT_TEMPLATES, cold_user=True) == "user {user} items {history}"
    assert resolve_template("direct", "mine {user}", TEMPLATES) == "mine {user}"
    with pytest.raises(ValueError, match="unknown task 'other'"):
        resolve_template("other")
    with pytest.raises(ValueError, match=r"'seen', 'unseen' or a sequential template with \{history\}"):
        resolve_template("sequential", "user {user} only")  # would ask without the history it is about
    with pytest.raises(ValueError, match=r"a direct template with \{user\}"):
        resolve_template("direct", "items {history}")  # would ask every user the same question
    with pytest.raises(ValueError, match="no 'unseen' templates for task 'direct'"):
        resolve_template("direct", "unseen", {"direct": {"seen": ["{user}"]}})
    with pytest.raises(TypeError, match="template must be a string"):
        resolve_template("direct", 3)


def test_format_prompt_cuts_the_history_and_checks_its_length():
    from hf_metaid.prompt_templates import format_prompt

    tokens = ["<CT1><R1>", "<CT2><R2>", "<CT3><R3>"]
    assert format_prompt("u {user} h {history}", "<CT0><R0>", tokens, 2) == "u <CT0><R0> h <CT2><R2> , <CT3><R3>"
    assert format_prompt("h {history} u {user}", None, tokens[:1], 5) == "h <CT1><R1> u "
    for bad in (0, 2.0, True, "3"):
        with pytest.raises(ValueError, match="max_history must be an integer >= 1"):
            format_prompt("{history}", None, tokens, bad)


def test_training_evaluation_and_recommend_write_the_same_prompt(beauty_data):
    """The three writers share format_prompt: a user's last training prompt, its validation prompt (same history
    cut) and what recommend writes are one string."""
    tokenizer, split = beauty_data["tokenizer"], beauty_data["split"]
    templates = {"sequential": {"seen": ["u {user} h {history}"], "unseen": ["u {user} h {history}"]}}
    train = build_training_prompts(split["train"], tokenizer, tasks=("sequential",), templates=templates, max_history=3)
    row = split["validation"][0]
    evaluation = build_eval_prompts(split["validation"].select([0]), tokenizer, template="seen", max_history=3,
                                    templates=templates)  # fmt: skip
    model = tiny_model(tokenizer)
    model.set_prompt_format(templates, 3)
    written = model._prompt(tokenizer, row["user"], row["history"], None, 3)
    assert evaluation[0]["source"] == written
    user_rows = [
        i for i, source in enumerate(train["source"]) if source.startswith(f"u {tokenizer.user_tokens(row['user'])} ")
    ]
    last_history = row["history"][:-1]  # the validation history minus its last item is the last training prefix
    assert train[user_rows[-1]]["source"] == model._prompt(tokenizer, row["user"], last_history, None, 3)
