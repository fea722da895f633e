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
levels, then lookups by key for the texts and score cells of the rows shown; rows are
paged by keyset (``after`` the last row level shown).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field, replace
from typing import Any

from daydream.errors import ConfigError, NotFoundError, did_you_mean
from daydream.queue.cohorts import require_cohort
from daydream.results.rows import fetch_dicts

COPY = "(copy)"  # the essay model of a copy-mode essay
NONE = "(none)"  # a level that does not apply (an essay written without a draft)

# Each lineage axis as a column of the pass over the cohort's essays (s: the essay, d: its
# draft), or over its drafts (s: the draft).
ESSAY_AXIS_SQL = {
    "combo_id": "coalesce(d.combo_id, s.combo_id)",
    "draft_template": "d.template_id",
    "draft_llm": "d.model_id",
    "draft_replicate": "d.replicate",
    "essay_template": "s.template_id",
    "essay_llm": f"coalesce(s.model_id, '{COPY}')",
    "essay_replicate": "s.replicate",
}
DRAFT_AXIS_SQL = {
    "combo_id": "s.combo_id",
    "draft_template": "s.template_id",
    "draft_llm": "s.model_id",
    "draft_replicate": "s.replicate",
}
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
    entries = _entries(conn, cohort_id, stage)
    judges = _judges(conn, cohort_id) if stage == "essay" else []
    levels = _levels(entries, judges)
    if columns is None:
        columns = next(
            (a for a in COLUMN_CHOICE if a != rows and len(levels.get(a, [])) > 1),
            next(a for a in COLUMN_CHOICE if a != rows and a in levels),
        )
    notes: list[str] = []
    pins = _checked_pins(pins, levels)
    if stage == "essay":
        _choose_scale(conn, judges, rows, columns, pins, notes)
    entries = [e for e in entries if all(e.levels[a] == v for a, v in pins.items() if a in e.levels)]
    row_levels = _page(levels.get(rows) or _all_levels(rows, entries, judges), after, size + 1)
    more = len(row_levels) > size
    row_levels = row_levels[:size]
    column_levels = (levels.get(columns) or _all_levels(columns, entries, judges))[:MAX_COLUMNS]
    if len(levels.get(columns, [])) > MAX_COLUMNS:
        notes.append(f"only the first {MAX_COLUMNS} levels of {columns} are shown; pin it or swap the axes")
    cells = _cells(entries, rows, columns, row_levels, column_levels, per_cell)
    shown = [e for cell in cells.values() for e in cell.entries]
    _fill_texts(conn, shown)
    if stage == "essay":
        _fill_scores(conn, cohort_id, cells, rows, columns, pins)
    return Matrix(
        cohort_id,
        stage,
        rows,
        columns,
        row_levels,
        column_levels,
        cells,
        {a: v for a, v in levels.items() if len(v) > 1},
        pins,
        next_after=row_levels[-1] if more and row_levels else None,
        notes=notes,
    )


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


def _entries(conn: sqlite3.Connection, cohort_id: str, stage: str) -> list[Entry]:
    axes = ESSAY_AXIS_SQL if stage == "essay" else DRAFT_AXIS_SQL
    columns = ", ".join(f"{expr} AS {name}" for name, expr in axes.items())
    draft = " LEFT JOIN generations d ON d.gen_id = s.parent_gen_id" if stage == "essay" else ""
    rows = conn.execute(
        f"SELECT s.gen_id, s.status, s.state, s.error, {columns}"
        " FROM cohort_members m JOIN generations s ON s.gen_id = m.gen_id"
        f"{draft} WHERE m.cohort_id = ? AND m.stage = ?",
        (cohort_id, stage),
    ).fetchall()
    return [
        Entry(
            row[0],
            stage,
            row[1],
            row[2],
            row[3],
            {name: NONE if value is None else value for name, value in zip(axes, row[4:], strict=True)},
        )
        for row in rows
    ]


def _judges(conn: sqlite3.Connection, cohort_id: str) -> list[tuple[str, str, int]]:
    """The cohort's judges: (evaluation template, model, scored evaluations)."""
    rows = conn.execute(
        "SELECT evaluation_template, evaluation_model, sum(n) FROM essay_judge_scores"
        " WHERE cohort_id = ? GROUP BY 1, 2 ORDER BY 1, 2",
        (cohort_id,),
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def _levels(entries: list[Entry], judges: list[tuple[str, str, int]]) -> dict[str, list[Any]]:
    found: dict[str, set[Any]] = {}
    for entry in entries:
        for axis, value in entry.levels.items():
            found.setdefault(axis, set()).add(value)
    for axis, position in JUDGE_AXES.items():
        if judges:
            found[axis] = {judge[position] for judge in judges}
    return {axis: sorted(values, key=_order) for axis, values in found.items()}


def _all_levels(axis: str, entries: list[Entry], judges: list[tuple[str, str, int]]) -> list[Any]:
    return _levels(entries, judges).get(axis, [])


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
        start = sum(1 for level in levels if _order(level) <= _order(_typed(after, levels)))
    return levels[start : start + count]


def _cells(entries, rows, columns, row_levels, column_levels, per_cell) -> dict:
    wanted_rows = set(row_levels)
    grouped: dict[tuple[Any, Any], list[Entry]] = {}
    judge_rows, judge_columns = rows in JUDGE_AXES, columns in JUDGE_AXES
    for entry in entries:
        row_value = None if judge_rows else entry.levels.get(rows)
        if not judge_rows and row_value not in wanted_rows:
            continue
        for r in row_levels if judge_rows else [row_value]:
            for c in column_levels if judge_columns else [entry.levels.get(columns)]:
                grouped.setdefault((r, c), []).append(entry)
    cells = {}
    for r in row_levels:
        for c in column_levels:
            found = sorted(grouped.get((r, c), []), key=lambda e: (e.status != "done", e.gen_id))
            # A copy per cell: an entry shown in several cells (a judge axis) scores apart.
            cell = Cell([replace(e) for e in found[:per_cell]], more=max(0, len(found) - per_cell))
            if not found:
                cell.reason = f"none planned: no {_noun(entries)} with {rows} {r} and {columns} {c}"
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


def _fill_scores(conn, cohort_id, cells, rows, columns, pins) -> None:
    """Each shown essay's score over the cohort's evaluations of it that count in its
    cell (by the parent index, then the membership key), with why the others have none."""
    ids = sorted({e.gen_id for cell in cells.values() for e in cell.entries})
    judged: dict[str, list[tuple]] = {}
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        for row in conn.execute(
            "SELECT v.parent_gen_id, v.template_id, v.model_id, v.status, v.state, v.score,"
            " v.error FROM generations v"
            " JOIN cohort_members m ON m.cohort_id = ? AND m.gen_id = v.gen_id"
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


def _noun(entries: list[Entry]) -> str:
    return entries[0].stage if entries else "essay"


def _order(value: Any) -> tuple:
    if value == NONE or value is None:
        return (2, 0, "")
    if isinstance(value, int | float):
        return (0, value, "")
    return (1, 0, str(value))


def _typed(value: Any, levels: list[Any]) -> Any:
    if levels and isinstance(levels[0], int) and str(value).lstrip("-").isdigit():
        return int(value)
    return value
