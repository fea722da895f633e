"""A cohort's results as pandas DataFrames, so a notebook starts in one line::

    import daydream.results as dr

    scores = dr.evaluations("daydream.db", "demo")      # one row per evaluation
    pivot = dr.pivot("daydream.db", "demo")             # one row per essay, a column per judge
    dr.compare("daydream.db", "demo", axis="essay_template")

Every frame is the same table the report writes (same columns, same order, same numbers),
read from the database given as a path or an open connection (left open). pandas is an
optional extra (``pip install 'daydream[analysis]'``), imported only when a frame is asked
for.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from daydream.errors import ConfigError

Database = str | Path | sqlite3.Connection

__all__ = [
    "compare",
    "evaluations",
    "final_results",
    "judge_calibration",
    "judge_reliability",
    "pivot",
]


def evaluations(db: Database, cohort: str) -> Any:
    """Every evaluation of the cohort with its lineage, state and score (``evaluation_scores``)."""
    return _table(db, cohort, "evaluation_scores")


def pivot(db: Database, cohort: str) -> Any:
    """One row per essay: per judge mean/min/max/n, then mean, std, n, judges, mean_unit and
    the mean's 95% interval (``essay_pivot``)."""
    return _table(db, cohort, "essay_pivot")


def final_results(db: Database, cohort: str) -> Any:
    """Statistics per axis with 95% intervals that resample combinations (``final_results``)."""
    return _table(db, cohort, "final_results")


def judge_reliability(db: Database, cohort: str) -> Any:
    """Krippendorff's alpha and the ICC per rubric (``judge_reliability``)."""
    return _table(db, cohort, "judge_reliability")


def judge_calibration(db: Database, cohort: str) -> Any:
    """Each judge against the human ratings (``judge_calibration``)."""
    return _table(db, cohort, "judge_calibration")


def compare(
    db: Database,
    cohort: str,
    axis: str | None = None,
    *,
    other: str | None = None,
    levels: Sequence[str] = (),
    template: str | None = None,
) -> Any:
    """``daydream compare`` as a frame: levels of ``axis`` within ``cohort``, or ``cohort``
    against the cohort ``other``; one row per pair of levels and rubric."""
    from daydream.results.comparison import COMPARISON_FIELDS, compare_cohorts, compare_levels

    if (axis is None) == (other is None):
        raise ConfigError("compare takes either axis= (levels within a cohort) or other= (a second cohort)")
    with _connection(db) as conn:
        if other is not None:
            found = compare_cohorts(conn, cohort, other, template=template)
        else:
            found = compare_levels(conn, cohort, str(axis), levels=levels, template=template)
    return _frame(found.comparisons, list(COMPARISON_FIELDS))


def _table(db: Database, cohort: str, name: str) -> Any:
    from daydream.results.reports import build_report

    with _connection(db) as conn:
        table = build_report(conn, cohort).tables[name]
    return _frame(list(table.rows), table.columns)


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> Any:
    pandas = _pandas()
    return pandas.DataFrame.from_records(rows, columns=columns)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ConfigError(
            "daydream.results frames need pandas, an optional extra: pip install 'daydream[analysis]'"
        ) from None
    return pandas


@contextmanager
def _connection(db: Database) -> Iterator[sqlite3.Connection]:
    if isinstance(db, sqlite3.Connection):
        yield db
        return
    from daydream.db.connection import connect

    conn = connect(db, create=False)
    try:
        yield conn
    finally:
        conn.close()
