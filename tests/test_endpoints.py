"""Endpoints: where a failed call's fault lies, what a probe of a server finds, and one
model served by several replicas.

Probes and replicas run against ``FakeAPI`` (real loopback servers); the classification is
a table.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from daydream.errors import ConfigError, ProviderError
from daydream.providers.config import ProviderConfig, resolve_provider_config
from daydream.providers.openai_compatible import OpenAICompatibleProvider
from daydream.providers.probe import Probe
from daydream.providers.protocol import CompletionRequest
from daydream.providers.registry import make_provider
from daydream.providers.replicas import ReplicatedProvider
from daydream.providers.retry import failure_scope
from daydream.queue.tasks import Task
from daydream.worker.health import Health
from tests.fakeapi import FakeAPI, Fault
from tests.scenario import T0

REQUEST = CompletionRequest(model="m", prompt="Brainstorm about flywheels.")


def free_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("status", "kind", "message", "scope"),
    [
        (None, "connect", "cannot connect", "endpoint"),
        (None, "dropped", "server disconnected", "endpoint"),
        (None, "timeout", "timed out after 5s", "endpoint"),
        (None, None, "response body exceeds 16 bytes", "call"),
        (502, None, "HTTP 502: bad gateway", "endpoint"),
        (503, None, "HTTP 503: loading model", "endpoint"),
        (504, None, "HTTP 504", "endpoint"),
        (500, None, "HTTP 500: oops", "call"),
        (429, None, "HTTP 429", "call"),
        (401, None, "HTTP 401: invalid api key", "model"),
        (402, None, "HTTP 402: insufficient credits", "model"),
        (403, None, "HTTP 403: forbidden", "model"),
        (403, None, "HTTP 403: Your input was flagged by moderation", "request"),
        (404, None, "HTTP 404: The model `x` does not exist.", "model"),
        (400, None, "HTTP 400: openai/gpt-9 is not a valid model ID", "model"),
        (404, None, 'HTTP 404: model "llama9" not found, try pulling it first', "model"),
        (400, None, "HTTP 400: maximum context length is 2048 tokens", "request"),
        (422, None, "HTTP 422: temperature must be at most 2", "request"),
        (413, None, "HTTP 413: payload too large", "request"),
    ],
)
def test_failure_scope_says_where_the_fault_lies(status, kind, message, scope):
    assert failure_scope(status, kind, message) == scope


def call_error(provider: OpenAICompatibleProvider) -> ProviderError:
    async def go() -> None:
        async with provider:
            await provider.complete(REQUEST)

    with pytest.raises(ProviderError) as info:
        asyncio.run(go())
    return info.value


def test_a_failed_call_names_its_endpoint_and_how_it_failed():
    port = free_port()
    config = ProviderConfig(name="local", base_url=f"http://user:pw@127.0.0.1:{port}/v1")
    refused = call_error(OpenAICompatibleProvider(config))
    assert (refused.endpoint, refused.kind) == (f"http://127.0.0.1:{port}/v1", "connect")
    with FakeAPI(script=["drop", "503"]) as api:
        provider = OpenAICompatibleProvider(ProviderConfig(name="local", base_url=api.base_url))
        dropped, gateway = call_error(provider), call_error(provider)
    assert (dropped.endpoint, dropped.kind, dropped.status) == (api.base_url, "dropped", None)
    assert (gateway.kind, gateway.status) == (None, 503)


def probe(base_url: str, *, key: str | None = None, context: bool = True) -> Probe:
    config = ProviderConfig(name="local", base_url=base_url)

    async def go() -> Probe:
        async with OpenAICompatibleProvider(config, api_key=key) as provider:
            return await provider.probe(context=context)

    return asyncio.run(go())


def test_a_probe_reads_the_models_a_server_lists_and_its_context():
    with FakeAPI(models=["Qwen/Qwen2.5-7B", "other"], max_model_len=4096) as vllm:
        listed = probe(vllm.base_url)
        calls = vllm.calls
    assert listed == Probe(
        vllm.base_url,
        200,
        models=("Qwen/Qwen2.5-7B", "other"),
        context={"Qwen/Qwen2.5-7B": 4096, "other": 4096},
    )
    assert listed.up and calls == 0  # a probe is not a call
    with FakeAPI(models=["gemma"], n_ctx=2048) as llama:
        assert probe(llama.base_url).server_context == 2048
        assert probe(llama.base_url, context=False).server_context is None
    with FakeAPI() as bare:  # no /models: it answers all the same
        silent = probe(bare.base_url)
    assert (silent.status, silent.models, silent.up) == (404, None, True)


def test_a_probe_of_a_dead_port_or_with_a_wrong_key_says_so():
    port = free_port()
    dead = probe(f"http://127.0.0.1:{port}/v1")
    assert (dead.status, dead.up) == (None, False)
    assert dead.error is not None and dead.error.startswith("ConnectError: cannot connect to")
    with FakeAPI(models=["m"], api_key="sk-right-key-123") as api:
        wrong = probe(api.base_url, key="sk-wrong-key-456")
        right = probe(api.base_url, key="sk-right-key-123")
    assert (wrong.status, wrong.error) == (401, "HTTP 401: fakeapi: invalid API key")
    assert "sk-wrong" not in repr(wrong)
    assert (right.status, right.models) == (200, ("m",))


def test_several_base_urls_are_replicas_of_one_provider():
    config = resolve_provider_config(
        "vllm", base_url=["http://a:8000/v1/", "http://b:8000/v1"], environ={}
    )
    assert (config.base_url, config.base_urls) == (
        "http://a:8000/v1",
        ("http://a:8000/v1", "http://b:8000/v1"),
    )
    from_env = resolve_provider_config(
        "vllm", environ={"DAYDREAM_VLLM_BASE_URL": "http://a:1/v1, http://b:2/v1"}
    )
    assert from_env.base_urls == ("http://a:1/v1", "http://b:2/v1")
    assert resolve_provider_config("vllm", base_url="http://a:1/v1", environ={}).base_urls == ()
    with pytest.raises(ConfigError) as error:
        resolve_provider_config("vllm", base_url="http://a:1/v1,b:2", environ={})
    assert str(error.value) == (
        "provider vllm: base_url 'b:2' must be an http:// or https:// URL such as"
        " http://localhost:8000/v1"
    )


def replicas(*base_urls: str) -> ReplicatedProvider:
    provider = make_provider("vllm", base_url=list(base_urls), environ={})
    assert isinstance(provider, ReplicatedProvider)
    return provider


def test_replicas_share_the_calls_by_least_in_flight_and_name_who_answered():
    with FakeAPI(latency_s=0.05) as one, FakeAPI(latency_s=0.05) as two:
        provider = replicas(one.base_url, two.base_url)

        async def go() -> list[Any]:
            async with provider:
                return list(await asyncio.gather(*(provider.complete(REQUEST) for _ in range(40))))

        completions = asyncio.run(go())
    assert (one.calls, two.calls) == (20, 20)  # never more than one call ahead
    answered = [c.endpoint for c in completions]
    assert answered.count(one.base_url) == answered.count(two.base_url) == 20


def test_replicas_skip_an_endpoint_marked_down_unless_all_are():
    with FakeAPI() as one, FakeAPI() as two:
        provider = replicas(one.base_url, two.base_url)
        provider.down.add(two.base_url)

        async def go() -> tuple[int, int]:
            async with provider:
                for _ in range(4):
                    await provider.complete(REQUEST)
                counts = (one.calls, two.calls)
                provider.down.add(one.base_url)  # all down: calls go on (a probe may be wrong)
                for _ in range(2):
                    await provider.complete(REQUEST)
            return counts

        assert asyncio.run(go()) == (4, 0)
        assert one.calls + two.calls == 6


def test_a_probe_of_a_replica_reaches_that_replica_only():
    with FakeAPI(models=["a"]) as one, FakeAPI(models=["b"]) as two:
        provider = replicas(one.base_url, two.base_url)
        found = asyncio.run(provider.probe(two.base_url))
        with pytest.raises(ConfigError):
            asyncio.run(provider.probe("http://elsewhere/v1"))
    assert (found.endpoint, found.models, one.probes, two.probes) == (two.base_url, ("b",), 0, 1)


def test_a_503_answer_is_down_a_401_answer_is_up():
    assert not Probe("e", 503).up and not Probe("e", None).up
    assert Probe("e", 401).up and Probe("e", 404).up


def test_fakeapi_serves_again_on_the_same_port_after_a_stop():
    with FakeAPI(script=[Fault("ok")]) as api:
        base_url = api.base_url
        api.stop()
        api.start()
        assert api.base_url == base_url


def test_a_workers_view_follows_the_database_except_for_what_it_has_yet_to_record():
    """A pool another process resumed, or an endpoint it saw back, is forgotten at the next
    exchange; a stop or an outage this worker found itself, not recorded yet, is kept."""
    health = Health(clock=lambda: T0)
    health.update({"http://a/v1": "2031-01-01T11:59:00Z"}, {"p1": "pool p1 stopped: ..."})
    assert (health.down, set(health.stopped)) == ({"http://a/v1"}, {"p1"})
    health.update({}, {})  # resumed elsewhere, back elsewhere
    assert (health.down, health.stopped) == (set(), {})
    task = Task("d_1", 7, 1, 0, "draft", "llm", "p2", "t", {}, {"model_id": "m", "provider": "vllm"},
                None, None, None, [], 1)
    error = ProviderError("provider vllm, model m: HTTP 401: no", retryable=False, status=401)
    health.stop_pool(task, error, "check the key")
    health.update({}, {})  # the exchange that will record the stop has not run yet
    assert health.stopped == {"p2": "pool p2 stopped: provider vllm, model m: HTTP 401: no; fix: check the key"}
    (event,) = health.take_events()
    assert (event.type, event.pool, event.http_status) == ("pool.stopped", "p2", 401)
    health.update({}, {})
    assert health.stopped == {}
