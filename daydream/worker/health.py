"""A worker's view of its endpoints and pools: which endpoints are down and when to probe
them again, which pools are stopped, and what its own calls just taught it.

The database holds what every worker knows (``queue.health``: ``endpoints``,
``pool_stops``); each exchange brings it here (``update``) and takes what this worker
learnt back (``take_events``). The decisions:

- A call that fails in a way that may mean the server is away (refused, dropped, timed
  out, 502/503/504; ``providers.retry.failure_scope``) makes the worker probe the endpoint
  (``GET {base_url}/models``; calls failing together share one probe). If the probe finds
  it away, or such failures come ``BURST`` times in a row, the endpoint is down: the call
  is deferred (not an attempt), and no task whose model only it serves is claimed until a
  probe, repeated with backoff (``PROBE_FIRST_S`` doubling to ``PROBE_MAX_S``), finds it
  back. Otherwise the failure is an ordinary attempt.
- A failure no retry can fix for any call of the model (a rejected key, an unknown model)
  stops its pool at once. A request the server refuses (400, 413, 422) fails its
  generation, and stops the pool when ``REFUSALS_TO_STOP`` calls of the model in a row
  were refused with no answer between them (a catalog setting that fails every call).
- ``outage``: an endpoint down for longer than the outage limit (counted from when this
  worker started, at the earliest) ends the worker's wait.

The per-call cost is a set lookup and, after a success, an ``add``: nothing else runs
while all is well.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from daydream import events as ev
from daydream.clock import Clock, utcnow
from daydream.errors import ProviderError
from daydream.queue.pools import parse_time
from daydream.queue.tasks import Task

PROBE_FIRST_S = 0.5
PROBE_MAX_S = 5.0
BURST = 3  # failures in a row that mark an endpoint down even when its probe answers
REFUSALS_TO_STOP = 3  # refused requests of a model in a row that stop its pool


class Health:
    """Endpoints and pools as one worker sees them (see the module docstring)."""

    def __init__(
        self,
        *,
        outage_limit_s: float = 900.0,
        clock: Clock = utcnow,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.outage_limit_s = outage_limit_s
        self.clock = clock
        self.log = log
        self.on_change: Callable[[], None] = lambda: None  # an endpoint came back
        self.started = clock()
        self.down: set[str] = set()  # shared with the providers: their replicas skip these
        self.since: dict[str, datetime] = {}  # endpoint -> down since
        self.errors: dict[str, str] = {}  # endpoint -> the failure that marked it down
        self.stopped: dict[str, str] = {}  # pool -> why
        self._events: list[ev.Event] = []
        self._endpoints: dict[str, tuple[str, ...]] = {}  # model id -> its endpoints
        self.probers: dict[str, Any] = {}  # endpoint -> a provider that calls it
        self._next_probe: dict[str, float] = {}  # endpoint -> when (monotonic)
        self._step: dict[str, float] = {}
        self._probing: dict[str, asyncio.Future] = {}
        self._streak: dict[str, int] = {}
        self._refused: dict[str, int] = {}  # model id -> refused requests in a row

    # -- what the worker tells it ----------------------------------------------------------

    def learn(self, model_id: str, provider: Any) -> None:
        """``model_id``'s calls go through ``provider`` (its endpoints; none if offline)."""
        endpoints = tuple(getattr(provider, "endpoints", ()))
        self._endpoints[model_id] = endpoints
        if endpoints:
            provider.down = self.down
        for endpoint in endpoints:
            self.probers.setdefault(endpoint, provider)

    def knows(self, model_id: str) -> bool:
        return model_id in self._endpoints

    def answered(self, model_id: str | None, endpoint: str | None) -> None:
        """A call of ``model_id`` through ``endpoint`` succeeded."""
        if self._streak:
            self._streak.pop(endpoint or "", None)
        if self._refused:
            self._refused.pop(model_id or "", None)

    def update(self, down: dict[str, str], stopped: dict[str, str]) -> None:
        """What the database says after an exchange (``Exchanged.down``, ``.stopped``): it
        wins (another process may have resumed a pool or seen an endpoint back), except for
        what this worker learnt since that exchange began (its events still to record)."""
        learnt_down = {e.endpoint for e in self._events if isinstance(e, ev.EndpointDown)}
        for endpoint in list(self.down):
            if endpoint not in down and endpoint not in learnt_down:
                self._forget(endpoint)
        back = {e.endpoint for e in self._events if isinstance(e, ev.EndpointRecovered)}
        for endpoint, since in down.items():
            if endpoint not in self.down and endpoint not in back:
                self.down.add(endpoint)
                self.since[endpoint] = parse_time(since) if since else self.clock()
                self._schedule(endpoint, first=True)
        learnt = {e.pool: e.message for e in self._events if isinstance(e, ev.PoolStopped)}
        self.stopped = {**stopped, **learnt}

    def take_events(self) -> list[ev.Event]:
        """What this worker learnt since the last exchange, for it to record."""
        events, self._events = self._events, []
        return events

    def put_back(self, events: list[ev.Event]) -> None:
        """Events taken for an exchange that rolled back: for the next one."""
        self._events[:0] = events

    def skip_models(self) -> tuple[str, ...]:
        """Models whose endpoints are all down: not to be claimed."""
        if not self.down:
            return ()
        return tuple(
            model
            for model, endpoints in self._endpoints.items()
            if endpoints and all(endpoint in self.down for endpoint in endpoints)
        )

    def blocked(self, task: Task) -> str | None:
        """Why ``task`` should not call now (its pool stopped, its endpoints down), or None."""
        if task.pool in self.stopped:
            return "pool_stopped"
        model = (task.model or {}).get("model_id")
        if self.down and model in self.skip_models():
            return "endpoint_down"
        return None

    # -- failures ---------------------------------------------------------------------------

    async def endpoint_failed(self, exc: ProviderError, provider: Any, pool: str) -> bool:
        """A call failed as if its endpoint were away: is the endpoint down? (Probes it.)"""
        endpoint = exc.endpoint
        if endpoint is None:
            return False
        if endpoint in self.down:
            return True
        probe = self._probing.get(endpoint)
        if probe is None:
            probe = asyncio.ensure_future(provider.probe(endpoint))
            self._probing[endpoint] = probe
            probe.add_done_callback(functools.partial(self._probed, endpoint))
        result = await asyncio.shield(probe)
        if endpoint in self.down:
            return True
        streak = self._streak.get(endpoint, 0) + 1
        self._streak[endpoint] = streak
        if result.up and streak < BURST:
            return False
        reason = str(exc) if result.up else f"{exc} (probe: {result.error or result.status})"
        self._mark_down(endpoint, provider.name, pool, reason)
        return True

    def stop_pool(self, task: Task, exc: ProviderError, fix: str) -> None:
        """No call of ``task``'s pool can succeed: stop it, for every worker."""
        if task.pool in self.stopped:
            return
        model = task.model or {}
        message = f"pool {task.pool} stopped: {exc}; fix: {fix}"
        self.stopped[task.pool] = message
        self._events.append(
            ev.PoolStopped(
                pool=task.pool,
                provider=str(model.get("provider", "")),
                model_id=str(model.get("model_id", "")),
                message=message[:2000],
                http_status=exc.status,
            )
        )

    def refused(self, task: Task) -> bool:
        """The server refused ``task``'s request: is that ``REFUSALS_TO_STOP`` in a row for
        its model (so the caller stops the pool)?"""
        model = (task.model or {}).get("model_id") or ""
        self._refused[model] = self._refused.get(model, 0) + 1
        return self._refused[model] >= REFUSALS_TO_STOP

    # -- waiting for endpoints --------------------------------------------------------------

    def start_probes(self) -> None:
        """Probe, in the background, the down endpoints whose turn has come; one found
        answering is marked back (``endpoint.recovered`` at the next exchange) and
        ``on_change`` is called."""
        if not self.down:
            return
        now = time.monotonic()
        for endpoint in list(self.down):
            if (
                endpoint in self.probers
                and endpoint not in self._probing
                and self._next_probe.get(endpoint, 0.0) <= now
            ):
                job = asyncio.ensure_future(self.probers[endpoint].probe(endpoint))
                self._probing[endpoint] = job
                job.add_done_callback(functools.partial(self._probed, endpoint))

    def cancel_probes(self) -> None:
        for job in list(self._probing.values()):
            job.cancel()

    def until_probe(self) -> float:
        """Seconds until the next probe is due (inf: none)."""
        waits = [self._next_probe[e] for e in self.down if e in self.probers]
        return max(0.0, min(waits) - time.monotonic()) if waits else float("inf")

    def outage(self) -> str | None:
        """The endpoint down past the outage limit, in one line, or None."""
        now = self.clock()
        for endpoint in sorted(self.down):
            since = max(self.since.get(endpoint, now), self.started)
            down_s = (now - since).total_seconds()
            if endpoint in self.probers and down_s > self.outage_limit_s:
                error = self.errors.get(endpoint)
                return (
                    f"endpoint {endpoint} has been down for {down_s:.0f} s, past the outage"
                    f" limit of {self.outage_limit_s:g} s"
                    + (f" (last error: {error})" if error else "")
                    + "; the generations that need it are still pending: start the server,"
                    " then run again"
                )
        return None

    # -- internals ---------------------------------------------------------------------------

    def _probed(self, endpoint: str, job: asyncio.Future) -> None:
        self._probing.pop(endpoint, None)
        if job.cancelled() or endpoint not in self.down:
            return  # a call's own probe (endpoint_failed reads it), or no longer down
        if job.exception() is None and job.result().up:
            self._events.append(ev.EndpointRecovered(endpoint=endpoint, by="probe"))
            self.log(f"endpoint {endpoint} answers again; its calls resume")
            self._forget(endpoint)
            self.on_change()
        else:
            self._schedule(endpoint)

    def _mark_down(self, endpoint: str, provider: str, pool: str, error: str) -> None:
        self.down.add(endpoint)
        self.since[endpoint] = self.clock()
        self.errors[endpoint] = error[:500]
        self._schedule(endpoint, first=True)
        self._events.append(
            ev.EndpointDown(endpoint=endpoint, provider=provider, pool=pool, error=error[:2000])
        )

    def _schedule(self, endpoint: str, *, first: bool = False) -> None:
        step = PROBE_FIRST_S if first else min(PROBE_MAX_S, self._step.get(endpoint, 0) * 2)
        self._step[endpoint] = step
        self._next_probe[endpoint] = time.monotonic() + step

    def _forget(self, endpoint: str) -> None:
        self.down.discard(endpoint)
        for table in (self.since, self.errors, self._next_probe, self._step, self._streak):
            table.pop(endpoint, None)


def pool_fix(
    scope: str, status: int | None, model: dict[str, Any], key_env: str | None, endpoint: str | None
) -> str:
    """What to do about a pool stopped by a failure of ``scope`` (``failure_scope``: "model"
    or "request") with HTTP ``status``, in one clause."""
    provider = model.get("provider", "?")
    if status in (401, 403):
        where = f"${key_env}" if key_env else "the key variable"
        return f"check the API key in {where} for provider {provider} (or the server's --api-key)"
    if status == 402:
        return f"add credit to the {provider} account"
    if scope == "request":
        return (
            f"the server refused every call of model {model.get('model_id')}: check its and its"
            " templates' settings in the catalog (max_tokens within the server's context, extra"
            " parameters it accepts), import the catalog again, then run again"
        )
    listing = f"GET {endpoint}/models" if endpoint else "the server's model list"
    return (
        f"check the model string {model.get('provider_model')!r} of model"
        f" {model.get('model_id')} in the catalog against {listing}, and its base_url"
    )
