"""Deterministic crash and failure points, for the crash tests (reliability reference, T2,
T7, T12).

``DAYDREAM_CRASH_AT=NAME`` (or ``NAME:N``) makes a worker process exit at once with status
137, as SIGKILL would, the first (or N-th) time it reaches the crash point ``NAME``: no
cleanup, no flush, no lease released. The tests use it to prove that a crash at each step
of the claim -> call -> record cycle loses nothing and duplicates nothing. Unset, as in
normal use, a crash point is one comparison.

``DAYDREAM_FAIL_AT=NAME:N`` instead makes the first N visits raise
``sqlite3.OperationalError`` (as a full disk or an I/O error would) at the points that
have one (``before_commit``, ``heartbeat``): the transaction it is in rolls back, and the
worker must keep its results and write them later, or skip that heartbeat.

Points, in the order a task meets them:

- ``after_claim``: a claim has committed; the tasks are leased but not started.
- ``before_call``: the prompt is rendered; the model call is about to go out.
- ``after_response``: the reply is in memory; nothing about it is written yet.
- ``before_commit``: inside the recording transaction, every event appended (projections
  updated), before COMMIT.
- ``after_commit``: the results are committed; the worker has not noted it yet.
- ``heartbeat``: inside the heartbeat transaction, before COMMIT.
- ``reap``: inside a claim transaction that has just expired a dead worker's leases.
"""

from __future__ import annotations

import os
import sqlite3

from daydream.errors import DaydreamError

POINTS = (
    "after_claim",
    "before_call",
    "after_response",
    "before_commit",
    "after_commit",
    "heartbeat",
    "reap",
)


FAIL_POINTS = ("before_commit", "heartbeat")


def _parse(variable: str, points: tuple[str, ...]) -> tuple[str | None, int, str | None]:
    """(point, nth, error) from the environment variable ``variable``."""
    spec = os.environ.get(variable)
    if not spec:
        return None, 0, None
    name, _, nth = spec.partition(":")
    if name in points and (not nth or (nth.isdigit() and int(nth) >= 1)):
        return name, int(nth or 1), None
    kind = "crash" if variable == "DAYDREAM_CRASH_AT" else "failure"
    choices = ", ".join(points)
    error = f"{variable}={spec!r} is not a {kind} point: use one of {choices}, optionally :N"
    return None, 0, error


_TARGET: str | None = None
_NTH = 0
ERROR: str | None = None
_FAIL_TARGET: str | None = None
_FAIL_TIMES = 0
FAIL_ERROR: str | None = None
_seen = 0
_failed = 0


def _load() -> None:
    """Read the crash and failure points from the environment, with fresh counts: at
    import, and again in a forked worker (its environment may have changed since the
    parent imported this module, as a fresh interpreter would see)."""
    global _TARGET, _NTH, ERROR, _FAIL_TARGET, _FAIL_TIMES, FAIL_ERROR, _seen, _failed
    _TARGET, _NTH, ERROR = _parse("DAYDREAM_CRASH_AT", POINTS)
    _FAIL_TARGET, _FAIL_TIMES, FAIL_ERROR = _parse("DAYDREAM_FAIL_AT", FAIL_POINTS)
    _seen = 0
    _failed = 0


_load()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_load)


def check() -> None:
    """Refuse a misspelt crash point (a test would otherwise pass without crashing)."""
    if ERROR or FAIL_ERROR:
        raise DaydreamError(ERROR or FAIL_ERROR or "")


def crash_point(name: str) -> None:
    """Exit the process with status 137 if this is the configured crash point's N-th visit."""
    global _seen
    if name != _TARGET:
        return
    _seen += 1
    if _seen == _NTH:
        os._exit(137)


def fail_point(name: str) -> None:
    """Raise ``sqlite3.OperationalError`` on the first N visits of the configured point."""
    global _failed
    if name != _FAIL_TARGET or _failed >= _FAIL_TIMES:
        return
    _failed += 1
    raise sqlite3.OperationalError(f"disk I/O error (injected by DAYDREAM_FAIL_AT={name})")
