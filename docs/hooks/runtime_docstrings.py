"""Griffe extension: a docstring written at import time shown on the API pages.

``MetaIDConfig``'s docstring is written from the table of the model's options when its module is imported
(``hf_metaid.configuration_metaid.MODEL_OPTIONS``), so the source holds no docstring literal for griffe's static
reading; this extension takes the imported class's ``__doc__`` for a class whose source has none.
"""

from __future__ import annotations

import importlib

import griffe


class RuntimeDocstrings(griffe.Extension):
    """The imported ``__doc__`` of classes whose source has no docstring."""

    def on_class_instance(self, *, node, cls: griffe.Class, agent, **kwargs) -> None:
        if cls.docstring is not None:
            return
        try:
            runtime = getattr(importlib.import_module(cls.module.path), cls.name)
        except (ImportError, AttributeError):
            return
        if runtime.__dict__.get("__doc__"):
            cls.docstring = griffe.Docstring(
                runtime.__doc__, parent=cls, parser=agent.docstring_parser, parser_options=agent.docstring_options
            )
