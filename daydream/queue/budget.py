"""Budgets: a cap on what the calls of one cohort (or of all planned work) may cost, held
across every worker through the database.

A claim under a budget takes a task only while what the scope's calls have cost so far,
plus the most that the calls already running can cost, plus the most this one can cost,
stays within the cap. "The most a call can cost" is reserved when it is claimed
(``attempt.started.reserved_usd``, ``generations.reserved_usd`` while it runs): its
prompt's UTF-8 bytes as tokens (a token is at least one byte), plus a margin for the chat
format, and its ``max_tokens``, at the model's prices. So the cap holds whatever the
replies, as far as the catalog's prices are right; a call whose cost has no ceiling (no
``max_tokens``, no price) is never claimed under a budget.

What the calls have cost is read from ``calls``, incrementally (a budget keeps the last
call it counted: each claim reads only the calls recorded since), in the claim's own
transaction, so no other worker's result can slip between the reading and the claim.
Calls without a cost (a model without prices) count at ``unpriced_per_token``.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from daydream.queue.tasks import Task, unfinished

PROMPT_OVERHEAD_TOKENS = 32  # the chat format around one user message, generously


@dataclass
class Budget:
    """A cap in USD on the cost of ``cohort``'s calls (every call: None).

    ``bound(task)``: the most the task's call can cost (0 for no call, ``math.inf`` when it
    has no ceiling); the worker provides it (it renders the prompt). ``limited`` is set when
    a claim left a task unclaimed because of the cap."""

    cap_usd: float
    cohort: str | None
    bound: Callable[[Task], float]
    unpriced_per_token: float = 0.0
    limited: bool = False
    _seen: int = field(default=0, repr=False)  # the last calls.event_id counted
    _spent: float = field(default=0.0, repr=False)

    def spent(self, conn: sqlite3.Connection) -> float:
        """What the scope's recorded calls cost (unpriced ones at ``unpriced_per_token``)."""
        sql = (
            "SELECT max(c.event_id), coalesce(sum(c.cost), 0),"
            " coalesce(sum(CASE WHEN c.cost IS NULL THEN coalesce(c.prompt_tokens, 0)"
            " + coalesce(c.completion_tokens, 0) END), 0)"
            " FROM calls c WHERE c.event_id > ?"
        )
        params: list[object] = [self._seen]
        if self.cohort is not None:
            sql += (
                " AND EXISTS (SELECT 1 FROM cohort_members m"
                " WHERE m.cohort_id = ? AND m.gen_id = c.gen_id)"
            )
            params.append(self.cohort)
        last, cost, tokens = conn.execute(sql, params).fetchone()
        if last is not None:
            # A rolled-back claim can move this past calls it wrote itself; they are
            # written again later under new ids and counted twice: more caution, never less.
            self._seen = last
            self._spent += cost + tokens * self.unpriced_per_token
        return self._spent

    def reserved(self, conn: sqlite3.Connection) -> float:
        """The most the scope's running calls can still cost (reserved when claimed)."""
        sql = "SELECT coalesce(sum(g.reserved_usd), 0) FROM generations g WHERE g.status = 'running'"
        params: list[object] = []
        if self.cohort is not None:
            sql += (
                " AND EXISTS (SELECT 1 FROM cohort_members m"
                " WHERE m.cohort_id = ? AND m.gen_id = g.gen_id)"
            )
            params.append(self.cohort)
        return conn.execute(sql, params).fetchone()[0]

    def admit(self, conn: sqlite3.Connection, tasks: list[Task]) -> list[float]:
        """The reservations of the longest prefix of ``tasks`` that fits under the cap (in
        the claim's transaction); sets ``limited`` when some did not fit."""
        room = self.cap_usd - self.spent(conn) - self.reserved(conn)
        reserved: list[float] = []
        for task in tasks:
            cost = self.bound(task)
            if not math.isfinite(cost) or cost > room:
                self.limited = True
                break
            room -= cost
            reserved.append(round(cost, 9))
        else:
            self.limited = False
        return reserved

    def left(self, conn: sqlite3.Connection) -> float:
        """The cap less what was spent (not counting calls running now)."""
        return self.cap_usd - self.spent(conn)


def budget_problems(
    conn: sqlite3.Connection, cohort: str | None, unpriced_per_mtok: float | None
) -> list[str]:
    """Why a budget cannot hold for the unfinished calls of ``cohort`` (all: None), one
    line each: a model without prices (unless ``unpriced_per_mtok`` says how to count it),
    earlier calls of unknown cost, a call with no ``max_tokens`` (no ceiling)."""
    where, params = unfinished(cohort, ())
    problems: list[str] = []
    rows = conn.execute(
        "SELECT DISTINCT g.model_id, m.provider, m.price_input, m.price_output, m.settings,"
        " g.stage, g.template_id, v.settings FROM generations g"
        " JOIN models m ON m.model_id = g.model_id"
        " LEFT JOIN template_versions v ON v.version = g.template_version"
        f" WHERE {where} AND g.mode = 'llm' ORDER BY 1, 6, 7",
        params,
    ).fetchall()
    unpriced = sorted(
        {row[0] for row in rows if row[1] != "offline" and (row[2] is None or row[3] is None)}
    )
    member = (
        " AND EXISTS (SELECT 1 FROM cohort_members x WHERE x.cohort_id = ? AND x.gen_id = c.gen_id)"
        if cohort
        else ""
    )
    earlier = conn.execute(
        "SELECT group_concat(DISTINCT c.model_id) FROM calls c WHERE c.ok = 1"
        f" AND c.cost IS NULL AND NOT coalesce(c.offline, 0){member}",
        [cohort] if cohort else [],
    ).fetchone()[0]
    if unpriced_per_mtok is None and unpriced:
        problems.append(
            f"budget: model(s) {', '.join(unpriced)} have no prices, so what their calls cost"
            " is unknown; add price_input_per_mtok and price_output_per_mtok in models.yaml,"
            " or say how to count them: --unpriced-per-mtok 0 (free: a local server) or a"
            " price in USD per million tokens"
        )
    elif unpriced_per_mtok is None and earlier:
        problems.append(
            f"budget: earlier calls of {earlier} have no cost recorded (no prices), so what was"
            " spent is unknown; say how to count them: --unpriced-per-mtok 0 (free) or a price"
            " in USD per million tokens"
        )
    for model_id, provider, _, _, model_settings, stage, template_id, settings in rows:
        template = json.loads(settings) if settings else {}
        if provider == "offline" or template.get("max_tokens"):
            continue
        if not json.loads(model_settings or "{}").get("max_tokens"):
            problems.append(
                f"budget: calls of model {model_id} with template {stage}/{template_id} have"
                " no max_tokens, so their cost has no ceiling; set max_tokens on the template"
                " or the model"
            )
    return problems
