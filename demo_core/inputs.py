"""Checks on what a person typed or a script sent: numbers and text, before any work is done.

The browser's sliders keep values in range, but an API caller can send anything JSON allows, and
Python's JSON reader takes ``NaN`` and ``Infinity``: a NaN compares false with every bound, so a
plain ``lo <= v <= hi`` lets it through (η = NaN once gave a "✅ done" of black images). Every number
the app accepts goes through ``check_number``; every seed through ``check_seed``.
"""
from __future__ import annotations

import math
import numbers

from .errors import InputError

MAX_SEED = 2**63 - 1  # torch generators take seeds below 2**64; seed + 1 must fit as well


def check_number(value, name: str, lo: float, hi: float, *, integer: bool = False) -> float | int:
    """A finite number in [lo, hi] (a whole one when `integer`), else an InputError naming the setting.

    Integers are compared exactly (a float would round 2**63 - 1 up past the bound); anything else
    goes through ``float``, so a numeric string from a script is read as its number.
    """
    if isinstance(value, bool):  # float(True) is 1.0, but a tick box is not a number
        raise InputError(f"{name} must be a number.")
    if isinstance(value, numbers.Integral):
        v: float | int = int(value)
    else:
        try:
            v = float(value)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"{name} must be a number.") from None
        if not math.isfinite(v):
            raise InputError(f"{name} must be a finite number, not {value}.")
    if not lo <= v <= hi:
        raise InputError(f"{name} must be between {_shown(lo)} and {_shown(hi)}.")
    if integer:
        if v != int(v):
            raise InputError(f"{name} must be a whole number.")
        return int(v)
    return float(v)


def _shown(bound: float) -> str:
    """A bound as a person reads it: 48, 0.01, 9,223,372,036,854,775,807 (not 9.22337e+18)."""
    return f"{bound:,}" if isinstance(bound, int) and abs(bound) >= 10**6 else f"{bound:g}"


def check_seed(value, name: str = "The seed") -> int:
    """A whole number in [0, MAX_SEED]."""
    return check_number(value, name, 0, MAX_SEED, integer=True)


def check_text(value, name: str, *, max_chars: int) -> str:
    """`value` if it is text of at most `max_chars` characters (None counts as empty text)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be text.")
    if len(value) > max_chars:
        raise InputError(f"{name}: {len(value):,} characters, more than the {max_chars:,} accepted.")
    return value
