"""Settings dataclasses as command-line options: help from the fields, defaults and values round-trip, bad values
are argparse errors naming the option."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from hf_metaid.indexing import BlockIndexerConfig, MetaIDIndexerConfig
from hf_metaid.settings.fields import add_config_arguments, config_from_arguments

INDEX_FIELDS = ("num_clusters", "dim", "embedding", "rank_by", "joint", "learning_rate")


def index_parser(**options) -> argparse.ArgumentParser:
    """An ``index``-like command: the indexing options in their own group."""
    parser = argparse.ArgumentParser(prog="index")
    group = parser.add_argument_group("indexing")
    add_config_arguments(group, MetaIDIndexerConfig, INDEX_FIELDS, **options)
    return parser


def test_help_shows_each_fields_text_option_names_and_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one line per option: the texts are compared whole
    text = index_parser(defaults={"embedding": "spectral"}).format_help()
    settings = {f.name: f for f in MetaIDIndexerConfig.__dataclass_fields__.values()}
    for name in INDEX_FIELDS:
        assert settings[name].metadata["help"] in text
    assert "--num-clusters NUM_CLUSTERS" in text and " --clusters" not in text  # one spelling: the field's name
    assert "--embedding {skipgram,spectral}" in text and "--joint, --no-joint" in text
    assert "(default: 100)" in text and "(default: spectral)" in text and "(default: 0.03)" in text
    assert "--window" not in text  # only the fields asked for


def test_defaults_and_values_round_trip():
    parser = index_parser(defaults={"embedding": "spectral"})
    assert config_from_arguments(parser.parse_args([]), MetaIDIndexerConfig) == MetaIDIndexerConfig(
        embedding="spectral"
    )
    argv = [
        "--num-clusters",
        "40",
        "--dim",
        "32",
        "--embedding",
        "skipgram",
        "--rank-by",
        "degree",
        "--learning-rate",
        "1",
    ]
    config = config_from_arguments(parser.parse_args(argv), MetaIDIndexerConfig, seed=3)
    assert config == MetaIDIndexerConfig(
        num_clusters=40, dim=32, embedding="skipgram", rank_by="degree", learning_rate=1.0, seed=3
    )
    separate = config_from_arguments(parser.parse_args(["--num-clusters", "4,6", "--no-joint"]), MetaIDIndexerConfig)
    assert separate.num_clusters == (4, 6) and separate.joint is False


def test_options_decided_after_parsing_are_absent_unless_given(monkeypatch):
    """``defaults_from``: an option not given leaves the namespace (its value comes from elsewhere, the caller's
    ``settings``), and the help says where from, with the example value of ``defaults``."""
    monkeypatch.setenv("COLUMNS", "400")
    parser = index_parser(defaults={"num_clusters": 200}, defaults_from="the recipe's; fast: {value}")
    assert vars(parser.parse_args([])) == {}
    given = parser.parse_args(["--dim", "8", "--no-joint"])
    assert vars(given) == {"MetaIDIndexerConfig.dim": 8, "MetaIDIndexerConfig.joint": False}
    assert config_from_arguments(given, MetaIDIndexerConfig, num_clusters=7) == MetaIDIndexerConfig(
        dim=8, joint=False, num_clusters=7
    )
    text = parser.format_help()
    assert "(default: the recipe's; fast: 200)" in text and "(default: the recipe's; fast: None)" in text
    assert "==SUPPRESS==" not in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--num-clusters", "0"],
            "argument --num-clusters: num_clusters must be an int >= 1 or a pair of ints >= 1, got 0",
        ),
        (["--num-clusters", "4,x"], "argument --num-clusters: num_clusters must be an int >= 1 or a pair of ints >= 1"),
        (["--dim", "2.5"], "argument --dim: dim must be an int >= 1, got '2.5'"),
        (["--learning-rate", "0"], "argument --learning-rate: learning_rate must be a finite number > 0, got 0.0"),
        (["--learning-rate", "nan"], "argument --learning-rate: learning_rate must be a finite number > 0, got nan"),
        (["--embedding", "svd"], "argument --embedding: embedding must be one of 'skipgram', 'spectral', got 'svd'"),
    ],
)
def test_bad_values_are_argparse_errors_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        index_parser().parse_args(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_rules_between_fields_apply_when_the_config_is_built():
    args = index_parser().parse_args(["--num-clusters", "4,6"])
    with pytest.raises(ValueError, match="num_clusters must be an int with joint=True"):
        config_from_arguments(args, MetaIDIndexerConfig)


def test_options_of_the_same_name_elsewhere_in_the_parser_stay_apart():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=128)  # e.g. a training option
    add_config_arguments(parser, MetaIDIndexerConfig, ["dim"])
    args = parser.parse_args(["--batch-size", "7", "--dim", "8"])
    config = config_from_arguments(args, MetaIDIndexerConfig)
    assert args.batch_size == 7
    assert config == MetaIDIndexerConfig(dim=8)  # the indexer's own batch_size keeps its default


def test_every_field_by_default_on_subcommands():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command")
    add_config_arguments(commands.add_parser("metaid"), MetaIDIndexerConfig)
    add_config_arguments(commands.add_parser("sequential"), BlockIndexerConfig)
    args = parser.parse_args(["metaid", "--batch-size", "512", "--backend", "gensim", "--seed", "3", "--no-joint"])
    assert config_from_arguments(args, MetaIDIndexerConfig) == MetaIDIndexerConfig(
        batch_size=512, backend="gensim", seed=3, joint=False
    )
    args = parser.parse_args(["sequential", "--block-size", "10"])
    assert config_from_arguments(args, BlockIndexerConfig) == BlockIndexerConfig(block_size=10)
    assert config_from_arguments(parser.parse_args(["sequential"]), BlockIndexerConfig).block_size is None


def test_a_field_without_default_is_a_required_option(capsys):
    @dataclass(frozen=True, kw_only=True)
    class Needs:
        path: str = field(metadata={"help": "where the vocabulary goes"})

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Needs)
    assert config_from_arguments(parser.parse_args(["--path", "out"]), Needs) == Needs(path="out")
    with pytest.raises(SystemExit):
        parser.parse_args([])
    assert "the following arguments are required: --path" in capsys.readouterr().err


def test_misuse_is_refused_when_the_parser_is_built():
    parser = argparse.ArgumentParser()
    with pytest.raises(TypeError, match="MetaIDIndexerConfig has no field 'clusters'"):
        add_config_arguments(parser, MetaIDIndexerConfig, ["clusters"])
    with pytest.raises(TypeError, match="fields that get no option: rank_by"):
        add_config_arguments(parser, MetaIDIndexerConfig, ["dim"], defaults={"rank_by": "degree"})
    with pytest.raises(ValueError, match="embedding must be one of 'skipgram', 'spectral', got 'svd'"):
        add_config_arguments(parser, MetaIDIndexerConfig, ["embedding"], defaults={"embedding": "svd"})
    add_config_arguments(parser, MetaIDIndexerConfig, ["dim"])
    with pytest.raises(TypeError, match="given both as a command-line option and as a keyword: dim"):
        config_from_arguments(parser.parse_args([]), MetaIDIndexerConfig, dim=3)

    @dataclass
    class Undocumented:
        size: int = 3

    with pytest.raises(TypeError, match=r"Undocumented.size has no help text"):
        add_config_arguments(parser, Undocumented)

    @dataclass
    class Unsupported:
        names: list[str] = field(default_factory=list, metadata={"help": "ids"})

    with pytest.raises(TypeError, match=r"Unsupported.names: unsupported annotation"):
        add_config_arguments(parser, Unsupported)
