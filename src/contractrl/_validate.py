"""Field checks shared by the config dataclasses: one ``ValueError`` naming the first bad field."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A finite ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def require_positive_ints(obj: Any, names: Iterable[str]) -> None:
    """Each named field is an ``int`` (not a ``bool``) ``>= 1``."""
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: must be a positive integer, got {value!r}")


def require(obj: Any, checks: Iterable[tuple]) -> None:
    """Raise for the first ``(field, ok)`` or ``(field, ok, choices)`` whose ``ok`` is false.

    With ``choices`` the message lists the valid values.
    """
    for name, ok, *choices in checks:
        if not ok:
            valid = f" (valid: {', '.join(map(str, choices[0]))})" if choices else ""
            raise ValueError(f"{name}: invalid value {getattr(obj, name)!r}{valid}")
