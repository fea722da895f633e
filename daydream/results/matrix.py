"""The comparison matrix: a cohort's essays (or, in a cohort without essays, its drafts)
laid out by two axes, so a researcher sees whether one template or model writes better on
the same concepts (browse's ``/-/compare`` page; the report's small matrices).

Axes are named as in a spec: ``combo_id``, ``draft_template``, ``draft_llm``,
``draft_replicate``, ``essay_template``, ``essay_llm``, ``essay_replicate`` (the lineage of
each essay) and ``evaluation_template``, ``evaluation_llm`` (which judgements count). A
cell holds the essays at its row and column level (``pins`` fix any other axis), each
with its text and its mean score over the counted judgements, and the cell's pooled mean
and n. An empty cell, or one whose essays have no text or no score, says why.

Scores come from the ``essay_judge_scores`` cells (per cohort, essay and judge: planned
evaluations, n and total). Scores on different scales are never pooled: when the
cohort's rubrics differ in scale and none is chosen, the first rubric is.

Cost: one pass over the cohort's essays (by the ``cohort_members`` key) for their axis
levels, once per plan of the cohort (``matrix_lineage``, with an index of the rows at
each level of a pinned axis), then lookups by key for the texts and score cells of the
rows shown; rows are paged by keyset (``after`` the last row level shown).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field, replace
from typing import Any

from daydream.errors import ConfigError, NotFoundError, did_you_mean
from daydream.queue.cohorts import require_cohort
from daydream.results.matrix_lineage import (
    DRAFT_AXIS_SQL,
    ESSAY_AXIS_SQL,
    Pinned,
    level_order,
    lineage,
)
from daydream.results.rows import fetch_dicts

JUDGE_AXES = {"evaluation_template": 0, "evaluation_llm": 1}  # position in a judge
AXES = (*ESSAY_AXIS_SQL, *JUDGE_AXES)
COLUMN_CHOICE = (
    "essay_llm",
    "essay_template",
    "draft_llm",
    "draft_template",
    "evaluation_llm",
    "evaluation_template",
    "essay_replicate",
    "draft_replicate",
    "combo_id",
)
MAX_COLUMNS = 24


@dataclass
class Entry:
    """One essay (or draft) of a cell: its text (or why it has none) and its score."""

    gen_id: str
    stage: str
    status: str
    state: str | None
    error: str | None
    levels: dict[str, Any]
    text: str | None = None
    text_kind: str = "parsed"  # or "raw" when the reply was not parsed
    n: int = 0
    mean: float | None = None
    evaluations: int = 0  # planned evaluations that count here, scored or not
    unscored: list[str] = field(default_factory=list)  # why each of the others has no score

    @property
    def reason(self) -> str | None:
        """Why the entry has no text or no score, in a few words (None: it has both)."""
        if self.status != "done":
            return _unfinished(self.status, self.state, self.error)
        if self.stage == "draft":
            return None
        if self.evaluations == 0:
            return "not judged (no evaluation of it counts here)"
        if self.n == 0:
            return f"no score: {_summary(self.unscored)}"
        return None


@dataclass
class Cell:
    entries: list[Entry]
    more: int = 0  # entries beyond those shown
    n: int = 0
    mean: float | None = None
    reason: str | None = None  # why the cell is empty


@dataclass
class Matrix:
    cohort_id: str
    stage: str  # what the cells hold: essay, or draft in a cohort without essays
    rows: str
    columns: str
    row_levels: list[Any]
    column_levels: list[Any]
    cells: dict[tuple[Any, Any], Cell]
    levels: dict[str, list[Any]]  # every axis that varies in the cohort, with its levels
    pins: dict[str, Any]
    next_after: Any = None  # the last row level shown, when more rows follow
    notes: list[str] = field(default_factory=list)

    def cell(self, row: Any, column: Any) -> Cell:
        return self.cells[(row, column)]

    @property
    def others(self) -> list[str]:
        """The axes that vary within a cell: each entry says its level of them."""
        fixed = (self.rows, self.columns, *self.pins, *JUDGE_AXES)
        return [axis for axis in self.levels if axis not in fixed]


def comparison_matrix(
    conn: sqlite3.Connection,
    cohort_id: str,
    rows: str = "combo_id",
    columns: str | None = None,
    *,
    pins: dict[str, Any] | None = None,
    after: Any = None,
    size: int = 50,
    per_cell: int = 3,
) -> Matrix:
    """The matrix of ``cohort_id`` by ``rows`` x ``columns``: up to ``size`` row levels
    after ``after``, and up to ``per_cell`` entries per cell. Without ``columns``, the
    first axis after ``rows`` that varies in the cohort (in ``COLUMN_CHOICE`` order)."""
    require_cohort(conn, cohort_id)
    pins = dict(pins or {})
    for name, where in ((rows, "rows"), (columns, "columns"), *((p, "a pin") for p in pins)):
        if name is None:
            continue
        if name not in AXES:
            raise ConfigError(
                f'{where}: "{name}" is not an axis{did_you_mean(name, AXES)} (axes: {", ".join(AXES)})'
            )
    if rows == columns:
        raise ConfigError(f'rows and columns are both "{rows}": choose two different axes')
    stage = _subject_stage(conn, cohort_id, tuple(a for a in (rows, columns, *pins) if a))
    found = _Found(conn, cohort_id, stage)
    levels = found.levels()
    if columns is None:
        columns = next(
            (a for a in COLUMN_CHOICE if a != rows and len(levels.get(a, [])) > 1),
            next(a for a in COLUMN_CHOICE if a != rows and a in levels),
        )
    notes: list[str] = []
    pins = _checked_pins(pins, levels)
    if stage == "essay":
        _choose_scale(conn, found.judges, rows, columns, pins, notes)
    found.pin(pins)
    row_levels = _page(found.pinned_levels(rows), after, size + 1)
    column_levels = levels.get(columns, [])
    if len(column_levels) > MAX_COLUMNS:
        notes.append(f"only the first {MAX_COLUMNS} levels of {columns} are shown; pin it or swap the axes")
    matrix = Matrix(
        cohort_id,
        stage,
        rows,
        columns,
        row_levels[:size],
        column_levels[:MAX_COLUMNS],
        {},
        {a: v for a, v in levels.items() if len(v) > 1},
        pins,
        next_after=row_levels[size - 1] if len(row_levels) > size else None,
        notes=notes,
    )
    matrix.cells = _cells(found, matrix, per_cell)
    _fill_texts(conn, [e for cell in matrix.cells.values() for e in cell.entries])
    if stage == "essay":
        _fill_scores(conn, cohort_id, matrix)
    return matrix


class _Found:
    """The cohort's essays (or drafts) as plain rows: (gen id, then each axis level).
    ``Entry`` objects, with their status, are made only for the rows of the page."""

    def __init__(self, conn: sqlite3.Connection, cohort_id: str, stage: str) -> None:
        self.conn = conn
        self.stage = stage
        self.axes = list(ESSAY_AXIS_SQL if stage == "essay" else DRAFT_AXIS_SQL)
        self.lineage = lineage(conn, cohort_id, stage, self.axes)
        self.pinned: Pinned | None = None  # every row while nothing is pinned
        self.judges = _judges(conn, cohort_id) if stage == "essay" else []

    def levels(self) -> dict[str, list[Any]]:
        """Every axis's levels in the cohort (the judge axes: the cohort's judges)."""
        found = dict(self.lineage.levels())
        for axis, position in JUDGE_AXES.items():
            if self.judges:
                found[axis] = sorted({judge[position] for judge in self.judges}, key=level_order)
        return found

    def pinned_levels(self, axis: str) -> list[Any]:
        """``axis``'s levels among the pinned rows (a judge axis: every judge's)."""
        if axis in JUDGE_AXES or self.pinned is None or axis not in self.axes:
            return self.levels().get(axis, [])
        return self.pinned.levels(axis)

    def pin(self, pins: dict[str, Any]) -> None:
        """Keep the rows at each pinned level (found by the lineage's index of the axis)."""
        fixed = [(axis, value) for axis, value in pins.items() if axis in self.axes]
        if fixed:
            self.pinned = self.lineage.pinned(fixed)

    def entries(self, axis: str, wanted: set[Any]) -> list[Entry]:
        """The pinned rows whose ``axis`` level is in ``wanted`` (every row for a judge
        axis), in row order, with their status read now."""
        rows = self.lineage.rows
        if axis in JUDGE_AXES:
            positions = range(len(rows)) if self.pinned is None else self.pinned.positions
        else:
            at = {p for level in wanted for p in self.lineage.at(axis, level)}
            positions = sorted(at if self.pinned is None else at & self.pinned.kept)
        chosen = [rows[p] for p in positions]
        status = _status(self.conn, [r[0] for r in chosen])
        entries = []
        for r in chosen:
            state, outcome, error = status[r[0]]
            levels = dict(zip(self.axes, r[1:], strict=True))
            entries.append(Entry(r[0], self.stage, state, outcome, error, levels))
        return entries


def _status(conn: sqlite3.Connection, ids: list[str]) -> dict[str, tuple]:
    """(status, state, error) of each generation of ``ids``."""
    found: dict[str, tuple] = {}
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        for row in conn.execute(
            "SELECT gen_id, status, state, error FROM generations"
            f" WHERE gen_id IN ({', '.join('?' for _ in part)})",
            part,
        ):
            found[row[0]] = tuple(row[1:])
    return found


def _subject_stage(conn: sqlite3.Connection, cohort_id: str, axes: tuple[str, ...]) -> str:
    counts = fetch_dicts(conn, "SELECT drafts, essays FROM cohorts WHERE cohort_id = ?", (cohort_id,))[0]
    if counts["essays"]:
        return "essay"
    if counts["drafts"]:
        wrong = [a for a in axes if a not in DRAFT_AXIS_SQL]
        if wrong:
            raise ConfigError(
                f'cohort "{cohort_id}" has no essays: "{wrong[0]}" does not apply (its'
                f" axes: {', '.join(DRAFT_AXIS_SQL)})"
            )
        return "draft"
    raise NotFoundError(f'cohort "{cohort_id}" has no drafts or essays to compare')


def _judges(conn: sqlite3.Connection, cohort_id: str) -> list[tuple[str, str, int]]:
    """The cohort's judges: (evaluation template, model, scored evaluations)."""
    rows = conn.execute(
        "SELECT evaluation_template, evaluation_model, n FROM cohort_judges"
        " WHERE cohort_id = ? ORDER BY 1, 2",
        (cohort_id,),
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def _checked_pins(pins: dict[str, Any], levels: dict[str, list[Any]]) -> dict[str, Any]:
    """The pins with each value in its axis's type (a URL gives strings)."""
    checked = {}
    for axis, value in pins.items():
        known = levels.get(axis, [])
        match = next((level for level in known if str(level) == str(value)), None)
        if match is None:
            shown = ", ".join(str(v) for v in known[:12]) or "none"
            raise ConfigError(
                f'{axis} "{value}" is not a level of this cohort{did_you_mean(str(value), map(str, known))}'
                f" (its levels: {shown})"
            )
        checked[axis] = match
    return checked


def _choose_scale(conn, judges, rows, columns, pins, notes) -> None:
    """Pin the rubric with the most scores when the cohort's rubrics differ in scale and
    none is chosen."""
    if "evaluation_template" in (rows, columns, *pins):
        return
    scored: dict[str, int] = {}
    for template, _, n in judges:
        scored[template] = scored.get(template, 0) + n
    templates = sorted(scored, key=lambda t: (-scored[t], t))
    scales = {
        tuple(row)
        for row in conn.execute(
            "SELECT DISTINCT scale_min, scale_max FROM templates WHERE stage = 'evaluation'"
            f" AND template_id IN ({', '.join('?' for _ in templates)})",
            templates,
        )
    }
    if len(scales) > 1:
        pins["evaluation_template"] = templates[0]
        notes.append(
            f"the rubrics' scales differ, so only {templates[0]} (the most scored) counts"
            " here; choose another with evaluation_template"
        )
    elif len(templates) > 1:
        notes.append(f"scores pool the rubrics {', '.join(sorted(templates))} (one scale)")


def _page(levels: list[Any], after: Any, count: int) -> list[Any]:
    if after is None or after == "":
        return levels[:count]
    start = next((i + 1 for i, level in enumerate(levels) if str(level) == str(after)), None)
    if start is None:  # not a level (any more): continue after where it would sort
        start = sum(1 for level in levels if level_order(level) <= level_order(_typed(after, levels)))
    return levels[start : start + count]


def _cells(found: _Found, m: Matrix, per_cell: int) -> dict[tuple[Any, Any], Cell]:
    rows, columns = m.rows, m.columns
    grouped: dict[tuple[Any, Any], list[Entry]] = {}
    judge_rows, judge_columns = rows in JUDGE_AXES, columns in JUDGE_AXES
    entries = found.entries(rows, set(m.row_levels))
    for entry in entries:
        for r in m.row_levels if judge_rows else [entry.levels[rows]]:
            for c in m.column_levels if judge_columns else [entry.levels.get(columns)]:
                grouped.setdefault((r, c), []).append(entry)
    cells = {}
    for r in m.row_levels:
        for c in m.column_levels:
            entries = sorted(grouped.get((r, c), []), key=lambda e: (e.status != "done", e.gen_id))
            # A copy per cell: an entry shown in several cells (a judge axis) scores apart.
            cell = Cell([replace(e) for e in entries[:per_cell]], more=max(0, len(entries) - per_cell))
            if not entries:
                cell.reason = f"none planned: no {found.stage} with {rows} {r} and {columns} {c}"
            cells[(r, c)] = cell
    return cells


def _fill_texts(conn: sqlite3.Connection, entries: list[Entry]) -> None:
    ids = sorted({e.gen_id for e in entries})
    if not ids:
        return
    rows = fetch_dicts(
        conn,
        "SELECT g.gen_id, p.text AS parsed, CASE WHEN g.parsed_hash IS NULL"
        " THEN (SELECT text FROM texts WHERE hash = g.raw_hash) END AS raw"
        " FROM generations g LEFT JOIN texts p ON p.hash = g.parsed_hash"
        f" WHERE g.gen_id IN ({', '.join('?' for _ in ids)})",
        ids,
    )
    texts = {r["gen_id"]: r for r in rows}
    for entry in entries:
        found = texts.get(entry.gen_id, {})
        entry.text = found.get("parsed") if found.get("parsed") is not None else found.get("raw")
        entry.text_kind = "parsed" if found.get("parsed") is not None else "raw"


def _fill_scores(conn: sqlite3.Connection, cohort_id: str, m: Matrix) -> None:
    """Each shown essay's score over the cohort's evaluations of it that count in its
    cell (by the parent index, then the membership key), with why the others have none."""
    cells, rows, columns, pins = m.cells, m.rows, m.columns, m.pins
    ids = sorted({e.gen_id for cell in cells.values() for e in cell.entries})
    judged: dict[str, list[tuple]] = {}
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        for row in conn.execute(
            # CROSS JOIN: from the essays' evaluations (the parent index) to their
            # membership, never the other way (the whole cohort).
            "SELECT v.parent_gen_id, v.template_id, v.model_id, v.status, v.state, v.score,"
            " v.error FROM generations v"
            " CROSS JOIN cohort_members m ON m.cohort_id = ? AND m.gen_id = v.gen_id"
            f" WHERE v.stage = 'evaluation' AND v.parent_gen_id IN ({', '.join('?' for _ in part)})",
            [cohort_id, *part],
        ):
            judged.setdefault(row[0], []).append(tuple(row[1:]))
    for (r, c), cell in cells.items():
        fixed = {**pins, **({rows: r} if rows in JUDGE_AXES else {})}
        fixed.update({columns: c} if columns in JUDGE_AXES else {})
        for entry in cell.entries:
            counted = [
                v
                for v in judged.get(entry.gen_id, [])
                if all(v[JUDGE_AXES[a]] == value for a, value in fixed.items() if a in JUDGE_AXES)
            ]
            _score(entry, counted)
        cell.n = sum(e.n for e in cell.entries)
        if cell.n:
            total = sum(e.mean * e.n for e in cell.entries if e.mean is not None)
            cell.mean = round(total / cell.n, 3)


def _score(entry: Entry, evaluations: list[tuple]) -> None:
    """(template, model, status, state, score, error) of the evaluations that count."""
    scores = [v[4] for v in evaluations if v[3] == "ok" and v[4] is not None]
    entry.evaluations = len(evaluations)
    entry.n = len(scores)
    entry.mean = round(sum(scores) / len(scores), 3) if scores else None
    for v in evaluations:
        if not (v[3] == "ok" and v[4] is not None):
            entry.unscored.append(_unfinished(v[2], v[3], v[5]))


def _unfinished(status: str, state: str | None, error: str | None) -> str:
    first = (error or "").splitlines()[0] if error else ""
    if status == "failed":
        return f"failed ({state}): {first}" if first else f"failed ({state})"
    if status == "blocked":
        return f"blocked: {first}" if first else "blocked: an ancestor failed"
    if status == "cancelled":
        return "cancelled"
    return f"not finished yet ({status})"


def _summary(reasons: list[str]) -> str:
    """``2 x failed (parse_failed): ...; 1 x not finished yet (ready)``."""
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    return "; ".join(f"{n} x {reason}" if n > 1 else reason for reason, n in counts.items())


def _typed(value: Any, levels: list[Any]) -> Any:
    if levels and isinstance(levels[0], int) and str(value).lstrip("-").isdigit():
        return int(value)
    return value
