"""What a bad reply gets: whatever a server sends, a call ends as a ``Completion`` holding
only values the database can store, or as a classified ``ProviderError``; a connection
that saw a protocol anomaly is never used again, and a reply is never read as the answer
to another request.

The replies come from ``FakeAPI`` (a real loopback server) through the provider's own
transport, several calls in a row on one provider, so the keep-alive pool is exercised;
the parser and the transport's reader are also fuzzed directly with hypothesis. The same
faults run through real worker processes in ``test_hostile_runs.py``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daydream.errors import ProviderError
from daydream.providers.chat import ReplyError, read_completion, status_error
from daydream.providers.config import ProviderConfig
from daydream.providers.openai_compatible import OpenAICompatibleProvider
from daydream.providers.protocol import Completion, CompletionRequest
from daydream.providers.transport import _read_response, decode_body
from daydream.values import COUNT_MAX
from tests.fakeapi import STRAY_TEXT, FakeAPI, Fault

Result = Completion | ProviderError


def request(n: int) -> CompletionRequest:
    return CompletionRequest(model="m", prompt=f"request number {n}")


def call_in_turn(
    api: FakeAPI,
    count: int,
    *,
    timeout: float = 10.0,
    between: Callable[[int], Any] | None = None,
) -> list[Result]:
    """``count`` calls one after the other on one provider (one keep-alive pool);
    ``between(i)`` runs after call ``i`` (a predicate to wait for, polled)."""

    async def go() -> list[Result]:
        config = ProviderConfig(name="fake", base_url=api.base_url, timeout=timeout)
        results: list[Result] = []
        async with OpenAICompatibleProvider(config, api_key=None) as provider:
            for n in range(count):
                try:
                    results.append(await provider.complete(request(n)))
                except ProviderError as exc:
                    results.append(exc)
                while between is not None and not between(n):
                    await asyncio.sleep(0.01)
        return results

    return asyncio.run(go())


def fake(**options: Any) -> FakeAPI:
    """A FakeAPI whose replies quote the prompt they answer."""
    return FakeAPI(reply=lambda body: f"answer to: {body['messages'][-1]['content']}", **options)


def own_reply(result: Result, n: int) -> bool:
    """Is ``result`` the answer to request ``n``?"""
    return isinstance(result, Completion) and result.text == f"answer to: request number {n}"


def assert_storable(completion: Completion) -> None:
    """Every field of ``completion`` fits SQLite: counts in range, finite floats, UTF-8."""
    for count in (completion.prompt_tokens, completion.completion_tokens):
        assert count is None or (type(count) is int and 0 <= count <= COUNT_MAX)
    for number in (completion.cost, completion.latency_s):
        assert number is None or math.isfinite(number)
    for text in (
        completion.text,
        completion.finish_reason,
        completion.resolved_model,
        completion.request_id,
    ):
        if text is not None:
            text.encode("utf-8")


# --- values the database cannot hold -------------------------------------------------------


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 10**30, "completion_tokens": 2**63},
        {"prompt_tokens": 1e308, "completion_tokens": -5, "cost": 1e308},
        {"prompt_tokens": float("inf"), "completion_tokens": float("nan"), "cost": -1.0},
        {"prompt_tokens": "9" * 400, "completion_tokens": [1, 2], "cost": 10**400},
    ],
)
def test_usage_numbers_beyond_reason_are_dropped_and_the_reply_kept(usage):
    with fake(script=[Fault(usage=usage)]) as api:
        (result,) = call_in_turn(api, 1)
    assert own_reply(result, 0)
    assert isinstance(result, Completion)
    assert (result.prompt_tokens, result.completion_tokens, result.cost) == (None, None, None)
    assert_storable(result)


def test_a_plausible_usage_is_kept_as_sent():
    usage = {"prompt_tokens": 12, "completion_tokens": 3.0, "cost": 0.25}
    with fake(script=[Fault(usage=usage)]) as api:
        (result,) = call_in_turn(api, 1)
    assert isinstance(result, Completion)
    assert (result.prompt_tokens, result.completion_tokens, result.cost) == (12, 3, 0.25)


def test_lone_surrogates_become_replacement_characters_everywhere_in_a_reply():
    fields = {"model": "bad\ud800model", "id": "id\udfff"}
    with fake(script=[Fault(content="before \ud800 after \udc00", fields=fields)]) as api:
        (result,) = call_in_turn(api, 1)
    assert isinstance(result, Completion)
    assert result.text == "before \ufffd after \ufffd"
    assert (result.resolved_model, result.request_id) == ("bad\ufffdmodel", "id\ufffd")
    assert_storable(result)


def test_a_surrogate_pair_written_as_escapes_is_one_character_and_kept():
    with fake(script=[Fault(content="smile \U0001f600")]) as api:  # json.dumps: \ud83d\ude00
        (result,) = call_in_turn(api, 1)
    assert isinstance(result, Completion) and result.text == "smile \U0001f600"


def test_an_error_message_with_a_lone_surrogate_is_cleaned():
    with fake(script=[Fault("400", message="bad \ud800 request")]) as api:
        (result,) = call_in_turn(api, 1)
    assert isinstance(result, ProviderError)
    assert str(result) == "provider fake, model m: HTTP 400: bad \ufffd request"
    str(result).encode("utf-8")


def test_long_labels_are_cut_and_odd_ones_dropped():
    fields = {"model": "m" * 5000, "id": {"nested": True}}
    with fake(script=[Fault(fields=fields)]) as api:
        (result,) = call_in_turn(api, 1)
    assert isinstance(result, Completion)
    assert (result.resolved_model, result.request_id) == ("m" * 200, None)


@pytest.mark.parametrize("depth", [5000, 100_000])
def test_deeply_nested_json_is_a_retryable_provider_error(depth):
    body = ("[" * depth + "]" * depth).encode()
    nested_usage = b'{"choices": [{"message": {"content": "hi"}}], "usage": ' + body + b"}"
    with fake(script=[Fault("body", body=body), Fault("body", body=nested_usage)]) as api:
        first, second = call_in_turn(api, 2)
    for result, start in ((first, "'[[[["), (second, '\'{"choices"')):
        assert isinstance(result, ProviderError)
        assert result.retryable and result.status is None
        prefix = "provider fake, model m: response is nested too deeply to read: "
        assert str(result).startswith(prefix + start)


def test_deeply_nested_json_in_an_error_status_is_quoted_not_parsed():
    body = b'{"error": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    with fake(script=[Fault("body", body=body)]) as api:
        api_results = call_in_turn(api, 1)
    assert isinstance(api_results[0], ProviderError)


# --- framing: what a connection may carry --------------------------------------------------


def test_an_interim_100_continue_is_skipped_and_the_reply_read():
    with fake(script=["continue", "continue", "ok"]) as api:
        results = call_in_turn(api, 3)
        connections = {r.connection for r in api.requests}
    assert all(own_reply(result, n) for n, result in enumerate(results))
    assert connections == {1}  # an interim response is no anomaly: the connection is kept


def test_a_body_shorter_than_its_length_fails_that_call_only_on_a_fresh_connection_after():
    with fake(script=["ok", "short_body", "ok", "ok"]) as api:
        results = call_in_turn(api, 4, timeout=1.0)
        connections = [r.connection for r in api.requests]
    assert own_reply(results[0], 0) and own_reply(results[2], 2) and own_reply(results[3], 3)
    failed = results[1]
    assert isinstance(failed, ProviderError) and failed.retryable
    assert str(failed) == "provider fake, model m: timed out after 1s (deadline)"
    # The short reply's connection is never used again; the next calls share a new one.
    assert connections == [1, 1, 2, 2]


def test_a_body_shorter_than_its_length_then_a_close_is_a_retryable_protocol_error():
    with fake(script=["ok", "truncated", "ok"]) as api:
        results = call_in_turn(api, 3)
        connections = [r.connection for r in api.requests]
    assert isinstance(results[1], ProviderError) and results[1].retryable
    assert "RemoteProtocolError: connection closed before the response body ended" in str(
        results[1]
    )
    assert own_reply(results[0], 0) and own_reply(results[2], 2)
    assert connections == [1, 1, 2]


def test_bytes_beyond_a_response_discard_its_connection_and_never_reach_the_next_call():
    with fake(script=["overlong", "ok", "ok"]) as api:
        results = call_in_turn(api, 3)
        connections = [r.connection for r in api.requests]
    assert all(own_reply(result, n) for n, result in enumerate(results))
    assert connections == [1, 2, 2]


def test_an_extra_response_sent_at_once_is_never_read_as_the_next_reply():
    with fake(script=["extra_response", "ok", "ok"]) as api:
        results = call_in_turn(api, 3, between=lambda n: api.strays_sent >= 1 or n > 0)
        connections = [r.connection for r in api.requests]
    assert all(own_reply(result, n) for n, result in enumerate(results))
    assert not any(STRAY_TEXT in getattr(r, "text", "") for r in results)
    assert connections[1:] == [2, 2]


def test_an_extra_response_arriving_on_an_idle_connection_is_never_read_as_the_next_reply():
    """The stray response comes a while after the reply, while the connection sits idle
    in the pool; the next call finds bytes waiting and takes a new connection."""
    script = [Fault("extra_response", stray_after_s=0.2), "ok"]
    with fake(script=script) as api:
        results = call_in_turn(api, 2, between=lambda n: api.strays_sent >= 1 or n > 0)
        connections = [r.connection for r in api.requests]
    assert own_reply(results[0], 0) and own_reply(results[1], 1)
    assert connections == [1, 2]


def test_a_connection_reset_while_the_request_is_sent_is_a_retryable_write_error():
    """A server that resets the connection before reading an 8 MB request: the send fails,
    and that is a classified, retryable error, not an unexpected exception."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def reset_one() -> None:
            connection, _ = listener.accept()
            connection.recv(1024)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()

        server = threading.Thread(target=reset_one)
        server.start()
        config = ProviderConfig(name="fake", base_url=f"http://127.0.0.1:{port}/v1", timeout=10)
        big = CompletionRequest(model="m", prompt="x" * 8_000_000)

        async def go() -> ProviderError:
            async with OpenAICompatibleProvider(config, api_key=None) as provider:
                with pytest.raises(ProviderError) as info:
                    await provider.complete(big)
                return info.value

        error = asyncio.run(go())
        server.join(10)
    assert error.retryable
    assert str(error).startswith("provider fake, model m: ")
    assert re.search(r"(WriteError|ReadError|RemoteProtocolError)", str(error)), str(error)


def test_healthy_replies_share_one_connection():
    """The control for the tests above: without an anomaly, the connection is reused."""
    with fake() as api:
        results = call_in_turn(api, 4)
        connections = {r.connection for r in api.requests}
    assert all(own_reply(result, n) for n, result in enumerate(results))
    assert connections == {1}


# --- the transport's reader, fuzzed -------------------------------------------------------

HEADS = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"HTTP/1.1 \xb2\xb2\xb2 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: \xb9\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 99999999999999999999 OK\r\n\r\n",
    b"HTTP/1.1 101 Switching\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 503 Busy\r\nRetry-After: \xff\xfe\r\nX-\xff: \x00\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 301 Moved\r\nLocation: \xff\x00//\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\n\x1f\x8b\x00\x00",
]


def read_bytes(data: bytes, *, max_body: int = 4096) -> tuple[int, list, bytes, bool]:
    async def go() -> tuple[int, list, bytes, bool]:
        reader = asyncio.StreamReader(limit=256)
        reader.feed_data(data)
        reader.feed_eof()
        return await _read_response(reader, max_body)

    return asyncio.run(go())


def handle(data: bytes) -> Completion | ReplyError | httpx.HTTPError:
    """What the provider makes of a server's bytes (as ``complete`` does): the response
    read, its body decoded, then a completion or the error its status says."""
    try:
        status, headers, content, _ = read_bytes(data)
        if not 200 <= status < 300:
            return status_error(status, headers, content, lambda text: text, now=0.0)
        return read_completion(decode_body(headers, content, 4096), 0.1, lambda text: text)
    except (ReplyError, httpx.HTTPError) as exc:
        return exc


@pytest.mark.parametrize("data", HEADS)
def test_whatever_bytes_a_server_sends_end_as_a_completion_or_a_classified_error(data):
    """Nothing but the transport's httpx errors and the parser's ReplyError leaves the
    provider's reading of a reply (a header value holding any byte included)."""
    result = handle(data)
    if isinstance(result, Completion):
        assert_storable(result)
    elif isinstance(result, ReplyError):
        assert "\n" not in result.detail
        result.detail.encode("utf-8")


def test_a_malformed_status_or_length_is_a_protocol_error_naming_it():
    with pytest.raises(httpx.RemoteProtocolError, match="malformed status line"):
        read_bytes(b"HTTP/1.1 \xb2\xb2\xb2 OK\r\n\r\n")
    with pytest.raises(httpx.RemoteProtocolError, match="bad Content-Length"):
        read_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}")
    with pytest.raises(httpx.RemoteProtocolError, match="malformed chunk size"):
        read_bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n")
    with pytest.raises(httpx.RemoteProtocolError, match="switched protocols"):
        read_bytes(b"HTTP/1.1 101 Switching\r\n\r\n")


def test_a_body_framed_two_ways_is_read_chunked_on_a_connection_not_kept():
    data = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    )
    assert read_bytes(data)[2:] == (b"{}", False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=400),
        st.builds(
            lambda head, tail: head + tail,
            st.sampled_from(HEADS + [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 100 Continue\r\n\r\n"]),
            st.binary(max_size=300),
        ),
    )
)
def test_the_reader_never_raises_anything_but_httpx_errors(data):
    test_whatever_bytes_a_server_sends_end_as_a_completion_or_a_classified_error(data)


# --- the reply parser, fuzzed -------------------------------------------------------------

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40),
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
MESSAGE = st.fixed_dictionaries({}, optional={"content": JSON | st.text(max_size=60), "role": JSON})
CHOICE = st.fixed_dictionaries(
    {},
    optional={
        "message": MESSAGE | JSON,
        "finish_reason": JSON | st.sampled_from(["stop", "length", "error"]),
    },
)
USAGE = st.dictionaries(
    st.sampled_from(["prompt_tokens", "completion_tokens", "cost", "total_tokens"]), JSON
)
REPLY = st.fixed_dictionaries(
    {},
    optional={
        "choices": st.lists(CHOICE | JSON, max_size=3) | JSON,
        "usage": USAGE | JSON,
        "model": JSON,
        "id": JSON,
        "error": JSON,
    },
)
ENCODINGS = st.sampled_from(["utf-8", "utf-16", "utf-32", "latin-1", "utf-8-sig"])


def encode(value: Any, encoding: str) -> bytes:
    text = json.dumps(value, allow_nan=True)  # ASCII: escapes every lone surrogate too
    return text.encode(encoding)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.builds(encode, REPLY, ENCODINGS),
        st.builds(encode, JSON, ENCODINGS),
        st.binary(max_size=200),
        st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
    )
)
def test_the_parser_returns_a_storable_completion_or_raises_a_reply_error(body):
    try:
        completion = read_completion(body, 0.5, lambda text: text)
    except ReplyError as exc:
        exc.detail.encode("utf-8")
        assert "\n" not in exc.detail
        return
    assert_storable(completion)
