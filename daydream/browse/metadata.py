"""What Datasette shows about a daydream database: its description with where to start,
table, view and column descriptions, hidden internal tables, and the canned queries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import markupsafe
import sqlite_utils
from datasette.utils import tilde_encode

from daydream.browse.descriptions import (
    COLUMN_OVERRIDES,
    COLUMNS,
    DATABASE_DESCRIPTION,
    DESCRIPTION,
    TABLES,
)
from daydream.browse.queries import canned_queries
from daydream.db.connection import connect

TITLE = "daydream"
HIDDEN_TABLES = (
    "schema_migrations",
    "projection_meta",
    "search_texts",
    *(f"search_texts_fts_{part}" for part in ("data", "idx", "docsize", "config")),
)
START_HERE = (
    ("cohort_progress", "progress of each cohort"),
    ("top_essays", "essays ranked per evaluation template"),
    ("-/pivot", "the score pivot of a cohort: an essay a row, a judge a column"),
    ("-/compare", "a cohort's essays side by side: the comparison matrix"),
    ("essay_scores", "the score pivot in long form"),
    ("generation_search", "search every prompt, reply and parsed text"),
    ("generation_texts", "generations with their texts"),
    ("lineage", "evaluation -> essay -> draft -> concepts"),
    ("failure_reasons", "failures grouped by reason"),
    ("model_usage", "tokens and cost per model"),
)


def database_metadata(db_path: str | Path, name: str) -> dict[str, Any]:
    """The metadata of the daydream database at ``db_path``, served by Datasette as
    ``name`` (read with a read-only connection)."""
    conn = connect(db_path, readonly=True, migrate=False)
    try:
        db = sqlite_utils.Database(conn)
        columns = {
            name: [column.name for column in db[name].columns]
            for name in sorted([*db.table_names(), *db.view_names()])
        }
    finally:
        conn.close()
    tables: dict[str, dict[str, Any]] = {}
    for table, cols in columns.items():
        entry: dict[str, Any] = dict(TABLES.get(table, {}))
        described = {c: d for c in cols if (d := column_description(table, c))}
        if described:
            entry["columns"] = described
        if table in HIDDEN_TABLES:
            entry["hidden"] = True
        tables[table] = entry
    return {
        "description_html": _start_here(name, DATABASE_DESCRIPTION),
        "tables": tables,
        "queries": canned_queries(),
    }


def instance_metadata(name: str, *, count_up_to: int | None = None) -> dict[str, Any]:
    """What ``daydream browse`` adds for the whole instance: its title, where to start, and
    the plugin's ``count_rows_up_to`` when given (``uncounted``)."""
    metadata: dict[str, Any] = {"title": TITLE, "description_html": _start_here(name, DESCRIPTION)}
    if count_up_to is not None:
        metadata["plugins"] = {"daydream": {"count_rows_up_to": count_up_to}}
    return metadata


def column_description(table: str, column: str) -> str | None:
    return COLUMN_OVERRIDES.get((table, column)) or COLUMNS.get(column)


def _start_here(database: str, text: str) -> str:
    items = "".join(
        f'<li><a href="/{tilde_encode(database)}/{name}">{name}</a>: {markupsafe.escape(what)}</li>'
        for name, what in START_HERE
    )
    return f"<p>{markupsafe.escape(text)}</p><p>Start here:</p><ul>{items}</ul>"
