"""Preflight: what ``daydream run`` (and ``--rehearse``) checks before any worker starts,
so that a key not set, a wrong port, a wrong model name or a prompt that cannot fit is one
line per problem with nothing written, not a failed generation per task.

For the models of the unfinished calls in the run's scope:

- every provider can be built (a required key is set, the base URL is valid) and every
  key variable the catalog names (``api_key_env`` of a model or of ``providers.yaml``) is
  set;
- every endpoint (each replica) answers ``GET {base_url}/models``; a 401 or 403 there is
  a rejected key;
- each model is served, where the endpoint lists its models (not on llama.cpp, whose
  server answers with the model it loaded whatever the name);
- where the server says its context size (llama.cpp's ``/props`` ``n_ctx``, vLLM's
  ``max_model_len``), each template's ``max_tokens`` fits, with the longest prompt of
  the ready calls (about 4 characters a token) in front of it.

Endpoints are probed concurrently, each within ``probe.PROBE_TIMEOUT_S``. Nothing is
written here; ``runner.run.prepare_run`` acts on the result.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from daydream.errors import ConfigError
from daydream.providers.config import base_url_variable
from daydream.providers.probe import Probe
from daydream.queue.tasks import load_task, remaining_models, unfinished
from daydream.worker.config import WorkerConfig
from daydream.worker.execute import Executor

CHARS_PER_TOKEN = 4  # a rough ratio for English, as the rehearsal's forecast uses
PROMPTS_PER_MODEL = 200  # ready prompts rendered per model to find the longest


@dataclass
class Preflight:
    """What the checks found: ``problems`` (one line each: the run must not start) and the
    endpoints that answered (``reached``)."""

    problems: list[str] = field(default_factory=list)
    reached: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)


def preflight(
    config: WorkerConfig, conn: sqlite3.Connection, *, environ: Mapping[str, str] | None = None
) -> Preflight:
    """Check the run of ``config`` (see the module docstring) without writing anything."""
    environ = os.environ if environ is None else environ
    result = Preflight()
    executor = Executor(config)
    models = remaining_models(conn, config.cohort, config.pools)
    providers: dict[str, Any] = {}  # model id -> its provider
    for model in models:
        key_env = model.get("settings", {}).get("api_key_env")
        if key_env and not (environ.get(key_env) or "").strip() and not config.provider_override:
            result.add(
                f"model {model['model_id']}: the catalog names ${key_env} as the key of"
                f" provider {model['provider']}, and it is not set (export it or put it in .env)"
            )
            continue
        try:
            providers[model["model_id"]] = executor.provider(model)
        except ConfigError as exc:
            result.add(str(exc))
    probes = _probe_all(providers.values())
    for endpoint, probe in probes.items():
        provider = next(p for p in providers.values() if endpoint in p.endpoints)
        if probe.status is None:
            result.add(_unreachable(provider.name, endpoint, probe.error))
            continue
        result.reached.append(endpoint)
        if probe.status in (401, 403):
            key_env = getattr(getattr(provider, "config", None), "api_key_env", None)
            where = f"${key_env}" if key_env else "its key variable"
            result.add(
                f"provider {provider.name}: {endpoint} rejected the key ({probe.error});"
                f" check {where} (or the server's --api-key)"
            )
    for model in models:
        provider = providers.get(model["model_id"])
        if provider is not None:
            _check_model(conn, config, model, provider, probes, result)
    return result


def _probe_all(providers: Any) -> dict[str, Probe]:
    """Each endpoint of ``providers`` probed once, concurrently."""
    unique: dict[str, Any] = {}
    for provider in providers:
        for endpoint in provider.endpoints:
            unique.setdefault(endpoint, provider)
    if not unique:
        return {}

    async def probe_all() -> list[Probe]:
        jobs = [provider.probe(endpoint, context=True) for endpoint, provider in unique.items()]
        return list(await asyncio.gather(*jobs))

    return dict(zip(unique, asyncio.run(probe_all()), strict=True))


def _unreachable(provider: str, endpoint: str, error: str | None) -> str:
    return (
        f"provider {provider}: {endpoint} does not answer ({error}); start the server, or"
        f" point the provider at it (--base-url {provider}=URL, ${base_url_variable(provider)}"
        " or base_url in the catalog)"
    )


def _check_model(
    conn: sqlite3.Connection,
    config: WorkerConfig,
    model: dict[str, Any],
    provider: Any,
    probes: dict[str, Probe],
    result: Preflight,
) -> None:
    """Is ``model`` served at each of its endpoints, and do its calls fit the context?"""
    name = model["provider_model"]
    for endpoint in provider.endpoints:
        probe = probes.get(endpoint)
        if probe is None or probe.status is None:
            continue
        llama = model["provider"] == "llamacpp" or probe.server_context is not None
        if probe.models and not llama and not _serves(probe.models, name):
            shown = ", ".join(list(probe.models)[:10]) + (" ..." if len(probe.models) > 10 else "")
            result.add(
                f"model {model['model_id']}: {endpoint} does not serve {name!r} (it serves:"
                f" {shown}); fix the model string in models.yaml, or point the provider at"
                " the server that has it"
            )
            continue
        context = probe.context.get(name) or probe.server_context
        if context:
            _check_context(conn, config, model, context, endpoint, result)


def _serves(listed: tuple[str, ...], name: str) -> bool:
    """Is ``name`` among the ids listed (Ollama's ``llama3.2`` is its ``llama3.2:latest``)?"""
    return name in listed or f"{name}:latest" in listed


def _check_context(
    conn: sqlite3.Connection,
    config: WorkerConfig,
    model: dict[str, Any],
    context: int,
    endpoint: str,
    result: Preflight,
) -> None:
    """Does each template's max_tokens, after the longest ready prompt, fit ``context``?"""
    longest = _longest_prompts(conn, config, model["model_id"])
    for template, max_tokens in _max_tokens(conn, config, model).items():
        prompt_tokens = -(-longest.get(template, 0) // CHARS_PER_TOKEN)
        if max_tokens + prompt_tokens <= context:
            continue
        prompt = f" after a prompt of about {prompt_tokens} tokens" if prompt_tokens else ""
        result.add(
            f"model {model['model_id']}, template {template}: max_tokens {max_tokens}{prompt}"
            f" does not fit the context of {context} tokens that {endpoint} reports; lower"
            " max_tokens in the catalog, or start the server with a longer context"
        )


def _max_tokens(
    conn: sqlite3.Connection, config: WorkerConfig, model: dict[str, Any]
) -> dict[str, int]:
    """``stage/template`` -> the max_tokens of the model's unfinished calls with it."""
    where, params = unfinished(config.cohort, config.pools)
    found: dict[str, int] = {}
    for stage, template_id, settings in conn.execute(
        "SELECT DISTINCT g.stage, g.template_id, v.settings FROM generations g"
        " LEFT JOIN template_versions v ON v.version = g.template_version"
        f" WHERE {where} AND g.mode = 'llm' AND g.model_id = ?",
        [*params, model["model_id"]],
    ):
        template = json.loads(settings) if settings else {}
        limit = template.get("max_tokens") or model.get("settings", {}).get("max_tokens")
        key = f"{stage}/{template_id}"
        if limit:
            found[key] = max(found.get(key, 0), int(limit))
    return found


def _longest_prompts(conn: sqlite3.Connection, config: WorkerConfig, model_id: str) -> dict[str, int]:
    """``stage/template`` -> the characters of the longest prompt among (at most
    ``PROMPTS_PER_MODEL``) ready calls of the model."""
    where, params = unfinished(config.cohort, config.pools)
    rows = conn.execute(
        f"SELECT g.gen_id, g.attempts, g.throttles FROM generations g WHERE {where}"
        " AND g.status = 'ready' AND g.mode = 'llm' AND g.model_id = ? LIMIT ?",
        [*params, model_id, PROMPTS_PER_MODEL],
    ).fetchall()
    executor = Executor(config)
    longest: dict[str, int] = {}
    for gen_id, attempts, throttles in rows:
        task = load_task(conn, gen_id, 0, attempts + 1, throttles)
        prompt = executor.prompt(task)
        key = f"{task.stage}/{task.template_id}"
        if prompt is not None:
            longest[key] = max(longest.get(key, 0), len(prompt))
    return longest
