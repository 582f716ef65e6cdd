"""The ``hf-metaid`` command: index | train | extend | evaluate | recommend | demo | push.

Each subcommand parses its options into the settings of :mod:`hf_metaid.workflow.settings` (whose fields carry the help
texts), calls the pipeline or the public API, and prints a results table at the end. ``index``, ``train`` and
``demo`` start from the named recipe ``--recipe`` gives (:mod:`hf_metaid.workflow.recipes`; ``fast`` unless asked), each
option given overriding its field. Every option has one spelling (the settings field's name where it sets one), and
every command that reads interactions takes them as ``--data``. User mistakes (bad options,
files, folders and ids: every :class:`~hf_metaid.errors.MetaIDError`, and the file system's own errors) become one
line, ``hf-metaid <command>: error: ...``, and exit status 2; any other exception is a bug and keeps its traceback.
Commands that write check their destination first (a write is tried there; a non-empty ``--out`` is refused unless
``--overwrite`` is given), write it atomically and clear what killed runs left beside it
(:mod:`hf_metaid.saving.output_folders`).
"""

from .main import main
from .parser import build_parser

__all__ = ["build_parser", "main"]
