"""Model providers: how a rendered prompt becomes a model reply.

One code path serves every OpenAI-compatible chat-completions endpoint (OpenRouter, OpenAI,
Ollama, vLLM, llama.cpp's server, LM Studio, or any other base URL). Next to it sits the
offline provider, whose replies are synthetic and deterministic: dry runs, tests and
benchmarks use it to push a whole cohort through the pipeline without a network or a bill.

Invariants:

- One ``complete()`` call is one HTTP attempt. The worker owns retries, so each attempt is
  one event in the log. This module classifies failures (``ProviderError.retryable``,
  ``status``, ``retry_after``) and ``backoff_delay`` computes the wait between attempts.
- A call never outlives its deadline. ``timeout`` bounds the whole request (connect, send
  and a slow drip of response bytes), not each read, so a lease longer than the timeout is
  never lost mid-call. The body is capped too (``max_response_bytes``).
- The API key is read from the environment when the provider is built. It is sent only in
  the ``Authorization`` header and never appears in a message, a repr or a log line: every
  error text passes through a redactor that knows the key.
- The reply text is kept exactly as the model wrote it, except that ``\\r\\n`` becomes
  ``\\n``. It is not stripped or parsed (that is the parsers' job). Empty or missing content
  gives a ``Completion`` with ``text == ""``, and the caller classifies it as a refusal.
- Concurrency is not limited here: pools are shared by all worker processes through the
  database.
- The offline provider is a pure function of (model, seed, prompt). The first line of each
  reply says ``[offline dry-run]``, so synthetic text is never mistaken for a model's.
  ``is_offline`` / ``Completion.offline`` mean "synthetic", not "no network": a local
  Ollama model is a real model and is not offline in this sense.

The package: ``config`` (endpoints, overrides, ``.env``), ``protocol`` (request, completion,
the ``Provider`` protocol), ``openai_compatible`` (the HTTP provider), ``retry`` (what to
retry, how long to wait), ``offline`` (the dry-run provider).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from daydream.providers.config import (
    DEFAULT_PROVIDERS,
    ProviderConfig,
    load_dotenv,
    resolve_provider_config,
)
from daydream.providers.offline import OFFLINE_LABEL, OfflineProvider, render_offline_reply
from daydream.providers.openai_compatible import OpenAICompatibleProvider
from daydream.providers.protocol import Completion, CompletionRequest, Provider
from daydream.providers.retry import RETRY_AFTER_CAP_S, backoff_delay, is_retryable_status

__all__ = [
    "DEFAULT_PROVIDERS",
    "OFFLINE_LABEL",
    "RETRY_AFTER_CAP_S",
    "Completion",
    "CompletionRequest",
    "OfflineProvider",
    "OpenAICompatibleProvider",
    "Provider",
    "ProviderConfig",
    "backoff_delay",
    "is_retryable_status",
    "load_dotenv",
    "make_provider",
    "render_offline_reply",
    "resolve_provider_config",
]


def make_provider(
    name: str,
    *,
    base_url: str | None = None,
    client: httpx.AsyncClient | None = None,
    providers: Mapping[str, ProviderConfig] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Provider:
    """The provider called ``name``, configured from defaults, the catalog and the environment.

    Build one per provider per worker and reuse it for every call. Leave ``client`` unset in
    production: the provider then spreads its calls over clients of its own, sized to keep
    httpx's pool cheap. A ``client`` passed in (a ``MockTransport`` in tests) is used as is
    and left for the caller to close. Raises ``ConfigError`` for an unknown provider, a bad
    URL or a missing required API key, before any call is made.
    """
    config = resolve_provider_config(name, base_url=base_url, providers=providers, environ=environ)
    if config.offline:
        return OfflineProvider()
    return OpenAICompatibleProvider(config, client=client, environ=environ)
