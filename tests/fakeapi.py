"""A fake OpenAI-compatible chat-completions server on loopback, for tests and benchmarks.

``FakeAPI`` is a real HTTP/1.1 server (stdlib ``ThreadingHTTPServer``, one thread per
connection, keep-alive) on 127.0.0.1 and an ephemeral port, so the provider's whole stack
runs: sockets, timeouts, connection pools, status codes, headers. It answers
``POST .../chat/completions`` with scripted latency and faults, and records every request.

Invariants:

- Bounded: leaving the ``with`` block (or ``stop()``) stops accepting, wakes every handler
  that is sleeping or hanging, closes every open connection and joins the threads, so a
  test never leaks a server or waits out a ``timeout`` fault.
- Deterministic: the default reply is ``render_offline_reply`` (labelled ``[fakeapi]``) of
  the last user message, the requested model and the seed, so the pipeline's parsers
  accept it; random faults (``rate_429``, ``fault_rate``) come from ``random.Random(seed)``
  drawn in arrival order.
- Observable: ``requests`` (a copy of the log, taken under a lock), ``calls``,
  ``max_in_flight``, ``fault_counts`` and ``errors`` (unexpected exceptions inside the
  server; a test can assert it is empty). With ``log_path`` every request is also appended
  to a JSON-lines file and fsynced, so duplicate provider calls can be counted after a
  crash.

Faults, by name (a string, or a ``Fault`` for parameters), for one request each:

========================  ==================================================================
``ok``                    200 with a reply (``Fault("ok", content=...)`` sets its text)
``"<3-digit status>"``    that status with an OpenAI-style error body, e.g. ``"400"``,
                          ``"401"``, ``"500"``, ``"502"``, ``"503"``; ``429`` and ``503``
                          carry ``Retry-After`` (``Fault(..., retry_after=None)`` omits it)
``timeout``               sleep ``hang_s`` (longer than the client's timeout), then reply
``slow_drip``             send headers, then the body a byte at a time over ``hang_s``
``drop``                  close the connection without a response
``reset``                 reset the connection (TCP RST)
``truncated``             announce a Content-Length, send half the body, close
``malformed_json``        200 with a body that is not JSON
``non_utf8``              200 with bytes that are not UTF-8
``no_choices``            200 with valid JSON that has no ``choices``
``error_in_200``          200 with an OpenRouter-style ``{"error": {"code": 502, ...}}``
``empty_content``         200 with content ``""``
``null_content``          200 with content ``null``
``length``                200 with half a reply and ``finish_reason: "length"``
``wrong_content``         200 with a reply no parser accepts
``huge``                  200 with a valid reply of ``huge_bytes`` characters
``body``                  200 with ``Fault.body`` (bytes) as the whole body, exactly
``short_body``            announce a Content-Length, send half the body, keep the connection
``overlong``              a Content-Length shorter than the body (the rest stays on the wire)
``extra_response``        the reply, then a second complete response nobody asked for on the
                          same connection, kept alive: in the same write as the reply, or
                          ``Fault.stray_after_s`` later
``continue``              an interim ``100 Continue`` response, then the reply
========================  ==================================================================

A 200 reply's fields can be replaced: ``Fault(usage={...})`` merges into its ``usage``,
``Fault(fields={...})`` into the top level (``model``, ``id``, ``choices``...). The text
of a stray response is ``STRAY_TEXT``; ``strays_sent`` counts them.

What a server says about itself: ``GET .../models`` lists ``models`` (with vLLM's
``max_model_len`` when given; a 404, as before, when ``models`` is None) and ``GET
/props`` gives llama.cpp's ``n_ctx`` when ``n_ctx`` is set; these GETs take no scripted
fault and are not counted as calls (``probes`` counts them). With ``api_key``, every
request without ``Authorization: Bearer <api_key>`` is answered 401. ``stop()`` then
``start()`` serves again on the same port (a server killed and restarted).

Run it alone (for benchmarks, in its own process so it does not share the GIL with the
workers): ``PYTHONPATH=. python tests/fakeapi.py --port 8999 --latency 0.05 --rate-429 0.1``.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from daydream.providers.offline import render_offline_reply

FAKE_LABEL = "[fakeapi]"
NAMED_FAULTS = frozenset(
    {
        "ok",
        "timeout",
        "slow_drip",
        "drop",
        "reset",
        "truncated",
        "malformed_json",
        "non_utf8",
        "no_choices",
        "error_in_200",
        "empty_content",
        "null_content",
        "length",
        "wrong_content",
        "huge",
        "body",
        "short_body",
        "overlong",
        "extra_response",
        "continue",
    }
)
STRAY_TEXT = "STRAY reply that answers no request"
DEFAULT_RANDOM_FAULTS = ("500", "502", "503", "timeout", "drop")


@dataclass(frozen=True)
class Fault:
    """One scripted outcome. ``kind`` is a fault name or an HTTP status like ``"429"``.

    ``retry_after`` is the ``Retry-After`` header value for 429/503 (``None`` omits it);
    ``message`` the error message of an error status; ``content`` the reply text of a 200;
    ``delay_s`` replaces the server's latency for this request. ``reasoning`` adds a
    reasoning model's reasoning to a 200 (as ``message.reasoning_content``, or
    ``reasoning_field``), with ``reasoning_tokens`` in
    ``usage.completion_tokens_details``; ``completion_tokens`` replaces the usage count. ``body``: the raw body of
    a ``body`` fault; ``usage`` and ``fields`` are merged into a 200 reply; ``stray_after_s``:
    how long after the reply an ``extra_response`` fault sends its stray response.
    """

    kind: str = "ok"
    retry_after: str | None = "1"
    message: str | None = None
    content: str | None = None
    delay_s: float | None = None
    reasoning: str | None = None
    reasoning_field: str = "reasoning_content"
    reasoning_tokens: int | None = None
    completion_tokens: int | None = None
    body: bytes | None = None
    usage: dict[str, Any] | None = None
    fields: dict[str, Any] | None = None
    stray_after_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in NAMED_FAULTS and not _is_status(self.kind):
            raise ValueError(
                f"unknown fault {self.kind!r}: use a 3-digit status or one of "
                f"{', '.join(sorted(NAMED_FAULTS))}"
            )


FaultSpec = str | Fault
Script = Iterable[FaultSpec] | Callable[[int, Any], FaultSpec | None]


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server received it. Header names are lower-case; ``connection``
    numbers the connection it came on (from 1, in the order they were accepted)."""

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    fault: str
    received_at: float
    connection: int = 0

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


class FakeAPI:
    """A loopback chat-completions server with scripted latency and faults.

    ``latency_s`` is a fixed delay or a ``(low, high)`` range drawn uniformly per request.
    ``script`` is a sequence of faults consumed one per request in arrival order (then
    ``ok``), or a function ``(index, body) -> fault | None``. Requests the script leaves
    unscripted get 429 with probability ``rate_429``, else a fault from ``random_faults``
    with probability ``fault_rate``. ``cost`` adds ``usage.cost`` (as OpenRouter does);
    ``reply`` replaces the default reply text, given the request body. ``props``, when
    given, is served at ``GET /props`` (llama.cpp's server reports its slots there).
    """

    def __init__(
        self,
        *,
        latency_s: float | tuple[float, float] = 0.0,
        script: Script | None = None,
        rate_429: float = 0.0,
        fault_rate: float = 0.0,
        random_faults: Iterable[FaultSpec] = DEFAULT_RANDOM_FAULTS,
        seed: int = 0,
        retry_after: str | None = "1",
        hang_s: float = 30.0,
        huge_bytes: int = 10 * 1024 * 1024,
        cost: float | None = None,
        reply: Callable[[Any], str] | None = None,
        props: dict[str, Any] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Iterable[str] | None = None,
        max_model_len: int | None = None,
        n_ctx: int | None = None,
        api_key: str | None = None,
    ) -> None:
        self.latency_s = latency_s
        self.rate_429 = rate_429
        self.fault_rate = fault_rate
        self.random_faults = tuple(_as_fault(f) for f in random_faults)
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.huge_bytes = huge_bytes
        self.cost = cost
        self.reply = reply
        self.props = props
        self.log_path = Path(log_path) if log_path is not None else None
        self.models = None if models is None else list(models)
        self.max_model_len = max_model_len
        self.n_ctx = n_ctx
        self.api_key = api_key
        self.probes = 0
        self._address = (host, port)
        if callable(script):
            self._script_fn: Callable[[int, Any], FaultSpec | None] | None = script
            self._script: collections.deque[Fault] = collections.deque()
        else:
            self._script_fn = None
            self._script = collections.deque(_as_fault(f) for f in (script or ()))
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._calls = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._fault_counts: collections.Counter[str] = collections.Counter()
        self._errors: list[str] = []
        self._strays_sent = 0
        self._accepted = 0
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._log_file: Any = None
        self._ids = itertools.count(1)

    # --- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> FakeAPI:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("FakeAPI is already running")
        self._stopping.clear()
        if self.log_path is not None:
            self._log_file = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115
        self._server = _Server(self._address, _Handler)
        self._address = self._server.server_address[:2]  # a restart binds the same port
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self, *, join_timeout: float = 10.0) -> None:
        """Stop serving, wake hanging handlers, close connections, join threads."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            threads = list(self._threads)
        self._shut_connections()
        self._server.server_close()
        deadline = time.monotonic() + join_timeout
        # Join in short steps, shutting down whatever connections are still tracked each
        # time: a handler that was between two reads when the first shutdown went out (seen
        # under CI load) is woken by the next one instead of outliving the server.
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            self._shut_connections()
            for thread in threads:
                thread.join(min(0.2, max(0.0, deadline - time.monotonic())))
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._server = None

    def _shut_connections(self) -> None:
        """Shut down every tracked connection, waking handlers blocked on them."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # --- what tests look at -------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it serves on (after a ``stop()``, the one it will serve on again)."""
        if self._server is None:
            if self._address[1]:
                return self._address[1]
            raise RuntimeError("FakeAPI has not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    @property
    def fault_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._fault_counts)

    @property
    def strays_sent(self) -> int:
        with self._lock:
            return self._strays_sent

    @property
    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    # --- request handling ---------------------------------------------------------------

    def _handle_get(self, handler: _Handler) -> None:
        """What the server says about itself: ``/models``, ``/props`` (not a call)."""
        with self._lock:
            self.probes += 1
        path = handler.path.split("?")[0].rstrip("/")
        if not self._authorised(handler):
            return
        if path.endswith("/models") and self.models is not None:
            entries = [
                {"id": name, "object": "model", "owned_by": "fakeapi"}
                | ({"max_model_len": self.max_model_len} if self.max_model_len else {})
                for name in self.models
            ]
            self._send_json(handler, 200, {"object": "list", "data": entries})
        elif path.endswith("/props") and (self.props is not None or self.n_ctx is not None):
            props = dict(self.props or {})
            if self.n_ctx is not None:
                props.setdefault("default_generation_settings", {"n_ctx": self.n_ctx})
                props.setdefault("total_slots", 1)
            self._send_json(handler, 200, props)
        else:
            self._send_json(handler, 404, _error_body(f"no route for {handler.path}", 404))

    def _authorised(self, handler: _Handler) -> bool:
        """With ``api_key`` set: is the request's bearer token that key? (Else a 401.)"""
        if self.api_key is None or handler.headers.get("Authorization") == f"Bearer {self.api_key}":
            return True
        self._send_json(handler, 401, _error_body("fakeapi: invalid API key", 401))
        return False

    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            index = self._calls
            self._calls += 1
            fault = self._choose_fault(index, body)
            self._fault_counts[fault.kind] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            record = RecordedRequest(
                index=index,
                method=handler.command,
                path=handler.path,
                headers={k.lower(): v for k, v in handler.headers.items()},
                body=body,
                fault=fault.kind,
                received_at=time.time(),
                connection=handler.connection_id,
            )
            self._requests.append(record)
            if self._log_file is not None:
                self._log_file.write(
                    json.dumps(
                        {
                            "index": index,
                            "idempotency_key": record.idempotency_key,
                            "fault": fault.kind,
                            "received_at": record.received_at,
                        }
                    )
                    + "\n"
                )
                self._log_file.flush()
                os.fsync(self._log_file.fileno())
            delay = fault.delay_s if fault.delay_s is not None else self._draw_latency()
        try:
            if delay > 0 and self._stopping.wait(delay):
                return
            self._respond(handler, fault, body)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _choose_fault(self, index: int, body: Any) -> Fault:
        if self._script_fn is not None:
            scripted = self._script_fn(index, body)
            if scripted is not None:
                return _as_fault(scripted)
        elif self._script:
            return self._script.popleft()
        draw = self._rng.random()
        if draw < self.rate_429:
            return Fault("429", retry_after=self.retry_after)
        if self.random_faults and draw < self.rate_429 + self.fault_rate:
            return self._rng.choice(self.random_faults)
        return Fault("ok")

    def _draw_latency(self) -> float:
        if isinstance(self.latency_s, tuple):
            return self._rng.uniform(*self.latency_s)
        return self.latency_s

    def _respond(self, handler: _Handler, fault: Fault, body: Any) -> None:
        if handler.command != "POST" or not handler.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(handler, 404, _error_body(f"no route for {handler.path}", 404))
            return
        if not isinstance(body, dict) or "model" not in body or "messages" not in body:
            self._send_json(handler, 400, _error_body("body must have model and messages", 400))
            return
        if not self._authorised(handler):
            return
        kind = fault.kind
        if _is_status(kind):
            status = int(kind)
            headers = {}
            if status in (429, 503) and fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            message = fault.message or f"fakeapi: scripted {status}"
            self._send_json(handler, status, _error_body(message, status), headers)
        elif kind == "drop":
            handler.close_connection = True
        elif kind == "reset":
            # Linger 0 makes close() send RST; closing here skips the server's graceful FIN.
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.close_connection = True
            handler.connection.close()
        elif kind == "timeout":
            if not self._stopping.wait(self.hang_s):
                self._send_json(handler, 200, self._completion(body, fault))
        elif kind == "slow_drip":
            self._drip(handler, json.dumps(self._completion(body, fault)).encode())
        elif kind == "truncated":
            payload = json.dumps(self._completion(body, fault)).encode()
            self._send_raw(handler, 200, payload[: len(payload) // 2], length=len(payload))
            handler.close_connection = True
        elif kind == "malformed_json":
            text = fault.content if fault.content is not None else '{"choices": [ oops'
            self._send_raw(handler, 200, text.encode())
        elif kind == "non_utf8":
            self._send_raw(handler, 200, b'{"choices": "\xff\xfe\xfa"}')
        elif kind == "no_choices":
            self._send_json(handler, 200, {"id": "fakeapi-x", "object": "chat.completion"})
        elif kind == "error_in_200":
            message = fault.message or "fakeapi: upstream provider failed"
            self._send_json(handler, 200, {"error": {"code": 502, "message": message}})
        elif kind in _FRAMING_FAULTS:
            self._misframe(handler, fault, body)
        else:
            self._send_json(handler, 200, self._completion(body, fault))

    def _misframe(self, handler: _Handler, fault: Fault, body: Any) -> None:
        """The faults in how a reply is framed on the connection (``_FRAMING_FAULTS``)."""
        payload = json.dumps(self._completion(body, fault)).encode()
        if fault.kind == "body":
            self._send_raw(handler, 200, fault.body or b"")
        elif fault.kind == "short_body":  # the client waits for the rest until its deadline
            self._send_raw(handler, 200, payload[: len(payload) // 2], length=len(payload))
        elif fault.kind == "overlong":
            self._send_raw(handler, 200, payload + b" " * 64, length=len(payload))
        elif fault.kind == "continue":
            try:
                handler.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                handler.close_connection = True
                return
            self._send_raw(handler, 200, payload)
        else:  # extra_response
            stray = json.dumps(self._completion(body, Fault("ok", content=STRAY_TEXT))).encode()
            if fault.stray_after_s:
                self._send_raw(handler, 200, payload)
                if self._stopping.wait(fault.stray_after_s):
                    return
                self._send_raw(handler, 200, stray)
            else:  # in the same write as the reply: there on the connection before any reuse
                try:
                    handler.wfile.write(_response(payload) + _response(stray))
                except OSError:
                    handler.close_connection = True
                    return
            with self._lock:
                self._strays_sent += 1

    def _completion(self, body: dict[str, Any], fault: Fault) -> dict[str, Any]:
        model = str(body.get("model"))
        messages = body.get("messages") or []
        prompt = next(
            (m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), ""
        )
        finish_reason = "stop"
        if fault.content is not None:
            text: str | None = fault.content
        elif fault.kind == "empty_content":
            text = ""
        elif fault.kind == "null_content":
            text = None
        elif fault.kind == "wrong_content":
            text = "I would rather talk about the weather."
        elif fault.kind == "huge":
            line = "all work and no play makes a very long reply\n"
            text = (line * (self.huge_bytes // len(line) + 1))[: self.huge_bytes]
        elif self.reply is not None:
            text = self.reply(body)
        else:
            text = render_offline_reply(
                str(prompt),
                model=model,
                seed=body.get("seed"),
                label=FAKE_LABEL,
                origin=f"fakeapi/{model}",
            )
        if fault.kind == "length" and text:
            text = text[: len(text) // 2]
            finish_reason = "length"
        usage: dict[str, Any] = {
            "prompt_tokens": sum(len(str(m.get("content", ""))) for m in messages) // 4,
            "completion_tokens": len(text or "") // 4,
        }
        if fault.completion_tokens is not None:
            usage["completion_tokens"] = fault.completion_tokens
        if fault.reasoning_tokens is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": fault.reasoning_tokens}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if self.cost is not None:
            usage["cost"] = self.cost
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if fault.reasoning is not None:
            message[fault.reasoning_field] = fault.reasoning
        usage.update(fault.usage or {})
        return {**self._reply(model, message, finish_reason, usage), **(fault.fields or {})}

    def _reply(
        self, model: str, message: dict[str, Any], finish_reason: str, usage: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "id": f"fakeapi-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"fakeapi/{model}",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage,
        }

    def _send_json(
        self,
        handler: _Handler,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send_raw(handler, status, json.dumps(payload).encode(), headers=headers)

    def _send_raw(
        self,
        handler: _Handler,
        status: int,
        payload: bytes,
        *,
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload) if length is None else length))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True

    def _drip(self, handler: _Handler, payload: bytes) -> None:
        interval = max(self.hang_s / max(len(payload), 1), 0.01)
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.flush()
            for index in range(len(payload)):
                if self._stopping.wait(interval):
                    break
                handler.wfile.write(payload[index : index + 1])
                handler.wfile.flush()
        except OSError:
            pass
        handler.close_connection = True

    def _track(self, connection: socket.socket) -> int:
        """Track an accepted connection; returns its number."""
        with self._lock:
            self._connections.add(connection)
            self._accepted += 1
            # A handler thread stays tracked until it has exited, not just until its
            # finish(): socketserver still closes the socket after that, and stop() must
            # wait for it (a thread dropped at finish() outlived stop() now and then).
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(threading.current_thread())
            return self._accepted

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _record_error(self, message: str) -> None:
        with self._lock:
            self._errors.append(message)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # FakeAPI.stop() joins its handler threads with a deadline.
    request_queue_size = 1024  # the default backlog of 5 drops bursts of connections
    fake: FakeAPI

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or self.fake._stopping.is_set():
            return
        self.fake._record_error(f"{type(exc).__name__}: {exc}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the second waits ~40 ms for
    # the client's delayed ACK on every keep-alive request.
    disable_nagle_algorithm = True
    server: _Server

    connection_id = 0

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.fake._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._untrack(self.connection)

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def do_GET(self) -> None:
        self.server.fake._handle_get(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


_FRAMING_FAULTS = frozenset({"body", "short_body", "overlong", "extra_response", "continue"})


def fake_reply(body: dict[str, Any]) -> str:
    """What FakeAPI answers to the request ``body`` by default."""
    return render_offline_reply(
        body["messages"][-1]["content"],
        model=body["model"],
        seed=body.get("seed"),
        label=FAKE_LABEL,
        origin=f"fakeapi/{body['model']}",
    )


def _as_fault(spec: FaultSpec) -> Fault:
    return spec if isinstance(spec, Fault) else Fault(str(spec))


def _is_status(kind: str) -> bool:
    return len(kind) == 3 and kind.isdigit() and 100 <= int(kind) <= 599


def _error_body(message: str, status: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": "fakeapi_error", "code": status}}


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted; print the base URL on stdout."""
    parser = argparse.ArgumentParser(description="Serve the fake chat-completions API.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--latency-max", type=float, help="draw latency in [latency, max]")
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", help="append every request to this JSON-lines file")
    args = parser.parse_args(argv)
    latency: float | tuple[float, float] = args.latency
    if args.latency_max is not None:
        latency = (args.latency, args.latency_max)
    with FakeAPI(
        latency_s=latency,
        rate_429=args.rate_429,
        fault_rate=args.fault_rate,
        seed=args.seed,
        log_path=args.log,
        port=args.port,
    ) as api:
        print(api.base_url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()


def _response(payload: bytes) -> bytes:
    """A whole 200 response with a JSON body, as bytes (for faults that control framing)."""
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    return head.encode("ascii") + payload
