"""daydream's Datasette plugin: registered as an entry point (``[project.entry-points.
datasette]``), so a plain ``datasette daydream.db`` shows what ``daydream browse`` shows.

For every database that is a daydream database (it has the event log and projections:
``db.connection.is_daydream_database``) the hooks add: table, view and column descriptions and the
canned queries (``get_metadata``); texts rendered whole in readable blocks, generation ids
everywhere and combination and cohort ids in views rendered as links (``render_cell``);
folded column descriptions (``extra_body_script``); daydream's own pages
(``register_routes``: ``pages``); no row counts or facets on the pages of tables and
views that grow with the cohorts once the database is large (``asgi_wrapper``:
``uncounted``); and ``PRAGMA query_only`` on every connection, so
even Datasette's own write connection cannot change the database (``prepare_connection``).
Any other database, in the same Datasette or another, is left exactly as Datasette shows
it.

What a hook knows about a database is read once per Datasette instance and kept on it
(``_state``): Datasette calls these hooks for every cell and every metadata lookup.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from typing import Any
from urllib.parse import quote_plus

import markupsafe
from datasette import hookimpl
from datasette.plugins import pm

from daydream.browse import pages, uncounted
from daydream.browse.metadata import database_metadata
from daydream.browse.queries import PAGE_ROWS, PAGED
from daydream.db.connection import is_daydream_database
from daydream.db.projections.views import VIEWS

PLUGIN_NAME = "daydream"  # the entry point's name, so the plugin is registered once
_GEN_ID = re.compile(r"^[dev]_[0-9a-z]+$")  # an event subject that is a generation

_TEXT_STYLE = (
    "white-space: pre-wrap; max-height: 28em; overflow: auto; min-width: 24em;"
    " max-width: 60em; font-family: ui-monospace, monospace; font-size: 0.85em; margin: 0"
)

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


def ensure_registered() -> None:
    """Register the hooks when the entry point did not (daydream run from a checkout that
    was not installed); a no-op when it did."""
    module = sys.modules[__name__]
    if not pm.is_registered(module) and pm.get_plugin(PLUGIN_NAME) is None:
        pm.register(module, name=PLUGIN_NAME)


@hookimpl
def prepare_connection(conn: sqlite3.Connection, database: str, datasette: Any) -> None:
    if _daydream(datasette, database):
        conn.execute("PRAGMA query_only = 1")


@hookimpl
def get_metadata(datasette: Any, key: str, database: str | None, table: str | None) -> Any:
    # A fresh copy each time: Datasette adds keys to the metadata it is given.
    described = {
        name: json.loads(_state(datasette, name)["metadata"])
        for name in list(datasette.databases)
        if _daydream(datasette, name)
    }
    return {"databases": described} if described else None


@hookimpl
def render_cell(value: Any, column: str, table: str | None, database: str, datasette: Any) -> Any:
    if value is None or not _daydream(datasette, database):
        return None
    if isinstance(value, str) and (column == "text" or column.endswith("_text")):
        return markupsafe.Markup(
            f'<div class="daydream-text" style="{_TEXT_STYLE}">{markupsafe.escape(value)}</div>'
        )
    if isinstance(value, dict) and _is_gen_column(column):
        value = value.get("value")  # a table's foreign key to generations, expanded
    if not isinstance(value, str):
        return None
    if _is_gen_column(column) or (table == "events" and column == "subject" and _GEN_ID.match(value)):
        href = pages.generation_url(datasette, database, value)
    elif table is not None and table not in VIEWS:
        return None  # tables link their other keys themselves
    else:
        # A page renders every cell through here: look each column's link up once.
        links = _state(datasette, database)["links"]
        if column not in links:
            links[column] = _link_base(datasette, database, column)
        if links[column] is None:
            return None
        href = links[column] + quote_plus(value)
    return markupsafe.Markup(f'<a href="{markupsafe.escape(href)}">{markupsafe.escape(value)}</a>')


@hookimpl
def register_routes(datasette: Any) -> Any:
    return pages.Pages(_daydream).routes()


@hookimpl
def asgi_wrapper(datasette: Any) -> Any:
    def wrap(app: Any) -> Any:
        async def served(scope: dict, receive: Any, send: Any) -> None:
            scope = await uncounted.uncounted_scope(datasette, scope, _daydream)
            await app(scope, receive, send)

        return served

    return wrap


@hookimpl
def extra_template_vars(database: str | None, datasette: Any) -> dict[str, Any]:
    """For templates/query.html: which canned queries show a page of rows, and how many."""
    if database is None or not _daydream(datasette, database):
        return {}
    return {"daydream_paged": {"queries": PAGED, "rows": PAGE_ROWS}}


@hookimpl
def extra_body_script(database: str | None, request: Any, datasette: Any) -> str | None:
    if database is None or not _daydream(datasette, database):
        return None
    return _FOLD_DESCRIPTIONS + (uncounted.notice(request) or "")


def _daydream(datasette: Any, database: str) -> bool:
    return _state(datasette, database)["daydream"]


def _state(datasette: Any, database: str) -> dict[str, Any]:
    """What the hooks know of ``database`` in this Datasette: whether it is daydream's,
    its metadata (when it is) and the links of its view columns; read on first use."""
    known = datasette.__dict__.setdefault("_daydream_state", {})
    if database not in known:
        db = datasette.databases.get(database)
        path = None if db is None or getattr(db, "is_memory", False) else db.path
        daydream = path is not None and is_daydream_database(path)
        known[database] = {
            "daydream": daydream,
            "metadata": json.dumps(database_metadata(path, database) if path and daydream else {}),
            "links": {},
        }
    return known[database]


def _is_gen_column(column: str) -> bool:
    return column == "gen_id" or column.endswith("_gen_id")


def _link_base(datasette: Any, database: str, column: str) -> str | None:
    """The link of a view column's value, up to the value (generation ids: ``pages``)."""
    if column == "combo_id":
        return datasette.urls.table(database, "combos_with_concepts") + "?combo_id="
    if column == "cohort_id":
        return datasette.urls.table(database, "cohort_progress") + "?cohort_id="
    return None
