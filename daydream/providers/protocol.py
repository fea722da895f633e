"""What passes between the worker and a provider: a request, a completion, the protocol.

Both dataclasses are frozen. A ``CompletionRequest`` is validated when built (a bad
``max_tokens`` or an ``extra`` that would replace the model or the messages is a
``ConfigError`` before any call); a ``Completion`` keeps the reply text exactly as sent,
except ``\\r\\n`` becomes ``\\n``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from daydream.errors import ConfigError


@dataclass(frozen=True)
class CompletionRequest:
    """One chat-completions call: a single user message, plus a system message if given.

    ``model`` is the provider's model string (``anthropic/claude-sonnet-4``, ``llama3.1:8b``),
    not the catalog id. ``None`` fields are left out of the request body so the server's
    defaults apply. ``extra`` is merged into the JSON body (``top_p``, OpenRouter's
    ``provider`` routing, ``max_completion_tokens``...); the explicit fields win over it.
    ``timeout`` overrides the provider's for this call. ``idempotency_key``, when given, is
    sent as the ``Idempotency-Key`` header so a fake server can count duplicate calls.
    """

    model: str
    prompt: str
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    idempotency_key: str | None = None
    # The scale a judge's score must fall in (an evaluation template's). Never sent: a real
    # model reads its scale from the prompt; the offline provider answers within it when
    # asked to (a rehearsal).
    scale: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or self.max_tokens <= 0
        ):
            raise ConfigError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        reserved = sorted({"model", "messages", "stream"} & set(self.extra))
        if reserved:
            raise ConfigError(
                f"extra request parameters may not set {', '.join(reserved)} "
                "(the request's own fields set them)"
            )


@dataclass(frozen=True)
class Completion:
    """A model's reply and what the provider reported about it.

    ``text`` is the message content with ``\\r\\n`` turned into ``\\n`` and nothing else
    changed; ``""`` when the model returned no content. Usage fields, ``resolved_model``
    (the model that actually answered), ``cost`` (the provider's own figure, e.g.
    OpenRouter's ``usage.cost``) and ``request_id`` are ``None`` when the provider did not
    report them. ``offline`` is true for synthetic replies. ``http_status`` is the reply's
    status (None for the offline provider). ``reasoning`` is a reasoning model's reasoning
    when the server sends it apart from the reply (OpenRouter's ``reasoning``, DeepSeek's,
    vLLM's and llama.cpp's ``reasoning_content``), never part of ``text``;
    ``reasoning_tokens`` is ``usage.completion_tokens_details.reasoning_tokens``.
    """

    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    resolved_model: str | None
    latency_s: float
    cost: float | None = None
    request_id: str | None = None
    offline: bool = False
    http_status: int | None = None
    reasoning: str | None = None
    reasoning_tokens: int | None = None
    endpoint: str | None = None  # which replica answered, when a provider has several

    @property
    def is_truncated(self) -> bool:
        """The model stopped because it hit ``max_tokens`` (or the context length)."""
        return self.finish_reason == "length"


@runtime_checkable
class Provider(Protocol):
    """What the worker needs from a provider."""

    name: str
    is_offline: bool
    endpoints: tuple[str, ...]  # the base URLs it calls, without credentials (offline: none)

    async def complete(self, request: CompletionRequest) -> Completion: ...

    async def aclose(self) -> None: ...
