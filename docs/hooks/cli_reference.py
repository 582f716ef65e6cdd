"""MkDocs hook: the command-line reference, written from the ``hf-metaid`` argument parser at build time.

A page holding the line ``<!-- cli-reference -->`` gets, in its place, one section per subcommand with the help
text ``hf-metaid <command> --help`` prints, so the reference cannot drift from the options the command takes.
"""

from __future__ import annotations

import argparse
import functools

MARKER = "<!-- cli-reference -->"
HELP_WIDTH = 100  # fixed, so that the page does not depend on the terminal that builds it


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands' parsers of ``parser``, by name, in the order they were added."""
    actions = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def help_text(parser: argparse.ArgumentParser) -> str:
    """What ``--help`` prints for ``parser``, at :data:`HELP_WIDTH` columns."""
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=HELP_WIDTH)
    return parser.format_help().rstrip()


def cli_reference() -> str:
    """The Markdown of the reference: the main help, then a section per subcommand."""
    from hf_metaid.cli import build_parser

    parser = build_parser()
    sections = ["```text", help_text(parser), "```"]
    for name, command in subcommands(parser).items():
        sections += ["", f"## hf-metaid {name}", "", "```text", help_text(command), "```"]
    return "\n".join(sections)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference())
