"""One description of the model's options (``configuration_metaid.MODEL_OPTIONS``): the config's docstring, its
rules, ``from_base`` / ``configure`` and, on the library side, ``ModelSettings``, the command's help and the model
card all come from it; every combination of the item options builds, runs and reloads; the order of the ``set_*``
calls does not matter."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError

import hf_metaid as hm
from conftest import random_vocabulary
from hf_metaid.configuration_metaid import MODEL_OPTIONS, OPTIONS, VOCABULARY_FIELDS, check_model_options
from hf_metaid.workflow.settings import ModelSettings

# Every rule between options the code has: (the option, the one it needs). A rule added to or dropped from the table
# must be added or dropped here too, with its tests.
RULES = {
    ("item_loss", "item_output"),
    ("item_loss_negatives", "item_loss"),
    ("repeat_bias", "history_in_decoder"),
    ("chain_prior", "history_in_decoder"),
    ("chain_prior_earlier", "chain_prior"),
}
# A value that turns each ruled option on, and the options that make it valid.
ON = {"item_loss": 0.5, "item_loss_negatives": 3, "repeat_bias": True, "chain_prior": 4, "chain_prior_earlier": 2}
VALID = {
    "item_loss": {"item_output": True},
    "item_loss_negatives": {"item_output": True, "item_loss": 0.5},
    "repeat_bias": {"history_in_decoder": True},
    "chain_prior": {"history_in_decoder": True},
    "chain_prior_earlier": {"history_in_decoder": True, "chain_prior": 4},
}
BACKBONE_SETTINGS = {"base", "d_model", "d_ff", "layers", "dropout", "init_new_rows"}


def small_tokenizer() -> hm.MetaIDTokenizer:
    return hm.MetaIDTokenizer.from_base(None, random_vocabulary(num_users=8, num_items=12, num_clusters=3, dim=8))


def small_base() -> hm.MetaIDConfig:
    return hm.tiny_t5_config(d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1)


def build(tokenizer, **options) -> hm.MetaIDForConditionalGeneration:
    return hm.MetaIDForConditionalGeneration.from_base(small_base(), tokenizer, seed=0, **options).eval()


def test_the_rules_are_the_codes_rules():
    assert {(option.name, option.needs) for option in MODEL_OPTIONS if option.needs} == RULES


# ------------------------------------------------------------------------------------------------ one rule each
@pytest.mark.parametrize("option, needs", sorted(RULES))
def test_each_rule_is_checked_wherever_the_options_are_set(option, needs, tmp_path):
    """The rule raises InvalidArgumentError naming both options: for the config, the settings, ``from_base`` and
    ``configure`` (which then changes nothing); with what it needs, each accepts the option."""
    given = {**VALID[option], needs: OPTIONS[needs].default, option: ON[option]}
    fields = {OPTIONS[name].field: value for name, value in given.items()}
    message = f"{option} needs {needs}"
    with pytest.raises(hm.InvalidArgumentError, match=message):
        hm.MetaIDConfig(**fields)
    with pytest.raises(hm.InvalidArgumentError, match=message):
        ModelSettings(**given)
    with pytest.raises(hm.InvalidArgumentError, match=message):
        check_model_options(given)
    tokenizer = small_tokenizer()
    with pytest.raises(hm.InvalidArgumentError, match=message):
        build(tokenizer, **given)
    model = build(tokenizer, **VALID[option])
    before = model.config.to_dict()
    with pytest.raises(hm.InvalidArgumentError, match=message):
        model.configure(tokenizer, **{needs: OPTIONS[needs].default, option: ON[option]})
    assert model.config.to_dict() == before  # a refused change changes nothing
    model.configure(tokenizer, **{option: ON[option]})
    assert getattr(model.config, OPTIONS[option].field) == ON[option]
    with pytest.raises(hm.InvalidArgumentError, match=message):  # turning the need off alone is the same mistake
        model.configure(tokenizer, **{needs: OPTIONS[needs].default})
    config = hm.MetaIDConfig(**{OPTIONS[name].field: value for name, value in {**given, **VALID[option]}.items()})
    assert getattr(config, OPTIONS[option].field) == ON[option]


def test_a_config_written_by_hand_cannot_train_or_save_against_a_rule(tmp_path):
    """Writing a field bypasses ``configure``: the forward refuses to train with an all-items weight and no item
    output (it used to drop the objective silently), and saving refuses the config."""
    tokenizer = small_tokenizer()
    model = build(tokenizer)
    item = tokenizer.entity_vocabulary.items[0]
    batch = tokenizer([f"user {tokenizer.user_tokens('u1')}"], return_tensors="pt")
    labels = torch.tensor([[*tokenizer.item_token_ids(item), tokenizer.eos_token_id]])
    model.config.metaid_item_loss = 0.5
    with pytest.raises(hm.InvalidArgumentError, match="item_loss needs item_output"):
        model(**batch, labels=labels)
    with pytest.raises(StrictDataclassClassValidationError) as refused:
        model.save_pretrained(tmp_path)
    assert "item_loss needs item_output" in str(refused.value.__cause__)
    model.config.metaid_item_loss = 0.0
    assert torch.isfinite(model(**batch, labels=labels).loss)


@pytest.mark.parametrize(
    "option, value, rule",
    [
        ("alpha", -0.1, "alpha must be a number >= 0"),
        ("max_history", 0, "max_history must be an integer >= 1"),
        ("item_loss", -1.0, "item_loss must be a number >= 0"),
        ("item_loss_negatives", 2.5, "item_loss_negatives must be an integer"),
        ("tree_softmax", "yes", "tree_softmax must be True or False"),
        ("templates", {"sequential": {"seen": ["user {user}"]}}, r"templates\['sequential'\]\['seen'\].*lacks"),
    ],
)
def test_each_option_is_checked_alone(option, value, rule):
    tokenizer = small_tokenizer()
    with pytest.raises(hm.InvalidArgumentError, match=rule):
        build(tokenizer, **{option: value})
    model = build(tokenizer)
    with pytest.raises(hm.InvalidArgumentError, match=rule):
        model.configure(**{option: value})


def test_configure_refuses_unknown_options_and_item_options_without_the_tokenizer():
    tokenizer = small_tokenizer()
    model = build(tokenizer)
    with pytest.raises(hm.InvalidArgumentError, match=r"unknown model option.*item_ouput.*the options are alpha"):
        model.configure(item_ouput=True)
    with pytest.raises(hm.InvalidArgumentError, match=r"unknown option.*item_ouput"):
        build(tokenizer, item_ouput=True)
    with pytest.raises(hm.InvalidArgumentError, match="item_output reads the tokenizer's items"):
        model.configure(item_output=True)
    model.configure(tokenizer, item_output=True).configure(item_loss=1.0)  # the items are there now
    assert model.config.metaid_item_loss == 1.0


# --------------------------------------------------------------------------------- every combination of options
def item_option_combinations():
    """Every valid combination of the options that add modules or change the objective."""
    for tree, item_input, (history, repeat, chain, earlier), (output, loss, negatives) in itertools.product(
        (False, True),
        (False, True),
        ((False, False, 0, 0), (True, False, 0, 0), (True, True, 0, 0), (True, True, 4, 0), (True, False, 4, 2)),
        ((False, 0.0, 0), (True, 0.0, 0), (True, 0.5, 0), (True, 0.5, 3)),
    ):
        yield {
            "tree_softmax": tree,
            "item_input": item_input,
            "history_in_decoder": history,
            "repeat_bias": repeat,
            "chain_prior": chain,
            "chain_prior_earlier": earlier,
            "item_output": output,
            "item_loss": loss,
            "item_loss_negatives": negatives,
        }


def labels_for(tokenizer, options) -> torch.Tensor:
    """Two real items as the decoder writes them: one item and the end (prompts), or two items in a row (the
    history in the decoder)."""
    first, second = tokenizer.entity_vocabulary.items[:2]
    if options["history_in_decoder"]:
        return torch.tensor([[*tokenizer.item_token_ids(first), *tokenizer.item_token_ids(second)]])
    return torch.tensor([[*tokenizer.item_token_ids(first), tokenizer.eos_token_id]])


@pytest.mark.numerics
@pytest.mark.parametrize(
    "options", list(item_option_combinations()), ids=lambda o: "-".join(f"{v}" for v in o.values())
)
def test_from_base_builds_every_combination_that_runs_and_reloads(options, tmp_path):
    tokenizer = small_tokenizer()
    model = build(tokenizer, **options)
    assert {name: model.config.model_options()[name] for name in options} == options
    assert ("metaid_item_output" in model._modules) == options["item_output"]
    assert ("metaid_repeat_bias" in model._modules) == options["repeat_bias"]
    assert ("metaid_chain_prior" in model._modules) == bool(options["chain_prior"])
    if options["chain_prior"]:  # the earlier items' decay is a parameter only where they are read
        assert ("decay_logit" in model.metaid_chain_prior._parameters) == bool(options["chain_prior_earlier"])
    assert model.item_input_stack.has_item_input == options["item_input"]
    assert not (model.encoder if options["history_in_decoder"] else model.decoder).has_item_input
    batch = tokenizer([f"user {tokenizer.user_tokens('u1')}"], return_tensors="pt")
    labels = labels_for(tokenizer, options)
    torch.manual_seed(0)  # the all-items objective's drawn items
    with torch.no_grad():
        output = model(**batch, labels=labels)
    assert torch.isfinite(output.loss)
    model.save_pretrained(tmp_path)
    loaded = hm.MetaIDForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.config.model_options() == model.config.model_options()
    assert loaded.config.metaid_num_items == model.config.metaid_num_items
    assert shapes(loaded) == shapes(model)
    torch.manual_seed(0)
    with torch.no_grad():
        again = loaded(**batch, labels=labels)
    # The same weights through the same code on the same machine: equal up to float32 rounding.
    torch.testing.assert_close(again.logits, output.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(again.loss, output.loss, rtol=0, atol=1e-6)


def shapes(model) -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer by name (where it lives), with its shape."""
    tensors = itertools.chain(model.named_parameters(), model.named_buffers())
    return {name: tuple(tensor.shape) for name, tensor in tensors}


# ------------------------------------------------------------------------------------------- order of the set_*
SETTERS = {
    "tree_softmax": lambda model, tok: model.set_tree_softmax(tok),
    "item_output": lambda model, tok: model.set_item_output(tok),
    "item_input": lambda model, tok: model.set_item_input(tok),
    "prompt_format": lambda model, tok: model.set_prompt_format(max_history=5, history_in_decoder=True),
}


def test_the_setters_in_any_order_give_the_same_model():
    """Every order of the set_* calls (then the repeat bias, which needs the history in the decoder) gives the model
    ``from_base`` builds with the options at once: the same config, the same parameters in the same places."""
    tokenizer = small_tokenizer()
    expected = build(
        tokenizer,
        tree_softmax=True,
        item_output=True,
        item_input=True,
        max_history=5,
        history_in_decoder=True,
        repeat_bias=True,
    )
    for order in itertools.permutations(SETTERS):
        model = build(tokenizer)
        for name in order:
            SETTERS[name](model, tokenizer)
        model.set_repeat_bias()
        assert model.config.to_dict() == expected.config.to_dict(), order
        assert shapes(model) == shapes(expected), order
        assert torch.equal(model.metaid_item_mask, expected.metaid_item_mask)
        assert torch.equal(model.decoder.metaid_item_input.item_mask, expected.decoder.metaid_item_input.item_mask)


def test_switching_options_off_in_any_order_gives_the_plain_model():
    tokenizer = small_tokenizer()
    plain = build(tokenizer)
    offs = {
        "tree_softmax": lambda model: model.set_tree_softmax(tokenizer, enabled=False),
        "item_output": lambda model: model.set_item_output(tokenizer, enabled=False),
        "item_input": lambda model: model.set_item_input(tokenizer, enabled=False),
        "prompt_format": lambda model: model.set_prompt_format(),
    }
    for order in itertools.permutations(offs):
        model = build(tokenizer, tree_softmax=True, item_output=True, item_input=True, history_in_decoder=True)
        for name in order:
            offs[name](model)
        assert model.config.to_dict() == plain.config.to_dict() | {"metaid_num_items": model.config.metaid_num_items}
        assert shapes(model) == shapes(plain), order


def test_options_that_need_each_other_change_together():
    tokenizer = small_tokenizer()
    model = build(tokenizer)
    with pytest.raises(hm.InvalidArgumentError, match="repeat_bias needs history_in_decoder"):
        model.set_repeat_bias()  # alone it would score nothing
    model.configure(history_in_decoder=True, repeat_bias=True)
    assert model.config.metaid_repeat_bias and "metaid_repeat_bias" in model._modules
    model.configure(history_in_decoder=False, repeat_bias=False)
    assert "metaid_repeat_bias" not in model._modules


def test_a_module_already_there_keeps_its_weights():
    """Changing other options keeps the items' vectors, wherever the item input moves."""
    tokenizer = small_tokenizer()
    model = build(tokenizer, item_output=True, item_input=True)
    with torch.no_grad():
        model.metaid_item_output.weight.fill_(0.25)
        model.encoder.metaid_item_input.weight.fill_(0.5)
    model.configure(tokenizer, tree_softmax=True, history_in_decoder=True, item_output=True)
    assert bool((model.metaid_item_output.weight == 0.25).all())
    assert bool((model.decoder.metaid_item_input.weight == 0.5).all()) and not model.encoder.has_item_input


# ------------------------------------------------------------------------------- one description, every reader
def words(text: str) -> str:
    return " ".join(text.split())


def test_the_config_documents_every_field_from_the_table():
    fields = {name: field for name, field in hm.MetaIDConfig.__dataclass_fields__.items() if name.startswith("metaid_")}
    table = {option.field: option for option in (*MODEL_OPTIONS, *VOCABULARY_FIELDS)}
    assert set(fields) == set(table)
    for name, option in table.items():
        assert (fields[name].type, fields[name].default) == (option.kind, option.default), name
        assert f"{name} (`{option.kind}`" in hm.MetaIDConfig.__doc__
        assert words(option.description) in words(hm.MetaIDConfig.__doc__)


def test_model_settings_fields_are_the_configs_options():
    settings = {field.name: field for field in dataclasses.fields(ModelSettings)}
    assert set(settings) - BACKBONE_SETTINGS == {option.name for option in MODEL_OPTIONS}
    for option in MODEL_OPTIONS:
        field = settings[option.name]
        assert field.metadata["help"].startswith(option.description)
        assert field.metadata.get("minimum") == option.minimum
        if option.name != "templates":  # the settings name a template set or file; the config holds the templates
            assert (field.type, field.default) == (option.kind, option.default), option.name
    options = ModelSettings(templates="compact", item_output=True).model_options()
    assert set(options) == {option.name for option in MODEL_OPTIONS} and options["item_output"]
    assert options["templates"] == hm.prompt_templates.COMPACT_TEMPLATES
    assert ModelSettings().model_options()["templates"] is None  # the library's own, as the config records it


@pytest.mark.parametrize("command", ["train", "demo"])
def test_the_commands_help_of_each_model_option_is_the_configs_documentation(command, capsys, monkeypatch):
    from hf_metaid.cli import main

    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = words(capsys.readouterr().out)
    for option in MODEL_OPTIONS:
        flag = "--" + option.name.replace("_", "-")
        assert flag in text
        start = text.index(flag)
        assert words(option.description) in text[start:], option.name


def test_the_card_names_the_options_the_table_gives_words():
    from hf_metaid.saving.model_card import ITEM_OPTIONS, _item_options

    assert tuple((option.field, option.card) for option in MODEL_OPTIONS if option.card) == ITEM_OPTIONS
    config = {option.field: True for option in MODEL_OPTIONS if option.card}
    assert _item_options(config) == [option.card for option in MODEL_OPTIONS if option.card]
