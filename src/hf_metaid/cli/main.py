"""The console entry: parse, run the subcommand, and turn the user's mistakes into one line and exit status 2."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence

from ..errors import DataWarning, LeftoverWarning, MetaIDError
from .parser import build_parser


def _reexec_with_passive_threads() -> None:
    """Run the command again with ``OMP_WAIT_POLICY=PASSIVE`` unless the caller chose a policy.

    OpenMP threads that wait by spinning make a small model's training step about twice as slow as one thread as
    soon as anything else runs on the cores; passive ones lose little there and keep most of the two-thread gain
    on an idle machine (benchmarks/results/thread_policy.md). The policy is read once, when torch loads its OpenMP
    runtime, which importing this package has already done, hence a fresh process.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.execv(sys.executable, [sys.executable, "-m", "hf_metaid.cli", *sys.argv[1:]])


@contextlib.contextmanager
def _data_warnings_as_lines(command: str) -> Iterator[None]:
    """Print each :class:`~hf_metaid.errors.DataWarning` (copies, users dropped, columns left unread) as one line,
    ``hf-metaid <command>: warning: ...``, every time; other warnings show as Python shows them."""
    with warnings.catch_warnings():  # restores the filters and showwarning afterwards
        warnings.simplefilter("always", DataWarning)
        python_show = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, (DataWarning, LeftoverWarning)):  # and what killed runs left beside --out
                print(f"hf-metaid {command}: warning: {message}", file=sys.stderr, flush=True)
            else:
                python_show(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        _reexec_with_passive_threads()
    parser = build_parser()
    args = parser.parse_args(argv)
    # Where a time budget counts from: the process's start when it runs this command alone (its restart above keeps
    # the process), else now.
    from ..training.time_budget import process_started

    args.started = process_started() if argv is None else time.perf_counter()
    from transformers.utils import logging as transformers_logging

    # Loading bars, and a deprecation PEFT triggers inside transformers that no user can act on, would come before
    # a one-line error on stderr.
    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)
    try:
        with _data_warnings_as_lines(args.command):
            return args.func(args)
    except (MetaIDError, OSError) as err:  # the user's mistakes and the file system's refusals, not bugs
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        print(f"hf-metaid {args.command}: error: {' '.join(lines) or type(err).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
