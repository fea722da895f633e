"""The shared vocabulary: stages, task statuses, outcome states, parser names, modes.

One list each; every module that names a stage, a status, a state or a parser takes it
from here, and the docs (docs/parsers.md, docs/running.md) describe these lists.
"""

from __future__ import annotations

from typing import Literal

STAGES: tuple[str, ...] = ("draft", "essay", "evaluation")
"""The three stages, in pipeline order (names also sort in this order, which the queue
uses to run upstream work first)."""
Stage = Literal["draft", "essay", "evaluation"]

PARENT_STAGE: dict[str, str] = {"essay": "draft", "evaluation": "essay"}
"""The stage of a generation's parent (a draft has none)."""

STATUSES: tuple[str, ...] = (
    "done",
    "failed",
    "blocked",
    "cancelled",
    "running",
    "queued",
    "ready",
    "waiting",
)
"""A task's status as ``daydream status`` counts it. In ``generations.status`` a queued
task is ``running`` with ``slot = 0``: a lease a worker holds ahead, to start when one of
its calls ends; ``running`` counts calls (leases holding a pool slot)."""

TERMINAL: tuple[str, ...] = ("done", "failed", "blocked", "cancelled")
"""Statuses a generation does not leave on its own (``daydream retry`` can)."""

INFRASTRUCTURE_STATES: tuple[str, ...] = ("provider_error", "template_error", "error")
"""Outcome states that say the run's set-up failed (a call that never answered, a template
that did not render, a crash), as opposed to what a model wrote (truncated, too_short,
parse_failed, refused: results). Any of them makes ``daydream run`` exit non-zero."""

EXIT_CODES: dict[str, int] = {
    "ok": 0,
    "error": 1,
    "usage": 2,
    "failures": 3,
    "pool_stopped": 4,
    "outage": 5,
    "budget": 6,
    "interrupted": 130,
}
"""The exit codes of ``daydream run`` (and ``daydream worker``), by meaning:

- ``ok``: every generation finished, none with an infrastructure failure;
- ``error``: bad input, a failed preflight, or work left because workers kept dying;
- ``usage``: an option is wrong;
- ``failures``: everything finished, but some generations with an infrastructure failure
  (``INFRASTRUCTURE_STATES``);
- ``pool_stopped``: stopped: a pool is unusable (a rejected key, an unknown model, every
  request refused); its generations are still pending;
- ``outage``: stopped: an endpoint stayed down past the outage limit;
- ``budget``: stopped: the budget leaves no room for another call;
- ``interrupted``: Ctrl-C or SIGTERM.

When several apply, the first of interrupted, pool_stopped, outage, budget, error,
failures wins."""

STATES: tuple[str, ...] = (
    "ok",
    "truncated",
    "too_short",
    "parse_failed",
    "refused",
    "provider_error",
    "template_error",
    "blocked",
    "cancelled",
)
"""Outcome states of a finished generation (``generations.state``)."""

MODES: tuple[str, ...] = ("llm", "copy")
"""How a stage makes its raw output: a model call, or a verbatim copy of the parent."""
Mode = Literal["llm", "copy"]

COPY_POOL = "copy"
"""The pool of copy-mode essays (no model, no provider)."""

TEXT_PARSERS: tuple[str, ...] = ("identity", "essay_block", "essay_block_lenient", "essay_idea_last")
SCORE_PARSERS: tuple[str, ...] = ("score", "in_last_line")
PARSERS: dict[str, tuple[str, ...]] = {
    "draft": TEXT_PARSERS,
    "essay": TEXT_PARSERS,
    "evaluation": SCORE_PARSERS,
}
"""Which parsers a stage's templates may use: text parsers for drafts and essays, score
parsers for evaluations (``in_last_line`` is upstream's name for ``score``)."""
Parser = Literal[
    "identity", "essay_block", "essay_block_lenient", "essay_idea_last", "score", "in_last_line"
]

LEVELS: tuple[str, ...] = ("sentence", "paragraph", "article")
"""A concept's description lengths; a combination is rendered at one of them."""
Level = Literal["sentence", "paragraph", "article"]
