"""Browsing: Datasette over a daydream database, read-only, described for researchers.

The views (``views.py``) are plain SQL stored in the database, so ``datasette daydream.db``
and ``sqlite3`` see the same tables and views. This module adds what only Datasette can
use: titles, table and column descriptions, facets, sort orders, label columns, hidden
internal tables, canned queries (a cohort's wide score pivot, top essays, scores and
failures; a generation's lineage with its texts), texts rendered whole in ``<pre>``-like
blocks, and generation, combination and cohort ids in views rendered as links.

Invariants:

- The browser never writes. The database is opened as a mutable file, so every read
  connection is ``mode=ro`` and sees what workers commit (``immutable`` would let SQLite
  skip locking and read torn pages while workers write); no canned query is a write
  query; and every connection Datasette opens to it runs ``PRAGMA query_only``, so even
  Datasette's own write connection cannot change it.
- The hooks act only on Datasette instances made by ``make_datasette()``: a plain
  ``Datasette`` in the same process is untouched.
- The wide pivot's columns (one per judge: evaluation template x judge model) are read
  from the database when the metadata is built; ``daydream browse`` must be restarted to
  show judges planned later.
"""

from __future__ import annotations

import sqlite3
import sys
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import markupsafe
from datasette import hookimpl
from datasette.app import Datasette
from datasette.plugins import pm
from datasette.utils import tilde_encode

from daydream.db.files import readonly_uri
from daydream.descriptions import (
    COLUMN_OVERRIDES,
    COLUMNS,
    DATABASE_DESCRIPTION,
    DESCRIPTION,
    TABLES,
)
from daydream.errors import StoreError
from daydream.projections.views import VIEWS

__all__ = [
    "HIDDEN_TABLES",
    "SETTINGS",
    "TITLE",
    "canned_queries",
    "column_description",
    "database_name",
    "make_datasette",
    "metadata",
    "pivot_sql",
    "serve",
]

TITLE = "daydream"
HIDDEN_TABLES = ("schema_migrations", "projection_meta")
# Datasette settings for `daydream browse`. Facet suggestions run one query per column
# and make every view page scan its view several times, so only declared facets run;
# score views over a large cohort take longer than Datasette's default 1 s limit.
SETTINGS: dict[str, Any] = {
    "suggest_facets": False,
    "sql_time_limit_ms": 5000,
    "facet_time_limit_ms": 500,
    "allow_download": False,
}
MAX_PIVOT_JUDGES = 60
_PLUGIN_NAME = "daydream-browse"


def make_datasette(db_path: str | Path, *, settings: dict[str, Any] | None = None) -> Datasette:
    """A read-only Datasette for ``db_path`` with daydream's metadata and hooks."""
    path = Path(db_path).absolute()  # not resolved: a plain link to an awkward path works
    if not path.is_file():
        raise StoreError(f"database {db_path} does not exist (create it with: daydream db init)")
    if any(char in str(path) for char in "#?%"):
        # Datasette opens f"file:{path}?..." unescaped: SQLite would cut the name at '#' or
        # '?' (and create an empty file there) or decode '%xx', and show no tables.
        raise StoreError(
            f"database {db_path}: Datasette cannot open a path containing '#', '?' or '%';"
            f" link it from a plain path (ln -s '{path}' /tmp/daydream.db) and browse that"
        )
    _register_plugin()
    ds = Datasette(
        [str(path)],
        metadata=metadata(path),
        settings={**SETTINGS, **(settings or {})},
    )
    ds._daydream_database = database_name(path)
    return ds


def serve(
    db_path: str | Path,
    *,
    port: int = 8001,
    host: str = "127.0.0.1",
    open_browser: bool = False,
    log: Callable[[str], None] = print,
) -> None:
    """Serve ``db_path`` read-only on ``host:port`` until interrupted.

    The database is first opened once the way every daydream command opens it (so
    migrations and views are current); from then on nothing writes to it.
    """
    import uvicorn

    from daydream.db.connection import connect

    connect(db_path, create=False).close()
    ds = make_datasette(db_path)
    url = f"http://{host}:{port}/"
    log(f"serving {db_path} read-only at {url} (Ctrl-C stops)")
    if open_browser:
        webbrowser.open(url)
    uvicorn.run(ds.app(), host=host, port=port, log_level="warning", lifespan="on")


def database_name(db_path: str | Path) -> str:
    """The name Datasette gives the database: its file name without the suffix."""
    return Path(db_path).stem


def metadata(db_path: str | Path) -> dict[str, Any]:
    """Datasette metadata for the database at ``db_path`` (read with a read-only connection)."""
    conn = sqlite3.connect(readonly_uri(db_path), uri=True)
    try:
        columns = {
            name: [row[1] for row in conn.execute(f'PRAGMA table_info("{name}")')]
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        }
        judges = _judges(conn) if "generations" in columns else []
    finally:
        conn.close()
    tables: dict[str, dict[str, Any]] = {}
    for name, cols in columns.items():
        entry: dict[str, Any] = dict(TABLES.get(name, {}))
        described = {c: d for c in cols if (d := column_description(name, c))}
        if described:
            entry["columns"] = described
        if name in HIDDEN_TABLES:
            entry["hidden"] = True
        tables[name] = entry
    return {
        "title": TITLE,
        "description_html": _start_here(database_name(db_path), DESCRIPTION),
        "databases": {
            database_name(db_path): {
                "description_html": _start_here(database_name(db_path), DATABASE_DESCRIPTION),
                "tables": tables,
                "queries": canned_queries(judges),
            }
        },
    }


START_HERE = (
    ("cohort_progress", "progress of each cohort"),
    ("top_essays", "essays ranked per evaluation template"),
    ("essay_scores", "the score pivot (long form; wide: the cohort_pivot query)"),
    ("generation_texts", "generations with their texts"),
    ("lineage", "evaluation -> essay -> draft -> concepts"),
    ("failure_reasons", "failures grouped by reason"),
    ("model_usage", "tokens and cost per model"),
)


def _start_here(database: str, text: str) -> str:
    items = "".join(
        f'<li><a href="/{tilde_encode(database)}/{name}">{name}</a>: {markupsafe.escape(what)}</li>'
        for name, what in START_HERE
    )
    return f"<p>{markupsafe.escape(text)}</p><p>Start here:</p><ul>{items}</ul>"


def column_description(table: str, column: str) -> str | None:
    return COLUMN_OVERRIDES.get((table, column)) or COLUMNS.get(column)


def _judges(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT DISTINCT template_id, model_id FROM generations"
        " WHERE stage = 'evaluation' AND model_id IS NOT NULL ORDER BY 1, 2"
    ).fetchall()
    return [(t, m) for t, m in rows][:MAX_PIVOT_JUDGES]


# -- canned queries ------------------------------------------------------------------------

_ESSAY_CONTEXT = """
    (SELECT e.combo_id FROM generations e WHERE e.gen_id = {essay}) AS combo_id,
    (SELECT d.template_id FROM generations e JOIN generations d ON d.gen_id = e.parent_gen_id
        WHERE e.gen_id = {essay}) AS draft_template,
    (SELECT e.template_id FROM generations e WHERE e.gen_id = {essay}) AS essay_template,
    (SELECT coalesce(e.model_id, d.model_id) FROM generations e
        LEFT JOIN generations d ON d.gen_id = e.parent_gen_id
        WHERE e.gen_id = {essay}) AS generation_model"""


def pivot_sql(judges: list[tuple[str, str]]) -> str:
    """The wide score pivot of cohort ``:cohort``: one row per essay, one column per judge.

    A judge column holds the mean of that judge's scored evaluations of the essay (its
    evaluation replicates pooled), as in ``essay_scores.mean``; ``n`` and ``mean`` cover
    every judge. It reads the ``essay_judge_scores`` cells of the cohort in essay order. Datasette cannot bind column names, so the judges' ids are written into
    the SQL as quoted identifiers and string literals.
    """
    cells = "".join(
        f"\n    max(CASE WHEN j.evaluation_template = {_literal(template)}"
        f" AND j.evaluation_model = {_literal(model)} AND j.n > 0"
        f" THEN round(j.total / j.n, 3) END) AS {_identifier(f'{template} / {model}')},"
        for template, model in judges
    )
    return f"""SELECT
    j.essay_gen_id AS essay_gen_id,{_ESSAY_CONTEXT.format(essay="j.essay_gen_id")},{cells}
    sum(j.n) AS n,
    CASE WHEN sum(j.n) > 0 THEN round(sum(j.total) / sum(j.n), 3) END AS mean,
    sum(j.evaluations) AS evaluations
FROM essay_judge_scores j
WHERE j.cohort_id = :cohort
GROUP BY j.essay_gen_id"""


_CONCEPTS = """(SELECT group_concat(name, ' + ') FROM (
        SELECT k.name FROM combo_concepts cc JOIN concepts k ON k.concept_id = cc.concept_id
        WHERE cc.combo_id = g.combo_id ORDER BY cc.position))"""

GENERATION_SQL = f"""WITH RECURSIVE
    ancestors(gen_id, depth) AS (
        SELECT :gen_id, 0
        UNION ALL
        SELECT g.parent_gen_id, a.depth - 1
        FROM ancestors a JOIN generations g ON g.gen_id = a.gen_id
        WHERE g.parent_gen_id IS NOT NULL
    ),
    descendants(gen_id, depth) AS (
        SELECT gen_id, 1 FROM generations WHERE parent_gen_id = :gen_id
        UNION ALL
        SELECT g.gen_id, d.depth + 1
        FROM descendants d JOIN generations g ON g.parent_gen_id = d.gen_id
    ),
    chain(gen_id, depth) AS (
        SELECT gen_id, depth FROM ancestors UNION ALL SELECT gen_id, depth FROM descendants
    )
SELECT
    CASE WHEN c.depth < 0 THEN 'ancestor' WHEN c.depth = 0 THEN 'this' ELSE 'descendant' END
        AS relation,
    g.gen_id AS gen_id,
    g.stage AS stage,
    g.parent_gen_id AS parent_gen_id,
    g.template_id AS template_id,
    g.model_id AS model_id,
    g.replicate AS replicate,
    g.combo_id AS combo_id,
    {_CONCEPTS} AS concepts,
    g.status AS status,
    g.state AS state,
    g.score AS score,
    g.error AS error,
    (SELECT text FROM texts WHERE hash = g.parsed_hash) AS parsed_text,
    CASE WHEN g.raw_hash IS NOT g.parsed_hash
        THEN (SELECT text FROM texts WHERE hash = g.raw_hash) END AS raw_text,
    CASE WHEN c.depth = 0
        THEN (SELECT text FROM texts WHERE hash = g.prompt_hash) END AS prompt_text
FROM chain c
JOIN generations g ON g.gen_id = c.gen_id
ORDER BY c.depth, g.parent_gen_id, g.template_id, g.model_id, g.replicate, g.gen_id"""

COHORT_SCORES_SQL = """SELECT s.*
FROM cohort_members m
JOIN evaluation_scores s ON s.gen_id = m.gen_id
WHERE m.cohort_id = :cohort AND m.stage = 'evaluation'
ORDER BY s.essay_gen_id, s.evaluation_template, s.evaluation_model, s.evaluation_replicate"""

COHORT_FAILURES_SQL = """SELECT gen_id, stage, status, state, error, attempts, template_id,
    model_id, combo_id, parent_gen_id, raw_text, finished_at
FROM failures
WHERE cohort_id = :cohort
ORDER BY CASE stage WHEN 'draft' THEN 1 WHEN 'essay' THEN 2 ELSE 3 END, status, state, gen_id"""

COHORT_TOP_ESSAYS_SQL = """SELECT *
FROM top_essays
WHERE cohort_id = :cohort
    AND (:template = '' OR evaluation_template = :template)
    AND rank <= coalesce(nullif(CAST(:top AS INTEGER), 0), 100)"""


def canned_queries(judges: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """The canned queries; the wide pivot has one column per judge in ``judges``."""
    shown = ", ".join(f"{t} / {m}" for t, m in judges) or "none yet"
    return {
        "cohort_pivot": {
            "title": "Score pivot of a cohort (one row per essay)",
            "description": (
                "One row per essay of the cohort, one column per judge (evaluation"
                " template / judge model) holding the mean of that judge's scored"
                " evaluations (replicates pooled); n and mean over every judge;"
                " evaluations counts the planned ones, failed included. The long form with"
                f" min, max and n per judge is the essay_scores view. Judges: {shown}."
            ),
            "sql": pivot_sql(judges),
            "hide_sql": True,
        },
        "cohort_top_essays": {
            "title": "Top essays of a cohort",
            "description": (
                "Essays ranked per evaluation template as `daydream` curation ranks them:"
                " the best score per judge model, averaged over judge models; ties by"
                " essay id. template: one evaluation template (empty: every template);"
                " top: how many per template (empty: 100)."
            ),
            "sql": COHORT_TOP_ESSAYS_SQL,
            "hide_sql": True,
        },
        "generation": {
            "title": "A generation with its lineage and texts",
            "description": (
                "The generation (relation 'this', with its prompt), its ancestors (essay,"
                " draft) and its descendants (essays, evaluations), each with its parsed"
                " output, and the raw reply where it differs from the parsed text."
            ),
            "sql": GENERATION_SQL,
            "hide_sql": True,
        },
        "cohort_scores": {
            "title": "Every evaluation of a cohort",
            "description": (
                "The evaluation_scores rows of the cohort's evaluations: lineage, judge,"
                " score and outcome state, in essay order."
            ),
            "sql": COHORT_SCORES_SQL,
            "hide_sql": True,
        },
        "cohort_failures": {
            "title": "Failures of a cohort",
            "description": (
                "The cohort's failed, blocked and cancelled generations with their error"
                " and the raw reply when there was one. Grouped by reason: the"
                " failure_reasons view."
            ),
            "sql": COHORT_FAILURES_SQL,
            "hide_sql": True,
        },
    }


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _identifier(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


# -- the Datasette hooks ---------------------------------------------------------------------

_TEXT_STYLE = (
    "white-space: pre-wrap; max-height: 28em; overflow: auto; min-width: 24em;"
    " max-width: 60em; font-family: ui-monospace, monospace; font-size: 0.85em; margin: 0"
)


# Module-level hooks: Datasette lists plugins by module name. They act only on instances
# made by make_datasette() (marked with the database they serve).


@hookimpl(specname="prepare_connection")
def _prepare_connection(conn: sqlite3.Connection, database: str, datasette: Any) -> None:
    if database == getattr(datasette, "_daydream_database", None):
        conn.execute("PRAGMA query_only = 1")


@hookimpl(specname="render_cell")
def _render_cell(value: Any, column: str, table: str | None, database: str, datasette: Any) -> Any:
    if database != getattr(datasette, "_daydream_database", None) or value is None:
        return None
    if isinstance(value, str) and (column == "text" or column.endswith("_text")):
        return markupsafe.Markup(
            f'<div class="daydream-text" style="{_TEXT_STYLE}">{markupsafe.escape(value)}</div>'
        )
    if (table is not None and table not in VIEWS) or not isinstance(value, str):
        return None  # tables link their keys themselves
    # A page renders every cell through here: look each column's link up once.
    links = datasette.__dict__.setdefault("_daydream_links", {})
    if column not in links:
        links[column] = _link_base(datasette, database, column)
    if links[column] is None:
        return None
    href = links[column] + quote_plus(value)
    return markupsafe.Markup(f'<a href="{markupsafe.escape(href)}">{markupsafe.escape(value)}</a>')


# Datasette lists column descriptions above the rows; fold them so the rows come first.
_FOLD_DESCRIPTIONS = """
document.querySelectorAll("dl.column-descriptions").forEach(function (list) {
    var details = document.createElement("details");
    var summary = document.createElement("summary");
    summary.textContent = "Column descriptions";
    list.parentNode.insertBefore(details, list);
    details.appendChild(summary);
    details.appendChild(list);
});
"""


@hookimpl(specname="extra_body_script")
def _extra_body_script(database: str | None, datasette: Any) -> str | None:
    if database is None or database != getattr(datasette, "_daydream_database", None):
        return None
    return _FOLD_DESCRIPTIONS


def _link_base(datasette: Any, database: str, column: str) -> str | None:
    """The link of a view column's value, up to the value: generation ids open their lineage."""
    if column == "gen_id" or column.endswith("_gen_id"):
        return datasette.urls.query(database, "generation") + "?gen_id="
    if column == "combo_id":
        return datasette.urls.table(database, "combos_with_concepts") + "?combo_id="
    if column == "cohort_id":
        return datasette.urls.table(database, "cohort_progress") + "?cohort_id="
    return None


def _register_plugin() -> None:
    if pm.get_plugin(_PLUGIN_NAME) is None:
        pm.register(sys.modules[__name__], name=_PLUGIN_NAME)
