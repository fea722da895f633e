"""The event types: one frozen pydantic model per type; their docstrings are the event docs.

Invariants:

- Event types are ``noun.past_verb``. A stored type never changes meaning: a new need is a
  new optional field or a new type.
- Events carry hashes of large texts (``texts`` table), never the texts themselves.
- ``subject`` says what an event is about (a generation id, a cohort id, a catalog entry),
  so ``daydream events --subject`` shows one thing's history.
- Every model forbids unknown fields, so a typo in a writer fails loudly.

docs/events.md is generated from this module (``python -m daydream.cli.reference``). The
module is long because it is the one catalogue of event types, each with the docstring that
documents it; splitting it would scatter that reference.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from daydream.vocabulary import Mode, Stage

EVENT_TYPES: dict[str, type[Event]] = {}


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    type: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.type:
            EVENT_TYPES[cls.type] = cls

    @property
    def subject(self) -> str:
        raise NotImplementedError


def parse_event(type_: str, data: str | bytes) -> Event:
    """Rebuild a stored event (for replay)."""
    return EVENT_TYPES[type_].model_validate_json(data)


# -- catalog -----------------------------------------------------------------------------


class ConceptDefined(Event):
    """A concept entered the catalog, or changed (a new ``version``).

    ``descriptions`` maps a level (sentence, paragraph, article) to the hash of its text.
    Re-importing an unchanged concept writes no event.
    """

    type: ClassVar[str] = "concept.defined"
    concept_id: str
    version: str
    name: str
    descriptions: dict[str, str]
    source: str

    @property
    def subject(self) -> str:
        return f"concept:{self.concept_id}"


class ComboDefined(Event):
    """A concept combination entered the catalog: ordered concepts and a description level.

    Written by a catalog import, or by planning a spec whose ``combo_id`` axis enumerates
    subsets of a concept pool.
    """

    type: ClassVar[str] = "combo.defined"
    combo_id: str
    version: str
    concept_ids: list[str]
    level: str
    source: str

    @property
    def subject(self) -> str:
        return f"combo:{self.combo_id}"


class TemplateDefined(Event):
    """A prompt template entered the catalog, or its content changed (a new ``version``).

    ``body_hash`` is the Jinja body's text hash (null for copy-mode templates). ``scale_min``
    and ``scale_max`` are an evaluation template's declared score scale. ``settings`` holds
    optional generation settings (temperature, max_tokens, min_lines, extra parameters).
    Earlier versions stay: generations record the version they used.
    """

    type: ClassVar[str] = "template.defined"
    stage: Stage
    template_id: str
    version: str
    name: str
    description: str
    body_hash: str | None
    parser: str
    generator: Mode
    scale_min: float | None = None
    scale_max: float | None = None
    settings: dict[str, Any] = {}
    source: str

    @property
    def subject(self) -> str:
        return f"template:{self.stage}/{self.template_id}"


class ModelDefined(Event):
    """A model entered the catalog or changed: provider, provider model string, pool, prices.

    Prices are USD per token (null when unknown). No API key is ever part of a model.
    """

    type: ClassVar[str] = "model.defined"
    model_id: str
    version: str
    provider: str
    provider_model: str
    display_name: str
    pool: str
    price_input: float | None = None
    price_output: float | None = None
    settings: dict[str, Any] = {}
    source: str

    @property
    def subject(self) -> str:
        return f"model:{self.model_id}"


# -- planning ----------------------------------------------------------------------------


class CohortPlanned(Event):
    """A cohort was planned from a spec (first time, or with new members).

    ``spec_hash`` is the hash of the spec file's text (stored in ``texts``), so a report can
    show exactly what was planned. Followed by ``generations.planned`` events in the same
    transaction; the per-stage membership counts in ``cohorts`` grow with those.
    ``budget_usd``: the spec's cap on what the cohort's calls may cost (``daydream run``
    stops claiming before it would pass it).
    """

    type: ClassVar[str] = "cohort.planned"
    cohort_id: str
    spec_path: str
    spec_hash: str
    budget_usd: float | None = None

    @property
    def subject(self) -> str:
        return f"cohort:{self.cohort_id}"


class GenerationsPlanned(Event):
    """A batch of generations joined a cohort (planned in bulk for speed).

    ``generations`` are new generations, each a row of ``FIELDS`` in order. ``members`` are
    ids of generations that already existed (planned by another cohort) and now also belong
    to this one. A generation is created once; membership links cohorts to it.
    """

    type: ClassVar[str] = "generations.planned"
    FIELDS: ClassVar[tuple[str, ...]] = (
        "gen_id",
        "stage",
        "parent_gen_id",
        "combo_id",
        "template_id",
        "template_version",
        "model_id",
        "replicate",
        "mode",
        "signature",
        "pool",
    )
    cohort_id: str
    generations: list[list[Any]]
    members: list[str] = []

    @property
    def subject(self) -> str:
        return f"cohort:{self.cohort_id}"


# -- running -----------------------------------------------------------------------------


class AttemptStarted(Event):
    """A worker claimed a ready task: one attempt begins.

    The fencing token of the attempt is this event's id: a worker may record a result only
    while the task still carries its token. ``lease_expires_at`` is UTC. A ``queued`` lease
    is claimed ahead, to start the moment one of the worker's calls in the same pool ends:
    it holds no pool slot until ``slots.taken`` says so. ``reserved_usd``: under a budget,
    the most this call can cost (its prompt's bytes as tokens and its ``max_tokens``, at
    the model's prices), held against the budget while it runs.
    """

    type: ClassVar[str] = "attempt.started"
    gen_id: str
    attempt: int
    worker: str
    lease_expires_at: str
    queued: bool = False
    reserved_usd: float | None = None

    @property
    def subject(self) -> str:
        return self.gen_id


class LeasesExtended(Event):
    """A worker's heartbeat: its leases (``[gen_id, token]`` pairs) now expire later."""

    type: ClassVar[str] = "leases.extended"
    worker: str
    leases: list[list[Any]]
    lease_expires_at: str

    @property
    def subject(self) -> str:
        return f"worker:{self.worker}"


class SlotsTaken(Event):
    """Queued leases (``[gen_id, token]`` pairs) now hold pool slots.

    Either each started its call in the slot of a call of the same worker that had just
    ended (whose result is recorded in the same transaction), or the pool had room.
    """

    type: ClassVar[str] = "slots.taken"
    worker: str
    leases: list[list[Any]]

    @property
    def subject(self) -> str:
        return f"worker:{self.worker}"


class LeaseExpired(Event):
    """A lease ran out before its worker finished (the worker died or stalled).

    The task is claimable again; the stale worker's token no longer holds.
    """

    type: ClassVar[str] = "lease.expired"
    gen_id: str
    token: int
    worker: str

    @property
    def subject(self) -> str:
        return self.gen_id


class LeaseReleased(Event):
    """A worker gave a task back without a result (clean shutdown): ready again at once.

    The attempt does not count against the maximum (a stop is not a failure)."""

    type: ClassVar[str] = "lease.released"
    gen_id: str
    token: int
    reason: str

    @property
    def subject(self) -> str:
        return self.gen_id


class AttemptThrottled(Event):
    """The provider rate-limited the call (HTTP 429): the task is ready again at
    ``retry_at`` (honouring Retry-After), and the attempt does not count against the
    maximum. The pool's concurrency limit may be cut (see ``pool.limit_changed``).
    ``latency_s`` and ``slot_wait_s``: as for ``generation.responded``."""

    type: ClassVar[str] = "attempt.throttled"
    gen_id: str
    token: int
    error: str
    retry_after: float | None = None
    retry_at: str
    latency_s: float | None = None
    slot_wait_s: float | None = None
    endpoint: str | None = None

    @property
    def subject(self) -> str:
        return self.gen_id


class AttemptDeferred(Event):
    """The call could not be made or could not finish through no fault of the task: its
    endpoint is down (``reason`` ``endpoint_down``: connections refused or dropped, a
    burst of 502/503/504, confirmed by a probe), or its pool was stopped (``pool_stopped``,
    see ``pool.stopped``). The task is ready again and, as after a 429, the attempt does
    not count against the maximum; it is claimed again once the endpoint is back or the
    pool resumes. ``endpoint`` is set when a call was made (it is then a row of ``calls``).
    """

    type: ClassVar[str] = "attempt.deferred"
    gen_id: str
    token: int
    reason: str
    error: str
    http_status: int | None = None
    endpoint: str | None = None

    @property
    def subject(self) -> str:
        return self.gen_id


class GenerationResponded(Event):
    """The raw output of a generation was obtained: a model reply, or a copy of the parent.

    Recorded before any validation, so a reply that later fails parsing is kept.
    ``params`` are the request settings (temperature, max_tokens, seed, extra); ``offline``
    marks outputs of the deterministic dry-run provider. ``latency_s`` is the time at the
    server (the HTTP call), ``slot_wait_s`` the time the task waited in its worker for a
    pool slot before the call, ``http_status`` the reply's status. A reasoning model's
    reasoning, when the server returns it apart from the reply, is ``reasoning_hash`` (a
    text, never part of the raw or parsed text); ``reasoning_tokens`` is the provider's
    count (``usage.completion_tokens_details.reasoning_tokens``). ``endpoint`` is the base
    URL that answered (one of a provider's replicas).
    """

    type: ClassVar[str] = "generation.responded"
    gen_id: str
    token: int
    mode: Mode
    prompt_hash: str
    raw_hash: str
    provider: str | None = None
    model_id: str | None = None
    resolved_model: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    cost: float | None = None
    params: dict[str, Any] = {}
    offline: bool = False
    http_status: int | None = None
    slot_wait_s: float | None = None
    reasoning_hash: str | None = None
    reasoning_tokens: int | None = None
    endpoint: str | None = None

    @property
    def subject(self) -> str:
        return self.gen_id


class GenerationCompleted(Event):
    """A generation's output passed validation and parsing: state ``ok``.

    ``parsed_hash`` is the parsed text's hash; evaluations carry their ``score`` and, when
    the judge wrote one (``8/10``), ``written_scale``. Children become ready.
    """

    type: ClassVar[str] = "generation.completed"
    gen_id: str
    token: int
    parsed_hash: str
    score: float | None = None
    written_scale: float | None = None

    @property
    def subject(self) -> str:
        return self.gen_id


class AttemptFailed(Event):
    """An attempt ended without a result: a provider error (``http_status`` when there was
    one), a template error, an invalid or unparseable reply (raw kept), or an unexpected
    exception (``error_class``). For a failed model call, ``latency_s`` is the time at the
    server and ``slot_wait_s`` the wait for a pool slot before it.

    With ``final`` false the task is ready again at ``retry_at`` (backoff). With ``final``
    true the generation ends ``failed`` with ``state`` and ``error`` (the reason), and its
    children are blocked.
    """

    type: ClassVar[str] = "attempt.failed"
    gen_id: str
    token: int
    state: str
    error: str
    retryable: bool
    final: bool
    retry_at: str | None = None
    http_status: int | None = None
    error_class: str | None = None
    latency_s: float | None = None
    slot_wait_s: float | None = None
    endpoint: str | None = None

    @property
    def subject(self) -> str:
        return self.gen_id


class GenerationReparsed(Event):
    """``daydream reparse`` ran the parsed phase again on the stored raw reply (no model
    call), with the template's current version (``template_version``: its parser, scale and
    settings) and the parsers of ``parser_version``, and the result differed.

    ``state`` is ``ok`` (``parsed_hash``, ``score``, ``written_scale`` as in
    ``generation.completed``) or the failure state with its ``error``. The generation becomes
    done or failed accordingly; the previous result stays in the log (and in ``reparses``).
    A parse that now succeeds unblocks the children it had blocked; one that now fails
    blocks the children still waiting for it (finished children keep their results).
    """

    type: ClassVar[str] = "generation.reparsed"
    gen_id: str
    template_version: str
    parser: str
    parser_version: int
    state: str
    parsed_hash: str | None = None
    score: float | None = None
    written_scale: float | None = None
    error: str | None = None

    @property
    def subject(self) -> str:
        return self.gen_id


class RatingRecorded(Event):
    """A human rater scored an essay on a rubric (``daydream label import``).

    ``score`` was checked against the scale of the rubric's ``template_version``; ``source``
    names the file it came from. A later rating by the same rater of the same essay and
    rubric replaces this one in ``human_ratings``; both stay in the log.
    """

    type: ClassVar[str] = "rating.recorded"
    essay_gen_id: str
    evaluation_template: str
    template_version: str
    rater: str
    score: float
    note: str | None = None
    source: str

    @property
    def subject(self) -> str:
        return self.essay_gen_id


class GenerationsRetried(Event):
    """Failed (or chosen) generations were put back to work by ``daydream retry``.

    Their attempt counters restart; children blocked by them wait again.
    """

    type: ClassVar[str] = "generations.retried"
    cohort_id: str
    gen_ids: list[str]

    @property
    def subject(self) -> str:
        return f"cohort:{self.cohort_id}"


class CohortCancelled(Event):
    """``daydream cancel``: the cohort's unfinished generations end ``cancelled``.

    Generations shared with another cohort that is not cancelled keep running.
    """

    type: ClassVar[str] = "cohort.cancelled"
    cohort_id: str
    gen_ids: list[str]

    @property
    def subject(self) -> str:
        return f"cohort:{self.cohort_id}"


class PoolLimitChanged(Event):
    """A pool's concurrency limit changed: set by a user, or adapted to rate limiting
    (cut on 429, grown after successes)."""

    type: ClassVar[str] = "pool.limit_changed"
    pool: str
    limit: int
    ceiling: int
    reason: str

    @property
    def subject(self) -> str:
        return f"pool:{self.pool}"


class PoolStopped(Event):
    """A call failed in a way no retry can fix for any call of the pool: the key was
    rejected (401, 403), the account has no credit (402), the model is unknown (404, or
    the server's "model not found"), or the server refused every request of the model
    (a catalog setting such as a max_tokens past the context). No worker claims the
    pool's tasks until a run resumes it (``pool.resumed``); they stay pending, never
    failed. ``message`` is the line shown to the user: provider, model, the server's words
    and the fix.
    """

    type: ClassVar[str] = "pool.stopped"
    pool: str
    provider: str
    model_id: str
    message: str
    http_status: int | None = None

    @property
    def subject(self) -> str:
        return f"pool:{self.pool}"


class PoolResumed(Event):
    """A stopped pool's tasks may be claimed again: a new ``daydream run`` (or worker)
    whose checks passed."""

    type: ClassVar[str] = "pool.resumed"
    pool: str
    reason: str

    @property
    def subject(self) -> str:
        return f"pool:{self.pool}"


class EndpointDown(Event):
    """Workers stopped sending calls to an endpoint (a base URL, without credentials): its
    connections were refused or dropped, it timed out, or it answered 502/503/504 in a
    burst, and a probe (``GET {endpoint}/models``) found it away. Tasks of models served
    only by down endpoints wait, their attempts not spent, while workers probe it with
    backoff; ``error`` is what the failing call or probe said, ``pool`` the pool of that
    call."""

    type: ClassVar[str] = "endpoint.down"
    endpoint: str
    provider: str
    pool: str
    error: str

    @property
    def subject(self) -> str:
        return f"endpoint:{self.endpoint}"


class EndpointRecovered(Event):
    """A down endpoint answers again (a worker's probe, or the preflight of a run): its
    tasks are claimed again. ``by`` says who found it: ``probe`` or ``preflight``."""

    type: ClassVar[str] = "endpoint.recovered"
    endpoint: str
    by: str

    @property
    def subject(self) -> str:
        return f"endpoint:{self.endpoint}"
