"""The code that travels with a saved model: exactly the files the package names, importing nothing the library
alone provides, so a folder on the Hub loads with ``trust_remote_code=True`` where hf_metaid is not installed."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import hf_metaid as hm

PACKAGE = Path(hm.__file__).parent
# Third-party modules a shipped file may import at its top: transformers and what transformers itself requires.
ALLOWED = {"torch", "transformers", "numpy", "tokenizers", "huggingface_hub"}
# Imported inside a function only, for a feature that needs it where it is installed: datasets for
# EntityVocabulary.to_dataset / from_dataset. Not hf_metaid itself, even there: the library registers its side of
# EntityVocabulary's growth and Hub methods when it is imported, so no shipped file imports the package.
OPTIONAL = {"datasets"}
SHIPPED_MODULES = {name.removesuffix(".py") for name in hm.SHIPPED_FILES}


def test_a_saved_folder_carries_exactly_the_shipped_files(tmp_path, model, tokenizer):
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.py")) == sorted(hm.SHIPPED_FILES)


def imports(tree: ast.Module):
    """``(node, module name, level, at module level)`` for every import in a parsed file."""
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, 0, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            yield node, node.module or "", node.level, id(node) in top


def offences(source: str) -> list[str]:
    """What a shipped file imports that a folder without hf_metaid cannot provide."""
    found = []
    for node, module, level, at_top in imports(ast.parse(source)):
        root = module.split(".")[0]
        if level:
            if level != 1 or not module:  # "from . import x" is not copied into the folder by transformers
                found.append(f"line {node.lineno}: relative import must be 'from .module import name'")
            elif module not in SHIPPED_MODULES:
                found.append(f"line {node.lineno}: .{module} is not a shipped file")
        elif not (root in sys.stdlib_module_names or root in ALLOWED or (root in OPTIONAL and not at_top)):
            found.append(f"line {node.lineno}: imports {module}")
    return found


@pytest.mark.parametrize("name", hm.SHIPPED_FILES)
def test_shipped_files_import_only_each_other_and_transformers(name):
    assert offences((PACKAGE / name).read_text(encoding="utf-8")) == []


def test_optional_dependencies_may_be_imported_inside_a_function_only():
    assert offences("def to_dataset(self):\n    import datasets\n") == []


@pytest.mark.parametrize(
    "source",
    [
        "import hf_metaid",
        "from hf_metaid.workflow.training_run import train",
        "from .recipes import get",
        "from . import errors",
        "import datasets",
        "import scipy.sparse",
        "from .indexing import MetaIDIndexer",
        "def save_pretrained(self):\n    from hf_metaid.vocabulary.hub import save_vocabulary\n",
        "def extend(self):\n    import hf_metaid\n",
    ],
)
def test_the_check_catches_library_only_imports(source):
    assert offences(source)
