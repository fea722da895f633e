"""The counters, counted afresh: what ``cohort_counts``, ``model_calls``,
``cohort_model_calls``, ``cohort_judges`` and ``essay_rubric_scores`` must hold, computed
in Python from the base rows (generations, memberships, calls) without any of the SQL that
keeps them. ``counter_mismatches(conn)`` names every counter that differs.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter, defaultdict
from typing import Any

FINISHED_BADLY = ("failed", "blocked", "cancelled")
# The counter tables, each compared here.
COUNTERS = (
    "cohort_counts",
    "model_calls",
    "cohort_model_calls",
    "cohort_judges",
    "essay_rubric_scores",
)


def failure_reason(error: str | None, state: str | None) -> str | None:
    """The error's first line; "parent <id> <rest>" becomes "parent <rest>"."""
    if error is None:
        return state
    if error.startswith("parent ") and " " in error[7:]:
        return "parent " + error[7:].split(" ", 1)[1]
    return error.split("\n", 1)[0]


def fresh_cohort_counts(conn: sqlite3.Connection) -> dict[tuple, int]:
    counts: Counter[tuple] = Counter()
    for cohort, stage, status, slot, state, model, error in conn.execute(
        "SELECT m.cohort_id, g.stage, g.status, g.slot, g.state, g.model_id, g.error"
        " FROM cohort_members m JOIN generations g ON g.gen_id = m.gen_id"
    ):
        bucket = "queued" if status == "running" and slot == 0 else status
        reason = (failure_reason(error, state) or "") if status in FINISHED_BADLY else ""
        counts[(cohort, stage, bucket, state or "", model or "", reason)] += 1
    return dict(counts)


def live_cohort_counts(conn: sqlite3.Connection) -> dict[tuple, int]:
    return {
        tuple(row[:6]): row[6]
        for row in conn.execute(
            "SELECT cohort_id, stage, status, state, model_id, reason, generations"
            " FROM cohort_counts WHERE generations != 0"
        )
    }


def _add_call(totals: dict[str, Any], call: tuple) -> None:
    ok, prompt, completion, cost, latency, wait, offline = call
    totals["calls"] += 1
    totals["ok"] += ok
    totals["prompt_tokens"] += prompt or 0
    totals["completion_tokens"] += completion or 0
    totals["cost"] += cost or 0.0
    totals["latency"] += [latency] if latency is not None else []
    totals["slot_wait"] += [wait] if wait is not None else []
    totals["unpriced"] += int(ok == 1 and cost is None and not offline)
    if offline is not None:
        totals["offline"] = max(totals["offline"] or 0, offline)


def _new_totals() -> dict[str, Any]:
    return {
        "calls": 0,
        "ok": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": 0.0,
        "latency": [],
        "slot_wait": [],
        "unpriced": 0,
        "offline": None,
    }


_CALL = (
    "c.ok, c.prompt_tokens, c.completion_tokens, c.cost, c.latency_s, c.slot_wait_s, c.offline"
)


def fresh_call_totals(conn: sqlite3.Connection) -> dict[tuple, dict[str, Any]]:
    """(model,) and (cohort, model) -> the totals of their calls."""
    totals: dict[tuple, dict[str, Any]] = defaultdict(_new_totals)
    for row in conn.execute(f"SELECT c.model_id, {_CALL} FROM calls c"):
        _add_call(totals[(row[0] or "",)], row[1:])
    for row in conn.execute(
        f"SELECT m.cohort_id, c.model_id, {_CALL} FROM cohort_members m"
        " JOIN calls c ON c.gen_id = m.gen_id"
    ):
        _add_call(totals[(row[0], row[1] or "")], row[2:])
    return {key: _summary(t) for key, t in totals.items()}


def _summary(t: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: t[k] for k in ("calls", "ok", "prompt_tokens", "completion_tokens", "unpriced")},
        "cost": t["cost"],
        "latency_n": len(t["latency"]),
        "latency_mean": sum(t["latency"]) / len(t["latency"]) if t["latency"] else None,
        "slot_wait_n": len(t["slot_wait"]),
        "slot_wait_mean": sum(t["slot_wait"]) / len(t["slot_wait"]) if t["slot_wait"] else None,
        "offline": t["offline"],
    }


def live_call_totals(conn: sqlite3.Connection) -> dict[tuple, dict[str, Any]]:
    columns = (
        "calls, ok, prompt_tokens, completion_tokens, unpriced, cost, latency_n,"
        " latency_total / nullif(latency_n, 0), slot_wait_n,"
        " slot_wait_total / nullif(slot_wait_n, 0), offline"
    )
    names = (
        "calls",
        "ok",
        "prompt_tokens",
        "completion_tokens",
        "unpriced",
        "cost",
        "latency_n",
        "latency_mean",
        "slot_wait_n",
        "slot_wait_mean",
        "offline",
    )
    found = {}
    for row in conn.execute(f"SELECT model_id, {columns} FROM model_calls"):
        found[(row[0],)] = dict(zip(names, row[1:], strict=True))
    for row in conn.execute(f"SELECT cohort_id, model_id, {columns} FROM cohort_model_calls"):
        found[(row[0], row[1])] = dict(zip(names, row[2:], strict=True))
    return found


def fresh_judges_and_rubrics(conn: sqlite3.Connection) -> tuple[dict, dict]:
    """cohort_judges and essay_rubric_scores from the cohort's evaluations.

    Compare it only on logs the library writes: they never retry a completed evaluation
    (``retry()`` refuses it). A log made up by hand that does (``generations.retried``
    naming a scored evaluation) leaves its score in the cells, live and replayed alike,
    while this count, which reads the state the retry cleared, no longer counts it.
    """
    judges: dict[tuple, list] = defaultdict(lambda: [set(), 0, 0])
    rubric: dict[tuple, dict[str, Any]] = defaultdict(lambda: {"evaluations": 0, "best": {}})
    for cohort, essay, template, model, state, score in conn.execute(
        "SELECT m.cohort_id, g.parent_gen_id, g.template_id, g.model_id, g.state, g.score"
        " FROM cohort_members m JOIN generations g ON g.gen_id = m.gen_id"
        " WHERE g.stage = 'evaluation' AND g.model_id IS NOT NULL"
    ):
        scored = state == "ok" and score is not None
        judge = judges[(cohort, template, model)]
        judge[0].add(essay)
        judge[1] += 1
        judge[2] += int(scored)
        row = rubric[(cohort, template, essay)]
        row["evaluations"] += 1
        if scored:
            row["best"][model] = max(row["best"].get(model, score), score)
    judge_rows = {key: (len(v[0]), v[1], v[2]) for key, v in judges.items()}
    rubric_rows = {}
    for key, row in rubric.items():
        best = [row["best"][model] for model in sorted(row["best"])]
        rubric_rows[key] = (
            row["evaluations"],
            len(best),
            sum(best) / len(best) if best else None,
            max(best) if best else None,
        )
    return judge_rows, rubric_rows


def live_judges_and_rubrics(conn: sqlite3.Connection) -> tuple[dict, dict]:
    judges = {
        tuple(row[:3]): tuple(row[3:])
        for row in conn.execute(
            "SELECT cohort_id, evaluation_template, evaluation_model, essays, evaluations, n"
            " FROM cohort_judges"
        )
    }
    rubrics = {
        tuple(row[:3]): tuple(row[3:])
        for row in conn.execute(
            "SELECT cohort_id, evaluation_template, essay_gen_id, evaluations, judges,"
            " avg_score, max_score FROM essay_rubric_scores"
        )
    }
    return judges, rubrics


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def counter_mismatches(conn: sqlite3.Connection) -> list[str]:
    """The counters that differ from a fresh count over the base rows, with what differs."""
    problems = []
    pairs = {
        "cohort_counts": (live_cohort_counts(conn), fresh_cohort_counts(conn)),
        "model_calls and cohort_model_calls": (live_call_totals(conn), fresh_call_totals(conn)),
    }
    live_judges, live_rubrics = live_judges_and_rubrics(conn)
    fresh_judges, fresh_rubrics = fresh_judges_and_rubrics(conn)
    pairs["cohort_judges"] = (live_judges, fresh_judges)
    pairs["essay_rubric_scores"] = (live_rubrics, fresh_rubrics)
    for name, (live, fresh) in pairs.items():
        if not _same(live, fresh):
            keys = sorted(set(live) | set(fresh), key=repr)
            wrong = [k for k in keys if not _same(live.get(k), fresh.get(k))][:3]
            problems.append(
                f"{name} differs from a fresh count: "
                + "; ".join(f"{k}: live {live.get(k)}, fresh {fresh.get(k)}" for k in wrong)
            )
    return problems
