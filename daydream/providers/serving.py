"""How many requests a local model server serves at once, as the server says.

A server on one machine (llama.cpp's, Ollama, LM Studio) answers a fixed number of requests
at a time and queues the rest; sending it more only moves the wait from our queue into its
own, where it is counted as the call's latency. ``server_slots`` asks:

- llama.cpp's ``llama-server`` reports its slots at ``GET /props`` (``total_slots``, the
  ``--parallel`` it was started with);
- Ollama does not report its parallel setting over HTTP: it is ``OLLAMA_NUM_PARALLEL`` in
  the server's environment, read here from ours (set it for both);
- anything else local (llama-cpp-python's server, LM Studio, a llama.cpp server that does
  not answer ``/props``) is taken to serve one request at a time, and the answer says so.

Servers that batch many requests (vLLM, hosted APIs) are not asked: their pools keep the
default limit. Nothing here raises for an unreachable server; the answer is 1 with the
reason, and the run's own checks report the outage.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from daydream.providers.config import ProviderConfig, display_url

# Providers whose servers run a fixed, small number of requests at once by default.
LOCAL_PROVIDERS = ("llamacpp", "ollama", "lmstudio")

PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ServerSlots:
    """``slots`` requests at once, and where that number comes from (one phrase)."""

    slots: int
    source: str
    reported: bool  # the server (or its setting) said so; False: the default of 1


def is_local(name: str) -> bool:
    """Does provider ``name`` stand for a server that answers few requests at once?"""
    return name in LOCAL_PROVIDERS


def server_slots(
    config: ProviderConfig,
    *,
    environ: Mapping[str, str] | None = None,
    client: httpx.Client | None = None,
) -> ServerSlots:
    """How many requests the server of ``config`` (a local provider) serves at once."""
    environ = os.environ if environ is None else environ
    if config.name == "ollama":
        return _ollama(environ)
    if config.name == "llamacpp":
        return _llamacpp(config, environ, client)
    return ServerSlots(1, "the server does not say how many requests it serves at once", False)


def _ollama(environ: Mapping[str, str]) -> ServerSlots:
    value = (environ.get("OLLAMA_NUM_PARALLEL") or "").strip()
    if value.isdigit() and int(value) >= 1:
        return ServerSlots(int(value), f"OLLAMA_NUM_PARALLEL={int(value)}", True)
    return ServerSlots(
        1, "Ollama does not report its parallel setting and OLLAMA_NUM_PARALLEL is not set", False
    )


def _llamacpp(
    config: ProviderConfig, environ: Mapping[str, str], client: httpx.Client | None
) -> ServerSlots:
    root = config.base_url.rstrip("/").removesuffix("/v1")
    where = display_url(root)
    headers = {}
    key = environ.get(config.api_key_env or "", "").strip()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        if client is None:
            with httpx.Client(timeout=PROBE_TIMEOUT_S) as own:
                response = own.get(f"{root}/props", headers=headers)
        else:
            response = client.get(f"{root}/props", headers=headers, timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return ServerSlots(1, f"{where}/props could not be read ({type(exc).__name__})", False)
    slots = None
    if response.status_code == 200:
        try:
            data = response.json()
        except ValueError:
            data = None
        value = data.get("total_slots") if isinstance(data, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            slots = value
    if slots is None:
        return ServerSlots(
            1, f"{where}/props does not report total_slots (HTTP {response.status_code})", False
        )
    return ServerSlots(slots, f"{where}/props reports total_slots {slots}", True)
