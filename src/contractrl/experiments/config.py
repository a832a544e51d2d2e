"""Experiment configs as flags and files: the machinery every experiment's config shares.

Each experiment owns its config (a frozen dataclass) and presets in its own module
(:mod:`.tree`, :mod:`.game`, :mod:`.coin`, :mod:`.frontier`). Every field of an experiment config
(and of its nested learner config) becomes a flag of
``contractrl train``: ``--iterations 5000``, ``--nudge 0.01``, ``--auto-nudge``,
``--hidden 128,128``. A preset fills the defaults; flags override them; the resolved config is
saved with every run.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import types
import typing
from typing import Any

BACKENDS = ("auto", "local", "ray", "inline", "vmap")


def validate_execution(config) -> None:
    """Raise ``ValueError`` naming the first bad execution field.

    Every experiment has ``backend`` and ``checkpoint_seconds``; most have ``workers``.
    """
    if config.backend not in BACKENDS:
        raise ValueError(f"backend: must be one of {BACKENDS}, got {config.backend!r}")
    if getattr(config, "workers", 0) < 0:
        raise ValueError(f"workers: must be >= 0, got {config.workers}")
    seconds = config.checkpoint_seconds
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"checkpoint_seconds: must be >= 0, got {seconds}")


# ------------------------------------------------------------------------------ CLI mapping
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(annotation: Any) -> tuple[type, bool]:
    """``(scalar type, optional)`` of a field annotation like ``int``, ``float | None``."""
    hint = annotation
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
    return hint, optional


class _NoneValue:
    """A flag's explicit ``none`` (``None`` itself means the flag was not given)."""

    def __repr__(self) -> str:
        return "none"


NONE = _NoneValue()


def _parser_for(kind: type, optional: bool, tuple_of: type | None):
    def parse(text: str):
        if optional and text.lower() in ("none", "null"):
            return NONE
        if tuple_of is not None:
            return tuple(tuple_of(x) for x in text.split(",") if x.strip())
        value = kind(text)
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        return value

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def _fields(cls) -> list[tuple[str, Any, type | None]]:
    """``(name, resolved annotation, nested dataclass or None)`` of a config dataclass."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        nested = hint if dataclasses.is_dataclass(hint) else None
        out.append((f.name, hint, nested))
    return out


def attribute_docs(cls: type) -> dict[str, str]:
    """Each field's description from the ``Attributes:`` sections of ``cls``'s docstrings.

    A subclass's own section comes first; its bases' describe the fields they declare.
    """
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object and klass.__doc__:
            out.update(_own_attribute_docs(klass))
    return out


def _own_attribute_docs(cls: type) -> dict[str, str]:
    import re

    doc = inspect.cleandoc(cls.__doc__ or "")
    out: dict[str, str] = {}
    if "Attributes:" not in doc:
        return out
    current = None
    for line in doc.split("Attributes:", 1)[1].splitlines():
        m = re.match(r"^    (\w+): (.*)$", line)
        if m:
            current = m.group(1)
            out[current] = m.group(2).strip()
        elif current and line.startswith("        "):
            out[current] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            break
    # plain text for --help: ``x`` -> x, :mod:`.x` -> x
    return {
        k: re.sub(r":\w+:`\.?([^`]*)`", r"\1", re.sub(r"``([^`]*)``", r"\1", v))
        for k, v in out.items()
    }


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "(empty)"
    return str(value)


def add_config_flags(parser: argparse.ArgumentParser, cls: type, defaults: Any = None) -> None:
    """Add one flag per field of ``cls`` and its nested dataclasses (unset: the preset's).

    ``defaults``: the config whose values ``--help`` shows (the parser's default preset).
    """
    docs = attribute_docs(cls)
    for name, hint, nested in _fields(cls):
        value = getattr(defaults, name) if defaults is not None else None
        if nested is not None:
            add_config_flags(parser, nested, value)
            continue
        kind, optional = _base_type(hint)
        about = docs.get(name, name).replace("%", "%%")
        shown = f" [default: {_shown(value)}]" if defaults is not None else ""
        if kind is bool:
            parser.add_argument(
                _flag(name),
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{about}{shown}",
            )
            continue
        tuple_of = None
        if typing.get_origin(kind) is tuple:
            tuple_of = typing.get_args(kind)[0]
        form = "comma-separated " if tuple_of is not None else ""
        type_name = getattr(tuple_of or kind, "__name__", "value")
        none = ", or none" if optional else ""
        parser.add_argument(
            _flag(name),
            type=_parser_for(kind, optional, tuple_of),
            default=None,
            metavar=name.upper(),
            help=f"{about} ({form}{type_name}{none}){shown}",
        )


def apply_overrides(config, args: argparse.Namespace):
    """A copy of ``config`` with every flag the user gave (not ``None``) applied."""
    changes = {}
    for name, _hint, nested in _fields(type(config)):
        if nested is not None:
            changes[name] = apply_overrides(getattr(config, name), args)
            continue
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = None if value is NONE else value
    return dataclasses.replace(config, **changes)


def to_dict(config) -> dict[str, Any]:
    """JSON-ready dict of a config (tuples become lists)."""
    return dataclasses.asdict(config)


def from_dict(cls, data: dict[str, Any]):
    """Inverse of :func:`to_dict`, refusing unknown keys."""
    known = {name: (hint, nested) for name, hint, nested in _fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown config key for {cls.__name__}")
    values = {}
    for name, value in data.items():
        hint, nested = known[name]
        if nested is not None:
            values[name] = from_dict(nested, value)
        elif typing.get_origin(_base_type(hint)[0]) is tuple and value is not None:
            values[name] = tuple(value)
        else:
            values[name] = value
    return cls(**values)
