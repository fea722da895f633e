"""daydream's own pages in Datasette (routes of the plugin, ``hooks.register_routes``):
server-rendered HTML with Datasette's look, no JavaScript needed.

- ``/<database>/-/generation/<gen_id>``: one generation's transcript (lineage, texts,
  call, an essay's judges side by side);
- ``/<database>/-/compare?cohort=C&rows=AXIS&columns=AXIS``: the comparison matrix;
- ``/<database>/-/pivot?cohort=C``: a cohort's score pivot with only its own judges;
- ``/-/daydream/<page>``: the same page of the (first) daydream database served, so a
  bookmark works whatever the database file is called.

Invariants: every page acts only on daydream databases (any other database gets
Datasette's 404), checks Datasette's view permissions like its own pages, and reads
through Datasette's read-only connections.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from datasette.utils import tilde_decode, tilde_encode
from datasette.utils.asgi import NotFound, Response
from jinja2 import ChoiceLoader, FileSystemLoader
from markupsafe import Markup

from daydream.errors import DaydreamError, NotFoundError
from daydream.results.matrix import AXES, comparison_matrix
from daydream.results.paged_pivot import score_pivot
from daydream.results.rows import ESSAY_AXES, csv_text
from daydream.results.transcript import read_transcript

TEMPLATES = Path(__file__).parent / "templates"
LONG_PROMPT = 1500  # characters: a longer prompt starts folded
CLIP = 400  # characters of a text shown in a matrix cell before "all N characters"

T = TypeVar("T")


class Pages:
    """The plugin's pages; ``is_daydream(datasette, database)`` says which databases they
    serve (``hooks`` passes its own test, read once per database)."""

    def __init__(self, is_daydream: Callable[[Any, str], bool]) -> None:
        self.is_daydream = is_daydream

    def routes(self) -> list[tuple[str, Any]]:
        return [
            (r"^/(?P<database>[^/]+)/-/generation/(?P<gen_id>[^/]+)$", self.generation),
            (r"^/(?P<database>[^/]+)/-/compare$", self.compare),
            (r"^/(?P<database>[^/]+)/-/pivot(\.(?P<format>json|csv))?$", self.pivot),
            # The canned query the pivot page replaced: its bookmarks lead there.
            (
                r"^/(?P<database>[^\/\.]+)/(?P<table>cohort_pivot)(\.(?P<format>\w+))?$",
                self.old_pivot,
            ),
            # Datasette's own row route, for the generations table only.
            (
                r"^/(?P<database>[^\/\.]+)/(?P<table>generations)/(?P<pks>[^/]+?)(\.(?P<format>\w+))?$",
                self.generation_row,
            ),
            (r"^/-/daydream/(?P<rest>.*)$", self.moved),
        ]

    async def generation(self, datasette: Any, request: Any) -> Response:
        name, db = await self._database(datasette, request)
        gen_id = request.url_vars["gen_id"]
        try:
            transcript = await _read(db, lambda conn: read_transcript(conn, gen_id))
        except NotFoundError as exc:
            return await _error(datasette, request, name, str(exc), 404)
        context = {
            "t": transcript,
            "title": f"{transcript.stage} {transcript.gen_id}",
            "long_prompt": LONG_PROMPT,
        }
        return await _render(datasette, request, name, "daydream_generation.html", context)

    async def compare(self, datasette: Any, request: Any) -> Response:
        name, db = await self._database(datasette, request)
        args = request.args
        size = _int(args.get("size"), 50, 1, 500)
        rows, columns = args.get("rows") or "combo_id", args.get("columns") or None
        pins = {a: args.get(a) for a in AXES if args.get(a) and a not in (rows, columns)}
        try:
            cohort = args.get("cohort") or await _read(db, _only_cohort)
            m = await _read(
                db,
                lambda conn: comparison_matrix(
                    conn, cohort, rows, columns, pins=pins, after=args.get("after"), size=size
                ),
            )
        except DaydreamError as exc:
            return await _error(datasette, request, name, str(exc), 400)
        query = {"cohort": m.cohort_id, "rows": m.rows, "columns": m.columns, **m.pins}
        context = {
            "m": m,
            "title": f"Compare {m.cohort_id}: {m.rows} x {m.columns}",
            "axis_choices": [a for a in AXES if a in m.levels or a in (m.rows, m.columns, "combo_id")],
            "table": _render_part(datasette, name, "_daydream_matrix.html", {"m": m, "clip": CLIP}),
            "size": size,
            "next_url": "?" + urlencode({**query, "size": size, "after": m.next_after}),
        }
        return await _render(datasette, request, name, "daydream_compare.html", context)

    async def pivot(self, datasette: Any, request: Any) -> Response:
        name, db = await self._database(datasette, request)
        fmt = request.url_vars.get("format")
        # The page shows 100 essays at a time; JSON and CSV hold every one unless asked.
        size = (
            _int(request.args.get("size"), 0, 0, 10**9) or None
            if fmt
            else _int(request.args.get("size"), 100, 1, 1000)
        )
        after = request.args.get("after")
        try:
            cohort = request.args.get("cohort") or await _read(db, _only_cohort)
            found = await _read(db, lambda conn: score_pivot(conn, cohort, after=after, size=size))
        except DaydreamError as exc:
            if fmt:
                return Response.json({"ok": False, "error": str(exc)}, status=400)
            return await _error(datasette, request, name, str(exc), 400)
        if fmt == "csv":
            body = csv_text(found.columns(), found.records())
            return Response(body, content_type="text/csv; charset=utf-8")
        if fmt == "json":
            if request.args.get("_shape") == "array":
                return Response.json(found.records())
            return Response.json(
                {
                    "ok": True,
                    "cohort_id": found.cohort_id,
                    "judges": [f"{t} / {m}" for t, m in found.judges],
                    "columns": found.columns(),
                    "rows": found.records(),
                    "next": found.next_after,
                }
            )
        values = {c: {str(r.lineage[c]) for r in found.rows} for c in ESSAY_AXES}
        context = {
            "p": found,
            "title": f"Score pivot of {found.cohort_id}",
            # Axes with one level on the page are said once, above the table.
            "lineage_columns": [c for c in ESSAY_AXES if len(values[c]) > 1],
            "constant": {c: v.pop() for c, v in values.items() if len(v) == 1},
            "size": size,
            "after": after,
            "csv_url": datasette.urls.database(name)
            + "/-/pivot.csv?"
            + urlencode({"cohort": found.cohort_id}),
        }
        return await _render(datasette, request, name, "daydream_pivot.html", context)

    async def generation_row(self, datasette: Any, request: Any, send: Any) -> Response:
        """Datasette's row page of a generation (where its foreign keys and key column
        link) becomes the generation page; any other database, or a .json, is Datasette's."""
        name = tilde_decode(request.url_vars["database"])
        if request.url_vars.get("format") or not self.is_daydream(datasette, name):
            # Imported here: Datasette loads this plugin while importing its views.
            from datasette.views.row import RowView

            return await RowView.as_view(datasette)(request, send)
        gen_id = tilde_decode(request.url_vars["pks"])
        return Response.redirect(generation_url(datasette, name, gen_id))

    async def old_pivot(self, datasette: Any, request: Any, send: Any) -> Response:
        """``/<db>/cohort_pivot`` was a canned query with a column per judge of every
        cohort; it leads to the pivot page now (a table of that name in another database
        is Datasette's)."""
        name = tilde_decode(request.url_vars["database"])
        if not self.is_daydream(datasette, name):
            from datasette.views.table import TableView  # see generation_row

            return await TableView.as_view(datasette)(request, send)
        fmt = request.url_vars.get("format")
        target = datasette.urls.database(name) + "/-/pivot" + (f".{fmt}" if fmt else "")
        query = request.query_string
        return Response.redirect(target + (f"?{query}" if query else ""))

    async def moved(self, datasette: Any, request: Any) -> Response:
        """A bookmark of the docs: /-/daydream/<page> -> /<first daydream database>/<page>."""
        names = [n for n in datasette.databases if self.is_daydream(datasette, n)]
        if not names:
            raise NotFound("no daydream database is served here")
        target = datasette.urls.database(names[0]) + "/" + request.url_vars["rest"]
        query = request.query_string
        return Response.redirect(target + (f"?{query}" if query else ""))

    async def _database(self, datasette: Any, request: Any) -> tuple[str, Any]:
        """The daydream database the URL names (its name and Datasette's ``Database``),
        after Datasette's own permission checks; 404 for any other database."""
        name = tilde_decode(request.url_vars["database"])
        if name not in datasette.databases or not self.is_daydream(datasette, name):
            raise NotFound(f"no daydream database named {name}")
        await datasette.ensure_permissions(
            request.actor, [("view-database", name), "view-instance"]
        )
        return name, datasette.get_database(name)


def generation_url(datasette: Any, database: str, gen_id: str) -> str:
    return datasette.urls.database(database) + "/-/generation/" + tilde_encode(gen_id)


async def _read(db: Any, read: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``read`` with one of Datasette's read-only connections of ``db``."""
    return await db.execute_fn(read)


def _only_cohort(conn: sqlite3.Connection) -> str:
    """The cohort to show when the URL names none: the only one, else a one-line error."""
    cohorts = [row[0] for row in conn.execute("SELECT cohort_id FROM cohorts ORDER BY 1")]
    if len(cohorts) == 1:
        return cohorts[0]
    raise NotFoundError(
        "name the cohort: ?cohort=" + (" or ?cohort=".join(cohorts) if cohorts else "ID (none planned yet)")
    )


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(value))) if value else default
    except ValueError:
        return default


async def _render(
    datasette: Any, request: Any, database: str, template: str, context: dict[str, Any]
) -> Response:
    html = await datasette.render_template(
        _environment(datasette).get_template(template),
        {"database": database, "dd": _urls(datasette, database), **context},
        request=request,
    )
    return Response.html(html)


def _render_part(datasette: Any, database: str, template: str, context: dict[str, Any]) -> Markup:
    """A part of a page rendered on its own, synchronously: a matrix's hundreds of cells
    render several times faster than through Datasette's asynchronous environment."""
    env = _environment(datasette, asynchronous=False)
    return Markup(env.get_template(template).render(dd=_urls(datasette, database), **context))


def _urls(datasette: Any, database: str) -> dict[str, Callable[..., str]]:
    """The links a page makes: ``gen(id)``, ``table(name, **filters)``, ``page(name, **args)``."""
    return {
        "gen": lambda gen_id: generation_url(datasette, database, gen_id),
        "table": lambda table, **args: datasette.urls.table(database, table)
        + (f"?{urlencode(args)}" if args else ""),
        "page": lambda page, **args: datasette.urls.database(database)
        + f"/-/{page}"
        + (f"?{urlencode({k: v for k, v in args.items() if v not in (None, '')})}" if args else ""),
    }


async def _error(
    datasette: Any, request: Any, database: str, message: str, status: int
) -> Response:
    response = await _render(
        datasette, request, database, "daydream_error.html", {"title": "Not found", "message": message}
    )
    response.status = status
    return response


def _environment(datasette: Any, *, asynchronous: bool = True) -> Any:
    """Datasette's Jinja environment, also finding daydream's templates (which extend
    Datasette's ``base.html``), or its synchronous twin for parts; made once per Datasette."""
    key = f"_daydream_jinja_{asynchronous}"
    env = datasette.__dict__.get(key)
    if env is None:
        env = datasette.jinja_env.overlay(
            loader=ChoiceLoader([FileSystemLoader(str(TEMPLATES)), datasette.jinja_env.loader]),
            enable_async=asynchronous,
        )
        datasette.__dict__[key] = env
    return env
