"""Full-text search over the generations' texts: which prompts, replies and parsed outputs
mention these words (``daydream search``; in Datasette, the ``generation_search`` view).

The index is the ``search_texts_fts`` projection (``db/projections/search.py``): FTS5 over
each distinct text, words matched by their stem (``invent`` finds ``inventing``). The
query language is FTS5's: words (all must appear), ``"a phrase"``, ``OR``, ``NOT``,
``prefix*``, ``NEAR(a b)``. Plain words are passed quoted, so punctuation in them is never
a syntax error; ``raw=True`` passes the query to FTS5 as written.

Results are generations, best match first (FTS5's bm25 rank): a text shared by several
generations (the prompt of every judge of an essay) gives one hit per generation.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

from daydream.db.projections.search import FIELDS, TEXT_FIELDS, TEXT_TO_GENERATIONS, use_bit
from daydream.errors import ConfigError
from daydream.vocabulary import STAGES

SNIPPET_WORDS = 16
MARKS = ("**", "**")  # around each matched word in a snippet
FIRST_TEXTS = 64  # the fewest best-ranked texts a search first joins to their generations
TEXTS_PER_RESULT = 4  # texts first joined per result wanted (then 4 times more each round)
_OPERATORS = re.compile(r'"|\*|\b(?:AND|OR|NOT|NEAR)\b|[()^:]')


@dataclass(frozen=True)
class SearchHit:
    """One generation whose texts matched: ``fields`` says which (parsed, raw, prompt);
    ``snippet`` is the best passage, the matched words marked ``**like this**``."""

    gen_id: str
    stage: str
    fields: tuple[str, ...]
    template_id: str
    model_id: str | None
    status: str
    state: str | None
    score: float | None
    snippet: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def search(
    conn: sqlite3.Connection,
    query: str,
    *,
    cohort_id: str | None = None,
    stage: str | None = None,
    field: str | None = None,
    limit: int = 20,
    offset: int = 0,
    raw: bool = False,
) -> list[SearchHit]:
    """The generations whose texts match ``query``, best first (``limit`` from ``offset``)."""
    match = fts_query(query, raw=raw)
    if stage is not None and stage not in STAGES:
        raise ConfigError(f'stage "{stage}" is unknown: use {", ".join(STAGES)}')
    if field is not None and field not in FIELDS:
        raise ConfigError(f'field "{field}" is unknown: use {", ".join(FIELDS)}')
    hits = _ranked(conn, match, cohort_id, stage, field, limit, offset)
    snippets = _snippets(conn, match, {row[0] for row in hits})
    return [
        SearchHit(
            gen_id=gen_id,
            stage=stage,
            fields=tuple(f for f in FIELDS if f in fields.split()),
            template_id=template_id,
            model_id=model_id,
            status=status,
            state=state,
            score=score,
            snippet=snippets.get(text_id, ""),
        )
        for text_id, gen_id, stage, fields, template_id, model_id, status, state, score in hits
    ]


def fts_query(query: str, *, raw: bool = False) -> str:
    """The FTS5 MATCH expression for ``query``: as written when it uses FTS5 syntax (or
    ``raw``), else each word quoted (all must appear)."""
    text = query.strip()
    if not text:
        raise ConfigError("the search query is empty: give one or more words")
    if raw or _OPERATORS.search(text):
        return text
    return " ".join('"' + word.replace('"', '""') + '"' for word in text.split())


def _ranked(conn, match, cohort_id, stage, field, limit, offset) -> list[tuple]:
    """(text id, gen id, stage, fields, template, model, status, state, score), best first:
    one row per generation, with the text id of its best-ranked text.

    Only the best-ranked texts are joined to their generations: enough for the page
    (``offset + limit`` generations) after the filters, ``TEXTS_PER_RESULT`` per result
    wanted and then four times more while the filters leave too few, so a word found in
    every text does not join every text. Texts are ordered by rank, then id, and a
    generation by its best text's place in that order, then its id: a generation with a
    text among the first N has its best one there too, so each page is exactly that slice
    of the whole ranking.
    """
    wanted = offset + limit
    uses = sum(
        use_bit(s, f)
        for s in ((stage,) if stage else STAGES)
        for f in ((field,) if field else FIELDS)
    )
    sql = _ranked_sql(cohort_id, stage, field)
    params = [p for p in (cohort_id, stage) if p is not None]
    texts = max(FIRST_TEXTS, TEXTS_PER_RESULT * wanted)
    # Every text has a use (a bit is set when it is indexed): unfiltered by stage or field,
    # the ranking skips the lookup of each match's uses (a third of the time of ranking a
    # word found in 200,000 texts, at 1,000,000 generations: docs/benchmarks.md).
    best_sql = (
        "SELECT rowid FROM search_texts_fts WHERE search_texts_fts MATCH ?"
        " ORDER BY rank, rowid LIMIT ?"
        if stage is None and field is None
        else "SELECT t.id FROM search_texts_fts f JOIN search_texts t ON t.id = f.rowid"
        f" WHERE search_texts_fts MATCH ? AND t.uses & {uses} ORDER BY f.rank, t.id LIMIT ?"
    )
    try:
        while True:
            best = conn.execute(best_sql, (match, texts + 1)).fetchall()
            every = len(best) <= texts
            chosen = json.dumps([row[0] for row in best[:texts]])
            rows = conn.execute(sql, [chosen, *params, wanted]).fetchall()
            if every or len(rows) >= wanted:
                break
            texts *= 4
    except sqlite3.OperationalError as exc:
        raise ConfigError(_syntax_error(match, exc)) from None
    return [(row[0], *row[2:]) for row in rows[offset:]]


def _ranked_sql(cohort_id: str | None, stage: str | None, field: str | None) -> str:
    """The best generations of the texts given as a JSON list of ids, best first (SQLite
    takes the bare ``id`` of a min() aggregate from the row holding the minimum)."""
    # CROSS JOIN keeps the order: the matches, then their generations, then the
    # membership (left to itself, SQLite would walk the whole cohort).
    cohort = " CROSS JOIN cohort_members m ON m.gen_id = g.gen_id AND m.cohort_id = ?"
    join = f"g.{field}_hash = s.hash" if field else TEXT_TO_GENERATIONS
    return (
        "WITH s AS MATERIALIZED (SELECT t.id, t.hash, j.key AS rank"
        " FROM json_each(?) j JOIN search_texts t ON t.id = j.value)"
        f" SELECT s.id, min(s.rank) AS best, g.gen_id, g.stage, group_concat({TEXT_FIELDS}, ' '),"
        " g.template_id, g.model_id, g.status, g.state, g.score"
        f" FROM s CROSS JOIN generations g ON ({join})"
        + (cohort if cohort_id is not None else "")
        + (" WHERE g.stage = ?" if stage is not None else "")
        + " GROUP BY g.gen_id ORDER BY best, g.gen_id LIMIT ?"
    )


def _snippets(conn: sqlite3.Connection, match: str, text_ids: set[int]) -> dict[int, str]:
    """Each text's best passage for ``match`` (read only for the texts shown)."""
    if not text_ids:
        return {}
    marks = ", ".join("?" for _ in text_ids)
    rows = conn.execute(
        f"SELECT rowid, snippet(search_texts_fts, 0, ?, ?, '...', {SNIPPET_WORDS})"
        f" FROM search_texts_fts WHERE search_texts_fts MATCH ? AND rowid IN ({marks})",
        [*MARKS, match, *sorted(text_ids)],
    ).fetchall()
    return {row[0]: " ".join(row[1].split()) for row in rows}


def _syntax_error(match: str, exc: sqlite3.OperationalError) -> str:
    if "no such table" in str(exc):
        return (
            f"this database has no full-text index yet ({exc}); open it once with a"
            " daydream command (daydream status) to build it"
        )
    return (
        f"search query {match!r} is not valid FTS5 syntax ({exc}); quote words that hold"
        ' punctuation ("word-with-dash") or drop the operator'
    )
