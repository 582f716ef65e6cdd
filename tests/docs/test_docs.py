"""The documentation runs: every ``python`` block of ``README.md`` and ``docs/`` and every command of their ``bash``
blocks is executed, page by page and in order (the blocks of a page share one namespace and one working folder), and
the site builds with ``mkdocs build --strict``. The README stays a short front door whose figures, commands and
citation match their sources.

Commands run in this process, on little data: a command that reads the embedded Beauty data or a built-in synthetic
log reads a slice of it (``small_data``), training stops after a few steps and evaluation after a few users
(``small_command``). A block that cannot run here (an install, an upload, a multi-GPU launch) follows a visible
``<!-- skip: next "why" -->``; ``test_skips_are_rare_and_explained`` keeps those few and explained.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import re
import runpy
import shlex
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from unittest import SkipTest

import pytest
import torch
from sybil import Document
from sybil.evaluators.skip import Skipper
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

import hf_metaid as hm
from hf_metaid import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 150
# Paths from the repository root: the README first, then the site's pages.
PAGES = [README.name, *sorted(path.relative_to(ROOT).as_posix() for path in DOCS.rglob("*.md"))]

# Fenced blocks: python and bash run; text is shown as it is (command output, file contents, formats).
RUN_LANGUAGES = ("python", "bash")
SHOWN_LANGUAGES = ("text", "bibtex")
FENCE = re.compile(r"^[ \t]*```(\S*)", re.MULTILINE)
SKIP = re.compile(r"^[ \t]*<!--\s*skip:\s*(\w+)(.*?)-->", re.MULTILINE)  # as sybil reads them
MAX_SKIPPED_SHARE = 0.2  # of the runnable blocks

SMALL_USERS = 100  # Beauty's first 100 users: user 1 and items 1-40 are among them
SMALL_STEPS = 3
SMALL_EVAL_USERS = 20
BUILT_IN_DATA = ("beauty", "markov", "markov-repeats")
READS_DATA = ("demo", "evaluate", "extend", "index", "recommend", "train")  # the commands that take --data


# ---------------------------------------------------------------------------------------------- bash blocks
def small_data(name: str, folder: Path) -> Path:
    """A small file in ``folder`` standing for the built-in data ``name``: Beauty's first users as P5 text, or a
    small log of the same synthetic process as CSV."""
    path = folder / f"small-{name}.{'txt' if name == 'beauty' else 'csv'}"
    if path.exists():
        return path
    if name == "beauty":
        with gzip.open(hm.embedded_beauty_path(), "rt") as handle:
            path.write_text("".join(next(handle) for _ in range(SMALL_USERS)))
    else:
        table, _ = hm.data.markov_interactions(
            num_users=SMALL_USERS, num_items=200, repeats=name == "markov-repeats", seed=0
        )
        table.to_csv(path, index=False)
    return path


def small_command(argv: list[str], folder: Path) -> list[str]:
    """``argv`` (``hf-metaid COMMAND ...``) on little data: built-in data read from :func:`small_data`, training cut
    to ``SMALL_STEPS`` steps, evaluation to ``SMALL_EVAL_USERS`` users. argparse keeps the last value of an option,
    so options are appended (``--data`` too, where the data given or meant by default is built in)."""
    command, rest = argv[1], list(argv[2:])
    if command in READS_DATA:
        args = cli.build_parser().parse_args(argv[1:])
        if str(args.data).lower() in BUILT_IN_DATA:
            rest += ["--data", str(small_data(str(args.data).lower(), folder))]
    if command in ("demo", "train"):
        rest += ["--max-steps", str(SMALL_STEPS)]
    if command in ("demo", "evaluate"):
        rest += ["--limit", str(SMALL_EVAL_USERS)]
    return [command, *rest]


def shell_commands(source: str) -> Iterator[list[str]]:
    """The commands of a bash block: one a line (``\\`` continues it), comments dropped."""
    for line in source.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            yield words


@contextlib.contextmanager
def process_state_kept() -> Iterator[None]:
    """Undo what a block may set for the whole process (``hf_metaid.cli.main`` sets torch threads, warning filters,
    transformers' progress bars), so that later tests run as they would have."""
    from transformers.utils import logging as transformers_logging

    threads, filters = torch.get_num_threads(), warnings.filters[:]
    bars = transformers_logging.is_progress_bar_enabled()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        warnings.filters[:] = filters
        (transformers_logging.enable_progress_bar if bars else transformers_logging.disable_progress_bar)()


def run_example_script(argv: list[str]) -> int:
    """``python examples/NAME.py ARGS`` in this process, as ``__main__``, with the examples folder importable."""
    script = ROOT / argv[0]
    with monkeypatched_argv([str(script), *argv[1:]]), importable(script.parent):
        runpy.run_path(str(script), run_name="__main__")
    return 0


@contextlib.contextmanager
def monkeypatched_argv(argv: list[str]) -> Iterator[None]:
    saved, sys.argv = sys.argv, argv
    try:
        yield
    finally:
        sys.argv = saved


@contextlib.contextmanager
def importable(folder: Path) -> Iterator[None]:
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def run_bash_block(example) -> None:
    """Each command of the block: ``hf-metaid ...`` through the command's ``main`` on little data
    (:func:`small_command`), ``python examples/NAME.py ...`` as it is written."""
    folder = Path.cwd()
    for words in shell_commands(str(example.parsed)):
        output = io.StringIO()
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            try:
                if words[0] == "hf-metaid":
                    status = cli.main(small_command(words, folder))
                elif words[0] == "python" and len(words) > 1 and words[1].startswith("examples/"):
                    status = run_example_script(words[1:])
                else:
                    raise AssertionError(
                        f"{example.path}:{example.line}: {words[0]!r} is not run by the docs tests; put "
                        '<!-- skip: next "why" --> before the block'
                    )
            except SystemExit as exit:  # argparse's refusals
                status = exit.code
        where = f"{example.path}:{example.line}: {' '.join(words)}"
        assert status in (0, None), f"{where} exited {status}:\n{output.getvalue()}"


PARSERS = (PythonCodeBlockParser(), CodeBlockParser("bash", run_bash_block), SkipParser())


# ------------------------------------------------------------------------------------------------ the pages
class PageRun:
    """One page's examples evaluated in order, in one namespace and one working folder, each at most once."""

    def __init__(self, page: str) -> None:
        self.document = Document.parse(str(ROOT / page), *PARSERS)
        self.examples = list(self.document)
        self.outcomes: dict[int, BaseException | None] = {}
        self.folder: Path | None = None

    def run_until(self, index: int) -> BaseException | None:
        """Evaluate the examples up to ``index`` that have not run yet; the outcome of example ``index``."""
        for position in range(len(self.outcomes), index + 1):
            if any(e is not None and not isinstance(e, SkipTest) for e in self.outcomes.values()):
                self.outcomes[position] = RuntimeError("an earlier block of the page failed")
                continue
            try:
                with process_state_kept():
                    self.examples[position].evaluate()
                self.outcomes[position] = None
            except SkipTest as skipped:
                self.outcomes[position] = skipped
            except Exception as error:
                self.outcomes[position] = error
        return self.outcomes[index]


RUNS: dict[str, PageRun] = {}


def code_blocks() -> list:
    """``(page, example index)`` of every runnable block, with an id ``page:line``."""
    params = []
    for page in PAGES:
        run = RUNS.setdefault(page, PageRun(page))
        for index, example in enumerate(run.examples):
            if not isinstance(example.region.evaluator, Skipper):  # a skip directive is no block
                params.append(pytest.param(page, index, id=f"{page}:{example.line}"))
    return params


@pytest.mark.slow
@pytest.mark.parametrize(("page", "index"), code_blocks())
def test_code_block_runs(page, index, tmp_path_factory, monkeypatch, one_thread):
    run = RUNS[page]
    if run.folder is None:
        run.folder = tmp_path_factory.mktemp(Path(page).stem)
    monkeypatch.chdir(run.folder)
    outcome = run.run_until(index)
    if isinstance(outcome, SkipTest):
        pytest.skip(f"{page}: {outcome}")
    if outcome is not None:
        raise outcome


# ------------------------------------------------------------------------------------------ the pages' rules
def fenced_languages(text: str) -> list[str]:
    """The language of every fenced block's opening line (closing fences have none and are dropped in pairs)."""
    fences = FENCE.findall(text)
    return fences[0::2]


def test_every_block_runs_or_is_shown_as_text():
    for page in PAGES:
        for language in fenced_languages((ROOT / page).read_text()):
            assert language in RUN_LANGUAGES + SHOWN_LANGUAGES, f"{page}: a ```{language} block is neither run nor text"


def test_skips_are_rare_and_explained():
    runnable = skipped = 0
    for page in PAGES:
        text = (ROOT / page).read_text()
        runnable += sum(language in RUN_LANGUAGES for language in fenced_languages(text))
        for action, reason in SKIP.findall(text):
            assert action == "next", f"{page}: skip {action}: skip one block at a time, each with its reason"
            assert len(reason.strip().strip("\"'").split()) >= 3, f"{page}: a skip without a reason: {reason!r}"
            skipped += 1
    assert skipped <= MAX_SKIPPED_SHARE * runnable, f"{skipped} of {runnable} blocks skipped"


def test_small_command_shrinks_built_in_data_steps_and_users(tmp_path):
    demo = small_command(["hf-metaid", "demo", "--out", "m"], tmp_path)
    assert demo[:3] == ["demo", "--out", "m"] and demo[-4:] == ["--max-steps", "3", "--limit", "20"]
    assert demo[demo.index("--data") + 1] == str(tmp_path / "small-beauty.txt")
    train = small_command(["hf-metaid", "train", "--data", "markov", "--vocab", "v", "--out", "m"], tmp_path)
    assert train[-4:-2] == ["--data", str(tmp_path / "small-markov.csv")]
    mine = small_command(["hf-metaid", "index", "--data", "mine.csv", "--out", "v"], tmp_path)
    assert mine == ["index", "--data", "mine.csv", "--out", "v"]
    every = small_command(["hf-metaid", "recommend", "m", "--data", "beauty", "--out", "r.csv"], tmp_path)
    assert every[-2:] == ["--data", str(tmp_path / "small-beauty.txt")]


def test_architecture_page_names_every_module():
    text = (DOCS / "architecture.md").read_text()
    package = ROOT / "src" / "hf_metaid"
    modules = [path.relative_to(package).as_posix() for path in package.rglob("*.py")]
    unnamed = [m for m in modules if f"`{m}`" not in text and f"`{Path(m).name}`" not in text]
    assert unnamed == [], f"docs/architecture.md does not name {unnamed}"


def test_api_reference_covers_the_public_api():
    documented = set()
    for page in (DOCS / "reference" / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: hf_metaid\.(\w+)\s*$", page.read_text(), re.MULTILINE))
    assert sorted(set(hm.__all__) - documented) == []
    assert sorted(documented - set(hm.__all__)) == []


# ------------------------------------------------------------------------------------------------- the README
def readme_section(title: str) -> str:
    """The text of the README's ``## title`` section, up to the next section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README.read_text(), re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no section '## {title}'"
    return match.group(1)


def fenced_blocks(text: str, language: str) -> list[str]:
    """The contents of the ``language`` blocks of ``text``."""
    return re.findall(rf"^[ \t]*```{language}\n(.*?)^[ \t]*```", text, re.MULTILINE | re.DOTALL)


def table_rows(text: str) -> dict[str, list[str]]:
    """The rows of the Markdown tables in ``text``: first cell -> the other cells (header and rule rows included)."""
    rows = [line.strip().strip("|").split("|") for line in text.splitlines() if line.startswith("|")]
    return {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in rows}


def test_readme_is_a_short_front_door():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): details go to docs/"


def test_readme_two_commands_are_the_scripts():
    """``bash scripts/demo.sh`` and ``bash scripts/test.sh`` need a fresh ``.venv`` and the network, so the pages'
    run skips them; this holds what the README says of them."""
    commands = [
        words for block in fenced_blocks(readme_section("Two commands"), "bash") for words in shell_commands(block)
    ]
    assert [words[:2] for words in commands] == [["bash", "scripts/demo.sh"], ["bash", "scripts/test.sh"]]
    demo, test = ((ROOT / words[1]).read_text() for words in commands)
    assert demo.rstrip().endswith('hf-metaid demo "$@"')  # the main job; arguments after the script go to it
    assert "ruff check ." in test and "python -m pytest" in test
    pin = re.search(r"`(torch==[0-9.]+)`", README.read_text()).group(1)
    assert f'"{pin}"' in (ROOT / "scripts" / "setup.sh").read_text(), f"scripts/setup.sh does not install {pin}"


def test_readme_results_are_the_sources_figures():
    """The README's table quotes the counting references' results file and the recipes' registry, never by hand."""
    rows = table_rows(readme_section("Results"))
    counted = table_rows((ROOT / "benchmarks" / "results" / "count_baselines.md").read_text())
    for reference in ("popularity", "item Markov chain"):  # its columns: validation, test, both left out
        assert rows[reference][:2] == [counted[reference][1], counted[reference][3]], reference
    for name in ("fast", "best"):
        measured = dict(
            (protocol, figures)
            for figures, protocol in re.findall(
                r"(\d\.\d{4} / \d\.\d{4}) with (?:the history|it) (kept|left out)", hm.recipes.describe(name)
            )
        )
        row = next(cells for label, cells in rows.items() if label.startswith(f"`{name}`"))
        assert row[:2] == [measured["kept"], measured["left out"]], name
    paper = next(cells for label, cells in rows.items() if label.startswith("the paper's"))
    assert f"{paper[0]} for t5-small (history kept)" in hm.recipes.describe("paper")


def test_readme_cites_the_paper_as_the_library_does():
    from hf_metaid.vocabulary.card import CITATION

    assert fenced_blocks(readme_section("Citation"), "bibtex") == [CITATION + "\n"]


def test_citation_file_names_this_software_and_the_paper():
    import configparser

    import yaml

    from hf_metaid.vocabulary.card import CITATION

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["message"] and cff["authors"]
    assert (str(cff["version"]), cff["license"]) == (setup["metadata"]["version"], setup["metadata"]["license"])
    paper, bibtex = cff["preferred-citation"], dict(re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?$", CITATION, re.MULTILINE))
    assert paper["title"] == bibtex["title"].replace("{", "").replace("}", "")
    assert [f"{author['family-names']}, {author['given-names']}" for author in paper["authors"]] == bibtex[
        "author"
    ].split(" and ")
    assert (paper["year"], paper["volume"], f"{paper['start']}--{paper['end']}") == (
        int(bibtex["year"]),
        int(bibtex["volume"]),
        bibtex["pages"],
    )
    assert paper["url"] in README.read_text()


@pytest.mark.slow
def test_site_builds_strict(tmp_path, monkeypatch):
    """``mkdocs build --strict``: any warning (a broken link, a docstring griffe cannot read, a missing page) aborts.
    Built in this process, where torch and transformers are already imported (a fresh one takes longer to start than
    the build takes)."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    monkeypatch.setenv("NO_MKDOCS_2_WARNING", "1")  # mkdocs-material's notice about its successor
    config = load_config(str(ROOT / "mkdocs.yml"), site_dir=str(tmp_path), strict=True)
    config.plugins.on_startup(command="build", dirty=False)
    try:
        build(config)  # raises mkdocs.exceptions.Abort on the first warning's count at the end
    finally:
        config.plugins.on_shutdown()
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "hooks" / "cli_reference.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    reference = (tmp_path / "reference" / "cli" / "index.html").read_text()
    commands = hook.subcommands(cli.build_parser())
    assert commands and all(f'id="hf-metaid-{name}"' in reference for name in commands)
