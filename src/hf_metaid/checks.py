"""Argument checks for public functions: a wrong type or value fails at the call, naming the argument.

A bad argument that slips through gives a silent wrong answer later (``k=2.5`` truncating, a string read as its
characters, ``True`` taken as 1), so public functions check theirs with these and raise
:class:`~hf_metaid.errors.InvalidArgumentError` (a ``TypeError`` and a ``ValueError``).

Standard library only and flat beside the model files: it travels with a saved model for ``trust_remote_code``.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real

from .errors import InvalidArgumentError


def check_int(name: str, value: object, minimum: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool, not a float) and at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise InvalidArgumentError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(
    name: str, value: object, minimum: float | None = None, maximum: float | None = None, *, above: bool = False
) -> float:
    """``value`` as a finite ``float`` in ``[minimum, maximum]`` (``(minimum, maximum]`` with ``above``)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise InvalidArgumentError(f"{name} must be a finite number, got {type(value).__name__} {value!r}")
    low = minimum is not None and (value <= minimum if above else value < minimum)
    if low or (maximum is not None and value > maximum):
        lower = "" if minimum is None else f"{'>' if above else '>='} {minimum}"
        upper = "" if maximum is None else f"<= {maximum}"
        bounds = " and ".join(filter(None, (lower, upper)))
        raise InvalidArgumentError(f"{name} must be a number {bounds}, got {value!r}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False`` (a string such as ``"no"`` would read as true)."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def check_choice(name: str, value: object, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgumentError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value
