"""Settings dataclasses: one description of every setting serves validation and documentation.

A settings class is a dataclass whose fields carry their documentation and limits in ``field(metadata=...)``, as
PEFT's ``LoraConfig`` does: ``help``, and where they apply ``choices`` (allowed strings), ``minimum`` (inclusive
bound) or ``exclusive_minimum``. The annotation gives the type. :func:`validate_fields` (called from the class's
``__post_init__``) and :func:`check_field` accept a value or raise ``ValueError`` naming the field, the value and the
rule.

Supported annotations: ``int``, ``float``, ``bool``, ``str``, ``None`` and unions of them with fixed-size tuples of
ints or floats (``int | tuple[int, int]``). ``int`` means a real integer (a numpy integer too, but not ``True`` or
``2.5``); values are stored as plain ``int``/``float``/``tuple`` so the settings stay JSON-able.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

_UNIONS = (typing.Union, types.UnionType)


def check_field(config_class: type, name: str, value: Any) -> Any:
    """``value`` as field ``name`` of ``config_class`` stores it (ints as ``int``, lists as tuples, ...).

    Raises:
        ValueError: the value breaks the field's type or limits; the message names the field, value and rule.
        TypeError: ``config_class`` has no field ``name``.
    """
    field, hint = _field(config_class, name)
    try:
        return _conform(hint, field.metadata, value)
    except _Refused:
        raise ValueError(f"{name} must be {_describe(hint, field.metadata)}, got {value!r}") from None


def validate_fields(config: Any) -> None:
    """Check every field of a settings object and store the conformed values (call it from ``__post_init__``)."""
    for field in dataclasses.fields(config):
        object.__setattr__(config, field.name, check_field(type(config), field.name, getattr(config, field.name)))


class _Refused(Exception):
    """A value does not fit an annotation (turned into a ``ValueError`` that names the field)."""


@functools.cache
def _fields(config_class: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """Field and resolved annotation per field name; an annotation no rule covers is a ``TypeError`` here."""
    hints = typing.get_type_hints(config_class)
    known = {}
    for field in dataclasses.fields(config_class):
        try:
            _describe(hints[field.name], field.metadata)
        except TypeError as err:
            raise TypeError(f"{config_class.__name__}.{field.name}: {err}") from None
        known[field.name] = (field, hints[field.name])
    return known


def _field(config_class: type, name: str) -> tuple[dataclasses.Field, Any]:
    known = _fields(config_class)
    if name not in known:
        raise TypeError(f"{config_class.__name__} has no field {name!r}; its fields: {', '.join(known)}")
    return known[name]


def _conform(hint: Any, metadata: Mapping[str, Any], value: Any) -> Any:
    if typing.get_origin(hint) in _UNIONS:
        for option in typing.get_args(hint):
            try:
                return _conform(option, metadata, value)
            except _Refused:
                continue
        raise _Refused
    if typing.get_origin(hint) is tuple:
        parts = typing.get_args(hint)
        if not isinstance(value, tuple | list) or len(value) != len(parts):
            raise _Refused
        return tuple(_conform(part, metadata, item) for part, item in zip(parts, value, strict=True))
    number = isinstance(value, Real) and not isinstance(value, bool)
    if hint is int and number and isinstance(value, Integral):
        return _bounded(int(value), metadata)
    if hint is float and number and math.isfinite(value):
        return _bounded(float(value), metadata)
    if hint in (type(None), bool, str) and isinstance(value, hint) and _among_choices(value, metadata):
        return value
    raise _Refused


def _among_choices(value: Any, metadata: Mapping[str, Any]) -> bool:
    return "choices" not in metadata or value in metadata["choices"]


def _bounded(number: float, metadata: Mapping[str, Any]) -> Any:
    if number < metadata.get("minimum", -math.inf) or number <= metadata.get("exclusive_minimum", -math.inf):
        raise _Refused
    return number


def _describe(hint: Any, metadata: Mapping[str, Any]) -> str:
    """The rule a value of ``hint`` under ``metadata`` follows, in words ("an int >= 1")."""
    if typing.get_origin(hint) in _UNIONS:
        return " or ".join(_describe(option, metadata) for option in typing.get_args(hint))
    bounds = "".join(
        f" {sign} {metadata[key]}" for key, sign in (("minimum", ">="), ("exclusive_minimum", ">")) if key in metadata
    )
    if typing.get_origin(hint) is tuple:
        parts = typing.get_args(hint)
        plural = {int: "ints", float: "finite numbers"}.get(parts[0]) if len(set(parts)) == 1 else None
        if plural is None:
            raise TypeError(f"unsupported annotation {hint!r}: tuples must be of ints or of floats, fixed size")
        return f"{'a pair' if len(parts) == 2 else f'a tuple of {len(parts)}'} of {plural}{bounds}"
    if hint is str and "choices" in metadata:
        return "one of " + ", ".join(repr(choice) for choice in metadata["choices"])
    words = {type(None): "None", bool: "True or False", str: "a string", int: "an int", float: "a finite number"}
    if hint not in words:
        raise TypeError(f"unsupported annotation {hint!r}")
    return words[hint] + (bounds if hint in (int, float) else "")
