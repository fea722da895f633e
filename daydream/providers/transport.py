"""A lean HTTP/1.1 transport for httpx: keep-alive connections on asyncio streams.

httpx's default transport (httpcore + anyio) costs about 2 ms of CPU per request and its
pool does O(connections^2) work per request (encode/httpx#3215); a worker driving hundreds
of concurrent model calls spends more time in it than in everything else together. The
provider calls ``StreamTransport.exchange`` directly with a request head it encoded once
(httpx's client layer costs more than the wire work); the transport also plugs into
``httpx.AsyncClient(transport=...)``. Exceptions stay httpx's.

Scope, on purpose: HTTP/1.1 POST/GET with a body in memory, responses with Content-Length,
chunked encoding or read-to-close; http and https (certifi's CA bundle, as httpx). No
proxies (``make_transport`` falls back to httpx's own transport when a proxy variable is
set), no HTTP/2, no redirects (a redirect is returned as a response, which the provider
treats as an error).

Invariants: a connection goes back to the idle pool only after a complete response with
nothing after it; any error, cancellation or protocol anomaly (a malformed head, a body
framed two ways, bytes beyond the response) closes it. An idle connection is reused only
while nothing waits on it: one the server has closed, or on which stray bytes arrived
(an extra response), is discarded, so a reply is never read as another request's.
Interim ``1xx`` responses are skipped. A request is never re-sent by the transport: a model call may cost money, so
retrying is the worker's decision, recorded as an event.
"""

from __future__ import annotations

import asyncio
import os
import select
import ssl
import zlib
from collections.abc import Iterable

import httpx

_PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
_MAX_HEAD = 64 * 1024


class ResponseTooLarge(httpx.TransportError):
    """The response body exceeded the configured maximum."""


def make_transport(*, max_body: int, environ: dict | None = None) -> StreamTransport | None:
    """The lean transport, or None (use httpx's default) when a proxy is configured."""
    env = os.environ if environ is None else environ
    if any(env.get(name) for name in _PROXY_VARIABLES):
        return None
    return StreamTransport(max_body=max_body)


class StreamTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_body: int = 16 * 1024 * 1024, max_idle: int = 512) -> None:
        self.max_body = max_body
        self.max_idle = max_idle
        self._idle: dict[
            tuple[str, str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        ] = {}
        self._ssl: ssl.SSLContext | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        https = url.scheme == "https"
        key = (url.scheme, url.host, url.port or (443 if https else 80))
        timeouts = request.extensions.get("timeout", {})
        status, headers, content = await self.exchange(
            key,
            _request_head(request, url),
            request.content,
            connect_timeout=timeouts.get("connect"),
        )
        return httpx.Response(
            status,
            headers=headers,
            content=content,
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def exchange(
        self, key: tuple[str, str, int], head: bytes, body: bytes, *, connect_timeout: float | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one request (its head already encoded) and read the whole response.

        The content comes back as sent (a ``Content-Encoding`` is not undone here; see
        ``decode_body``). ``key`` is (scheme, host, port): the idle pool's key.
        """
        connection = self._take(key)
        reader, writer = connection or await self._connect(
            key, key[0] == "https", {"connect": connect_timeout}
        )
        try:
            try:
                writer.write(head + body)
                await writer.drain()
            except (ConnectionError, ssl.SSLError) as exc:  # reset or closed while sending
                raise httpx.WriteError(str(exc) or type(exc).__name__) from None
            status, headers, content, keep = await _read_response(reader, self.max_body)
        except BaseException:
            writer.close()
            raise
        if keep and is_quiet(reader, writer):  # bytes beyond the response: an anomaly
            self._give_back(key, reader, writer)
        else:
            writer.close()
        return status, headers, content

    async def aclose(self) -> None:
        pools, self._idle = self._idle, {}
        for connections in pools.values():
            for _, writer in connections:
                writer.close()

    def _take(self, key):
        """An idle connection the server has not closed, or None."""
        idle = self._idle.get(key)
        while idle:
            reader, writer = idle.pop()
            if is_quiet(reader, writer):
                return reader, writer
            writer.close()  # closed by the server, or stray bytes arrived while it was idle
        return None

    def _give_back(self, key, reader, writer) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < self.max_idle:
            idle.append((reader, writer))
        else:
            writer.close()

    async def _connect(self, key, https: bool, timeouts: dict):
        _, host, port = key
        context = None
        if https:
            if self._ssl is None:
                import certifi

                self._ssl = ssl.create_default_context(cafile=certifi.where())
            context = self._ssl
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host if https else None
                ),
                timeouts.get("connect"),
            )
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(
                f"cannot connect to {host}:{port}: {exc.strerror or exc}"
            ) from None


def _request_head(request: httpx.Request, url: httpx.URL) -> bytes:
    target = url.raw_path.decode("ascii")
    lines = [f"{request.method} {target} HTTP/1.1"]
    headers: Iterable[tuple[str, str]] = request.headers.multi_items()
    for name, value in headers:
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_response(reader: asyncio.StreamReader, max_body: int):
    """(status, headers, content, keep): the response to the request just sent, after any
    interim ``1xx`` responses; ``keep`` is whether the connection may serve another."""
    while True:
        status, headers, length, chunked, close = await _read_head(reader)
        if status >= 200:
            break
        if status == 101:
            raise httpx.RemoteProtocolError("the server switched protocols (101)")
        # 100 Continue, 102 Processing, 103 Early Hints: interim; the response follows.
    try:
        if chunked:
            content = await _read_chunked(reader, max_body)
        elif length is not None:
            if length > max_body:
                raise ResponseTooLarge(f"response body of {length} bytes exceeds {max_body}")
            content = await reader.readexactly(length)
        else:
            content = await _read_to_close(reader, max_body)
            close = True
    except asyncio.IncompleteReadError:
        raise httpx.RemoteProtocolError(
            "connection closed before the response body ended"
        ) from None
    except asyncio.LimitOverrunError:
        raise httpx.RemoteProtocolError("chunk size line too long") from None
    except (ConnectionError, ssl.SSLError) as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from None
    return status, headers, content, not close


async def _read_head(reader: asyncio.StreamReader):
    """(status, headers, content length, chunked, close) of the next response head.

    Strict where leniency could misframe a body: the status is three ASCII digits, a
    Content-Length is ASCII digits and appears once (or always with the same value), and a
    body framed both ways is read chunked on a connection that is closed afterwards.
    """
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise httpx.RemoteProtocolError(
                "server disconnected without sending a response"
            ) from None
        raise httpx.RemoteProtocolError(
            "connection closed while reading the response head"
        ) from None
    except asyncio.LimitOverrunError:
        raise httpx.RemoteProtocolError("response head too large") from None
    except (ConnectionError, ssl.SSLError) as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from None
    if len(head) > _MAX_HEAD:
        raise httpx.RemoteProtocolError("response head too large")
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not _is_digits(parts[1], 3):
        raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:80]!r}")
    status = int(parts[1])
    if status < 100:
        raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:80]!r}")
    headers = []
    length = None
    chunked = False
    close = parts[0] == "HTTP/1.0"
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise httpx.RemoteProtocolError(f"malformed header line {line[:80]!r}")
        value = value.strip()
        headers.append((name, value))
        lower = name.lower()
        if lower == "content-length":
            if (
                not _is_digits(value, None)
                or len(value) > 18
                or (length is not None and int(value) != length)
            ):
                raise httpx.RemoteProtocolError(f"bad Content-Length {value[:40]!r}")
            length = int(value)
        elif lower == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif lower == "connection":
            close = value.lower() == "close" or (close and value.lower() != "keep-alive")
    if chunked and length is not None:
        close = True  # framed two ways: read it chunked (RFC 9112), never reuse the connection
    return status, headers, length, chunked, close


def _is_digits(text: str, count: int | None) -> bool:
    """ASCII digits only (``str.isdigit`` also accepts "²"), ``count`` of them if given."""
    return text.isascii() and text.isdigit() and (count is None or len(text) == count)


def is_quiet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Is the connection open with no byte waiting on it (none buffered by the reader, none
    readable on the socket)? A byte there before a request was sent can only be a stray
    response or a close, which must never be read as the reply to the next request."""
    if reader.at_eof() or writer.is_closing() or len(getattr(reader, "_buffer", b"")):
        return False
    sock = writer.get_extra_info("socket")
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return not poller.poll(0)


def decode_body(headers: list[tuple[str, str]], content: bytes, max_body: int) -> bytes:
    """Undo a gzip or deflate ``Content-Encoding`` (at most ``max_body`` bytes out)."""
    encoding = ""
    for name, value in headers:
        if name.lower() == "content-encoding":
            encoding = value.strip().lower()
    if encoding in ("", "identity"):
        return content
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise httpx.DecodingError(f"unsupported Content-Encoding {encoding!r}")
    # wbits 47 reads gzip or zlib headers; raw deflate (no header) needs -15.
    wbits = 47 if encoding != "deflate" or content[:1] == b"\x78" else -15
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(content, max_body + 1)
    except zlib.error as exc:
        raise httpx.DecodingError(f"cannot decode the {encoding} body: {exc}") from None
    if len(out) > max_body:
        raise ResponseTooLarge(f"response body exceeds {max_body} bytes")
    return out


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        digits = line.split(b";", 1)[0].strip()
        if not digits or len(digits) > 16 or digits.strip(b"0123456789abcdefABCDEF"):
            raise httpx.RemoteProtocolError("malformed chunk size")
        n = int(digits, 16)
        if n == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(chunks)
        size += n
        if size > max_body:
            raise ResponseTooLarge(f"response body exceeds {max_body} bytes")
        chunks.append(await reader.readexactly(n))
        if await reader.readexactly(2) != b"\r\n":
            raise httpx.RemoteProtocolError("chunk not followed by CRLF")


async def _read_to_close(reader: asyncio.StreamReader, max_body: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_body:
            raise ResponseTooLarge(f"response body exceeds {max_body} bytes")
        chunks.append(chunk)
