"""Human labels: a sheet for raters, and their ratings recorded as events.

``export_sheet`` writes one row per essay of a cohort with the columns the import reads,
``essay_gen_id,evaluation_template,rater,score,note``, then ``scale`` and ``essay_text``:
raters fill ``rater`` (or it is filled with ``--rater``) and ``score``. The sheet is blind
(no template, model or judge score) and in a shuffled order fixed by ``seed``, so the
order the essays were generated in cannot bias the raters.

``import_ratings`` reads such a CSV (extra columns are ignored) and records every filled
row as ``rating.recorded``, in one transaction: a row with a blank score is skipped, a
rating identical to the one already recorded is skipped, and any bad row (unknown essay
or rubric, a score outside the rubric's scale, no rater) refuses the whole file with the
line and the fix, writing nothing.
"""

from __future__ import annotations

import csv
import math
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daydream import events as ev
from daydream.db.log import append
from daydream.db.transaction import transaction
from daydream.errors import ConfigError, OptionError
from daydream.queue.cohorts import require_cohort
from daydream.results.rows import essay_rows

SHEET_COLUMNS = ("essay_gen_id", "evaluation_template", "rater", "score", "note", "scale", "essay_text")


REQUIRED = ("essay_gen_id", "evaluation_template", "rater", "score")


@dataclass
class RatingsImport:
    """What ``import_ratings`` recorded and skipped."""

    source: str
    recorded: int = 0
    unchanged: int = 0
    blank: int = 0
    events: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def export_sheet(
    conn: sqlite3.Connection,
    cohort_id: str,
    template: str,
    path: Path,
    *,
    rater: str = "",
    overwrite: bool = False,
    seed: int = 0,
) -> int:
    """Write the rating sheet of ``cohort_id`` on rubric ``template``; the number of essays."""
    require_cohort(conn, cohort_id)
    low, high = _scale(conn, template)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} exists (it may hold ratings): pass --overwrite to replace it")
    essays = [e for e in essay_rows(conn, cohort_id) if e["essay_state"] == "ok"]
    texts = dict(
        conn.execute(
            "SELECT g.gen_id, x.text FROM cohort_members m JOIN generations g ON g.gen_id = m.gen_id"
            " JOIN texts x ON x.hash = g.parsed_hash WHERE m.cohort_id = ? AND g.stage = 'essay'",
            (cohort_id,),
        ).fetchall()
    )
    order = sorted(e["essay_gen_id"] for e in essays if e["essay_gen_id"] in texts)
    random.Random(seed).shuffle(order)
    scale = f"{low:g}-{high:g}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SHEET_COLUMNS)
        for essay in order:
            writer.writerow([essay, template, rater, "", "", scale, texts[essay]])
    return len(order)


def import_ratings(conn: sqlite3.Connection, path: Path, *, actor: str = "cli:label") -> RatingsImport:
    """Record the ratings of the CSV at ``path`` (see the module docstring)."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
            header = rows[0].keys() if rows else []
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (give the CSV the raters filled)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text (save the sheet as UTF-8 CSV)") from None
    missing = [c for c in REQUIRED if c not in header] if rows else []
    if missing:
        raise ConfigError(
            f"{path}: column {missing[0]} is missing (the sheet needs"
            f" {', '.join(REQUIRED)}[, note]; export one with daydream label export)"
        )
    report = RatingsImport(str(path))
    with transaction(conn):
        events, problems = _ratings(conn, path, rows, report)
        if problems:
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise ConfigError(problems[0] + more)
        report.recorded = len(events)
        report.events = len(append(conn, events, actor=actor)) if events else 0
    return report


def _ratings(
    conn: sqlite3.Connection, path: Path, rows: list[dict[str, Any]], report: RatingsImport
) -> tuple[list[ev.RatingRecorded], list[str]]:
    essays = {r[0] for r in conn.execute("SELECT gen_id FROM generations WHERE stage = 'essay'")}
    rubrics = {
        r[0]: (r[1], r[2], r[3])
        for r in conn.execute(
            "SELECT template_id, version, scale_min, scale_max FROM templates WHERE stage = 'evaluation'"
        )
    }
    current = {
        (r[0], r[1], r[2]): (r[3], r[4])
        for r in conn.execute("SELECT essay_gen_id, evaluation_template, rater, score, note FROM human_ratings")
    }
    events, problems = [], []
    for line, row in enumerate(rows, 2):
        cells = {k: (row.get(k) or "").strip() for k in (*REQUIRED, "note")}
        if not cells["score"]:
            report.blank += 1
            continue
        where = f"{path} line {line}"
        problem = _check(cells, essays, rubrics, where)
        if problem:
            problems.append(problem)
            continue
        score = float(cells["score"])
        note = cells["note"] or None
        key = (cells["essay_gen_id"], cells["evaluation_template"], cells["rater"])
        if current.get(key) == (score, note):
            report.unchanged += 1
            continue
        current[key] = (score, note)
        events.append(
            ev.RatingRecorded(
                essay_gen_id=key[0],
                evaluation_template=key[1],
                template_version=rubrics[key[1]][0],
                rater=key[2],
                score=score,
                note=note,
                source=path.name,
            )
        )
    return events, problems


def _check(
    cells: dict[str, str], essays: set[str], rubrics: dict[str, tuple], where: str
) -> str | None:
    if cells["essay_gen_id"] not in essays:
        return f'{where}: essay_gen_id "{cells["essay_gen_id"]}" is not an essay of this database (keep the ids of the exported sheet)'
    rubric = rubrics.get(cells["evaluation_template"])
    if rubric is None:
        known = ", ".join(sorted(rubrics)) or "none"
        return f'{where}: evaluation_template "{cells["evaluation_template"]}" is not an evaluation template (known: {known})'
    if not cells["rater"]:
        return f"{where}: rater is empty (write who rated, e.g. initials)"
    try:
        score = float(cells["score"])
    except ValueError:
        score = math.nan
    low, high = rubric[1], rubric[2]
    if not math.isfinite(score):
        return f'{where}: score "{cells["score"]}" is not a number (write a number on the scale {low:g}-{high:g})'
    if low is not None and high is not None and not low <= score <= high:
        return f'{where}: score "{cells["score"]}" is outside {cells["evaluation_template"]}\'s scale {low:g}-{high:g} (fix the score)'
    return None


def _scale(conn: sqlite3.Connection, template: str) -> tuple[float, float]:
    row = conn.execute(
        "SELECT scale_min, scale_max FROM templates WHERE stage = 'evaluation' AND template_id = ?",
        (template,),
    ).fetchone()
    if row is None or row[1] is None:
        known = [r[0] for r in conn.execute(
            "SELECT template_id FROM templates WHERE stage = 'evaluation' AND scale_max IS NOT NULL"
            " ORDER BY 1"
        )]
        raise OptionError(
            f'evaluation template "{template}" is not a rubric with a scale'
            f" (rubrics: {', '.join(known) or 'none'})",
            option="--template",
        )
    return row[0], row[1]


def ratings_of(conn: sqlite3.Connection, cohort_id: str) -> list[dict[str, Any]]:
    """The human ratings of the cohort's essays (latest per essay, rubric and rater): its
    member essays and the essays of its evaluations. Read from the ratings (few), each
    checked against the cohort, not from a list of the cohort's essays (800,000 lookups
    at 1,000,000 generations, for a table that is often empty)."""
    rows = conn.execute(
        "SELECT r.essay_gen_id, r.evaluation_template, r.rater, r.score FROM human_ratings r"
        " WHERE EXISTS (SELECT 1 FROM cohort_members m"
        "   WHERE m.cohort_id = :cohort AND m.gen_id = r.essay_gen_id AND m.stage = 'essay')"
        " OR EXISTS (SELECT 1 FROM generations v JOIN cohort_members m ON m.gen_id = v.gen_id"
        "   WHERE v.parent_gen_id = r.essay_gen_id AND m.cohort_id = :cohort"
        "   AND m.stage = 'evaluation')"
        " ORDER BY 1, 2, 3",
        {"cohort": cohort_id},
    )
    columns = ("essay_gen_id", "evaluation_template", "rater", "score")
    return [dict(zip(columns, r, strict=True)) for r in rows]
