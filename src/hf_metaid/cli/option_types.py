"""argparse types of the options with their own syntax: lists of ks, layer pairs, bounded integers."""

from __future__ import annotations

import argparse


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 5,10, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError("cut-offs must be positive integers")
    return ks


def _layers(text: str) -> tuple[int, int]:
    """``N`` (N encoder and N decoder layers) or ``E+D``."""
    parts = text.split("+")
    try:
        counts = [int(part) for part in parts]
    except ValueError:
        counts = []
    if len(counts) == 1:
        counts *= 2
    if len(counts) != 2 or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected N or E+D with positive integers, got {text!r}")
    return counts[0], counts[1]


def _int_from(minimum: int):
    """argparse ``type=``: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text!r}")
        return value

    return parse


_positive_int = _int_from(1)
_non_negative_int = _int_from(0)
