"""Pages that cost the rows they show: no row count and no facets on a large database.

A Datasette table or view page runs ``select count(*)`` over every row its filters select,
and a ``GROUP BY`` for each declared facet, before it shows its first rows. For the tables
and views that grow with the cohorts (``GROWING``) that is the whole cohort: at 1,000,000
generations 0.5 to 2.5 s a page, while the rows themselves take milliseconds
(docs/benchmarks.md, "A million generations"). Datasette 0.65 can skip both for one
request (``_nocount=1``, ``_nofacet=1``) but not for a table, so ``asgi_wrapper`` (in
``hooks``) adds those two arguments to a request for such a page of a daydream database
holding more than ``COUNT_ROWS_UP_TO`` generations (or the plugin setting
``count_rows_up_to``: ``daydream browse --count-up-to N``), and ``notice`` tells the reader so,
with a link to the same page with ``_count=1``: counted and faceted whatever the size.

A request that already says something else about counting or facets (``_count``,
``_facet...``, or only one of ``_nocount`` and ``_nofacet``) is left as it is; one with
both (the next page, a sort or a filter of an uncounted page: Datasette carries its
arguments on) gets the notice again. Every other page is left as it is:
the database page, canned queries, daydream's own pages and the small tables and views
(counters, the catalog), whose counts cost nothing.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from datasette.utils import tilde_decode

# A database with more generations than this serves GROWING pages uncounted. A counted
# lineage page takes about 75 ms at 10,000 generations and 560 ms at 100,000 on a 2-core
# machine (docs/benchmarks.md): at 25,000 about 200 ms, the slowest a page should be.
COUNT_ROWS_UP_TO = 25_000

# The tables and views whose rows grow with the generations (tests/test_browse_large.py
# fails when a table or view of a fresh database is in neither this nor FLAT).
GROWING = frozenset(
    {
        # tables
        "events", "texts", "generations", "cohort_members", "calls", "essay_judge_scores",
        "essay_rubric_scores", "reparses", "human_ratings", "search_texts",
        # views
        "tasks", "evaluation_scores", "essay_scores", "essay_score_summary",
        "judge_agreement", "top_of_scale", "generation_texts", "lineage", "failures",
        "top_essays", "unscored_essays", "generation_search", "indexed_texts",
    }
)  # fmt: skip
# The tables and views whose size does not grow with the generations: the catalog,
# the counters, the pools, the internal tables. Counting them is cheap at any size.
FLAT = frozenset(
    {
        "cohorts", "cohort_counts", "cohort_judges", "cohort_model_calls", "combo_concepts",
        "combos", "concept_descriptions", "concepts", "endpoints", "model_calls", "models",
        "pool_stops", "pools", "projection_meta", "schema_migrations", "template_versions",
        "templates", "cohort_model_usage", "cohort_progress", "combos_with_concepts",
        "essay_ratings", "failure_reasons", "model_usage",
    }
)  # fmt: skip

_SAYS_HOW = ("_nocount", "_nofacet", "_count", "_facet")
SCOPE_KEY = "daydream.uncounted"  # (generations, limit) on a request served uncounted


def page_of(path: str, base_url: str) -> tuple[str, str] | None:
    """``(database, table)`` of a table page's path (HTML or JSON), else None."""
    if base_url != "/" and path.startswith(base_url):
        path = "/" + path[len(base_url) :]
    parts = path.strip("/").split("/")
    if len(parts) != 2 or not parts[0] or not parts[1] or parts[0].startswith("-"):
        return None
    table = parts[1]
    if table.endswith(".json"):
        table = table[: -len(".json")]
    if "." in table:
        return None  # another format (CSV downloads are off) or not a table page
    return tilde_decode(parts[0]), tilde_decode(table)


def says_how(query_string: bytes) -> str | None:
    """What the request says about counting or facets: None (nothing), "uncounted" (both
    ``_nocount`` and ``_nofacet``, as the links of an uncounted page carry them on:
    next page, sort, filters), or "asked" (anything else: served as it asks)."""
    names = {name for name, _ in parse_qsl(query_string.decode("latin-1"), True)}
    said = {name for name in names if name.startswith(_SAYS_HOW)}
    if not said:
        return None
    return "uncounted" if said == {"_nocount", "_nofacet"} else "asked"


def count_rows_up_to(datasette: Any) -> int:
    """The most generations a database may hold for its GROWING pages to be counted."""
    config = datasette.plugin_config("daydream") or {}
    return int(config.get("count_rows_up_to", COUNT_ROWS_UP_TO))


async def generations(datasette: Any, database: str) -> int:
    """How many generations the database holds, from its counters (a few rows)."""
    rows = await datasette.get_database(database).execute(
        "SELECT coalesce(sum(generations), 0) FROM cohort_counts"
    )
    return rows.first()[0]


async def uncounted_scope(datasette: Any, scope: dict, is_daydream: Any) -> dict:
    """``scope`` itself, or a copy asking for no count and no facets (see the module)."""
    if scope.get("type") != "http" or scope.get("method") not in ("GET", "HEAD"):
        return scope
    page = page_of(scope.get("path", ""), datasette.setting("base_url"))
    if page is None or page[1] not in GROWING or page[0] not in datasette.databases:
        return scope
    query_string = scope.get("query_string", b"")
    said = says_how(query_string)
    if said == "asked" or not is_daydream(datasette, page[0]):
        return scope
    total, limit = await generations(datasette, page[0]), count_rows_up_to(datasette)
    if total <= limit:
        return scope
    if said is None:
        added = b"_nocount=1&_nofacet=1"
        query_string = query_string + b"&" + added if query_string else added
    return {**scope, "query_string": query_string, SCOPE_KEY: (total, limit)}


def notice(request: Any) -> str | None:
    """A script showing why the page has no count, with a link that counts; None when the
    request was not served uncounted."""
    served = request.scope.get(SCOPE_KEY) if request is not None else None
    if served is None:
        return None
    total, limit = served
    args = parse_qsl(request.query_string, keep_blank_values=True)
    kept = [(k, v) for k, v in args if k not in ("_nocount", "_nofacet")]
    counted = request.path + "?" + urlencode([*kept, ("_count", "1")])
    text = (
        f"This database holds {total:,} generations (more than {limit:,}), so this page"
        " shows its rows without"
        " counting them or showing facets (each reads every row the filters select)."
    )
    say = json.dumps({"text": text, "link": "Count them and show facets", "href": counted})
    return _NOTICE.replace("SAY", say.replace("</", "<\\/"))


_NOTICE = """
(function (say) {
    var p = document.createElement("p");
    p.className = "daydream-uncounted";
    p.textContent = say.text + " ";
    var a = document.createElement("a");
    a.href = say.href;
    a.textContent = say.link;
    p.appendChild(a);
    var before = document.querySelector("form.filters");
    if (before) { before.parentNode.insertBefore(p, before); }
})(SAY);
"""
