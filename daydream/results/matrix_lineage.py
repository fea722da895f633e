"""The rows a comparison matrix is laid out from: a cohort's essays (or drafts) with each
lineage axis's level, read once per plan of the cohort and kept for the few cohorts last
looked at, with each axis's levels and an index of the rows at each level (``matrix``).
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

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


def level_order(value: Any) -> tuple:
    """The order of an axis's levels: numbers, then text, then none."""
    if value == NONE or value is None:
        return (2, 0, "")
    if isinstance(value, int | float):
        return (0, value, "")
    return (1, 0, str(value))


class Lineage:
    """A cohort's rows of one stage with what every page asks of them again: each axis's
    levels, per axis the positions of the rows at each level, and the rows and levels
    left by the last few sets of pinned levels (made on first use and kept with the rows:
    a page of a million-generation cohort then reads the rows it shows, not every row)."""

    def __init__(self, rows: list[tuple], axes: list[str]) -> None:
        self.rows = rows
        self.axes = axes
        self._levels: dict[str, list[Any]] | None = None
        self._at: dict[str, dict[Any, list[int]]] = {}
        self._pinned: dict[tuple, Pinned] = {}

    def levels(self) -> dict[str, list[Any]]:
        if self._levels is None:
            self._levels = {
                axis: sorted({row[1 + i] for row in self.rows}, key=level_order)
                for i, axis in enumerate(self.axes)
                if self.rows
            }
        return self._levels

    def at(self, axis: str, value: Any) -> list[int]:
        if axis not in self._at:
            index = 1 + self.axes.index(axis)
            found: dict[Any, list[int]] = {}
            for position, row in enumerate(self.rows):
                found.setdefault(row[index], []).append(position)
            self._at[axis] = found
        return self._at[axis].get(value, [])

    def pinned(self, fixed: list[tuple[str, Any]]) -> Pinned:
        """The rows at every pinned (axis, level) of ``fixed`` (found by the index of each
        axis), kept for the last ``PINS_KEPT`` sets of pins."""
        key = tuple(sorted(fixed, key=repr))
        found = self._pinned.get(key)
        if found is None:
            at = sorted((self.at(axis, value) for axis, value in fixed), key=len)
            found = Pinned(self, sorted(set(at[0]).intersection(*at[1:])))
            while len(self._pinned) >= PINS_KEPT:
                self._pinned.pop(next(iter(self._pinned)), None)
            self._pinned[key] = found
        return found


PINS_KEPT = 16


class Pinned:
    """The positions (in row order) of a lineage's rows left by a set of pins, with each
    axis's levels among them (made on first use)."""

    def __init__(self, lineage: Lineage, positions: list[int]) -> None:
        self.lineage = lineage
        self.positions = positions
        self.kept = frozenset(positions)
        self._levels: dict[str, list[Any]] = {}

    def levels(self, axis: str) -> list[Any]:
        if axis not in self._levels:
            index = 1 + self.lineage.axes.index(axis)
            rows = self.lineage.rows
            self._levels[axis] = sorted({rows[p][index] for p in self.positions}, key=level_order)
        return self._levels[axis]


# The lineage of a cohort's essays never changes once planned: it is read once per plan of
# the cohort (the key holds the file, the cohort, when it was planned and its counts) and
# kept for the few cohorts last looked at. Statuses are read for each page.
_LINEAGE_CACHE: dict[tuple, Lineage] = {}
_LINEAGE_CACHED = 4
_CACHE_LOCK = threading.Lock()  # Datasette reads on several threads


def lineage(conn: sqlite3.Connection, cohort_id: str, stage: str, axes: list[str]) -> Lineage:
    """(gen id, axis levels...) of the cohort's members of ``stage``, by the
    ``cohort_members`` key."""
    path = next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "")
    plan = conn.execute(
        "SELECT planned_at, replanned_at, drafts, essays, evaluations FROM cohorts"
        " WHERE cohort_id = ?",
        (cohort_id,),
    ).fetchone()
    key = (path, cohort_id, stage, *plan) if path else None
    with _CACHE_LOCK:
        cached = _LINEAGE_CACHE.get(key) if key is not None else None
    if cached is not None:
        return cached
    sql = ESSAY_AXIS_SQL if stage == "essay" else DRAFT_AXIS_SQL
    draft = " LEFT JOIN generations d ON d.gen_id = s.parent_gen_id" if stage == "essay" else ""
    rows = [
        tuple(NONE if value is None else value for value in row)
        for row in conn.execute(
            f"SELECT s.gen_id, {', '.join(sql.values())}"
            " FROM cohort_members m CROSS JOIN generations s ON s.gen_id = m.gen_id"
            f"{draft} WHERE m.cohort_id = ? AND m.stage = ?",
            (cohort_id, stage),
        )
    ]
    found = Lineage(rows, axes)
    if key is not None:
        with _CACHE_LOCK:
            while len(_LINEAGE_CACHE) >= _LINEAGE_CACHED:
                _LINEAGE_CACHE.pop(next(iter(_LINEAGE_CACHE)))
            _LINEAGE_CACHE[key] = found
    return found
