"""A cohort's rows as reports and curation read them: every evaluation with its lineage
(from the ``evaluation_scores`` view) and every essay, in a fixed lineage order.
"""

from __future__ import annotations

import csv
import io
import operator
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from daydream.results.files import write_file

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


# The axes that can vary between the essays of a cohort, as lineage columns: what a
# ranking, the pivot page and the report list each essay with.
ESSAY_AXIS_TITLES = (
    ("combo_id", "combination"),
    ("draft_template", "draft template"),
    ("draft_model", "draft model"),
    ("draft_replicate", "draft rep"),
    ("essay_template", "essay template"),
    ("generation_model", "generation model"),
    ("essay_replicate", "essay rep"),
)
ESSAY_AXES = tuple(axis for axis, _ in ESSAY_AXIS_TITLES)


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


def fetch_dicts(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """The rows of ``sql`` as dicts, on any connection (daydream's, whose rows are
    ``sqlite3.Row``, or Datasette's, whose rows are tuples)."""
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def is_scored(row: dict[str, Any]) -> bool:
    """Whether an evaluation row enters the statistics (state ok, with a score)."""
    return row["state"] == "ok" and row["score"] is not None


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` (dicts) under the header ``columns``; None becomes an empty cell.
    Never through a link (``files.write_file``)."""
    write_file(path, csv_text(columns, rows))


def csv_text(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    """The CSV ``write_csv`` writes, as a string."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)  # None is written as an empty cell, as DictWriter does
    writer.writerow(columns)
    # Each row's values in the header's order (a missing column is empty): DictWriter's
    # per-value lookups were a large part of writing a big report.
    get = operator.itemgetter(*columns, *columns[:1])  # two or more keys: always a tuple
    for row in rows:
        try:
            cells = get(row)[: len(columns)]
        except KeyError:
            cells = tuple(row.get(c) for c in columns)
        writer.writerow(cells)
    return buffer.getvalue()
