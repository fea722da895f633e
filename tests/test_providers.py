"""Providers: request shape, failure classification, key hygiene, backoff, .env, offline replies.

HTTP faults run against ``FakeAPI``, a real loopback server, so sockets, timeouts and the
connection pool are exercised; header-parsing details use ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import random
import re
import socket
import statistics
import zlib
from dataclasses import replace
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from daydream.errors import ConfigError, ProviderError
from daydream.providers.config import (
    DEFAULT_PROVIDERS,
    ProviderConfig,
    load_dotenv,
    resolve_provider_config,
)
from daydream.providers.offline import OFFLINE_LABEL, OfflineProvider, render_offline_reply
from daydream.providers.openai_compatible import OpenAICompatibleProvider
from daydream.providers.protocol import Completion, CompletionRequest, Provider
from daydream.providers.registry import make_provider
from daydream.providers.retry import RETRY_AFTER_CAP_S, backoff_delay, is_retryable_status
from daydream.providers.transport import ResponseTooLarge, decode_body
from tests.fakeapi import FAKE_LABEL, FakeAPI, Fault

KEY = "sk-test-SECRET123"
REQUEST = CompletionRequest(model="m", prompt="Brainstorm about flywheels and daydreams.")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "providers.md"

# The upstream score grammar's exact pass (reference §7.1): last 3 non-empty lines, top-down.
UPSTREAM_SCORE_LINE = re.compile(r"^\s*SCORE:\s*[0-9](\.[0-9]+)?\s*$", re.IGNORECASE)
UPSTREAM_ESSAY_IDEA = re.compile(r"<essay-idea(?:\s+[^>]*)?>\n([\s\S]*?)\n</essay-idea>")


def complete(
    base_url: str,
    request: CompletionRequest = REQUEST,
    *,
    api_key: str | None = KEY,
    **config: Any,
) -> Completion:
    config.setdefault("timeout", 10.0)
    provider_config = ProviderConfig(name="fake", base_url=base_url, **config)

    async def go() -> Completion:
        async with OpenAICompatibleProvider(provider_config, api_key=api_key) as provider:
            return await provider.complete(request)

    return asyncio.run(go())


def failure(base_url: str, request: CompletionRequest = REQUEST, **config: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        complete(base_url, request, **config)
    return info.value


def complete_mock(
    handler: Any, request: CompletionRequest = REQUEST, *, now: float = 0.0
) -> Completion:
    async def go() -> Completion:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            provider = OpenAICompatibleProvider(
                ProviderConfig(name="mock", base_url="https://api.example.test/v1"),
                client=client,
                api_key=KEY,
                clock=lambda: now,
            )
            return await provider.complete(request)

    return asyncio.run(go())


def failure_mock(handler: Any, *, now: float = 0.0) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        complete_mock(handler, now=now)
    return info.value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the happy path -----------------------------------------------------------------------


def test_complete_returns_the_reply_and_everything_the_provider_reported():
    request = CompletionRequest(
        model="anthropic/claude-sonnet-4",
        prompt="Write an <essay> on flywheels.",
        system="You are terse.",
        temperature=0.2,
        max_tokens=300,
        seed=7,
        extra={"top_p": 0.9, "provider": {"order": ["anthropic"]}},
        idempotency_key="gen-123/attempt-1",
    )
    with FakeAPI(cost=0.0042) as api:
        completion = complete(api.base_url, request)
        (received,) = api.requests
    expected_text = render_offline_reply(
        request.prompt,
        model=request.model,
        seed=7,
        label=FAKE_LABEL,
        origin="fakeapi/anthropic/claude-sonnet-4",
    )
    assert completion.text == expected_text
    assert completion.finish_reason == "stop"
    assert not completion.is_truncated
    assert completion.prompt_tokens == (len(request.system) + len(request.prompt)) // 4
    assert completion.completion_tokens == len(expected_text) // 4
    assert completion.resolved_model == "fakeapi/anthropic/claude-sonnet-4"
    assert completion.cost == 0.0042
    assert completion.request_id == "fakeapi-1"
    assert completion.offline is False
    assert completion.latency_s > 0
    assert received.method == "POST"
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == f"Bearer {KEY}"
    assert received.idempotency_key == "gen-123/attempt-1"
    assert received.body == {
        "top_p": 0.9,
        "provider": {"order": ["anthropic"]},
        "model": "anthropic/claude-sonnet-4",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Write an <essay> on flywheels."},
        ],
        "temperature": 0.2,
        "max_tokens": 300,
        "seed": 7,
    }


def test_unset_fields_are_left_out_and_no_key_means_no_authorization_header():
    with FakeAPI() as api:
        complete(api.base_url, CompletionRequest(model="llama3.1:8b", prompt="hi"), api_key=None)
        (received,) = api.requests
    assert received.body == {
        "model": "llama3.1:8b",
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert "authorization" not in received.headers
    assert "idempotency-key" not in received.headers


def test_explicit_fields_win_over_extra():
    request = CompletionRequest(model="m", prompt="p", temperature=0.1, extra={"temperature": 1.5})
    with FakeAPI() as api:
        complete(api.base_url, request)
        assert api.requests[0].body["temperature"] == 0.1


def test_extra_may_not_replace_model_messages_or_stream():
    with pytest.raises(ConfigError) as info:
        CompletionRequest(model="m", prompt="p", extra={"messages": [], "stream": True})
    assert str(info.value) == (
        "extra request parameters may not set messages, stream (the request's own fields set them)"
    )


@pytest.mark.parametrize("max_tokens", [0, -5, 2.5, True])
def test_max_tokens_must_be_a_positive_integer(max_tokens):
    with pytest.raises(ConfigError) as info:
        CompletionRequest(model="m", prompt="p", max_tokens=max_tokens)
    assert str(info.value) == f"max_tokens must be a positive integer, got {max_tokens!r}"


def test_text_keeps_whitespace_and_only_crlf_is_normalised():
    with FakeAPI(script=[Fault("ok", content="  first\r\nsecond\r\n\n\tthird\r  ")]) as api:
        completion = complete(api.base_url)
    assert completion.text == "  first\nsecond\n\n\tthird\r  "


@pytest.mark.parametrize("fault", ["empty_content", "null_content"])
def test_empty_or_missing_content_is_an_empty_completion_not_an_error(fault):
    with FakeAPI(script=[fault]) as api:
        completion = complete(api.base_url)
    assert completion.text == ""
    assert completion.finish_reason == "stop"


def test_length_finish_reason_marks_the_completion_truncated():
    with FakeAPI(script=["length"]) as api:
        completion = complete(api.base_url)
    assert completion.finish_reason == "length"
    assert completion.is_truncated


def test_content_given_as_a_list_of_parts_is_joined():
    def handler(request: httpx.Request) -> httpx.Response:
        parts = [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}]
        return httpx.Response(200, json={"choices": [{"message": {"content": parts}}]})

    completion = complete_mock(handler)
    assert completion.text == "one two"
    assert completion.resolved_model is None
    assert completion.cost is None
    assert completion.prompt_tokens is None


def test_odd_metadata_is_read_leniently_rather_than_losing_the_reply():
    def handler(request: httpx.Request) -> httpx.Response:
        body = {
            "id": 12345,
            "model": "m-2025",
            "choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10.0, "completion_tokens": "oops", "cost": "0.5"},
        }
        return httpx.Response(200, json=body)

    completion = complete_mock(handler)
    assert completion.text == "fine"
    assert (completion.request_id, completion.prompt_tokens) == ("12345", 10)
    assert (completion.completion_tokens, completion.cost) == (None, 0.5)


# --- failure classification ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "retryable", "status"),
    [
        ("429", True, 429),
        ("500", True, 500),
        ("502", True, 502),
        ("503", True, 503),
        ("504", True, 504),
        ("408", True, 408),
        ("409", True, 409),
        ("425", True, 425),
        ("400", False, 400),
        ("401", False, 401),
        ("402", False, 402),
        ("403", False, 403),
        ("404", False, 404),
        ("422", False, 422),
        ("malformed_json", True, None),
        ("non_utf8", True, None),
        ("no_choices", True, None),
        ("error_in_200", True, 502),
        ("drop", True, None),
        ("reset", True, None),
        ("truncated", True, None),
    ],
)
def test_each_fault_maps_to_a_classified_provider_error(fault, retryable, status):
    with FakeAPI(script=[fault]) as api:
        error = failure(api.base_url)
        assert api.errors == []
    assert error.retryable is retryable
    assert error.status == status
    assert str(error).startswith("provider fake, model m: ")


def test_429_carries_the_parsed_retry_after():
    with FakeAPI(script=[Fault("429", retry_after="7")]) as api:
        error = failure(api.base_url)
    assert str(error) == "provider fake, model m: HTTP 429: fakeapi: scripted 429 (retry after 7s)"
    assert error.retry_after == 7.0


def test_429_without_retry_after_has_none():
    with FakeAPI(script=[Fault("429", retry_after=None)]) as api:
        error = failure(api.base_url)
    assert error.retryable
    assert error.retry_after is None


def test_a_client_error_fails_at_once_with_the_providers_message():
    with FakeAPI(script=[Fault("400", message="max_tokens is too large for this model")]) as api:
        error = failure(api.base_url)
    assert str(error) == "provider fake, model m: HTTP 400: max_tokens is too large for this model"
    assert error.retryable is False
    assert error.retry_after is None


def test_a_long_multi_line_error_message_becomes_one_bounded_line():
    message = "upstream said:\n  " + "blah " * 300
    with FakeAPI(script=[Fault("422", message=message)]) as api:
        error = failure(api.base_url)
    detail = str(error).removeprefix("provider fake, model m: HTTP 422: ")
    assert "\n" not in detail
    assert len(detail) == 500
    assert detail.startswith("upstream said: blah blah") and detail.endswith("...")


def test_vllm_style_top_level_error_message_is_used():
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"object": "error", "message": "The model `x` does not exist.", "code": 404}
        return httpx.Response(404, json=body)

    error = failure_mock(handler)
    assert str(error) == "provider mock, model m: HTTP 404: The model `x` does not exist."


def test_a_malformed_body_is_quoted_up_to_200_characters():
    body = "<html>" + "x" * 500
    with FakeAPI(script=[Fault("malformed_json", content=body)]) as api:
        error = failure(api.base_url)
    assert str(error) == f"provider fake, model m: response is not valid JSON: {body[:200]!r}"


def test_a_read_timeout_is_retryable():
    with FakeAPI(script=["timeout"], hang_s=5.0) as api:
        error = failure(api.base_url, timeout=0.3)
    assert error.retryable
    assert error.status is None
    assert str(error).startswith("provider fake, model m: timed out after 0.3s")


def test_the_request_timeout_overrides_the_providers():
    request = CompletionRequest(model="m", prompt="p", timeout=0.3)
    with FakeAPI(script=["timeout"], hang_s=5.0) as api:
        error = failure(api.base_url, request, timeout=60.0)
    assert str(error).startswith("provider fake, model m: timed out after 0.3s")


def test_a_slow_drip_is_cut_by_the_total_deadline_not_only_per_read():
    with FakeAPI(script=["slow_drip"], hang_s=5.0) as api:
        error = failure(api.base_url, timeout=0.5)
    assert error.retryable
    assert str(error).startswith("provider fake, model m: timed out after 0.5s")


def test_a_refused_connection_is_retryable_and_names_the_url():
    port = closed_port()
    error = failure(f"http://127.0.0.1:{port}/v1")
    assert error.retryable
    assert str(error).startswith(
        f"provider fake, model m: cannot connect to http://127.0.0.1:{port}/v1"
    )


def test_an_oversized_body_is_refused_without_retry():
    with FakeAPI(script=["huge"], huge_bytes=50_000) as api:
        error = failure(api.base_url, max_response_bytes=10_000)
    assert error.retryable is False
    assert str(error) == (
        "provider fake, model m: response body exceeds 10000 bytes; "
        "lower max_tokens or raise max_response_bytes"
    )


def test_a_10_mb_reply_within_the_limit_is_returned_whole():
    with FakeAPI(script=["huge"], huge_bytes=10 * 1024 * 1024) as api:
        completion = complete(api.base_url)
    assert len(completion.text) == 10 * 1024 * 1024


def test_a_redirect_is_not_followed_and_not_retried():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(308, headers={"location": "https://user:pw@new.example.test/v1?k=1"})

    error = failure_mock(handler)
    assert error.retryable is False
    assert str(error) == (
        "provider mock, model m: HTTP 308: redirected to 'https://new.example.test/v1'; "
        "set base_url to the final address"
    )


def test_finish_reason_error_is_a_retryable_failure():
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"choices": [{"message": {"content": "par"}, "finish_reason": "error"}]}
        return httpx.Response(200, json=body)

    assert failure_mock(handler).retryable


def test_a_request_body_that_is_not_json_fails_without_a_call():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={})

    with pytest.raises(ProviderError) as info:
        complete_mock(handler, CompletionRequest(model="m", prompt="p", extra={"x": {1, 2}}))
    assert info.value.retryable is False
    assert calls == []


# --- Retry-After --------------------------------------------------------------------------


def test_retry_after_as_an_http_date_is_relative_to_the_clock():
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": format_datetime(when, usegmt=True)})

    error = failure_mock(handler, now=when.timestamp() - 30)
    assert error.retry_after == 30.0


def test_retry_after_ms_is_preferred_to_retry_after():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after-ms": "1500", "Retry-After": "9"})

    assert failure_mock(handler).retry_after == 1.5


@pytest.mark.parametrize("value", ["soon", "nan", "inf", ""])
def test_an_unparseable_retry_after_is_ignored(value):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": value})

    error = failure_mock(handler)
    assert error.retryable
    assert error.retry_after is None


def test_a_retry_after_in_the_past_is_zero():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})

    assert failure_mock(handler, now=2_000_000_000.0).retry_after == 0.0


# --- the API key --------------------------------------------------------------------------


def test_a_missing_required_key_is_a_config_error_naming_the_variable():
    with pytest.raises(ConfigError) as info:
        OpenAICompatibleProvider(DEFAULT_PROVIDERS["openrouter"], environ={})
    assert str(info.value) == (
        "provider openrouter: OPENROUTER_API_KEY is not set (export it or put it in .env)"
    )


def test_the_key_is_read_from_the_named_environment_variable():
    with FakeAPI() as api:
        config = ProviderConfig(
            name="fake", base_url=api.base_url, api_key_env="FAKE_KEY", key_required=True
        )

        async def go() -> None:
            async with OpenAICompatibleProvider(config, environ={"FAKE_KEY": KEY}) as provider:
                await provider.complete(REQUEST)

        asyncio.run(go())
        assert api.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_a_key_with_control_characters_is_refused_without_showing_it():
    with pytest.raises(ConfigError) as info:
        OpenAICompatibleProvider(DEFAULT_PROVIDERS["openai"], environ={"OPENAI_API_KEY": "sk-a\nb"})
    assert "sk-a" not in str(info.value)
    assert str(info.value) == (
        "provider openai: OPENAI_API_KEY contains spaces or control characters; "
        "copy the key again without them"
    )


def test_the_key_never_appears_in_errors_reprs_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    echo = f"invalid key {KEY} (Authorization: Bearer {KEY})"
    faults = [
        Fault("400", message=echo),
        Fault("401", message=echo),
        Fault("500", message=echo),
        Fault("malformed_json", content=echo),
        Fault("error_in_200", message=echo),
        "drop",
        "timeout",
    ]
    errors: list[ProviderError] = []
    with FakeAPI(script=faults, hang_s=5.0) as api:
        config = ProviderConfig(name="fake", base_url=api.base_url, timeout=0.5)

        async def go() -> str:
            async with OpenAICompatibleProvider(config, api_key=KEY) as provider:
                for _ in faults:
                    try:
                        await provider.complete(REQUEST)
                    except ProviderError as error:
                        errors.append(error)
                return repr(provider)

        provider_repr = asyncio.run(go())
        assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in api.requests)
    assert len(errors) == len(faults)
    assert "[redacted]" in str(errors[0])
    texts = [provider_repr, repr(config)] + [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [record.getMessage() for record in caplog.records]
    assert not [text for text in texts if "SECRET123" in text]
    assert provider_repr == (
        f"OpenAICompatibleProvider(name='fake', base_url='{config.base_url}', api_key=<set>)"
    )


def test_a_key_without_a_recognisable_prefix_is_redacted_too():
    key = "lab-vllm-7Qz9SECRET456"
    with FakeAPI(script=[Fault("401", message=f"bad key {key}")]) as api:
        error = failure(api.base_url, api_key=key)
    assert str(error) == "provider fake, model m: HTTP 401: bad key [redacted]"


@pytest.mark.parametrize("offset", range(180, 201, 4))
def test_a_key_that_straddles_the_excerpt_cut_leaks_no_part_of_itself(offset):
    """An error message quotes only the start of a body (``BODY_EXCERPT_CHARS``): the key
    is redacted before the body is cut, so a key across the cut leaves none of its
    characters behind (cutting first would leave its first half, which no redactor knows)."""
    key = "lab-vllm-7Qz9SECRET456xyz"
    body = "x" * offset + key + " and the rest of the body"
    with FakeAPI(script=[Fault("malformed_json", content=body)]) as api:
        error = failure(api.base_url, api_key=key)
    fragments = {key[i : i + 6] for i in range(len(key) - 5)}
    assert not [f for f in fragments if f in str(error)], str(error)
    assert "x" * 20 in str(error)  # the excerpt itself is there


def test_repr_hides_credentials_in_the_base_url():
    config = ProviderConfig(name="x", base_url="https://user:pw@llm.example.test/v1?key=abc")
    assert repr(OpenAICompatibleProvider(config)) == (
        "OpenAICompatibleProvider(name='x', base_url='https://llm.example.test/v1', api_key=<none>)"
    )


# --- configuration ------------------------------------------------------------------------


def test_default_providers_point_at_the_documented_urls():
    urls = {name: config.base_url for name, config in DEFAULT_PROVIDERS.items()}
    assert urls == {
        "openrouter": "https://openrouter.ai/api/v1",
        "openai": "https://api.openai.com/v1",
        "ollama": "http://localhost:11434/v1",
        "vllm": "http://localhost:8000/v1",
        "llamacpp": "http://localhost:8080/v1",
        "lmstudio": "http://localhost:1234/v1",
        "offline": "",
    }
    assert [n for n, c in DEFAULT_PROVIDERS.items() if c.key_required] == ["openrouter", "openai"]


def test_base_url_precedence_is_command_line_then_environment_then_catalog_then_default():
    env = {"DAYDREAM_VLLM_BASE_URL": "http://gpu-box:8000/v1/"}
    assert resolve_provider_config("vllm", environ={}).base_url == "http://localhost:8000/v1"
    catalog = resolve_provider_config("vllm", base_url="http://catalog:8000/v1", environ={})
    assert catalog.base_url == "http://catalog:8000/v1"
    both = resolve_provider_config("vllm", base_url="http://catalog:8000/v1", environ=env)
    assert both.base_url == "http://gpu-box:8000/v1"
    typed = resolve_provider_config(
        "vllm",
        base_url="http://catalog:8000/v1",
        environ=env,
        command_line_url="http://typed:9000/v1",
    )
    assert typed.base_url == "http://typed:9000/v1"


def test_providers_mapping_adds_or_replaces_configurations():
    mine = {"vllm": ProviderConfig(name="vllm", base_url="http://10.0.0.5:9000/v1", timeout=30)}
    config = resolve_provider_config("vllm", providers=mine, environ={})
    assert (config.base_url, config.timeout) == ("http://10.0.0.5:9000/v1", 30)


def test_an_unknown_provider_with_a_base_url_is_generic_openai_compatible():
    config = resolve_provider_config(
        "together-ai", base_url="https://api.together.xyz/v1", environ={}
    )
    assert config.base_url == "https://api.together.xyz/v1"
    assert config.api_key_env == "TOGETHER_AI_API_KEY"
    assert config.key_required is False


def test_an_unknown_provider_without_a_url_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        resolve_provider_config("togther", environ={})
    assert str(info.value) == (
        "provider togther: unknown provider (known: llamacpp, lmstudio, offline, ollama, "
        "openai, openrouter, vllm); give its model a base_url in the catalog or set "
        "DAYDREAM_TOGTHER_BASE_URL"
    )


def test_a_base_url_must_be_http():
    with pytest.raises(ConfigError) as info:
        resolve_provider_config("ollama", base_url="localhost:11434", environ={})
    assert str(info.value) == (
        "provider ollama: base_url 'localhost:11434' must be an http:// or https:// URL "
        "such as http://localhost:8000/v1"
    )


def test_make_provider_builds_each_kind():
    offline = make_provider("offline", environ={})
    assert isinstance(offline, OfflineProvider)
    local = make_provider("ollama", environ={})
    assert isinstance(local, OpenAICompatibleProvider)
    assert (local.name, local.is_offline) == ("ollama", False)
    hosted = make_provider("openrouter", environ={"OPENROUTER_API_KEY": KEY})
    assert repr(hosted) == (
        "OpenAICompatibleProvider(name='openrouter', base_url='https://openrouter.ai/api/v1', "
        "api_key=<set>)"
    )
    with pytest.raises(ConfigError):
        make_provider("openai", environ={})
    assert isinstance(offline, Provider) and isinstance(local, Provider)


def test_make_provider_calls_through_the_catalog_base_url():
    with FakeAPI() as api:

        async def go() -> Completion:
            provider = make_provider("lmstudio", base_url=api.base_url, environ={})
            try:
                return await provider.complete(REQUEST)
            finally:
                await provider.aclose()

        assert asyncio.run(go()).resolved_model == "fakeapi/m"


def test_a_client_passed_in_is_used_and_left_open():
    with FakeAPI() as api:

        async def go() -> bool:
            async with httpx.AsyncClient() as client:
                config = ProviderConfig(name="fake", base_url=api.base_url)
                provider = OpenAICompatibleProvider(config, client=client)
                await provider.complete(REQUEST)
                await provider.aclose()
                return client.is_closed

        assert asyncio.run(go()) is False
        assert api.calls == 1


def test_64_concurrent_calls_all_complete():
    with FakeAPI(latency_s=0.05) as api:
        config = ProviderConfig(name="fake", base_url=api.base_url, timeout=30)

        async def go() -> list[Completion]:
            async with OpenAICompatibleProvider(config) as provider:
                requests = [CompletionRequest(model="m", prompt=f"idea {i}") for i in range(64)]
                return await asyncio.gather(*(provider.complete(r) for r in requests))

        completions = asyncio.run(go())
        assert api.calls == 64
        assert api.max_in_flight > 1
        assert api.errors == []
    assert len({c.request_id for c in completions}) == 64


def test_the_docs_retry_table_matches_the_classification():
    rows = [line for line in DOCS.read_text().splitlines() if line.startswith("| `")]
    checked = 0
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        codes = [int(code) for code in re.findall(r"`(\d{3})`", cells[0])]
        for code in codes:
            assert is_retryable_status(code) is (cells[1] == "yes"), row
            checked += 1
    assert checked >= 10


# --- backoff ------------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_an_exponential_ceiling():
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(60.0, 2.0 ** (attempt - 1))
        delays = [backoff_delay(attempt, retry_after=None, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8
    assert backoff_delay(10_000, retry_after=None, rng=rng) <= 60.0


def test_backoff_grows_with_the_attempt():
    rng = random.Random(2)
    means = [
        statistics.mean(backoff_delay(a, retry_after=None, rng=rng) for _ in range(500))
        for a in (1, 3, 5)
    ]
    assert means[0] < means[1] < means[2]


def test_backoff_honours_retry_after_with_a_little_spread():
    rng = random.Random(3)
    delays = [backoff_delay(1, retry_after=12.0, rng=rng) for _ in range(200)]
    assert all(12.0 <= d <= 12.12 for d in delays)
    assert len(set(delays)) > 1


def test_a_short_retry_after_gets_a_short_spread():
    rng = random.Random(6)
    delays = [backoff_delay(1, retry_after=1.0, rng=rng, base=0.25) for _ in range(200)]
    assert all(1.0 <= d <= 1.01 for d in delays) and max(delays) > 1.009
    delays = [backoff_delay(1, retry_after=0.0, rng=rng, base=0.25) for _ in range(200)]
    assert all(0.0 <= d <= 0.25 for d in delays)


def test_backoff_caps_an_absurd_retry_after():
    delay = backoff_delay(1, retry_after=86_400.0, rng=random.Random(4))
    assert RETRY_AFTER_CAP_S <= delay <= RETRY_AFTER_CAP_S + 1.0


def test_backoff_is_reproducible_from_the_seed():
    first = [backoff_delay(a, retry_after=None, rng=random.Random(5)) for a in range(1, 8)]
    again = [backoff_delay(a, retry_after=None, rng=random.Random(5)) for a in range(1, 8)]
    assert first == again


def test_backoff_attempts_count_from_one():
    with pytest.raises(ValueError, match=r"attempt counts from 1 .*, got 0"):
        backoff_delay(0, retry_after=None, rng=random.Random(0))


class _LongestDraw(random.Random):
    """A generator whose every draw is the top of its range: the longest wait possible."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_the_longest_wait_after_a_retry_after_is_a_hundredth_more():
    """Told to wait 12 s, a call waits at most 12.12 s: the jitter that keeps throttled
    calls apart adds up to a hundredth of the wait asked for, no more."""
    assert backoff_delay(1, retry_after=12.0, rng=_LongestDraw()) == pytest.approx(12.12)
    assert backoff_delay(1, retry_after=300.0, rng=_LongestDraw()) == pytest.approx(301.0)
    assert backoff_delay(1, retry_after=0.2, rng=_LongestDraw(), base=0.25) == 0.25


# --- .env ---------------------------------------------------------------------------------


def test_load_dotenv_sets_missing_variables_only(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# keys for daydream\n"
        "\n"
        "OPENROUTER_API_KEY=abc\n"
        "export OPENAI_API_KEY = 'sk-open #not-a-comment'\n"
        'QUOTED="line one\\nline two" # comment\n'
        "PLAIN=value # trailing comment\n"
        "ALREADY=from-file\n"
        "EMPTY=\n"
        "PLAIN=later wins\n"
    )
    environ = {"ALREADY": "from-shell"}
    loaded = load_dotenv(env_file, environ=environ)
    assert loaded == ["OPENROUTER_API_KEY", "OPENAI_API_KEY", "QUOTED", "PLAIN", "EMPTY"]
    assert environ == {
        "ALREADY": "from-shell",
        "OPENROUTER_API_KEY": "abc",
        "OPENAI_API_KEY": "sk-open #not-a-comment",
        "QUOTED": "line one\nline two",
        "PLAIN": "later wins",
        "EMPTY": "",
    }


def test_load_dotenv_without_a_file_does_nothing(tmp_path):
    environ: dict[str, str] = {}
    assert load_dotenv(tmp_path / ".env", environ=environ) == []
    assert environ == {}


def test_load_dotenv_defaults_to_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("DAYDREAM_TEST_ONLY_VAR=1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAYDREAM_TEST_ONLY_VAR", raising=False)
    assert load_dotenv() == ["DAYDREAM_TEST_ONLY_VAR"]
    assert os.environ["DAYDREAM_TEST_ONLY_VAR"] == "1"
    monkeypatch.delenv("DAYDREAM_TEST_ONLY_VAR")


def test_a_malformed_dotenv_line_is_reported_without_its_content(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("GOOD=1\nsk-or-v1-secret-pasted-alone\n")
    with pytest.raises(ConfigError) as info:
        load_dotenv(env_file, environ={})
    assert str(info.value) == (
        f"{env_file}:2: expected KEY=VALUE (the line is not shown: it may hold a secret)"
    )


def test_an_unterminated_quote_in_dotenv_is_an_error(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text('KEY="abc\n')
    with pytest.raises(ConfigError) as info:
        load_dotenv(env_file, environ={})
    assert str(info.value) == f"{env_file}:1: KEY: unterminated quote"


# --- the offline provider -----------------------------------------------------------------

JUDGE_PROMPT = (
    "Rate the essay below for novelty.\n\nESSAY: Flywheels meet the default mode network.\n\n"
    "End with a line in the exact format SCORE: X where X is a digit 0-9."
)
ESSAY_PROMPT = "Turn these notes into an essay wrapped in <essay> ... </essay> tags: flywheels."
IDEAS_PROMPT = (
    'After each step output one <essay-idea stage="i"> block. Concepts: flywheel effect, '
    "generator verifier gap, default mode network."
)
NOTES_PROMPT = "Brainstorm connections between Flywheel effect and Generator-verifier gap."


def offline(prompt: str, **fields: Any) -> Completion:
    request = CompletionRequest(model=fields.pop("model", "gpt-x"), prompt=prompt, **fields)
    return asyncio.run(OfflineProvider().complete(request))


def last_lines(text: str, count: int) -> list[str]:
    return [line.strip() for line in text.strip().split("\n") if line.strip()][-count:]


def test_offline_replies_are_deterministic_and_depend_on_model_and_seed():
    first = offline(NOTES_PROMPT, seed=1)
    assert replace(offline(NOTES_PROMPT, seed=1), latency_s=0) == replace(first, latency_s=0)
    assert offline(NOTES_PROMPT, seed=2).text != first.text
    assert offline(NOTES_PROMPT, seed=1, model="other").text != first.text


def test_offline_completion_fields():
    completion = offline(NOTES_PROMPT, model="llama")
    assert completion.offline is True
    assert completion.finish_reason == "stop"
    assert completion.resolved_model == "offline/llama"
    assert completion.cost == 0.0
    assert completion.prompt_tokens == len(NOTES_PROMPT) // 4
    assert completion.completion_tokens == len(completion.text) // 4
    assert completion.request_id is not None and completion.request_id.startswith("offline-")
    provider = OfflineProvider()
    assert (provider.name, provider.is_offline) == ("offline", True)


@pytest.mark.parametrize("prompt", [JUDGE_PROMPT, ESSAY_PROMPT, IDEAS_PROMPT, NOTES_PROMPT])
def test_every_offline_reply_says_it_is_a_dry_run_on_its_first_line(prompt):
    assert offline(prompt).text.split("\n", 1)[0].startswith(OFFLINE_LABEL + " ")


def test_an_offline_judge_reply_ends_with_a_score_line_the_upstream_grammar_accepts():
    scores = set()
    for index in range(60):
        text = offline(f"{JUDGE_PROMPT}\nessay number {index}").text
        candidates = last_lines(text, 3)
        matching = [line for line in candidates if UPSTREAM_SCORE_LINE.match(line)]
        assert matching == [candidates[-1]]
        score = int(candidates[-1].removeprefix("SCORE:"))
        assert 0 <= score <= 9
        assert len(text.strip().split("\n")) >= 4
        scores.add(score)
    assert len(scores) >= 6


def test_an_offline_essay_reply_has_one_essay_block():
    text = offline(ESSAY_PROMPT).text
    assert text.count("<essay>") == 1 and text.count("</essay>") == 1
    body = re.search(r"<essay>([\s\S]*?)</essay>", text)
    assert body is not None
    assert body.group(1).strip().startswith(f"# {OFFLINE_LABEL}")


def test_an_offline_draft_asked_for_essay_ideas_has_staged_blocks():
    text = offline(IDEAS_PROMPT).text
    blocks = UPSTREAM_ESSAY_IDEA.findall(text)
    stages = [int(s) for s in re.findall(r'<essay-idea stage="(\d+)">', text)]
    assert len(blocks) >= 2
    assert stages == list(range(1, len(blocks) + 1))
    assert all(block.startswith(OFFLINE_LABEL) for block in blocks)


def test_offline_notes_have_five_lines_built_from_the_prompts_words():
    text = offline(NOTES_PROMPT).text
    lines = [line for line in text.split("\n") if line.strip()]
    assert len(lines) >= 5
    assert any(word in text for word in ("flywheel", "generator-verifier", "brainstorm"))
    assert "SCORE" not in text and "<essay" not in text


def test_offline_replies_never_contain_the_judge_trigger_outside_a_judge_reply():
    for prompt in (ESSAY_PROMPT, IDEAS_PROMPT, NOTES_PROMPT, "score Score scores SCORING"):
        text = offline(prompt).text
        if "SCORE" not in prompt:
            assert "SCORE" not in text


def test_offline_latency_is_applied():
    request = CompletionRequest(model="m", prompt="p")
    completion = asyncio.run(OfflineProvider(latency_s=0.05).complete(request))
    assert completion.latency_s >= 0.05


# --- the fake server itself ---------------------------------------------------------------


def test_fakeapi_rate_429_is_reproducible_from_the_seed():
    def statuses(seed: int) -> list[int]:
        with FakeAPI(rate_429=0.3, seed=seed) as api:
            config = ProviderConfig(name="fake", base_url=api.base_url)

            async def go() -> list[int]:
                seen = []
                async with OpenAICompatibleProvider(config) as provider:
                    for _ in range(40):
                        try:
                            await provider.complete(REQUEST)
                            seen.append(200)
                        except ProviderError as error:
                            assert error.retry_after == 1.0
                            seen.append(error.status)
                return seen

            seen = asyncio.run(go())
            assert seen == [429 if r.fault == "429" else 200 for r in api.requests]
            return seen

    first = statuses(11)
    assert first == statuses(11)
    assert 0 < first.count(429) < 40


def test_fakeapi_script_function_sees_each_request():
    seen: list[tuple[int, str]] = []

    def script(index: int, body: Any) -> str | None:
        seen.append((index, body["model"]))
        return "503" if index == 0 else None

    with FakeAPI(script=script) as api:
        assert failure(api.base_url).status == 503
        assert complete(api.base_url).text
        assert api.fault_counts == {"503": 1, "ok": 1}
    assert seen == [(0, "m"), (1, "m")]


def test_fakeapi_logs_requests_with_their_idempotency_key(tmp_path):
    log = tmp_path / "calls.jsonl"
    request = CompletionRequest(model="m", prompt="p", idempotency_key="gen-1")
    with FakeAPI(log_path=log) as api:
        complete(api.base_url, request)
        complete(api.base_url, request)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["index"], e["idempotency_key"], e["fault"]) for e in entries] == [
        (0, "gen-1", "ok"),
        (1, "gen-1", "ok"),
    ]


def test_fakeapi_answers_unknown_paths_with_404():
    with FakeAPI() as api:
        response = httpx.get(api.base_url + "/models")
    assert response.status_code == 404


def _stacks(threads: list[Any]) -> str:
    import sys
    import traceback

    frames = sys._current_frames()
    return "\n".join(
        f"{thread.name}:\n" + "".join(traceback.format_stack(frames[thread.ident]))
        for thread in threads
        if thread.ident in frames
    )


def test_fakeapi_stops_when_the_block_exits_even_with_a_hanging_request():
    with FakeAPI(script=["timeout"], hang_s=60.0) as api:
        base_url = api.base_url
        assert failure(base_url, timeout=0.2).retryable
        hanging = list(api._threads)
        assert hanging
    alive = [thread for thread in hanging if thread.is_alive()]
    assert not alive, "handler threads outlived stop():\n" + _stacks(alive)
    with pytest.raises(httpx.ConnectError):
        httpx.post(base_url + "/chat/completions", json={}, timeout=1.0)


def test_fakeapi_rejects_unknown_fault_names():
    with pytest.raises(ValueError):
        Fault("teapot")


def test_requests_carry_the_provider_headers_and_a_daydream_user_agent():
    with FakeAPI() as api:
        complete(api.base_url, REQUEST, headers={"X-Title": "my study"})
        (received,) = api.requests
    assert received.headers["x-title"] == "my study"
    assert received.headers["user-agent"].startswith("daydream/")
    assert received.headers["content-type"] == "application/json"
    assert received.headers["content-length"] == str(
        len(json.dumps(received.body, ensure_ascii=False).encode())
    )


def test_a_provider_header_with_a_line_break_is_refused_before_any_call():
    config = ProviderConfig(
        name="fake", base_url="http://127.0.0.1:9/v1", headers={"X-Title": "a\r\nX-Evil: 1"}
    )
    with pytest.raises(ConfigError, match="X-Title.*line break"):
        OpenAICompatibleProvider(config, api_key=None)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_bodies_are_decoded(encoding):
    body = b'{"choices": []}' * 50
    if encoding == "gzip":
        packed, header = gzip.compress(body), "gzip"
    elif encoding == "deflate":
        packed, header = zlib.compress(body), "deflate"
    else:
        squeezer = zlib.compressobj(wbits=-15)
        packed, header = squeezer.compress(body) + squeezer.flush(), "deflate"
    assert decode_body([("Content-Encoding", header)], packed, 10_000) == body
    assert decode_body([], body, 10_000) == body


def test_a_compressed_body_is_capped_and_unknown_encodings_fail_clearly():
    packed = gzip.compress(b"x" * 5_000)
    with pytest.raises(ResponseTooLarge):
        decode_body([("content-encoding", "gzip")], packed, 1_000)
    with pytest.raises(httpx.DecodingError, match="unsupported Content-Encoding 'br'"):
        decode_body([("content-encoding", "br")], b"...", 1_000)
    with pytest.raises(httpx.DecodingError, match="cannot decode the gzip body"):
        decode_body([("content-encoding", "gzip")], b"not gzip", 1_000)
