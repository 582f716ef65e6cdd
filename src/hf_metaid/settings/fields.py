"""Settings dataclasses: one description of every setting serves validation, documentation and the command line.

A settings class is a dataclass whose fields carry their documentation and limits in ``field(metadata=...)``, as
PEFT's ``LoraConfig`` does: ``help`` (the text of the command-line option), and where they apply ``choices``
(allowed strings), ``minimum`` (inclusive bound) or ``exclusive_minimum``. The annotation gives the type. From that:

* :func:`validate_fields` (called from the class's ``__post_init__``) and :func:`check_field` accept a value or
  raise :class:`~hf_metaid.errors.InvalidArgumentError` (a ``ValueError``) naming the field, the value and the rule;
* :func:`add_config_arguments` adds one ``--field-name`` option per field to an ``argparse`` parser, with the
  field's type, default, help text and rule, and :func:`config_from_arguments` builds the settings object back;
* :func:`option_field` writes a field from a model option of the config (``MetaIDConfig``'s table), so settings
  that mirror the config repeat none of its documentation.

Supported annotations: ``int``, ``float``, ``bool``, ``str``, ``None`` and unions of them with fixed-size tuples of
ints or floats (``int | tuple[int, int]``; on the command line ``4,6``). ``int`` means a real integer (a numpy integer
too, but not ``True`` or ``2.5``); values are stored as plain ``int``/``float``/``tuple`` so the settings stay
JSON-able.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from numbers import Integral, Real
from typing import Any, Protocol, TypeVar

from ..errors import InvalidArgumentError

ConfigT = TypeVar("ConfigT")
_UNIONS = (typing.Union, types.UnionType)


class ArgumentContainer(Protocol):
    """Where options go: an ``argparse.ArgumentParser``, a subcommand's parser or an argument group."""

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action: ...


def check_field(config_class: type, name: str, value: Any) -> Any:
    """``value`` as field ``name`` of ``config_class`` stores it (ints as ``int``, lists as tuples, ...).

    Raises:
        InvalidArgumentError: the value breaks the field's type or limits; the message names the field, value and
            rule.
        TypeError: ``config_class`` has no field ``name``.
    """
    field, hint = _field(config_class, name)
    try:
        return _conform(hint, field.metadata, value)
    except _Refused:
        raise InvalidArgumentError(f"{name} must be {_describe(hint, field.metadata)}, got {value!r}") from None


def validate_fields(config: Any) -> None:
    """Check every field of a settings object and store the conformed values (call it from ``__post_init__``)."""
    for field in dataclasses.fields(config):
        object.__setattr__(config, field.name, check_field(type(config), field.name, getattr(config, field.name)))


def option_field(option: Any, *, default: Any = dataclasses.MISSING, spelling: str = "") -> Any:
    """A settings field that a model option describes (a :class:`~hf_metaid.configuration_metaid.ModelOption`):
    its default, its help text (the config's own documentation, plus ``spelling`` where the settings write the
    value otherwise, with ``default``) and its minimum, so the settings and the command say what the config says."""
    metadata: dict[str, Any] = {"help": option.description + (f" {spelling}" if spelling else "")}
    if option.minimum is not None:
        metadata["minimum"] = option.minimum
    return dataclasses.field(default=option.default if default is dataclasses.MISSING else default, metadata=metadata)


def add_config_arguments(
    parser: ArgumentContainer,
    config_class: type,
    fields: Iterable[str] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
    defaults_from: str | None = None,
) -> None:
    """Add a ``--field-name`` option for each of ``fields`` (all fields of ``config_class`` when ``None``).

    Each option takes its type, default and help text from the field; a value that breaks the field's rule is an
    argparse error naming the option. ``bool`` fields become ``--name/--no-name`` pairs. Each option has that one
    spelling, the field's name: one name per setting in Python, in saved settings and on the command line.

    Args:
        defaults: defaults for this parser that differ from the field defaults (checked like any value).
        defaults_from: for options whose value, when not given, is decided after parsing (e.g. by a recipe another
            option names): the options get no default, so one not given is absent from the namespace, and each help
            ends with ``(default: <defaults_from>)``, ``{value}`` standing for the option's value in ``defaults``
            (e.g. ``"the recipe's; fast: {value}"``).

    The values are stored in the namespace under ``"<class name>.<field>"``, so they never collide with other options
    of the same parser (a training ``--batch-size`` next to the indexer's); read them back with
    :func:`config_from_arguments`.

    Raises:
        TypeError: an unknown field name, a default for a field not added, or a field without help text.
        ValueError: a default in ``defaults`` breaks its field's rule.
    """
    defaults = dict(defaults or {})
    chosen = list(_fields(config_class) if fields is None else fields)
    for name in chosen:
        _field(config_class, name)
    stray = sorted(defaults.keys() - set(chosen))
    if stray:
        raise TypeError(f"defaults given for fields that get no option: {', '.join(stray)}")
    for name in chosen:
        field, hint = _field(config_class, name)
        if not field.metadata.get("help"):
            raise TypeError(f"{config_class.__name__}.{name} has no help text (field metadata 'help')")
        flag = f"--{name.replace('_', '-')}"
        help_text = field.metadata["help"].replace("%", "%%")  # argparse %-formats help texts
        options: dict[str, Any] = {"dest": f"{config_class.__name__}.{name}", "help": help_text}
        if defaults_from is not None:
            shown = check_field(config_class, name, defaults[name]) if name in defaults else None
            options["default"] = argparse.SUPPRESS
            options["help"] += f" (default: {defaults_from.format(value=shown)})".replace("%", "%%")
        elif name in defaults:
            options["default"] = check_field(config_class, name, defaults[name])
        elif field.default is not dataclasses.MISSING:
            options["default"] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            options["default"] = field.default_factory()
        if defaults_from is None and "default" in options:
            options["help"] += " (default: %(default)s)"
        elif "default" not in options:
            options["required"] = True
        if hint is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif "choices" in field.metadata:
            options.update(type=_option_type(config_class, name, hint), choices=field.metadata["choices"])
        else:
            options.update(type=_option_type(config_class, name, hint), metavar=name.upper())
        parser.add_argument(flag, **options)


def config_from_arguments(namespace: argparse.Namespace, config_class: type[ConfigT], **settings: Any) -> ConfigT:
    """The ``config_class`` object of the options :func:`add_config_arguments` added to the parser.

    ``settings`` gives fields that have no option of their own (e.g. ``joint=not args.separate``); fields with
    neither keep their defaults. The object's own checks (including rules between fields) raise ``ValueError``.

    Raises:
        TypeError: a field given both as an option and in ``settings``.
    """
    prefix = f"{config_class.__name__}."
    given = {key.removeprefix(prefix): value for key, value in vars(namespace).items() if key.startswith(prefix)}
    both = sorted(given.keys() & settings.keys())
    if both:
        raise TypeError(f"given both as a command-line option and as a keyword: {', '.join(both)}")
    return config_class(**given, **settings)


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


def _option_type(config_class: type, name: str, hint: Any) -> Callable[[str], Any]:
    """argparse ``type=``: command-line text → checked field value, or an error that argparse shows with the option."""

    def parse(text: str) -> Any:
        try:
            value = _from_text(hint, text)
        except ValueError:
            value = text  # spells no value of the type: the check below refuses it with the field's rule
        try:
            return check_field(config_class, name, value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def _from_text(hint: Any, text: str) -> Any:
    if typing.get_origin(hint) in _UNIONS:
        for option in typing.get_args(hint):
            try:
                return _from_text(option, text)
            except ValueError:
                continue
        raise ValueError(text)
    if typing.get_origin(hint) is tuple:
        return tuple(_from_text(part, item) for part, item in zip(typing.get_args(hint), text.split(","), strict=True))
    if hint is type(None):
        raise ValueError(text)
    return hint(text)
