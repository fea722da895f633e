"""One HTTP attempt against an OpenAI-compatible chat-completions endpoint.

``OpenAICompatibleProvider.complete`` posts one request and turns every outcome into either
a ``Completion`` or a ``ProviderError`` whose ``retryable``, ``status`` and ``retry_after``
the worker acts on (the table is in docs/providers.md).

Invariants: a call never outlives ``timeout`` (a whole-call deadline, not a per-read one);
the body is capped at ``max_response_bytes``; the API key lives in one private attribute,
is sent only in the ``Authorization`` header, and every error text is redacted before it
leaves this module.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import httpx

from daydream.errors import ConfigError, ProviderError
from daydream.providers.chat import ReplyError, read_completion, redact, request_body, status_error
from daydream.providers.config import ProviderConfig, display_url
from daydream.providers.probe import PROBE_TIMEOUT_S, Probe, probe_endpoint
from daydream.providers.protocol import Completion, CompletionRequest
from daydream.providers.transport import (
    ResponseTooLarge,
    StreamTransport,
    decode_body,
    make_transport,
)


class OpenAICompatibleProvider:
    """A chat-completions endpoint reached over HTTP with ``httpx``; one attempt per call."""

    is_offline = False

    def __init__(
        self,
        config: ProviderConfig,
        *,
        client: httpx.AsyncClient | None = None,
        api_key: str | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        environ = os.environ if environ is None else environ
        if api_key is None and config.api_key_env:
            api_key = environ.get(config.api_key_env)
        api_key = (api_key or "").strip() or None
        source = config.api_key_env or "the API key"
        if api_key is None and config.key_required:
            raise ConfigError(
                f"provider {config.name}: {source} is not set (export it or put it in .env)"
            )
        if api_key is not None and (not api_key.isprintable() or " " in api_key):
            raise ConfigError(
                f"provider {config.name}: {source} contains spaces or control characters; "
                "copy the key again without them"
            )
        for header, value in config.headers.items():
            if any(c in f"{header}{value}" for c in "\r\n") or not header.strip():
                raise ConfigError(
                    f"provider {config.name}: header {header!r} has an empty name or a line"
                    " break; write each header on one line"
                )
        self.name = config.name
        self.config = config
        self._api_key = api_key
        self._shared_client = client
        self._shards: list[_ClientShard] = []
        self._lean: StreamTransport | Literal[False] | None = None  # None: not made yet
        self._head_prefix: bytes | None = None
        self._target: tuple[str, str, int] = ("", "", 0)
        self._clock = clock
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self.endpoint = display_url(config.base_url)  # its name in events: no credentials
        self.endpoints: tuple[str, ...] = (self.endpoint,)
        self.down: set[str] = set()  # endpoints marked down (a single one is called anyway)

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return (
            f"OpenAICompatibleProvider(name={self.name!r}, "
            f"base_url={display_url(self.config.base_url)!r}, api_key=<{key}>)"
        )

    async def __aenter__(self) -> OpenAICompatibleProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP clients this provider created (never a client passed in)."""
        shards, self._shards = self._shards, []
        for shard in shards:
            await shard.client.aclose()
        lean, self._lean = self._lean, None
        if lean:
            await lean.aclose()

    async def complete(self, request: CompletionRequest) -> Completion:
        """Make one HTTP attempt; return the reply or raise a classified ``ProviderError``."""
        try:
            content = json.dumps(request_body(request), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise self._error(
                request, f"request body is not valid JSON ({exc})", retryable=False
            ) from None
        timeout = request.timeout or self.config.timeout
        started = time.perf_counter()
        try:
            status, headers, body = await _deadline(
                self._post(content.encode("utf-8"), request, timeout), timeout
            )
        except (_ResponseTooLarge, ResponseTooLarge):
            raise self._error(
                request,
                f"response body exceeds {self.config.max_response_bytes} bytes; "
                "lower max_tokens or raise max_response_bytes",
                retryable=False,
            ) from None
        except (asyncio.TimeoutError, httpx.TimeoutException) as exc:
            kind = type(exc).__name__ if isinstance(exc, httpx.TimeoutException) else "deadline"
            raise self._error(
                request,
                f"timed out after {timeout:g}s ({kind})",
                retryable=True,
                kind="connect" if isinstance(exc, httpx.ConnectTimeout) else "timeout",
            ) from None
        except httpx.HTTPError as exc:
            raise self._transport_error(request, exc) from None
        latency = time.perf_counter() - started
        try:
            if not 200 <= status < 300:
                raise status_error(status, headers, body, self._redact, now=self._clock())
            return read_completion(body, latency, self._redact, status=status)
        except ReplyError as exc:
            raise self._error(
                request,
                exc.detail,
                retryable=exc.retryable,
                status=exc.status,
                retry_after=exc.retry_after,
            ) from None

    async def probe(self, endpoint: str | None = None, *, context: bool = False) -> Probe:
        """Ask the endpoint what it serves (``GET {base_url}/models``; with ``context``, also
        llama.cpp's ``GET /props``): whether it answers, and how (``providers.probe``)."""
        return await probe_endpoint(
            self.config.base_url,
            self._fixed_headers(),
            timeout=min(self.config.connect_timeout, PROBE_TIMEOUT_S),
            redact=self._redact,
            context=context,
        )

    def _acquire_shard(self) -> _ClientShard:
        # httpcore's pool does O(connections**2) work each time a request starts or ends
        # (encode/httpx#3215): one client with 256 calls in flight burns ~10 ms of CPU per
        # call. Clients that each carry at most _SHARD_SIZE calls keep that cost flat. Only
        # used when a proxy is configured (the lean transport does not do proxies).
        for shard in self._shards:
            if shard.in_flight < shard.capacity:
                shard.in_flight += 1
                return shard
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.config.timeout, connect=self.config.connect_timeout),
            # Pools are governed through the database; no hidden per-process cap here.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=_SHARD_SIZE),
        )
        shard = _ClientShard(client)
        self._shards.append(shard)
        shard.in_flight = 1
        return shard

    def _fixed_headers(self) -> dict[str, str]:
        """The headers every call of this provider sends (both paths)."""
        headers = {**self.config.headers, "Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _headers(self, request: CompletionRequest) -> dict[str, str]:
        headers = self._fixed_headers()
        if request.idempotency_key:
            headers["Idempotency-Key"] = request.idempotency_key
        return headers

    async def _post(
        self, content: bytes, request: CompletionRequest, timeout: float
    ) -> tuple[int, Any, bytes]:
        connect = min(self.config.connect_timeout, timeout)
        if self._shared_client is None:
            if self._lean is None:
                self._lean = make_transport(max_body=self.config.max_response_bytes) or False
            if self._lean:
                # The common path: straight to the lean transport with a head encoded once
                # per provider. httpx's client layer (URL parsing, cookies, Request and
                # Response objects) cost several times the wire work per call.
                head = self._head(len(content), request)  # sets self._target on first use
                status, headers, body = await self._lean.exchange(
                    self._target, head, content, connect_timeout=connect
                )
                return status, headers, decode_body(headers, body, self.config.max_response_bytes)
        shard = None if self._shared_client is not None else self._acquire_shard()
        client = shard.client if shard is not None else self._shared_client
        assert client is not None
        per_phase = httpx.Timeout(timeout, connect=connect)
        limit = self.config.max_response_bytes
        try:
            async with client.stream(
                "POST",
                self._url,
                content=content,
                headers=self._headers(request),
                timeout=per_phase,
            ) as response:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise _ResponseTooLarge
                    chunks.append(chunk)
                return response.status_code, response.headers, b"".join(chunks)
        finally:
            if shard is not None:
                shard.in_flight -= 1

    def _head(self, length: int, request: CompletionRequest) -> bytes:
        """The request head for the lean transport: fixed lines encoded once, then the
        per-call ones."""
        if self._head_prefix is None:
            url = httpx.URL(self._url)
            https = url.scheme == "https"
            port = url.port or (443 if https else 80)
            self._target = (url.scheme, url.host, port)
            host = url.host if url.port is None else f"{url.host}:{url.port}"
            lines = [
                f"POST {url.raw_path.decode('ascii')} HTTP/1.1",
                f"Host: {host}",
                f"User-Agent: daydream/{_version()}",
                "Accept: application/json",
                "Accept-Encoding: gzip, deflate",
                *(f"{name}: {value}" for name, value in self._fixed_headers().items()),
            ]
            self._head_prefix = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        tail = f"Content-Length: {length}\r\n"
        if request.idempotency_key:
            tail += f"Idempotency-Key: {_header_value(request.idempotency_key)}\r\n"
        return self._head_prefix + (tail + "\r\n").encode("latin-1")

    def _transport_error(self, request: CompletionRequest, exc: httpx.HTTPError) -> ProviderError:
        kind = type(exc).__name__
        detail = f"{kind}: {exc}" if str(exc) else kind
        if isinstance(exc, (httpx.ConnectError, httpx.ProxyError)):
            return self._error(
                request,
                f"cannot connect to {self.endpoint} ({detail}); "
                "is the server running and the base_url right?",
                retryable=True,
                kind="connect",
            )
        dropped = isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError))
        retryable = dropped or isinstance(exc, httpx.DecodingError)
        return self._error(request, detail, retryable=retryable, kind="dropped" if dropped else None)

    def _error(
        self,
        request: CompletionRequest,
        detail: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
        kind: str | None = None,
    ) -> ProviderError:
        message = self._redact(f"provider {self.name}, model {request.model}: {detail}")
        return ProviderError(
            message,
            retryable=retryable,
            status=status,
            retry_after=retry_after,
            endpoint=self.endpoint,
            kind=kind,
        )

    def _redact(self, text: str) -> str:
        return redact(text, self._api_key)


_SHARD_SIZE = 16


class _ResponseTooLarge(Exception):
    pass


async def _deadline(call: Any, timeout: float) -> Any:
    """``asyncio.wait_for`` without its extra task where ``asyncio.timeout`` exists (3.11+):
    one scheduling hop less per model call, which counts at thousands of calls a second."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(timeout):
            return await call
    return await asyncio.wait_for(call, timeout)


def _version() -> str:
    from daydream import __version__

    return __version__


def _header_value(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"header value {value!r} contains a line break")
    return value


class _ClientShard:
    __slots__ = ("client", "in_flight", "capacity")

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.in_flight = 0
        self.capacity = _SHARD_SIZE
