"""A cohort's rows as reports and curation read them: every evaluation with its lineage
(from the ``evaluation_scores`` view) and every essay, in a fixed lineage order.
"""

from __future__ import annotations

import csv
import io
import operator
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

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
    """Every evaluation of the cohort as an ``EVALUATION_COLUMNS`` dict, in lineage order
    (``cohort_rows``)."""
    return cohort_rows(conn, cohort_id)[1]


def essay_rows(conn: sqlite3.Connection, cohort_id: str) -> list[dict[str, Any]]:
    """The cohort's essays (members, and parents of its evaluations), in lineage order."""
    evaluated = conn.execute(
        "SELECT v.parent_gen_id FROM cohort_members m CROSS JOIN generations v ON v.gen_id = m.gen_id"
        " WHERE m.cohort_id = ? AND m.stage = 'evaluation'",
        (cohort_id,),
    )
    return _essays(conn, cohort_id, {row[0] for row in evaluated})


def cohort_rows(
    conn: sqlite3.Connection, cohort_id: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The cohort's essays (``essay_rows``) and its evaluations as ``EVALUATION_COLUMNS``
    dicts: the ``evaluation_scores`` view's rows, ordered by the lineage, then the
    evaluation template, model, replicate and id (``cohort_records``)."""
    essays, evaluations = cohort_records(conn, cohort_id)
    return essays, list(evaluations)


def cohort_records(conn: sqlite3.Connection, cohort_id: str) -> tuple[list[dict[str, Any]], Records]:
    """``cohort_rows`` with the evaluations as ``Records`` (a dict each only when read).

    Read as the cohort's evaluations plus their essays' lineage, each essay once: the view
    looks up each evaluation's essay and draft (three lookups per evaluation: 14 s for
    800,000 evaluations at 1,000,000 generations)."""
    # In SQL, by essay id, then as the view orders an essay's evaluations; then by the
    # essay's place in lineage order (a stable sort keeps the rest).
    fetched = conn.execute(
        "SELECT v.parent_gen_id, v.gen_id, v.combo_id, v.template_id, v.model_id, v.replicate,"
        " v.status, v.state, v.score, coalesce(v.parsed_with, v.template_version),"
        " v.written_scale, v.error, v.offline"
        " FROM cohort_members m CROSS JOIN generations v ON v.gen_id = m.gen_id"
        " WHERE m.cohort_id = ? AND m.stage = 'evaluation' AND v.stage = 'evaluation'"
        " ORDER BY v.parent_gen_id, v.template_id, v.model_id, v.replicate, v.gen_id",
        (cohort_id,),
    ).fetchall()
    essays = _essays(conn, cohort_id, {row[0] for row in fetched})
    rank = {e["essay_gen_id"]: i for i, e in enumerate(essays)}
    lineage = {e["essay_gen_id"]: tuple(e[c] for c in LINEAGE) for e in essays}
    scales = {
        version: (low, high)
        for version, low, high in conn.execute(
            "SELECT version, scale_min, scale_max FROM template_versions WHERE stage = 'evaluation'"
        )
    }
    fetched.sort(key=lambda row: rank[row[0]])
    uncombined = {essay for essay, values in lineage.items() if values[2] is None}
    none = (None, None)
    values = [
        (
            row[1],
            *(lineage[row[0]] if row[0] not in uncombined else _combined(lineage, row)),
            *row[3:9],
            *scales.get(row[9], none),
            *row[10:],
        )
        for row in fetched
    ]
    return essays, Records(EVALUATION_COLUMNS, values)


def column_of(
    rows: Sequence[dict[str, Any]], name: str, at: Iterable[int] | None = None
) -> list[Any]:
    """Every row's value of ``name`` (or the rows' at positions ``at``), read from the
    tuples of ``Records``."""
    if isinstance(rows, Records):
        return rows.column(name, at)
    return [r[name] for r in rows] if at is None else [rows[i][name] for i in at]


class Records(Sequence[dict[str, Any]]):
    """Rows kept as tuples in ``columns``' order, each read as a dict of its columns. A
    report holds a million evaluations and reads them mostly a column at a time (a dict
    per row cost seconds to build)."""

    def __init__(self, columns: Sequence[str], values: list[tuple]) -> None:
        self.columns = tuple(columns)
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, at: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, at: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, at: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(at, slice):
            return [dict(zip(self.columns, row, strict=True)) for row in self.values[at]]
        return dict(zip(self.columns, self.values[at], strict=True))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        columns = self.columns
        return (dict(zip(columns, row, strict=True)) for row in self.values)

    def taken(self, at: Iterable[int]) -> Records:
        """The rows at positions ``at``, in that order."""
        return Records(self.columns, [self.values[i] for i in at])

    def read(self, *names: str) -> list[tuple]:
        """Per row, the values of ``names`` (two or more) in that order."""
        return list(map(operator.itemgetter(*map(self.columns.index, names)), self.values))

    def column(self, name: str, at: Iterable[int] | None = None) -> list[Any]:
        """Every row's value of ``name`` (or the rows' at positions ``at``)."""
        rows = self.values if at is None else [self.values[i] for i in at]
        return list(map(operator.itemgetter(self.columns.index(name)), rows))


def _combined(lineage: dict[str, tuple], row: tuple) -> tuple:
    """The lineage of an essay without a combination (nor its draft), with the
    evaluation's."""
    values = lineage[row[0]]
    return (*values[:2], row[2], *values[3:])


_ESSAY = (
    "SELECT e.gen_id, e.parent_gen_id, coalesce(d.combo_id, e.combo_id), d.template_id,"
    " d.model_id, e.template_id, e.mode, coalesce(e.model_id, d.model_id), d.replicate,"
    " e.replicate, e.state FROM generations e"
    " LEFT JOIN generations d ON d.gen_id = e.parent_gen_id WHERE e.stage = 'essay'"
)
_ESSAY_ORDER = (2, 3, 8, 5, 7, 9, 0)  # combination, draft template and replicate, essay ...


def _essays(conn: sqlite3.Connection, cohort_id: str, evaluated: set[str]) -> list[dict[str, Any]]:
    """The cohort's member essays and the essays of ``evaluated`` (its evaluations'), in
    lineage order."""
    rows = conn.execute(
        _ESSAY + " AND e.gen_id IN (SELECT gen_id FROM cohort_members"
        " WHERE cohort_id = ? AND stage = 'essay') ORDER BY 3, 4, 9, 6, 8, 10, 1",
        (cohort_id,),
    ).fetchall()
    others = sorted(evaluated - {row[0] for row in rows})  # evaluations of a non-member
    for start in range(0, len(others), 500):
        part = others[start : start + 500]
        rows += conn.execute(
            _ESSAY + f" AND e.gen_id IN ({', '.join('?' * len(part))})", part
        ).fetchall()
    if others:
        rows.sort(key=lambda row: tuple(_order(row[i]) for i in _ESSAY_ORDER))
    return [dict(zip((*LINEAGE, "essay_state"), row, strict=True)) for row in rows]


def _order(value: Any) -> tuple:
    """SQLite's ORDER BY for one value: NULL first, then numbers, then text."""
    if value is None:
        return (0, 0)
    return (2, value) if isinstance(value, (str, bytes)) else (1, value)


def fetch_dicts(
    conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()
) -> list[dict[str, Any]]:
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
    """The CSV ``write_csv`` writes, as a string: what ``csv.writer`` writes (its default
    dialect: a cell quoted when it holds a comma, a quote or a line break, a float by its
    ``repr``, None empty, CRLF line ends), built a column at a time, since writing a
    million rows through ``csv.writer`` took seconds. A row missing a column has it empty."""
    rows = rows if isinstance(rows, (list, Records)) else list(rows)
    if len(columns) > 1:
        table = _table(columns, rows)
        cells = [_cells(values) for values in zip(*table, strict=True)] if table else []
        header = _cells(tuple(columns))
        if header is not None and not any(column is None for column in cells):
            lines = [",".join(header), *map(",".join, zip(*cells, strict=True))]
            return "\r\n".join(lines) + "\r\n"
    return _written(columns, rows)  # one column, or a NUL character: csv.writer's own way


def _table(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Sequence[tuple]:
    """Each row's values of ``columns`` (two or more), a missing one None."""
    if isinstance(rows, Records) and rows.columns == tuple(columns):
        return rows.values
    get = operator.itemgetter(*columns)
    try:
        return list(map(get, rows))
    except KeyError:
        return [tuple(row.get(c) for c in columns) for row in rows]


def _cells(values: tuple) -> Sequence[str] | None:
    """One column's cells as ``csv.writer`` writes them; None if one holds a NUL."""
    kinds = set(map(type, values))
    texts: Sequence[str]
    if kinds <= {str}:
        texts = values
    elif kinds == {float}:
        texts = list(map(float.__repr__, values))
    elif kinds == {int}:
        texts = list(map(int.__repr__, values))  # str() of an int
    elif kinds <= {float, int, type(None)}:
        texts = ["" if v is None else repr(v) for v in values]  # an int's repr is its str
    else:
        texts = [_text(v) for v in values]
    joined = ",".join(texts)
    if "\0" in joined:
        return None
    if joined.count(",") >= len(texts) or '"' in joined or "\r" in joined or "\n" in joined:
        return [_quoted(text) for text in texts]
    return texts


def _text(value: Any) -> str:
    """A value as ``csv.writer`` writes it, before quoting."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return float.__repr__(value) if isinstance(value, float) else str(value)


def _quoted(text: str) -> str:
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _written(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    """``csv_text`` through ``csv.writer``."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)  # None is written as an empty cell, as DictWriter does
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c) for c in columns])
    return buffer.getvalue()
