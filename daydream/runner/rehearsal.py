"""Rehearsal: run a cohort's remaining work on the offline provider in a scratch copy.

``rehearse()`` copies the database (SQLite backup API, so it is consistent while workers
write), runs every remaining generation of the cohort there with every model call answered
by the deterministic offline provider, and reports what would break before money is spent:
template errors at any stage, replies the parsers reject, and a token and cost forecast
computed from the prompts actually rendered. The real database is never written.

The forecast: prompt tokens = rendered prompt characters / 4 (the usual rough ratio for
English); output tokens are unknown before a real call, so the range runs from the offline
reply's size (low) to the template's or model's ``max_tokens`` (high; 2,000 when unset).
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from daydream.db.connection import connect
from daydream.db.files import open_scratch
from daydream.queue.cohorts import Status
from daydream.runner.run import run_cohort
from daydream.worker.config import WorkerConfig

_DEFAULT_MAX_OUTPUT = 2000


@dataclass
class Rehearsal:
    cohort: str | None
    status: Status
    problems: list[dict[str, Any]] = field(default_factory=list)
    forecast: list[dict[str, Any]] = field(default_factory=list)
    cost_low: float = 0.0
    cost_high: float = 0.0
    unpriced: list[str] = field(default_factory=list)
    # What a real run would refuse before its first call (a missing API key...).
    setup: list[str] = field(default_factory=list)

    def cost_range(self) -> dict[str, Any]:
        """The forecast's range in USD; ``low``/``high`` None (unknown, never $0) when no
        remaining call has prices; ``complete`` false when some have none."""
        priced = any(item["cost_low"] is not None for item in self.forecast)
        low, high = (round(self.cost_low, 4), round(self.cost_high, 4)) if priced else (None, None)
        return {"low": low, "high": high, "complete": not self.unpriced}

    def to_dict(self) -> dict[str, Any]:
        return {
            "cohort": self.cohort,
            "status": self.status.to_dict(),
            "problems": self.problems,
            "forecast": self.forecast,
            "cost_usd": self.cost_range(),
            "unpriced_models": self.unpriced,
            "setup_problems": self.setup,
        }


def rehearse(config: WorkerConfig, *, workers: int = 2, setup: list[str] | None = None) -> Rehearsal:
    """Run the remaining work of ``config``'s cohort offline in a scratch copy of its
    database, with ``workers`` processes of ``config`` (every call answered offline, one
    attempt each), and report; ``setup``: what a real run would stop on before its first
    call (``runner.run.prepare_run(rehearsal=True)``)."""
    db_path, cohort = Path(config.db_path), config.cohort
    scratch_dir = Path(tempfile.mkdtemp(prefix="daydream-rehearsal-"))
    scratch = scratch_dir / "rehearsal.db"
    try:
        source = connect(db_path, create=False)
        pending = _pending(source, cohort)
        target = open_scratch(scratch)
        source.backup(target)
        target.close()
        source.close()
        # A rehearsal checks templates and parsers, not a model: its judges answer within
        # each rubric's declared scale (the demo's offline judge answers 0-9 on any).
        offline = replace(
            config,
            db_path=scratch,
            provider_override="offline",
            offline_in_scale=True,
            max_attempts=1,
        )
        summary = run_cohort(offline, workers=workers)
        conn = connect(scratch, create=False)
        result = Rehearsal(cohort, summary.status, setup=list(setup or []))
        result.problems = _problems(conn, pending)
        _forecast(conn, pending, result)
        conn.close()
        return result
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)


def _pending(conn: sqlite3.Connection, cohort: str | None) -> list[str]:
    sql = "SELECT gen_id FROM generations WHERE status IN ('ready', 'waiting', 'running')"
    params: list[Any] = []
    if cohort:
        sql += " AND gen_id IN (SELECT gen_id FROM cohort_members WHERE cohort_id = ?)"
        params.append(cohort)
    return [row[0] for row in conn.execute(sql, params)]


def _temp_ids(conn: sqlite3.Connection, gen_ids: list[str]) -> None:
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS rehearsed (gen_id TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM rehearsed")
    conn.executemany("INSERT INTO rehearsed VALUES (?)", [(g,) for g in gen_ids])


def _problems(conn: sqlite3.Connection, pending: list[str]) -> list[dict[str, Any]]:
    """Failures grouped by stage, template and state, with one example each."""
    _temp_ids(conn, pending)
    rows = conn.execute(
        "SELECT g.stage, g.template_id, g.state, count(*) AS n, min(g.gen_id) AS example,"
        " min(g.error) AS error FROM generations g JOIN rehearsed r USING (gen_id)"
        " WHERE g.status IN ('failed', 'blocked') GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    ).fetchall()
    return [dict(row) for row in rows]


def _forecast(conn: sqlite3.Connection, pending: list[str], result: Rehearsal) -> None:
    _temp_ids(conn, pending)
    rows = conn.execute(
        "SELECT g.stage, g.model_id, m.price_input, m.price_output, m.provider, count(*) AS calls,"
        " sum(p.length) AS prompt_chars, sum(coalesce(g.completion_tokens, 0)) AS offline_out,"
        " max(coalesce(json_extract(v.settings, '$.max_tokens'),"
        "  json_extract(m.settings, '$.max_tokens'))) AS max_tokens"
        " FROM generations g JOIN rehearsed r USING (gen_id)"
        " JOIN models m ON m.model_id = g.model_id"
        " LEFT JOIN template_versions v ON v.version = g.template_version"
        " LEFT JOIN texts p ON p.hash = g.prompt_hash"
        " WHERE g.mode = 'llm' AND g.prompt_hash IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    unpriced = set()
    for stage, model_id, price_in, price_out, provider, calls, chars, out_low, max_tokens in rows:
        prompt_tokens = (chars or 0) // 4
        out_high = calls * int(max_tokens or _DEFAULT_MAX_OUTPUT)
        entry = {
            "stage": stage,
            "model": model_id,
            "calls": calls,
            "prompt_tokens": prompt_tokens,
            "output_tokens_low": out_low,
            "output_tokens_high": out_high,
            "cost_low": None,
            "cost_high": None,
        }
        if price_in is not None and price_out is not None:
            entry["cost_low"] = round(prompt_tokens * price_in + out_low * price_out, 6)
            entry["cost_high"] = round(prompt_tokens * price_in + out_high * price_out, 6)
            result.cost_low += entry["cost_low"]
            result.cost_high += entry["cost_high"]
        elif provider != "offline":
            unpriced.add(model_id)
        result.forecast.append(entry)
    result.unpriced = sorted(unpriced)


