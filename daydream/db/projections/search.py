"""Full-text search over the texts of generations: prompts, raw replies and parsed outputs.

Texts are stored once by hash and never change (``db/texts.py``), so the index is over
texts, not generations: ``search_texts`` numbers each text a generation's result refers to
(the first time an event refers to it), and ``search_texts_fts`` (SQLite FTS5) indexes it
under that number. The FTS table keeps no copy of the text: its content is the
``indexed_texts`` view (``search_texts`` joined to ``texts``), so a match reads the text
only for a snippet. A prompt shared by every judge of an essay is indexed once.

Invariants:

- It is a projection like any other: written by the appliers of ``generation.responded``
  (prompt and raw reply) and ``generation.completed`` (parsed output) in the event's own
  transaction, so search is never behind the log, and rebuilt by replay. Texts are
  immutable, so an indexed row is never updated or deleted.
- From a match back to generations: the partial indexes of ``generations`` on
  ``prompt_hash``, ``raw_hash`` and ``parsed_hash`` (``schema.py``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

SEARCH_DDL = """
CREATE TABLE search_texts (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE REFERENCES texts(hash)
);
CREATE VIRTUAL TABLE search_texts_fts USING fts5(
    text, content = 'indexed_texts', content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
"""

# The FTS table reads a text through this view (by id) for snippets and highlights.
INDEXED_TEXTS_VIEW = """
SELECT s.id AS id, s.hash AS hash, t.text AS text
FROM search_texts s
JOIN texts t ON t.hash = s.hash
"""

SEARCH_TABLES = ("search_texts_fts", "search_texts")  # drop order


def index_texts(conn: sqlite3.Connection, hashes: Iterable[str | None]) -> None:
    """Index the texts with these hashes that are not indexed yet."""
    for digest in hashes:
        if digest is None:
            continue
        cursor = conn.execute("INSERT OR IGNORE INTO search_texts (hash) VALUES (?)", (digest,))
        if cursor.rowcount:
            # A replay into a scratch database (db check) has no texts: nothing to index.
            conn.execute(
                "INSERT INTO search_texts_fts (rowid, text)"
                " SELECT ?, text FROM texts WHERE hash = ?",
                (cursor.lastrowid, digest),
            )


def check_search_index(conn: sqlite3.Connection) -> str | None:
    """FTS5's own integrity check of the index against the indexed texts (rank 1: the
    content too); the problem, or None."""
    try:
        conn.execute(
            "INSERT INTO search_texts_fts (search_texts_fts, rank) VALUES ('integrity-check', 1)"
        )
    except sqlite3.DatabaseError as exc:
        return f"the full-text index does not match the texts ({exc}); run: daydream db rebuild"
    return None


# One row per cohort membership x generation x text of it (prompt, raw, parsed) that is
# indexed; `text_id` is the FTS rowid, so Datasette's search box filters this view (its
# metadata names search_texts_fts and text_id). Three arms, one per text column, each
# reaching generations through its own partial index, so a match's filter on text_id is
# pushed into every arm.
_ARM = """
SELECT s.id AS text_id, '{field}' AS field, m.cohort_id AS cohort_id, g.gen_id AS gen_id,
    m.stage AS stage, g.template_id AS template_id, g.model_id AS model_id,
    g.status AS status, g.state AS state, g.score AS score,
    (SELECT text FROM texts WHERE hash = s.hash) AS text
FROM search_texts s
JOIN generations g ON g.{field}_hash = s.hash
JOIN cohort_members m ON m.gen_id = g.gen_id"""

SEARCH_VIEWS = {
    "indexed_texts": INDEXED_TEXTS_VIEW,
    "generation_search": "\nUNION ALL".join(
        _ARM.format(field=field) for field in ("parsed", "raw", "prompt")
    )
    + "\n",
}
