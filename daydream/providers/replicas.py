"""Replicas: one model served by several endpoints of one deployment (vLLM or llama.cpp
on several machines), called as one provider.

Each call goes to the endpoint with the fewest calls in flight from this worker, among
those not marked down (``down``, kept by the worker's view of the endpoints; if all are
down, among all), taking turns on ties. The completion names the endpoint that answered;
a generation's id never depends on it.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from daydream.errors import ConfigError
from daydream.providers.openai_compatible import OpenAICompatibleProvider
from daydream.providers.probe import Probe
from daydream.providers.protocol import Completion, CompletionRequest


class ReplicatedProvider:
    """Several ``OpenAICompatibleProvider`` of one provider name, one per base URL."""

    is_offline = False

    def __init__(self, replicas: list[OpenAICompatibleProvider]) -> None:
        self.name = replicas[0].name
        self.config = replicas[0].config  # the first replica's (all share key and settings)
        self.replicas = replicas
        self.endpoints = tuple(replica.endpoint for replica in replicas)
        self.endpoint = self.endpoints[0]
        self.down: set[str] = set()
        self._in_flight = [0] * len(replicas)
        self._turn = itertools.count()

    def __repr__(self) -> str:
        return f"ReplicatedProvider(name={self.name!r}, endpoints={list(self.endpoints)!r})"

    async def __aenter__(self) -> ReplicatedProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def complete(self, request: CompletionRequest) -> Completion:
        index = self._pick()
        self._in_flight[index] += 1
        try:
            completion = await self.replicas[index].complete(request)
        finally:
            self._in_flight[index] -= 1
        return replace(completion, endpoint=self.endpoints[index])

    async def probe(self, endpoint: str | None = None, *, context: bool = False) -> Probe:
        """Probe one replica (the first when ``endpoint`` is None)."""
        if endpoint is None:
            return await self.replicas[0].probe(context=context)
        if endpoint not in self.endpoints:
            raise ConfigError(f"provider {self.name}: {endpoint} is not one of its endpoints")
        return await self.replicas[self.endpoints.index(endpoint)].probe(context=context)

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.aclose()

    def _pick(self) -> int:
        """The replica with the fewest calls in flight among those up, taking turns on ties."""
        up = [i for i, endpoint in enumerate(self.endpoints) if endpoint not in self.down]
        candidates = up or list(range(len(self.replicas)))
        start = next(self._turn) % len(self.replicas)
        return min(candidates, key=lambda i: (self._in_flight[i], (i - start) % len(self.replicas)))
