"""Executing one claimed task: render the prompt, call the model (or copy the parent),
validate and parse the reply, and return the outcome: the events to record.

Nothing here writes to the database; the worker loop records the outcome with the
task's fencing token. Rate-limited calls (429) are requeued with ``not_before``
(honouring Retry-After) and do not count as attempts; other retryable failures are
attempts with exponential backoff; after ``max_attempts`` the generation fails with its
last error.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from daydream import events as ev
from daydream.clock import Clock, isoformat, utcnow
from daydream.crashpoints import crash_point
from daydream.db.texts import text_hash
from daydream.errors import ConfigError, ParseError, ProviderError, TemplateError
from daydream.parsers import parse_output, validate_output
from daydream.prompts import concept_contents, render_prompt, stage_variables
from daydream.providers.protocol import CompletionRequest
from daydream.providers.registry import make_provider
from daydream.providers.retry import backoff_delay
from daydream.queue.tasks import Outcome, Task
from daydream.worker.config import WorkerConfig

MAX_THROTTLES = 100


DEFAULT_MIN_LINES = {"draft": 3}


class Executor:
    """Runs one claimed task: prompt -> raw -> parsed, returning the events to record."""

    def __init__(
        self, config: WorkerConfig, *, clock: Clock = utcnow, rng: random.Random | None = None
    ):
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random(config.seed)
        self._providers: dict[tuple[str, str | None, str | None], Any] = {}

    def provider(self, model: dict[str, Any]) -> Any:
        """The provider for a model, one per (provider, base URL, key variable) per worker."""
        name = self.config.provider_override or model.get("provider", "offline")
        settings = model.get("settings", {})
        base_url = self.config.base_urls.get(name) or settings.get("base_url")
        key_env = settings.get("api_key_env")
        key = (name, base_url, key_env)
        found = self._providers.get(key)
        if found is None:
            found = make_provider(
                name,
                base_url=base_url,
                api_key_env=key_env,
                offline_latency_s=self.config.offline_latency_s,
                offline_in_scale=self.config.offline_in_scale,
            )
            self._providers[key] = found
        return found

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()

    async def run(self, task: Task) -> Outcome:
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
        crash_point("before_call")
        try:
            completion = await provider.complete(request)
        except ProviderError as exc:
            raise _Ended(self._provider_failed(task, exc)) from None
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
        events: list[ev.Event] = [
            ev.GenerationResponded(
                gen_id=task.gen_id,
                token=task.token,
                prompt_hash=prompt_hash,
                raw_hash=raw_hash,
                **responded,
            )
        ]
        settings = task.template.get("settings", {})
        min_lines = settings.get("min_lines", DEFAULT_MIN_LINES.get(task.stage))
        try:
            if task.mode != "copy":
                validate_output(
                    raw, finish_reason=responded.get("finish_reason"), min_lines=min_lines
                )
            parsed = parse_output(task.template["parser"], raw, scale=task.template.get("scale"))
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

    def _provider_failed(self, task: Task, exc: ProviderError) -> Outcome:
        now = self.clock()
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
            )
            return Outcome(task, [event], ok=False, throttled=True, retry_delay=delay, ended_at=now)
        return self._failed(
            task,
            state=exc.state,
            error=str(exc)[:2000],
            retryable=exc.retryable,
            http_status=exc.status,
            retry_after=exc.retry_after,
        )

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
    ) -> Outcome:
        counted = task.attempt - task.throttles - task.released
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
        )
        return Outcome(task, [event], ok=False, retry_delay=delay, ended_at=now)


def _hash(text: str) -> str:
    return text_hash(text)


class _Ended(Exception):
    """An attempt that ended before its reply was parsed, with the outcome to record."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome
