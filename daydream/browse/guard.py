"""Only loopback requests: ``daydream browse`` answers a request only when its ``Host``
header names this machine's loopback (``127.0.0.1``, ``localhost``, ``[::1]``, any port).

Binding to 127.0.0.1 keeps other machines out, but not a web page: a page on a domain the
attacker points at 127.0.0.1 (DNS rebinding) can make the browser send requests to the
server as if they were the page's own, and read the answers, database included. Such a
request carries the attacker's host name in ``Host``; it gets 403 and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")

Scope = MutableMapping[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


def loopback_only(app: App) -> App:
    """The ASGI ``app``, answering 403 to any HTTP request whose Host is not loopback."""

    async def guarded(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not is_loopback_host(_host(scope)):
            body = (
                b"daydream browse answers only requests for 127.0.0.1 or localhost;"
                b" open the address it printed.\n"
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return guarded


def is_loopback_host(host: str | None) -> bool:
    """Does a ``Host`` header value (``name`` or ``name:port``) name the loopback?"""
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host.partition("]")
        name, port = name + "]", rest.removeprefix(":")
    else:
        name, _, port = host.partition(":")
    return name in LOOPBACK_HOSTS and (port == "" or (port.isascii() and port.isdigit()))


def _host(scope: Scope) -> str | None:
    values = [value for name, value in scope.get("headers", ()) if name.lower() == b"host"]
    if len(values) != 1:  # none, or two that could disagree
        return None
    return values[0].decode("latin-1")
