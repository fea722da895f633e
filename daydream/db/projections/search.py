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

from daydream.vocabulary import STAGES

FIELDS = ("parsed", "raw", "prompt")  # the texts of a generation that are indexed

SEARCH_DDL = """
CREATE TABLE search_texts (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE REFERENCES texts(hash),
    uses INTEGER NOT NULL -- bits: which (stage, field) pairs use it (use_bit)
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


def use_bit(stage: str, field: str) -> int:
    """The bit of ``search_texts.uses`` saying a generation of ``stage`` has the text as
    its ``field``: a search filtered by stage or field skips the texts without it before
    looking up any generation."""
    return 1 << (STAGES.index(stage) * len(FIELDS) + FIELDS.index(field))


def index_texts(conn: sqlite3.Connection, stage: str, texts: Iterable[tuple[str, str | None]]) -> None:
    """Index the texts a generation of ``stage`` has as (field, hash): a text not indexed
    yet is numbered and indexed; one that is gains the use."""
    for field, digest in texts:
        if digest is None:
            continue
        bit = use_bit(stage, field)
        cursor = conn.execute(
            "INSERT OR IGNORE INTO search_texts (hash, uses) VALUES (?, ?)", (digest, bit)
        )
        if cursor.rowcount:
            # A replay into a scratch database (db check) has no texts: nothing to index.
            conn.execute(
                "INSERT INTO search_texts_fts (rowid, text)"
                " SELECT ?, text FROM texts WHERE hash = ?",
                (cursor.lastrowid, digest),
            )
        else:
            conn.execute(
                "UPDATE search_texts SET uses = uses | ? WHERE hash = ? AND uses & ? = 0",
                (bit, digest, bit),
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


# From an indexed text to the generations that hold it as prompt, raw reply or parsed text:
# one join whose OR SQLite answers with the three partial indexes of generations.
TEXT_TO_GENERATIONS = (
    "g.parsed_hash = s.hash OR g.raw_hash = s.hash OR g.prompt_hash = s.hash"
)
# Which of a generation's texts the text is (a parser that keeps the whole reply makes
# the raw and parsed texts one).
TEXT_FIELDS = (
    "trim(CASE WHEN g.parsed_hash = s.hash THEN 'parsed ' ELSE '' END"
    " || CASE WHEN g.raw_hash = s.hash THEN 'raw ' ELSE '' END"
    " || CASE WHEN g.prompt_hash = s.hash THEN 'prompt' ELSE '' END)"
)

# One row per cohort membership x generation x indexed text of it; ``text_id`` is the FTS
# rowid, so Datasette's search box filters this view (its metadata names search_texts_fts
# and text_id). One SELECT, not a UNION: SQLite applies a search's filter on text_id
# inside it even under count(*) and facets. CROSS JOIN fixes the order (texts, then their
# generations, then memberships): with a cohort filter SQLite would otherwise walk the
# whole cohort.
SEARCH_VIEWS = {
    "indexed_texts": INDEXED_TEXTS_VIEW,
    "generation_search": f"""
SELECT s.id AS text_id, {TEXT_FIELDS} AS fields, m.cohort_id AS cohort_id,
    g.gen_id AS gen_id, m.stage AS stage, g.template_id AS template_id,
    g.model_id AS model_id, g.status AS status, g.state AS state, g.score AS score,
    (SELECT text FROM texts WHERE hash = s.hash) AS text
FROM search_texts s
CROSS JOIN generations g ON ({TEXT_TO_GENERATIONS})
CROSS JOIN cohort_members m ON m.gen_id = g.gen_id
""",
}
