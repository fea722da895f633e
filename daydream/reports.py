"""Reports: the evaluation table, the essay pivot, results per axis, judge agreement and
top-of-scale scores of one cohort (rankings and curation: ``curation.py``; the HTML page:
``charts.py``).

Every number is computed from the ``evaluation_scores`` view (one row per evaluation with
its lineage) restricted to one cohort's members. Nothing is re-read from a spec at report
time (upstream §11.23) and every table has a fixed row order (§11.14), so a report is a
function of the database alone.

Definitions (``docs/reports.md`` lists every column):

- A *scored* evaluation has state ``ok`` and a score. Failed, blocked and unfinished
  evaluations are listed in the evaluation table but never enter a statistic.
- A score is on its evaluation template's declared scale ``[scale_min, scale_max]``
  (span = max - min). *high*: ``score >= scale_min + 0.8 * span``; *low*:
  ``score <= scale_min + 0.3 * span``; *top of scale*: ``score == scale_max`` (upstream
  compared to 10 on a 0-9 scale, so it never found one). ``mean_unit`` maps each score to
  0-1 on its own scale, so groups that mix templates stay comparable.
- ``std`` is the sample standard deviation (n - 1), empty below two values.
- Judge agreement is per essay and evaluation template: the spread of the judge models'
  mean scores, classed with upstream's thresholds (range 1 / 2 / 3 on its 0-9 scale)
  scaled to the template: ``range <= k * span / 9``.
- An essay is one row wherever essays are rows: replicates are never merged and copy-mode
  essays (whose ``generation_model`` is their draft's model) are never dropped.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daydream.errors import ConfigError, PlanError

__all__ = [
    "HIGH_FRACTION",
    "LOW_FRACTION",
    "STABILITY_CLASSES",
    "Report",
    "Table",
    "build_report",
    "essay_rows",
    "evaluation_rows",
    "is_scored",
    "require_cohort",
    "stability",
    "write_csv",
    "write_report",
]

HIGH_FRACTION = 0.8
LOW_FRACTION = 0.3
UPSTREAM_SPAN = 9.0  # upstream's 0-9 scale, which its agreement thresholds were set on
STABILITY_CLASSES = (
    "high_agreement",
    "moderate_agreement",
    "low_agreement",
    "poor_agreement",
    "insufficient_data",
)
_STABILITY_STEPS = ((1, "high_agreement"), (2, "moderate_agreement"), (3, "low_agreement"))
_EPS = 1e-9

LINEAGE = (
    "essay_gen_id",
    "draft_gen_id",
    "combo_id",
    "draft_template",
    "draft_model",
    "essay_template",
    "essay_mode",
    "generation_model",
    "draft_replicate",
    "essay_replicate",
)
EVALUATION_COLUMNS = (
    "gen_id",
    *LINEAGE,
    "evaluation_template",
    "evaluation_model",
    "evaluation_replicate",
    "status",
    "state",
    "score",
    "scale_min",
    "scale_max",
    "written_scale",
    "error",
    "offline",
)
AXES = (
    ("by_draft_template", ("draft_template",)),
    ("by_essay_template", ("essay_template",)),
    ("by_generation_model", ("generation_model",)),
    ("by_essay_template_and_generation_model", ("essay_template", "generation_model")),
    ("by_evaluation_template", ("evaluation_template",)),
    ("by_evaluation_model", ("evaluation_model",)),
    ("by_evaluation_template_and_model", ("evaluation_template", "evaluation_model")),
    ("by_generation_vs_evaluation_model", ("generation_model", "evaluation_model")),
    ("by_combo", ("combo_id",)),
    ("overall", ()),
)
_AXIS_COLUMNS = (
    "draft_template",
    "essay_template",
    "generation_model",
    "evaluation_template",
    "evaluation_model",
    "combo_id",
)
STAT_COLUMNS = (
    "scale",
    "count",
    "mean",
    "std",
    "min",
    "max",
    "mean_unit",
    "top_of_scale",
    "top_of_scale_pct",
    "high",
    "high_pct",
    "low",
    "low_pct",
)
AGREEMENT_COLUMNS = (
    "essay_gen_id",
    "combo_id",
    "draft_template",
    "essay_template",
    "generation_model",
    "draft_replicate",
    "essay_replicate",
    "evaluation_template",
    "scale",
    "judges",
    "judge_models",
    "mean",
    "std",
    "min",
    "max",
    "range",
    "range_pct",
    "stability",
)
TOP_OF_SCALE_COLUMNS = (
    "gen_id",
    "essay_gen_id",
    "combo_id",
    "draft_template",
    "essay_template",
    "generation_model",
    "evaluation_template",
    "evaluation_model",
    "evaluation_replicate",
    "score",
    "scale_max",
)


@dataclass
class Table:
    """One report table: its file stem, its columns in order, and its rows."""

    name: str
    columns: list[str]
    rows: list[dict[str, Any]]


@dataclass
class Report:
    """Every table of a cohort's report, plus the summary printed on stdout."""

    cohort_id: str
    tables: dict[str, Table]
    summary: dict[str, Any]
    judges: list[str] = field(default_factory=list)  # "<template>__<model>" keys in order


def build_report(conn: sqlite3.Connection, cohort_id: str) -> Report:
    """Compute every report table of ``cohort_id`` (read only)."""
    require_cohort(conn, cohort_id)
    evaluations = evaluation_rows(conn, cohort_id)
    essays = essay_rows(conn, cohort_id)
    scored = [r for r in evaluations if is_scored(r)]
    judges = sorted({_judge(r) for r in evaluations})
    tables = [
        Table("evaluation_scores", list(EVALUATION_COLUMNS), evaluations),
        _essay_pivot(essays, evaluations, judges),
        _final_results(scored),
        _judge_agreement(essays, evaluations),
        Table(
            "top_of_scale",
            list(TOP_OF_SCALE_COLUMNS),
            [{c: r[c] for c in TOP_OF_SCALE_COLUMNS} for r in scored if _is_top(r)],
        ),
    ]
    report = Report(cohort_id, {t.name: t for t in tables}, {}, [f"{t}__{m}" for t, m in judges])
    report.summary = _summary(report, evaluations, scored, essays)
    return report


def write_report(
    report: Report, out_dir: str | Path, *, fmt: str = "csv", html: bool = False
) -> list[Path]:
    """Write every table as ``<name>.csv`` (or ``.json``), and ``report.html`` if asked."""
    if fmt not in ("csv", "json"):
        raise ConfigError(f'report format "{fmt}" is unknown: use csv or json')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table in report.tables.values():
        path = out / f"{table.name}.{fmt}"
        if fmt == "csv":
            write_csv(path, table.columns, table.rows)
        else:
            path.write_text(
                json.dumps(table.rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
        written.append(path)
    if html:
        from daydream.charts import render_html

        path = out / "report.html"
        path.write_text(render_html(report), encoding="utf-8")
        written.append(path)
    return written


def stability(
    value_range: float | None, judges: int, scale_min: float | None, scale_max: float | None
) -> str:
    """Class of a judge spread: upstream's 1/2/3 steps on 0-9, scaled to the template."""
    if judges < 2 or value_range is None:
        return "insufficient_data"
    span = _span(scale_min, scale_max) or UPSTREAM_SPAN
    for step, name in _STABILITY_STEPS:
        if value_range * UPSTREAM_SPAN <= step * span + _EPS:
            return name
    return "poor_agreement"


# -- queries (curation.py uses them too) ---------------------------------------------------


def require_cohort(conn: sqlite3.Connection, cohort_id: str) -> None:
    """Raise PlanError, naming the known cohorts, when ``cohort_id`` was never planned."""
    if not conn.execute("SELECT 1 FROM cohorts WHERE cohort_id = ?", (cohort_id,)).fetchone():
        known = [r[0] for r in conn.execute("SELECT cohort_id FROM cohorts ORDER BY 1")]
        raise PlanError(
            f'cohort "{cohort_id}" does not exist (cohorts: {", ".join(known) or "none"};'
            " plan one with: daydream plan SPEC --cohort ID)"
        )


def evaluation_rows(conn: sqlite3.Connection, cohort_id: str) -> list[dict[str, Any]]:
    """Every evaluation of the cohort as an ``EVALUATION_COLUMNS`` dict, in lineage order."""
    columns = ", ".join(f"s.{c}" for c in EVALUATION_COLUMNS)
    rows = conn.execute(
        f"SELECT {columns} FROM evaluation_scores s"
        " JOIN cohort_members m ON m.gen_id = s.gen_id AND m.cohort_id = ?"
        " ORDER BY s.combo_id, s.draft_template, s.draft_replicate, s.essay_template,"
        " s.generation_model, s.essay_replicate, s.essay_gen_id, s.evaluation_template,"
        " s.evaluation_model, s.evaluation_replicate, s.gen_id",
        (cohort_id,),
    )
    return [dict(zip(EVALUATION_COLUMNS, row, strict=True)) for row in rows]


def essay_rows(conn: sqlite3.Connection, cohort_id: str) -> list[dict[str, Any]]:
    """The cohort's essays (members, and parents of its evaluations), in lineage order."""
    rows = conn.execute(
        "SELECT e.gen_id, e.parent_gen_id, coalesce(d.combo_id, e.combo_id), d.template_id,"
        " d.model_id, e.template_id, e.mode, coalesce(e.model_id, d.model_id), d.replicate,"
        " e.replicate, e.state FROM generations e"
        " LEFT JOIN generations d ON d.gen_id = e.parent_gen_id"
        " WHERE e.stage = 'essay' AND e.gen_id IN ("
        "   SELECT gen_id FROM cohort_members WHERE cohort_id = ? AND stage = 'essay'"
        "   UNION SELECT v.parent_gen_id FROM cohort_members m"
        "   JOIN generations v ON v.gen_id = m.gen_id"
        "   WHERE m.cohort_id = ? AND m.stage = 'evaluation')"
        " ORDER BY 3, 4, 9, 6, 8, 10, 1",
        (cohort_id, cohort_id),
    )
    return [dict(zip((*LINEAGE, "essay_state"), row, strict=True)) for row in rows]


def is_scored(row: dict[str, Any]) -> bool:
    """Whether an evaluation row enters the statistics (state ok, with a score)."""
    return row["state"] == "ok" and row["score"] is not None


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` (dicts) under the header ``columns``; None becomes an empty cell."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


# -- tables -----------------------------------------------------------------------------------


def _essay_pivot(
    essays: list[dict[str, Any]], evaluations: list[dict[str, Any]], judges: list[tuple[str, str]]
) -> Table:
    columns = [*LINEAGE, "essay_state"]
    for template, model in judges:
        key = f"{template}__{model}"
        columns += [key, f"{key}_min", f"{key}_max", f"{key}_n"]
    columns += ["mean", "std", "n", "judges", "mean_unit"]
    by_essay: dict[str, list[dict[str, Any]]] = {}
    for r in evaluations:
        if is_scored(r):
            by_essay.setdefault(r["essay_gen_id"], []).append(r)
    rows = []
    for essay in essays:
        scored = by_essay.get(essay["essay_gen_id"], [])
        row = dict(essay)
        for template, model in judges:
            key = f"{template}__{model}"
            values = [r["score"] for r in scored if _judge(r) == (template, model)]
            row[key] = _r(statistics.fmean(values)) if values else None
            row[f"{key}_min"] = min(values) if values else None
            row[f"{key}_max"] = max(values) if values else None
            row[f"{key}_n"] = len(values)
        values = [r["score"] for r in scored]
        row.update(
            mean=_r(statistics.fmean(values)) if values else None,
            std=_r(statistics.stdev(values)) if len(values) > 1 else None,
            n=len(values),
            judges=len({_judge(r) for r in scored}),
            mean_unit=_mean_unit(scored),
        )
        rows.append(row)
    return Table("essay_pivot", columns, rows)


def _final_results(scored: list[dict[str, Any]]) -> Table:
    rows = []
    for analysis, keys in AXES:
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for r in scored:
            groups.setdefault(tuple(r[k] for k in keys), []).append(r)
        for values in sorted(groups, key=_sort_key):
            row: dict[str, Any] = {"analysis_type": analysis, **dict.fromkeys(_AXIS_COLUMNS)}
            row.update(zip(keys, values, strict=True))
            row.update(_stats(groups[values]))
            rows.append(row)
    return Table("final_results", ["analysis_type", *_AXIS_COLUMNS, *STAT_COLUMNS], rows)


def _judge_agreement(essays: list[dict[str, Any]], evaluations: list[dict[str, Any]]) -> Table:
    pairs: dict[tuple[str, str], dict[str, list[float]]] = {}
    scales: dict[tuple[str, str], tuple[Any, Any]] = {}
    for r in evaluations:
        key = (r["essay_gen_id"], r["evaluation_template"])
        per_model = pairs.setdefault(key, {})
        scales.setdefault(key, (r["scale_min"], r["scale_max"]))
        if is_scored(r):
            per_model.setdefault(r["evaluation_model"], []).append(r["score"])
    templates: dict[str, list[str]] = {}
    for essay_id, template in sorted(pairs):
        templates.setdefault(essay_id, []).append(template)
    rows = []
    for essay in essays:
        for template in templates.get(essay["essay_gen_id"], []):
            key = (essay["essay_gen_id"], template)
            means = {m: statistics.fmean(v) for m, v in sorted(pairs[key].items()) if v}
            values = list(means.values())
            low, high = scales[key]
            spread = max(values) - min(values) if values else None
            span = _span(low, high)
            rows.append(
                {
                    **{c: essay[c] for c in AGREEMENT_COLUMNS[:7]},
                    "evaluation_template": template,
                    "scale": _scale_label(low, high),
                    "judges": len(values),
                    "judge_models": ", ".join(means),
                    "mean": _r(statistics.fmean(values)) if values else None,
                    "std": _r(statistics.stdev(values)) if len(values) > 1 else None,
                    "min": _r(min(values)) if values else None,
                    "max": _r(max(values)) if values else None,
                    "range": _r(spread) if len(values) > 1 else None,
                    "range_pct": round(100 * spread / span, 1)
                    if span and spread is not None and len(values) > 1
                    else None,
                    "stability": stability(spread, len(values), low, high),
                }
            )
    return Table("judge_agreement", list(AGREEMENT_COLUMNS), rows)


def _summary(
    report: Report,
    evaluations: list[dict[str, Any]],
    scored: list[dict[str, Any]],
    essays: list[dict[str, Any]],
) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    for r in evaluations:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    failed = statuses.get("failed", 0)
    stopped = statuses.get("blocked", 0) + statuses.get("cancelled", 0)
    agreement = dict.fromkeys(STABILITY_CLASSES, 0)
    for row in report.tables["judge_agreement"].rows:
        agreement[row["stability"]] += 1
    per_template = [
        {k: row[k] for k in ("evaluation_template", *STAT_COLUMNS)}
        for row in report.tables["final_results"].rows
        if row["analysis_type"] == "by_evaluation_template"
    ]
    return {
        "cohort_id": report.cohort_id,
        "evaluations": len(evaluations),
        "scored": len(scored),
        "failed": failed,
        "blocked_or_cancelled": stopped,
        "unfinished": len(evaluations) - statuses.get("done", 0) - failed - stopped,
        "scored_pct": round(100 * len(scored) / len(evaluations), 1) if evaluations else None,
        "essays": len(essays),
        "copy_essays": sum(1 for e in essays if e["essay_mode"] == "copy"),
        "judges": report.judges,
        "by_evaluation_template": per_template,
        "agreement": agreement,
        "top_of_scale": len(report.tables["top_of_scale"].rows),
    }


# -- helpers ---------------------------------------------------------------------


def _stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    scores = [r["score"] for r in rows]
    n = len(scores)
    top = sum(1 for r in rows if _is_top(r))
    high = sum(1 for r in rows if _is_high(r))
    low = sum(1 for r in rows if _is_low(r))
    return {
        "scale": ";".join(sorted({_scale_label(r["scale_min"], r["scale_max"]) for r in rows})),
        "count": n,
        "mean": _r(statistics.fmean(scores)),
        "std": _r(statistics.stdev(scores)) if n > 1 else None,
        "min": min(scores),
        "max": max(scores),
        "mean_unit": _mean_unit(rows),
        "top_of_scale": top,
        "top_of_scale_pct": round(100 * top / n, 1),
        "high": high,
        "high_pct": round(100 * high / n, 1),
        "low": low,
        "low_pct": round(100 * low / n, 1),
    }


def _judge(row: dict[str, Any]) -> tuple[str, str]:
    return (row["evaluation_template"], row["evaluation_model"])


def _span(low: float | None, high: float | None) -> float | None:
    return high - low if low is not None and high is not None and high > low else None


def _is_top(row: dict[str, Any]) -> bool:
    return row["scale_max"] is not None and row["score"] >= row["scale_max"] - _EPS


def _is_high(row: dict[str, Any]) -> bool:
    span = _span(row["scale_min"], row["scale_max"])
    return span is not None and row["score"] >= row["scale_min"] + HIGH_FRACTION * span - _EPS


def _is_low(row: dict[str, Any]) -> bool:
    span = _span(row["scale_min"], row["scale_max"])
    return span is not None and row["score"] <= row["scale_min"] + LOW_FRACTION * span + _EPS


def _mean_unit(rows: list[dict[str, Any]]) -> float | None:
    units = []
    for r in rows:
        span = _span(r["scale_min"], r["scale_max"])
        if span is None:
            return None
        units.append((r["score"] - r["scale_min"]) / span)
    return _r(statistics.fmean(units)) if units else None


def _scale_label(low: float | None, high: float | None) -> str:
    return f"{low:g}-{high:g}" if low is not None and high is not None else ""


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _sort_key(values: Iterable[Any]) -> tuple:
    return tuple((v is None, "" if v is None else str(v)) for v in values)
