"""Executing one claimed task: render the prompt, call the model (or copy the parent),
validate and parse the reply, and return the outcome: the events to record.

Nothing here writes to the database; the worker loop records the outcome with the
task's fencing token. Rate-limited calls (429) are requeued with ``not_before``
(honouring Retry-After) and do not count as attempts; nor do calls whose endpoint is down
or whose pool was stopped (``attempt.deferred``; ``worker.health`` decides); other
retryable failures are attempts with exponential backoff; after ``max_attempts`` the
generation fails with its last error.
"""

from __future__ import annotations

import math
import random
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from daydream import events as ev
from daydream.clock import Clock, isoformat, utcnow
from daydream.crashpoints import crash_point
from daydream.db.texts import text_hash
from daydream.errors import ConfigError, ParseError, ProviderError, TemplateError
from daydream.parsers import Parsed, parse_output, validate_output
from daydream.prompts import concept_contents, render_prompt, stage_variables
from daydream.providers.protocol import CompletionRequest
from daydream.providers.registry import make_provider
from daydream.providers.retry import backoff_delay, failure_scope
from daydream.queue.budget import PROMPT_OVERHEAD_TOKENS
from daydream.queue.tasks import Outcome, Task
from daydream.worker.config import WorkerConfig
from daydream.worker.health import Health, pool_fix

MAX_THROTTLES = 100


DEFAULT_MIN_LINES = {"draft": 3}


class Executor:
    """Runs one claimed task: prompt -> raw -> parsed, returning the events to record."""

    def __init__(
        self,
        config: WorkerConfig,
        *,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
        health: Health | None = None,
    ):
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random(config.seed)
        self.health = health or Health(outage_limit_s=config.outage_limit_s, clock=clock)
        self._providers: dict[tuple[str, str | None, str | None], Any] = {}

    def provider(self, model: dict[str, Any]) -> Any:
        """The provider for a model, one per (provider, base URL, key variable) per worker;
        the base URL: ``--base-url``, else ``$DAYDREAM_<NAME>_BASE_URL``, else the catalog's."""
        name = self.config.provider_override or model.get("provider", "offline")
        settings = model.get("settings", {})
        base_url, typed = settings.get("base_url"), self.config.base_urls.get(name)
        if isinstance(base_url, list):  # replicas
            base_url = ",".join(base_url)
        key_env = settings.get("api_key_env")
        key = (name, typed or base_url, key_env)
        found = self._providers.get(key)
        if found is None:
            found = make_provider(
                name,
                base_url=base_url,
                command_line_url=typed,
                api_key_env=key_env,
                offline_latency_s=self.config.offline_latency_s,
                offline_in_scale=self.config.offline_in_scale,
            )
            self._providers[key] = found
        return found

    async def aclose(self) -> None:
        self.health.cancel_probes()
        for provider in self._providers.values():
            await provider.aclose()

    def learn(self, models: list[dict[str, Any]]) -> int:
        """Tell ``health`` which endpoints ``models`` use (building their providers; one that
        cannot be built is left out: its calls fail on their own). Returns how many."""
        learnt = 0
        for model in models:
            try:
                self.health.learn(model["model_id"], self.provider(model))
            except ConfigError:
                continue
            learnt += 1
        return learnt

    def prompt(self, task: Task) -> str | None:
        """The prompt ``task``'s call would send (None: it renders no prompt)."""
        try:
            return self._prompt(task)
        except _Ended:
            return None

    def max_cost(self, task: Task) -> float:
        """The most ``task``'s call can cost, in USD (budgets: ``queue.budget``): its prompt's
        UTF-8 bytes as tokens plus the chat format's, and its ``max_tokens``, at the model's
        prices (a model without prices at ``unpriced_per_mtok``). 0 when no call is made;
        ``inf`` when there is no ceiling (no ``max_tokens``, no price to count by)."""
        model = task.model or {}
        offline = (self.config.provider_override or model.get("provider")) == "offline"
        if task.mode == "copy" or offline:
            return 0.0
        try:
            prompt = self._prompt(task)
            _, params = self._request(task, model, prompt)
        except (_Ended, ConfigError):
            return 0.0  # no call will be made: the attempt fails before it
        price_in, price_out = model.get("price_input"), model.get("price_output")
        if price_in is None or price_out is None:
            if self.config.unpriced_per_mtok is None:
                return math.inf
            price_in = price_out = self.config.unpriced_per_mtok / 1_000_000
        if params.get("max_tokens") is None:
            return math.inf
        tokens_in = len(prompt.encode("utf-8")) + PROMPT_OVERHEAD_TOKENS
        return tokens_in * price_in + params["max_tokens"] * price_out

    async def run(self, task: Task) -> Outcome:
        # The call starts now: the time since the claim was spent waiting for a pool slot.
        task.slot_wait_s = round(max(0.0, time.monotonic() - task.claimed_at), 4)
        try:
            return await self._run(task)
        except ConfigError as exc:  # the model's provider cannot be set up (a missing key)
            return self._failed(task, state="provider_error", error=str(exc), retryable=False)
        except Exception as exc:  # the worker's outermost catch: record, never crash
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            return self._failed(
                task,
                state="error",
                error=f"unexpected {type(exc).__name__}: {detail}"[:2000],
                retryable=False,
                error_class=type(exc).__name__,
            )

    async def _run(self, task: Task) -> Outcome:
        """prompt -> raw -> parsed; a phase that fails ends the attempt with its outcome."""
        try:
            prompt = self._prompt(task)
            raw, responded = await self._raw(task, prompt)
        except _Ended as ended:
            return ended.outcome
        return self._parsed(task, prompt, raw, responded)

    def _prompt(self, task: Task) -> str:
        """The prompt: the template rendered with the task's variables (a copy: the parent's
        text)."""
        if task.template.get("missing"):
            raise _Ended(
                self._failed(
                    task,
                    state="template_error",
                    error=f"template {task.stage}/{task.template_id}"
                    f" (version {task.template['version']}) is not in the catalog: import the"
                    " catalog that defines it, then retry",
                    retryable=False,
                )
            )
        if task.mode == "copy":
            if task.parent_text is None:
                raise _Ended(
                    self._failed(
                        task,
                        state="error",
                        error="copy-mode essay has no parent text",
                        retryable=False,
                    )
                )
            return task.parent_text
        try:
            return render_prompt(
                f"{task.stage}/{task.template_id}",
                task.template["body"] or "",
                self._variables(task, stage_variables),
            )
        except TemplateError as exc:
            raise _Ended(
                self._failed(task, state="template_error", error=str(exc), retryable=False)
            ) from None

    async def _raw(self, task: Task, prompt: str) -> tuple[str, dict[str, Any]]:
        """The raw reply and the fields of its ``generation.responded`` event: the model's
        answer to ``prompt`` (a copy: the parent's text, verbatim)."""
        if task.mode == "copy":
            return task.parent_text or "", dict(mode="copy", finish_reason="copy")
        model = task.model or {}
        request, params = self._request(task, model, prompt)
        provider = self.provider(model)
        health = self.health
        if not health.knows(model.get("model_id", "")):
            health.learn(model.get("model_id", ""), provider)
        if (health.down or health.stopped) and (why := health.blocked(task)):
            error = health.stopped.get(task.pool) or "its endpoints are down"
            raise _Ended(self._deferred(task, why, error))
        crash_point("before_call")
        started = time.perf_counter()
        try:
            completion = await provider.complete(request)
        except ProviderError as exc:
            latency = round(time.perf_counter() - started, 4)
            raise _Ended(await self._provider_failed(task, exc, provider, latency)) from None
        endpoint = completion.endpoint or next(iter(provider.endpoints), None)
        health.answered(model.get("model_id"), endpoint)
        crash_point("after_response")
        cost = completion.cost
        if (
            cost is None
            and model.get("price_input") is not None
            and model.get("price_output") is not None
        ):
            cost = (completion.prompt_tokens or 0) * model["price_input"] + (
                completion.completion_tokens or 0
            ) * model["price_output"]
        return completion.text, dict(
            mode="llm",
            provider=self.config.provider_override or model.get("provider", "offline"),
            model_id=model.get("model_id"),
            resolved_model=completion.resolved_model,
            finish_reason=completion.finish_reason,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            latency_s=round(completion.latency_s, 4) if completion.latency_s is not None else None,
            cost=cost,
            params=params,
            offline=bool(getattr(completion, "offline", False)),
            http_status=completion.http_status,
            slot_wait_s=task.slot_wait_s,
            reasoning=completion.reasoning,
            reasoning_tokens=completion.reasoning_tokens,
            endpoint=endpoint,
        )

    def _request(
        self, task: Task, model: dict[str, Any], prompt: str
    ) -> tuple[CompletionRequest, dict[str, Any]]:
        """The model call, and its sampling parameters as recorded: the template's settings
        over the model's (``extra`` merged key by key)."""
        settings = {**model.get("settings", {}), **task.template.get("settings", {})}
        params = {
            k: settings[k]
            for k in ("temperature", "max_tokens", "seed")
            if settings.get(k) is not None
        }
        extra = {
            **model.get("settings", {}).get("extra", {}),
            **task.template.get("settings", {}).get("extra", {}),
        }
        if extra:
            params["extra"] = extra
        request = CompletionRequest(
            model=model.get("provider_model", ""),
            prompt=prompt,
            temperature=params.get("temperature"),
            max_tokens=params.get("max_tokens"),
            seed=params.get("seed"),
            extra=extra,
            timeout=self.config.timeout_s,
            scale=task.template.get("scale"),
        )
        return request, params

    def _parsed(self, task: Task, prompt: str, raw: str, responded: dict[str, Any]) -> Outcome:
        """The outcome: the reply recorded, then validated and parsed (completed), or the
        parse failure after it."""
        prompt_hash, raw_hash = _hash(prompt), _hash(raw)
        texts = {prompt_hash: prompt, raw_hash: raw}
        reasoning = responded.pop("reasoning", None)
        if reasoning:
            responded["reasoning_hash"] = _hash(reasoning)
            texts[responded["reasoning_hash"]] = reasoning
        events: list[ev.Event] = [
            ev.GenerationResponded(
                gen_id=task.gen_id,
                token=task.token,
                prompt_hash=prompt_hash,
                raw_hash=raw_hash,
                **responded,
            )
        ]
        try:
            parsed = parse_reply(
                task.template,
                task.stage,
                task.mode,
                raw,
                finish_reason=responded.get("finish_reason"),
                completion_tokens=responded.get("completion_tokens"),
                max_tokens=token_limit(responded.get("params", {})),
            )
        except ParseError as exc:
            outcome = self._failed(task, state=exc.state, error=str(exc), retryable=False)
            outcome.events[:0] = events
            outcome.texts = texts
            return outcome
        parsed_hash = _hash(parsed.text)
        texts[parsed_hash] = parsed.text
        events.append(
            ev.GenerationCompleted(
                gen_id=task.gen_id,
                token=task.token,
                parsed_hash=parsed_hash,
                score=parsed.score,
                written_scale=parsed.scale_max,
            )
        )
        return Outcome(task, events, ok=True, texts=texts)

    def _variables(self, task: Task, stage_variables: Callable[..., dict]) -> dict[str, Any]:
        concepts = None
        if task.concepts:
            level, items = task.concepts
            concepts = concept_contents(items, level)
        extras = {
            "gen_id": task.gen_id,
            "combo_id": task.combo_id,
            "template_id": task.template_id,
            "model_id": (task.model or {}).get("model_id"),
            "replicate": task.replicate,
        }
        return stage_variables(
            task.stage, concepts=concepts, parent_text=task.parent_text, extras=extras
        )

    async def _provider_failed(
        self, task: Task, exc: ProviderError, provider: Any, latency: float
    ) -> Outcome:
        now = self.clock()
        scope = failure_scope(exc.status, exc.kind, str(exc))
        if scope == "endpoint" and await self.health.endpoint_failed(exc, provider, task.pool):
            return self._deferred(task, "endpoint_down", str(exc), exc)
        if scope == "model" or (scope == "request" and self.health.refused(task)):
            key_env = getattr(getattr(provider, "config", None), "api_key_env", None)
            fix = pool_fix(scope, exc.status, task.model or {}, key_env, exc.endpoint)
            self.health.stop_pool(task, exc, fix)
            return self._deferred(task, "pool_stopped", str(exc), exc)
        if exc.status == 429 and task.throttles < MAX_THROTTLES:
            # The server said when to come back: honour exactly that (plus jitter). Without
            # Retry-After, back off exponentially over consecutive throttles.
            step = 1 if exc.retry_after is not None else task.throttles + 1
            delay = backoff_delay(
                step, retry_after=exc.retry_after, rng=self.rng, base=0.25, cap=30.0
            )
            event = ev.AttemptThrottled(
                gen_id=task.gen_id,
                token=task.token,
                error=str(exc)[:500],
                retry_after=exc.retry_after,
                retry_at=isoformat(now + timedelta(seconds=delay)),
                latency_s=latency,
                slot_wait_s=task.slot_wait_s,
                endpoint=exc.endpoint,
            )
            return Outcome(task, [event], ok=False, throttled=True, retry_delay=delay, ended_at=now)
        return self._failed(
            task,
            state=exc.state,
            error=str(exc)[:2000],
            retryable=exc.retryable,
            http_status=exc.status,
            retry_after=exc.retry_after,
            call=(latency, task.slot_wait_s),
            endpoint=exc.endpoint,
        )

    def _deferred(
        self, task: Task, reason: str, error: str, exc: ProviderError | None = None
    ) -> Outcome:
        """The attempt ends without counting: the task is ready again (``attempt.deferred``);
        ``exc``: the failed call, when one was made."""
        event = ev.AttemptDeferred(
            gen_id=task.gen_id,
            token=task.token,
            reason=reason,
            error=error[:2000],
            http_status=exc.status if exc else None,
            endpoint=exc.endpoint if exc else None,
        )
        return Outcome(task, [event], ok=False, deferred=True, ended_at=self.clock())

    def _failed(
        self,
        task: Task,
        *,
        state: str,
        error: str,
        retryable: bool,
        http_status: int | None = None,
        retry_after: float | None = None,
        error_class: str | None = None,
        call: tuple[float, float | None] | None = None,
        endpoint: str | None = None,
    ) -> Outcome:
        """A failed attempt (``call``: the failed model call's latency and slot wait;
        ``endpoint``: the base URL that answered)."""
        counted = task.attempt - task.throttles - task.released - task.deferred
        final = not retryable or counted >= self.config.max_attempts
        retry_at, delay, now = None, None, self.clock()
        if not final:
            delay = backoff_delay(counted, retry_after=retry_after, rng=self.rng)
            retry_at = isoformat(now + timedelta(seconds=delay))
        if final and retryable:
            error = f"{error} (gave up after {counted} attempt(s))"
        event = ev.AttemptFailed(
            gen_id=task.gen_id,
            token=task.token,
            state=state,
            error=error,
            retryable=retryable,
            final=final,
            retry_at=retry_at,
            http_status=http_status,
            error_class=error_class,
            latency_s=call[0] if call else None,
            slot_wait_s=call[1] if call else None,
            endpoint=endpoint,
        )
        return Outcome(task, [event], ok=False, retry_delay=delay, ended_at=now)


def parse_reply(
    template: dict[str, Any],
    stage: str,
    mode: str,
    raw: str,
    *,
    finish_reason: str | None,
    completion_tokens: int | None = None,
    max_tokens: int | None = None,
) -> Parsed:
    """The parsed phase of a reply: validated (unless a copy: refused, truncated by the
    finish reason or by reaching the call's token limit, too short), then parsed with the
    template's parser and scale. Raises ``ParseError`` with the outcome state. ``daydream
    reparse`` runs the same function on stored replies."""
    settings = template.get("settings", {})
    min_lines = settings.get("min_lines", DEFAULT_MIN_LINES.get(stage))
    if mode != "copy":
        validate_output(
            raw,
            finish_reason=finish_reason,
            min_lines=min_lines,
            completion_tokens=completion_tokens,
            max_tokens=max_tokens,
        )
    return parse_output(template["parser"], raw, scale=template.get("scale"))


def token_limit(params: dict[str, Any]) -> int | None:
    """The completion-token limit a call was sent with: ``max_tokens``, or OpenAI's
    ``max_completion_tokens`` for reasoning models (given in ``extra``)."""
    limit = params.get("max_tokens") or params.get("extra", {}).get("max_completion_tokens")
    return limit if isinstance(limit, int) and not isinstance(limit, bool) else None


def _hash(text: str) -> str:
    return text_hash(text)


class _Ended(Exception):
    """An attempt that ended before its reply was parsed, with the outcome to record."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome
