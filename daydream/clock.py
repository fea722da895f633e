"""Time: the injected clock and how moments are written.

Functions that need "now" take a ``Clock`` (tests pass a fixed one). Moments are stored as
UTC ISO-8601 text with microseconds and a ``Z``, which sorts as time does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def isoformat(moment: datetime) -> str:
    """UTC ISO-8601 with microseconds and a Z, sortable as text."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
