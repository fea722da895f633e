"""Probing an endpoint: does it answer, which models does it serve, how long a context.

``probe_endpoint`` asks ``GET {base_url}/models`` (vLLM, Ollama, llama.cpp, LM Studio,
OpenAI and OpenRouter all have it) and, when asked, llama.cpp's ``GET /props``. The
preflight of ``daydream run`` uses it before any worker starts; a worker uses it to tell
an endpoint that is down from a call that failed, and to see when it is back.

Invariants: a probe never raises for what the server does (an answer of any kind, or none,
is a ``Probe``); it never outlives ``timeout``; it goes through the lean transport (no
thread is left behind, so ``daydream run`` can still fork its workers after a preflight);
the key is sent only in the ``Authorization`` header and every text is redacted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from daydream.providers.chat import status_error
from daydream.providers.config import DEFAULT_MAX_RESPONSE_BYTES, display_url
from daydream.providers.retry import ENDPOINT_STATUSES
from daydream.providers.transport import make_transport

PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Probe:
    """What an endpoint answered to ``GET {base_url}/models``.

    ``status`` is None when no HTTP reply came (``error`` says why: refused, timed out...);
    for a reply that is not 2xx, ``error`` is the server's words. ``models``: the ids it
    lists (None when it lists none). ``context``: model id -> context length where the
    listing says (vLLM's ``max_model_len``); ``server_context``: llama.cpp's ``n_ctx``
    (``/props``), when asked for and given.
    """

    endpoint: str
    status: int | None
    error: str | None = None
    models: tuple[str, ...] | None = None
    context: Mapping[str, int] = field(default_factory=dict)
    server_context: int | None = None

    @property
    def up(self) -> bool:
        """It answered, and not as a gateway whose server is away (502, 503, 504)."""
        return self.status is not None and self.status not in ENDPOINT_STATUSES


async def probe_endpoint(
    base_url: str,
    headers: Mapping[str, str],
    *,
    timeout: float = PROBE_TIMEOUT_S,
    redact: Callable[[str], str] = lambda text: text,
    context: bool = False,
) -> Probe:
    """Probe ``base_url`` (see ``Probe``); ``context`` also asks llama.cpp's ``/props``."""
    endpoint = display_url(base_url)
    transport = make_transport(max_body=DEFAULT_MAX_RESPONSE_BYTES)
    async with httpx.AsyncClient(
        transport=transport, timeout=httpx.Timeout(timeout), headers=dict(headers)
    ) as client:
        try:
            response = await client.get(base_url.rstrip("/") + "/models")
        except httpx.HTTPError as exc:
            detail = str(exc) or type(exc).__name__
            return Probe(endpoint, None, error=redact(f"{type(exc).__name__}: {detail}"))
        probe = _read_models(endpoint, response, redact)
        if context:
            n_ctx = await _props_context(client, base_url)
            probe = replace(probe, server_context=n_ctx)
        return probe


def _read_models(endpoint: str, response: httpx.Response, redact: Callable[[str], str]) -> Probe:
    """The listing in a ``/models`` reply: ids and context lengths (OpenAI's ``data`` list;
    Ollama's native ``models`` list too)."""
    try:
        data: Any = response.json()
    except (ValueError, UnicodeDecodeError):
        data = None
    if not 200 <= response.status_code < 300:
        error = status_error(
            response.status_code, response.headers, response.content, redact, now=time.time()
        )
        return Probe(endpoint, response.status_code, error=error.detail)
    entries = data.get("data", data.get("models")) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return Probe(endpoint, response.status_code)
    ids: list[str] = []
    lengths: dict[str, int] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        name = entry.get("id", entry.get("name", entry.get("model")))
        if isinstance(name, str):
            ids.append(name)
            length = entry.get("max_model_len")
            if isinstance(length, int) and not isinstance(length, bool) and length > 0:
                lengths[name] = length
    return Probe(endpoint, response.status_code, models=tuple(ids), context=lengths)


async def _props_context(client: httpx.AsyncClient, base_url: str) -> int | None:
    """llama.cpp's context size per slot (``GET /props``, beside ``/v1``), or None."""
    root = base_url.rstrip("/")
    root = root[: -len("/v1")] if root.endswith("/v1") else root
    try:
        response = await client.get(root + "/props")
        data = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, UnicodeDecodeError):
        return None
    settings = data.get("default_generation_settings") if isinstance(data, dict) else None
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    return n_ctx if isinstance(n_ctx, int) and not isinstance(n_ctx, bool) and n_ctx > 0 else None
