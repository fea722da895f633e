"""The chat-completions format: the request body a call posts, and reading what comes
back: a reply becomes a ``Completion``, anything else a ``ReplyError`` naming why in one
line (the provider adds its name and the model, and classifies it for retries).

Every text taken from a reply passes through a redactor before it can reach a message:
an API key a server echoes back is never shown. Whatever a server sends, reading it raises
nothing but ``ReplyError``, and a ``Completion`` holds only values the database can store
(``daydream.values``): counts between 0 and a trillion, a finite cost up to a million
dollars, text without lone surrogates (each becomes U+FFFD), labels cut to 200 characters.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from daydream.providers.config import display_url
from daydream.providers.protocol import Completion, CompletionRequest
from daydream.providers.retry import is_retryable_status
from daydream.values import COUNT_MAX, clean_text

BODY_EXCERPT_CHARS = 200
MAX_COST_USD = 1e6  # a reported cost above this is not a real cost: not recorded
_LABEL_CHARS = 200  # the longest model name or request id kept from a reply
_SECRET_RE = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{8,}|Bearer\s+[^\s\"',}]+")


class ReplyError(Exception):
    """A reply that is not a usable completion: ``detail`` says why (redacted), with what
    the worker needs to decide about another attempt."""

    def __init__(
        self,
        detail: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


def request_body(request: CompletionRequest) -> dict[str, Any]:
    """The JSON body of a chat-completions call (``extra`` first: it cannot replace the
    model or the messages)."""
    messages = []
    if request.system is not None:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": request.prompt})
    body: dict[str, Any] = dict(request.extra)
    body["model"] = request.model
    body["messages"] = messages
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.seed is not None:
        body["seed"] = request.seed
    return body


def redact(text: str, api_key: str | None) -> str:
    """``text`` without ``api_key`` and without anything shaped like a key or a bearer token."""
    if api_key:
        text = text.replace(api_key, "[redacted]")
    return _SECRET_RE.sub("[redacted]", text)


def excerpt(body: bytes, redactor: Callable[[str], str]) -> str:
    """The start of a body, redacted, printable, quoted: for a one-line message."""
    # Redact before cutting, so a key straddling the cut cannot leak its first half.
    text = body[: BODY_EXCERPT_CHARS * 4 + 256].decode("utf-8", errors="replace")
    text = redactor(text)[:BODY_EXCERPT_CHARS]
    return repr(text) if text else "(empty body)"  # repr escapes what is not printable


def read_completion(
    body: bytes, latency: float, redactor: Callable[[str], str], *, status: int | None = None
) -> Completion:
    """The completion in a 2xx body (``status``), or a ``ReplyError`` saying why there is
    none."""
    try:
        return _read_completion(body, latency, redactor, status)
    except RecursionError:  # json and pydantic refuse nesting deeper than the stack
        raise ReplyError(
            f"response is nested too deeply to read: {excerpt(body, redactor)}", retryable=True
        ) from None


def _read_completion(
    body: bytes, latency: float, redactor: Callable[[str], str], status: int | None
) -> Completion:
    try:
        data = json.loads(body)
    except ValueError:
        raise ReplyError(
            f"response is not valid JSON: {excerpt(body, redactor)}", retryable=True
        ) from None
    if isinstance(data, dict) and "choices" not in data and "error" in data:
        # OpenRouter reports some upstream failures as a 200 with an error object.
        code = _error_code(data)
        retryable = True if code is None else is_retryable_status(code)
        message = _error_message(data)
        detail = _one_line(redactor(message)) if message else excerpt(body, redactor)
        raise ReplyError(f"error in a 200 response: {detail}", retryable=retryable, status=code)
    try:
        parsed = _ChatResponse.model_validate(data)
    except ValidationError as exc:
        raise ReplyError(
            f"response is not a chat completion ({_describe_validation(exc)}): "
            f"{excerpt(body, redactor)}",
            retryable=True,
        ) from None
    if not parsed.choices:
        raise ReplyError(f"response has no choices: {excerpt(body, redactor)}", retryable=True)
    choice = parsed.choices[0]
    if choice.finish_reason == "error":
        raise ReplyError(
            f"the model failed mid-reply (finish_reason error): {excerpt(body, redactor)}",
            retryable=True,
        )
    usage = parsed.usage if isinstance(parsed.usage, dict) else {}
    details = usage.get("completion_tokens_details")
    reply = choice.message
    reasoning = _reasoning_text(reply.reasoning_content) or _reasoning_text(reply.reasoning)
    cost = _finite_float(usage.get("cost"))
    return Completion(
        text=clean_text(_content_text(choice.message.content)).replace("\r\n", "\n"),
        finish_reason=_label(choice.finish_reason),
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        resolved_model=_label(parsed.model),
        latency_s=latency,
        cost=cost if cost is not None and 0 <= cost <= MAX_COST_USD else None,
        request_id=_label(parsed.id),
        offline=False,
        http_status=status,
        reasoning=clean_text(reasoning).replace("\r\n", "\n") if reasoning else None,
        reasoning_tokens=_count(details.get("reasoning_tokens"))
        if isinstance(details, dict)
        else None,
    )


def status_error(
    status: int, headers: Any, body: bytes, redactor: Callable[[str], str], *, now: float
) -> ReplyError:
    """What a non-2xx reply says: the provider's own words (or the body's start), whether
    to try again, and how long the server asked us to wait."""
    # A plain mapping, not httpx.Headers: a header value may hold any byte (obs-text), which
    # httpx.Headers refuses to encode.
    items = headers.multi_items() if isinstance(headers, httpx.Headers) else headers
    headers = {str(name).lower(): str(value) for name, value in items}
    retryable = is_retryable_status(status)
    retry_after = _retry_after(headers, now=now) if retryable else None
    try:
        detail = _error_message(json.loads(body))
    except (ValueError, RecursionError):
        detail = None
    detail = _one_line(redactor(detail)) if detail else excerpt(body, redactor)
    if 300 <= status < 400:
        location = display_url(headers.get("location", ""))
        detail = f"redirected to {location!r}; set base_url to the final address"
    wait = f" (retry after {retry_after:g}s)" if retry_after is not None else ""
    return ReplyError(
        f"HTTP {status}: {detail}{wait}",
        retryable=retryable,
        status=status,
        retry_after=retry_after,
    )


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    content: str | list[Any] | None = None
    # Reasoning sent apart from the reply; read leniently (shapes differ by server).
    reasoning: Any = None
    reasoning_content: Any = None


class _Choice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    message: _Message
    finish_reason: str | None = None


class _ChatResponse(BaseModel):
    # Only the reply itself is validated strictly; odd metadata (a float token count, a
    # numeric id) is read leniently below rather than costing a good reply.
    model_config = ConfigDict(extra="ignore")
    id: Any = None
    model: Any = None
    choices: list[_Choice]
    usage: Any = None


def _retry_after(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, else ``Retry-After``."""
    milliseconds = _finite_float(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return max(0.0, milliseconds / 1000.0)
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    seconds = _finite_float(value)
    if seconds is None:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - now
    return max(0.0, seconds)


def _finite_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond floats
        return None
    return number if math.isfinite(number) else None


def _count(value: Any) -> int | None:
    """A token count as reported (an int, a float, a numeric string), or None when it is
    not a count at all: negative, or beyond ``values.COUNT_MAX``."""
    number = _finite_float(value)
    if number is None or not 0 <= number <= COUNT_MAX:
        return None
    return int(number)


def _label(value: Any) -> str | None:
    """A short identifying string from a reply (a model name, a request id, a finish
    reason): a string or a number, cleaned and cut to 200 characters; else None."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = clean_text(value if isinstance(value, str) else str(value))
    return text[:_LABEL_CHARS]


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(clean_text(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_message(data: Any) -> str | None:
    """The provider's own words, from the error shapes of OpenAI, OpenRouter, vLLM, FastAPI."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    for key in ("message", "detail"):
        if isinstance(data.get(key), str):
            return data[key]
    return None


def _error_code(data: dict[str, Any]) -> int | None:
    error = data.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
        return code
    return None


def _describe_validation(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors()[:3]
    ]
    return "; ".join(problems)


def _reasoning_text(value: Any) -> str | None:
    """A reasoning field as text: a string, or the text parts of a list; else None."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, list):
        return _content_text(value) or None
    return None


def _content_text(content: str | list[Any] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
        elif isinstance(part, str):
            parts.append(part)
    return "".join(parts)
