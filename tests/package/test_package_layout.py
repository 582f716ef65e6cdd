"""The package's layout: the top level holds only what a saved model carries, and no module imports one that imports
it back, not even inside a function (such a cycle works only as long as nobody moves the import to the top)."""

from __future__ import annotations

import ast
import importlib
import shutil
import sys
from pathlib import Path

import pytest

import hf_metaid as hm

PACKAGE = Path(hm.__file__).parent


def module_names(root: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module under the package folder ``root``."""
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file: at the top or in a function, relatively or
    absolutely, a module itself (``from . import recipes``) or a name from it (its longest known prefix)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    known = module_names(root)
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as ``[a, b, ..., a]``, or ``[]``: a depth-first search that keeps its path."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path, stack = [start], {start}, [iter(sorted(graph[start]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                done.add(path.pop())
                stack.pop()
                on_path = set(path)
            elif following in on_path:
                return [*path[path.index(following) :], following]
            elif following not in done:
                path.append(following)
                on_path.add(following)
                stack.append(iter(sorted(graph.get(following, ()))))
    return []


def test_no_module_imports_one_that_imports_it_back():
    cycle = find_cycle(import_graph(PACKAGE))
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_sees_imports_inside_functions(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub.b import thing\n")
    (package / "sub" / "b.py").write_text("def thing():\n    from pkg import a\n")
    (package / "sub" / "c.py").write_text("from ..a import thing\n")
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.c"] == {"pkg.a"}
    assert find_cycle(graph) in (["pkg.a", "pkg.sub.b", "pkg.a"], ["pkg.sub.b", "pkg.a", "pkg.sub.b"])
    (package / "sub" / "b.py").write_text("def thing():\n    import json\n")
    assert find_cycle(import_graph(package)) == []


def test_the_top_level_holds_only_the_shipped_files_and_folders():
    files = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert files == sorted(["__init__.py", *hm.SHIPPED_FILES])
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert all((PACKAGE / folder / "__init__.py").is_file() for folder in folders)


@pytest.fixture
def copied_vocabulary_module(tmp_path, monkeypatch):
    """``entity_vocabulary`` as a saved folder's copy loads it (trust_remote_code): the shipped files in a package of
    another name, with no tie to hf_metaid but what the class looks up at call time."""
    package = tmp_path / "copied_metaid"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in hm.SHIPPED_FILES:
        shutil.copy(PACKAGE / name, package / name)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("copied_metaid.entity_vocabulary")
    for name in [name for name in sys.modules if name.split(".")[0] == "copied_metaid"]:
        del sys.modules[name]


def test_a_copied_vocabulary_loads_through_the_installed_library(copied_vocabulary_module, vocab, tmp_path):
    copy = copied_vocabulary_module.EntityVocabulary
    assert copy is not hm.EntityVocabulary and copy._library_hooks == {}  # the library's hooks serve the copy
    folder = vocab.save_pretrained(tmp_path / "shared")
    assert copy.from_pretrained(folder).fingerprint == vocab.fingerprint


def test_a_copied_vocabulary_without_the_library_says_what_it_needs(copied_vocabulary_module, monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "hf_metaid.entity_vocabulary")
    with pytest.raises(ImportError, match=r"EntityVocabulary\.from_pretrained needs the hf_metaid library"):
        copied_vocabulary_module.EntityVocabulary.from_pretrained(tmp_path)


def test_library_hooks_are_registered_on_import_and_unknown_ones_refused():
    assert set(hm.EntityVocabulary._library_hooks) == {"extend", "save_pretrained", "from_pretrained", "push_to_hub"}
    with pytest.raises(hm.InvalidArgumentError, match="no EntityVocabulary method 'grow'"):
        hm.EntityVocabulary.register_library_hook("grow", print)
