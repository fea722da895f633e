"""Reports: the evaluation table, the essay pivot, results per axis, judge agreement and
top-of-scale scores of one cohort (rankings and curation: ``curation``; the HTML page: ``html``).

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
- Every mean per axis carries a 95% interval, a percentile bootstrap that resamples
  combinations (essays, in the ``by_combo`` rows), the unit that repeats across cells
  (``inference``); an essay's mean in the pivot carries Student's t interval over its
  scored evaluations.
- Judge reliability (``reliability``): per rubric, Krippendorff's alpha and an intraclass
  correlation between judge models and between replicates of one judge. The older detail,
  judge agreement per essay and evaluation template, is the spread of the judge models'
  mean scores, classed with upstream's thresholds (range 1 / 2 / 3 on its 0-9 scale)
  scaled to the template: ``range <= k * span / 9``.
- An essay is one row wherever essays are rows: replicates are never merged and copy-mode
  essays (whose ``generation_model`` is their draft's model) are never dropped.
"""

from __future__ import annotations

import gc
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from daydream.errors import ConfigError
from daydream.queue.cohorts import require_cohort
from daydream.results.essay_tables import Judged, essay_pivot, judge_agreement, unscored_essays
from daydream.results.files import write_file
from daydream.results.groups import Scored, group_stats, groups
from daydream.results.html import BEST_ESSAYS, render_html
from daydream.results.inference import (
    Interval,
    cluster_codes,
    cluster_intervals_of_groups,
    seed_for,
)
from daydream.results.labels import ratings_of
from daydream.results.reliability import (
    CALIBRATION_COLUMNS,
    RELIABILITY_COLUMNS,
    judge_calibration,
    judge_reliability,
)
from daydream.results.rows import (
    EVALUATION_COLUMNS,
    Records,
    cohort_records,
    column_of,
    write_csv,
)
from daydream.results.scores import (
    STABILITY_CLASSES,
    STAT_COLUMNS,
    rounded,
    sort_key,
)
from daydream.results.tables import (
    AXES,
    AXIS_COLUMNS,
    INTERVAL_COLUMNS,
    TOP_OF_SCALE_COLUMNS,
    Report,
    Table,
)


def build_report(conn: sqlite3.Connection, cohort_id: str) -> Report:
    """Compute every report table of ``cohort_id`` (read only)."""
    with _collection_paused():
        return _build_report(conn, cohort_id)


@contextmanager
def _collection_paused() -> Iterator[None]:
    """Python's cycle collector paused: a report allocates millions of tuples, lists and
    dicts that live until it returns and form no cycles, and each full collection walked
    all of them (a tenth of a report's time at 1,000,000 generations)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build_report(conn: sqlite3.Connection, cohort_id: str) -> Report:
    require_cohort(conn, cohort_id)
    essays, evaluations = cohort_records(conn, cohort_id)
    judged = Judged(essays, evaluations)
    arrays = judged.scored_arrays()
    scored = arrays.rows
    judges = judged.judges()
    pivot = essay_pivot(essays, judged)
    tables = [
        Table("evaluation_scores", list(EVALUATION_COLUMNS), evaluations),
        pivot,
        _final_results(arrays),
        judge_agreement(essays, judged),
        Table(
            "top_of_scale",
            list(TOP_OF_SCALE_COLUMNS),
            [{c: scored[i][c] for c in TOP_OF_SCALE_COLUMNS} for i in np.flatnonzero(arrays.top).tolist()],
        ),
        Table(
            "judge_reliability",
            list(RELIABILITY_COLUMNS),
            judge_reliability(evaluations, judged.coders()),
        ),
        Table(
            "judge_calibration",
            list(CALIBRATION_COLUMNS),
            judge_calibration(evaluations, ratings_of(conn, cohort_id)),
        ),
        unscored_essays(essays, judged),
    ]
    report = Report(cohort_id, {t.name: t for t in tables}, {}, [f"{t}__{m}" for t, m in judges])
    report.summary = _summary(report, evaluations, scored, essays)
    report.texts = _best_texts(conn, pivot.rows)
    return report


def _best_texts(conn: sqlite3.Connection, pivot: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The parsed texts of the essays the page shows first (``html.BEST_ESSAYS``)."""
    means = zip(column_of(pivot, "mean_unit"), column_of(pivot, "essay_gen_id"), strict=True)
    best = sorted((-mean, essay) for mean, essay in means if mean is not None)[:BEST_ESSAYS]
    texts = {}
    for _, essay in best:
        found = conn.execute(
            "SELECT t.text FROM generations g JOIN texts t ON t.hash = g.parsed_hash"
            " WHERE g.gen_id = ?",
            (essay,),
        ).fetchone()
        if found is not None:
            texts[essay] = found[0]
    return texts


def write_report(
    report: Report, out_dir: str | Path, *, fmt: str = "csv", html: bool = False
) -> list[Path]:
    """Write every table as ``<name>.csv`` (or ``.json``), and ``report.html`` if asked;
    never through a link planted in ``out_dir`` (``files.write_file``)."""
    if fmt not in ("csv", "json"):
        raise ConfigError(f'report format "{fmt}" is unknown: use csv or json')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _collection_paused():
        return _write_tables(report, out, fmt, html)


def _write_tables(report: Report, out: Path, fmt: str, html: bool) -> list[Path]:
    written = []
    for table in report.tables.values():
        path = out / f"{table.name}.{fmt}"
        if fmt == "csv":
            write_csv(path, table.columns, table.rows)
        else:
            write_file(path, json.dumps(list(table.rows), indent=2, ensure_ascii=False) + "\n")
        written.append(path)
    if html:
        written.append(write_file(out / "report.html", render_html(report)))
    return written


def _final_results(arrays: Scored) -> Table:
    found = [
        (analysis, keys, values, members)
        for analysis, keys in AXES
        for values, members in sorted(groups(arrays, keys), key=lambda g: sort_key(g[0]))
    ]
    intervals = cluster_intervals_of_groups(
        [_resampled(analysis, values, members, arrays) for analysis, _, values, members in found]
    )
    rows = []
    for (analysis, keys, values, members), group_intervals in zip(found, intervals, strict=True):
        row: dict[str, Any] = {"analysis_type": analysis, **dict.fromkeys(AXIS_COLUMNS)}
        row.update(zip(keys, values, strict=True))
        row.update(group_stats(arrays, members))
        row.update(_interval_columns(analysis, group_intervals))
        rows.append(row)
    columns = ["analysis_type", *AXIS_COLUMNS, *STAT_COLUMNS, *INTERVAL_COLUMNS]
    return Table("final_results", columns, rows)


def _resampled(
    analysis: str, values: tuple, rows: np.ndarray, arrays: Scored
) -> tuple[list[np.ndarray], np.ndarray, int]:
    """What a group's intervals resample: its scores (and scores on 0-1 when every one has
    a scale), the clusters (combinations; essays within one combination) and the seed."""
    units = arrays.unit[rows]
    columns = [arrays.score[rows]] + ([units] if not np.isnan(units).any() else [])
    clusters = cluster_codes(arrays.codes(_unit(analysis))[0][rows])
    return columns, clusters, seed_for(analysis, *values)


def _interval_columns(analysis: str, intervals: list[Interval]) -> dict[str, Any]:
    """The group's 95% intervals (of the mean, and of the mean on 0-1 if resampled)."""
    unit_interval = intervals[1] if len(intervals) > 1 else None
    return {
        "ci_low": rounded(intervals[0].low),
        "ci_high": rounded(intervals[0].high),
        "ci_unit": _unit(analysis),
        "ci_clusters": intervals[0].clusters,
        "mean_unit_ci_low": rounded(unit_interval.low) if unit_interval else None,
        "mean_unit_ci_high": rounded(unit_interval.high) if unit_interval else None,
    }


def _unit(analysis: str) -> str:
    return "essay_gen_id" if analysis == "by_combo" else "combo_id"


def _summary(
    report: Report,
    evaluations: Records,
    scored: Sequence[dict[str, Any]],
    essays: list[dict[str, Any]],
) -> dict[str, Any]:
    statuses = Counter(evaluations.column("status"))
    failed = statuses.get("failed", 0)
    stopped = statuses.get("blocked", 0) + statuses.get("cancelled", 0)
    agreement = dict.fromkeys(STABILITY_CLASSES, 0)
    for stability in column_of(report.tables["judge_agreement"].rows, "stability"):
        agreement[stability] += 1
    per_template = [
        {k: row[k] for k in ("evaluation_template", *STAT_COLUMNS, *INTERVAL_COLUMNS)}
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
        "reliability": report.tables["judge_reliability"].rows,
        "calibration": report.tables["judge_calibration"].rows,
        "agreement": agreement,
        "top_of_scale": len(report.tables["top_of_scale"].rows),
    }
