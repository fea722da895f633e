"""Which failures are worth another attempt, and how long to wait before it.

The worker owns retries (each attempt is one event in the log); this module only decides.
A status is retryable when trying again may succeed: 408, 409, 425, 429 and every 5xx.
``backoff_delay`` is exponential backoff with full jitter that honours ``Retry-After``.
"""

from __future__ import annotations

import random
import re

RETRY_AFTER_CAP_S = 600.0


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status means "try again later" rather than "this request is wrong"."""
    return status in (408, 409, 425, 429) or status >= 500


def backoff_delay(
    attempt: int,
    *,
    retry_after: float | None,
    base: float = 1.0,
    cap: float = 60.0,
    rng: random.Random,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (counting from 1).

    Exponential backoff with full jitter: uniform in ``[0, min(cap, base * 2**(attempt-1))]``.
    When the server sent ``Retry-After``, the wait is at least that (capped at
    ``RETRY_AFTER_CAP_S``), plus a jitter of up to a hundredth of it (at least 5 ms, at most
    ``base``) so that calls told the same time do not all return in the same millisecond,
    adding little to the wait the server asked for (a task throttled k times in a row
    waits k times over; OpenAI's and Anthropic's own clients add nothing). A Retry-After
    shorter than the exponential draw (up to ``base`` on a first retry) adds nothing.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1 (the attempt that just failed), got {attempt}")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    delay = rng.uniform(0.0, ceiling)
    if retry_after is not None:
        floor = min(max(retry_after, 0.0), RETRY_AFTER_CAP_S)
        spread = min(base, max(0.005, floor / 100))
        delay = max(delay, floor + rng.uniform(0.0, spread))
    return delay


ENDPOINT_STATUSES = (502, 503, 504)
"""Statuses a gateway or an overloaded server answers while the model server is away."""

_UNKNOWN_MODEL = re.compile(
    r"model\b.{0,120}?\b(not found|does not exist|not exist|is not a valid|not available"
    r"|not supported|unknown)|\b(unknown|invalid|no such|not a valid) model\b",
    re.IGNORECASE | re.DOTALL,
)


_MODERATED = re.compile(r"flagged|moderation", re.IGNORECASE)


def failure_scope(status: int | None, kind: str | None, message: str) -> str:
    """Where the fault behind a failed call lies, which decides what the worker does next:

    - ``"endpoint"``: the server may be away (a refused, dropped or timed-out connection,
      or 502/503/504): the worker probes it before spending an attempt;
    - ``"model"``: no call of this model through this endpoint can succeed (401 or 403: the
      key is rejected; 402: no credit; 404, or a 400/422 saying the model does not exist:
      an unknown model or a wrong base URL);
    - ``"request"``: the server refuses the request itself (400, 413, 422, or a 403 whose
      words say moderation flagged the prompt), which the catalog's settings may cause for
      every call (a max_tokens past the context);
    - ``"call"``: anything else, retried or not as ``is_retryable_status`` says.
    """
    if status is None:
        return "endpoint" if kind in ("connect", "dropped", "timeout") else "call"
    if status in ENDPOINT_STATUSES:
        return "endpoint"
    if status == 403 and _MODERATED.search(message):
        return "request"  # OpenRouter's moderation refused this prompt, not every call
    if status in (401, 402, 403, 404):
        return "model"
    if status in (400, 413, 422):
        return "model" if _UNKNOWN_MODEL.search(message) else "request"
    return "call"
