"""Values from outside (a reply, a file, an option) made safe to store and to show.

SQLite holds integers in ``[-2**63, 2**63 - 1]`` (Python's sqlite3 raises OverflowError
beyond) and sums them with an error on overflow, so a count that is stored is kept far
below that; a float must be finite (``inf`` and ``nan`` are not JSON and poison sums).
Text must encode as UTF-8: a lone UTF-16 surrogate (JSON's ``"\\ud800"`` escape makes
one) cannot, so it becomes U+FFFD. A message quotes a value by a short prefix, never a
megabyte of it.

Invariant: what ``clean_text`` returns encodes as UTF-8; what ``quote`` returns is one
printable line of bounded length, and ``shorten_message`` bounds a whole message.
"""

from __future__ import annotations

import math
import re
from typing import Any

SQLITE_INT_MAX = 2**63 - 1
SQLITE_INT_MIN = -(2**63)
COUNT_MAX = 10**12
"""The largest count (tokens, replicates...) taken as real: a trillion, far from the
integer limit, so that sums over millions of rows cannot overflow either."""
QUOTE_CHARS = 60
MESSAGE_CHARS = 2000

_LONG_RUN = re.compile(r"\S{201,}")
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (everything else unchanged)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def storage_problem(value: Any, *, depth: int = 0) -> str | None:
    """Why SQLite (and the JSON of an event) cannot hold ``value`` as it is, or None: an
    integer beyond 64 bits, a float that is not finite (JSON would write null, so a replay
    would differ), text with a lone surrogate, a structure nested deeper than 64 levels,
    or a type that is none of these. Lists, tuples and dicts are checked throughout."""
    kind = type(value)  # exact types first: this runs on every field of every result
    if kind is str:
        return None if value.isascii() or clean_text(value) is value else "text that is not UTF-8"
    if value is None or kind is bool:
        return None
    if kind is int or isinstance(value, int):
        return None if SQLITE_INT_MIN <= value <= SQLITE_INT_MAX else "an integer beyond 64 bits"
    if kind is float or isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a finite number"
    if isinstance(value, str):
        return storage_problem(str(value), depth=depth)
    if depth >= 64:
        return "a structure nested deeper than 64 levels"
    if isinstance(value, dict):
        items: Any = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple):
        items = value
    else:
        return f"a value of type {type(value).__name__}"
    for item in items:
        problem = storage_problem(item, depth=depth + 1)
        if problem is not None:
            return problem
    return None


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``value`` for a one-line message: its repr, or the repr of its first ``limit``
    characters and how long it was."""
    if isinstance(value, str | bytes) and len(value) > limit:
        size = "characters" if isinstance(value, str) else "bytes"
        return f"{clean_text(repr(value[:limit]))}... ({len(value)} {size})"
    try:
        text = clean_text(repr(value))
    except (RecursionError, ValueError):  # a structure nested too deeply, an int too long
        return f"(a {type(value).__name__} too large to show)"
    if len(text) > limit + 2:
        return f"{text[:limit]}... ({len(text)} characters)"
    return text


def shorten_message(text: str) -> str:
    """A message on one printable line: any run of more than 200 non-space characters cut
    to its first 60 (and its length), control characters (a newline, a NUL) escaped, and at
    most ``MESSAGE_CHARS`` long in all. The safety net for a value a message quotes whole
    (each message should ``quote`` its values itself)."""
    text = _LONG_RUN.sub(
        lambda m: f"{m.group()[:QUOTE_CHARS]}... ({len(m.group())} characters)", text
    )
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], clean_text(text))
    if len(text) <= MESSAGE_CHARS:
        return text
    half = MESSAGE_CHARS // 2
    return f"{text[:half]} ... ({len(text) - 2 * half} characters cut) ... {text[-half:]}"
