"""The provider registry: a provider's name (as a catalog model names it) -> the provider
that makes its calls. The one place that knows which name is served by which class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import httpx

from daydream.providers.config import ProviderConfig, resolve_provider_config
from daydream.providers.offline import OfflineProvider
from daydream.providers.openai_compatible import OpenAICompatibleProvider
from daydream.providers.protocol import Provider
from daydream.providers.replicas import ReplicatedProvider


def make_provider(
    name: str,
    *,
    base_url: str | Sequence[str] | None = None,
    client: httpx.AsyncClient | None = None,
    providers: Mapping[str, ProviderConfig] | None = None,
    environ: Mapping[str, str] | None = None,
    api_key_env: str | None = None,
    offline_latency_s: float = 0.0,
    command_line_url: str | None = None,
    offline_in_scale: bool = False,
) -> Provider:
    """The provider called ``name``, configured from defaults, the catalog and the environment.

    Build one per provider per worker and reuse it for every call. Leave ``client`` unset in
    production: the provider then spreads its calls over clients of its own, sized to keep
    httpx's pool cheap. A ``client`` passed in (a ``MockTransport`` in tests) is used as is
    and left for the caller to close. ``api_key_env``: the variable holding the key, when
    the catalog names one (its ``providers.yaml`` or a model's settings).
    ``offline_latency_s``: how long the offline provider waits before each reply
    (benchmarks simulate a model with it); ``offline_in_scale``: whether its judges answer
    within each rubric's scale (rehearsals). ``base_url`` is the catalog's, and
    ``command_line_url`` the run's ``--base-url`` (see ``resolve_provider_config`` for
    which wins). Several base URLs (a list, or commas) are replicas: a
    ``ReplicatedProvider`` spreads the calls over them. Raises ``ConfigError`` for an
    unknown provider, a bad URL or a missing required API key, before any call is made.
    """
    config = resolve_provider_config(
        name,
        base_url=base_url,
        providers=providers,
        environ=environ,
        command_line_url=command_line_url,
    )
    if config.offline:
        return OfflineProvider(latency_s=offline_latency_s, in_scale=offline_in_scale)
    if api_key_env:
        config = replace(config, api_key_env=api_key_env)
    if config.base_urls:
        return ReplicatedProvider(
            [
                OpenAICompatibleProvider(replace(config, base_url=url), client=client, environ=environ)
                for url in config.base_urls
            ]
        )
    return OpenAICompatibleProvider(config, client=client, environ=environ)
