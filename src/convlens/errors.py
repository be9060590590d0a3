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


#: characters people mistype for one another in layer names (``features.O`` for ``features.0``)
_CONFUSABLE = str.maketrans({"O": "0", "o": "0", "l": "1", "I": "1", "|": "1"})


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """The candidates closest to `name`, best first.

    Similarity is difflib's ratio, with look-alike characters (O/0, l/1/I) and case counted as
    the same; ties keep the candidates' own order. Then candidates that contain `name`."""
    candidates = list(candidates)
    key = str(name).translate(_CONFUSABLE).lower()
    scored = []
    for i, c in enumerate(candidates):
        r = difflib.SequenceMatcher(None, key, str(c).translate(_CONFUSABLE).lower()).ratio()
        if r >= 0.5:
            scored.append((-r, i, c))
    found = [c for _, _, c in sorted(scored)[:n]]
    for c in candidates:
        if len(found) >= n:
            break
        if name and name in c and c not in found:
            found.append(c)
    return found


#: an unknown name's error lists every valid name where they are at most this many
LIST_ALL = 30


def unknown(what: str, name: str, candidates: Iterable[str], hint: str = "") -> ConvlensError:
    """An error for an unknown name that lists the closest valid names, or every valid name
    where none is close and they are few (at most `LIST_ALL`)."""
    candidates = list(candidates)
    matches = close_matches(name, candidates)
    msg = f"unknown {what} {name!r}"
    if matches:
        msg += "; did you mean " + ", ".join(repr(m) for m in matches) + "?"
    elif 0 < len(candidates) <= LIST_ALL:
        msg += "; one of " + ", ".join(str(c) for c in candidates)
    if hint:
        msg += f" ({hint})"
    return ConvlensError(msg)
