"""Errors convlens raises for things a user can fix (bad spec, unknown layer, missing file).

The command line prints a `ConvlensError` as one line on stderr and exits with code 2;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class ConvlensError(Exception):
    """A user error: the message says what is wrong and how to fix it."""


class BadImage(ConvlensError):
    """An image file that cannot be used (empty, truncated, not an image, too large)."""


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """The candidates closest to `name`, best first (difflib, then substring matches)."""
    candidates = list(candidates)
    found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    for c in candidates:
        if len(found) >= n:
            break
        if name and name in c and c not in found:
            found.append(c)
    return found


def unknown(what: str, name: str, candidates: Iterable[str], hint: str = "") -> ConvlensError:
    """An error for an unknown name that lists the closest valid names."""
    matches = close_matches(name, candidates)
    msg = f"unknown {what} {name!r}"
    if matches:
        msg += "; did you mean " + ", ".join(repr(m) for m in matches) + "?"
    if hint:
        msg += f" ({hint})"
    return ConvlensError(msg)
