"""The projection tables: their DDL, the hash that says which version built them, and
creating or dropping them.

Projection schema changes are a rebuild, never a migration: the hash of the DDL, the views
and the appliers' version is stored in ``projection_meta``, and a database whose
projections were built by another version is rebuilt when opened (``replay.ensure_projections``).
When only the views or the read indexes changed (``TABLES_HASH``, of the tables, their
indexes and the appliers, is the same), the views and read indexes alone are made again:
no replay, which takes minutes on a large log.
"""

from __future__ import annotations

import hashlib
import sqlite3

from daydream.db.migrations import split_sql
from daydream.db.projections.cells import CELLS_DDL, CELLS_TABLES
from daydream.db.projections.counts import COUNTS_DDL, COUNTS_TABLES
from daydream.db.projections.search import SEARCH_DDL, SEARCH_TABLES
from daydream.db.projections.views import VIEWS, VIEWS_DDL

PROJECTION_DDL = """
CREATE TABLE concepts (
    concept_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE concept_descriptions (
    concept_id TEXT NOT NULL REFERENCES concepts(concept_id),
    level TEXT NOT NULL,
    text_hash TEXT NOT NULL REFERENCES texts(hash),
    PRIMARY KEY (concept_id, level)
) WITHOUT ROWID;
CREATE TABLE combos (
    combo_id TEXT PRIMARY KEY,
    level TEXT NOT NULL,
    size INTEGER NOT NULL,
    version TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE combo_concepts (
    combo_id TEXT NOT NULL REFERENCES combos(combo_id),
    position INTEGER NOT NULL,
    concept_id TEXT NOT NULL REFERENCES concepts(concept_id),
    PRIMARY KEY (combo_id, position)
) WITHOUT ROWID;
CREATE TABLE template_versions (
    version TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    template_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    body_hash TEXT REFERENCES texts(hash),
    parser TEXT NOT NULL,
    generator TEXT NOT NULL,
    scale_min REAL,
    scale_max REAL,
    settings TEXT NOT NULL,
    source TEXT NOT NULL,
    defined_event INTEGER NOT NULL
);
CREATE TABLE templates (
    stage TEXT NOT NULL,
    template_id TEXT NOT NULL,
    version TEXT NOT NULL REFERENCES template_versions(version),
    name TEXT NOT NULL,
    parser TEXT NOT NULL,
    generator TEXT NOT NULL,
    scale_min REAL,
    scale_max REAL,
    PRIMARY KEY (stage, template_id)
) WITHOUT ROWID;
CREATE TABLE models (
    model_id TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    provider TEXT NOT NULL,
    provider_model TEXT NOT NULL,
    display_name TEXT NOT NULL,
    pool TEXT NOT NULL,
    price_input REAL,
    price_output REAL,
    settings TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE cohorts (
    cohort_id TEXT PRIMARY KEY,
    spec_path TEXT NOT NULL,
    spec_hash TEXT NOT NULL REFERENCES texts(hash),
    drafts INTEGER NOT NULL,
    essays INTEGER NOT NULL,
    evaluations INTEGER NOT NULL,
    planned_at TEXT NOT NULL,
    replanned_at TEXT,
    cancelled_at TEXT,
    budget_usd REAL -- the spec's budget_usd: the most the cohort's calls may cost
);
CREATE TABLE generations (
    gen_id TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    parent_gen_id TEXT REFERENCES generations(gen_id),
    combo_id TEXT REFERENCES combos(combo_id),
    template_id TEXT NOT NULL,
    template_version TEXT REFERENCES template_versions(version),
    model_id TEXT REFERENCES models(model_id),
    replicate INTEGER NOT NULL,
    mode TEXT NOT NULL,
    signature TEXT NOT NULL,
    pool TEXT NOT NULL,
    status TEXT NOT NULL,
    state TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    prompt_hash TEXT REFERENCES texts(hash),
    raw_hash TEXT REFERENCES texts(hash),
    parsed_hash TEXT REFERENCES texts(hash),
    score REAL,
    written_scale REAL,
    provider TEXT,
    resolved_model TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost REAL,
    latency_s REAL,
    offline INTEGER,
    reasoning_hash TEXT REFERENCES texts(hash),
    reasoning_tokens INTEGER,
    planned_at TEXT NOT NULL,
    finished_at TEXT,
    -- the queue: the lease of a running generation, retries and why it waits or failed
    throttles INTEGER NOT NULL DEFAULT 0,
    releases INTEGER NOT NULL DEFAULT 0,
    deferrals INTEGER NOT NULL DEFAULT 0, -- attempts not counted: endpoint down, pool stopped
    not_before TEXT,
    lease_owner TEXT,
    lease_token INTEGER,
    lease_expires_at TEXT,
    slot INTEGER NOT NULL DEFAULT 0, -- 1: the lease holds a pool slot (0: queued, or not running)
    reserved_usd REAL, -- under a budget: the most the running attempt's call can cost
    last_error TEXT,
    blocked_reason TEXT,
    -- the template version whose parser and scale gave the parsed output, when
    -- `daydream reparse` parsed it again (NULL: the version it was planned with)
    parsed_with TEXT REFERENCES template_versions(version)
);
-- Claims read ready generations by stage, then rowid (plan order). Status counts use it too.
CREATE INDEX generations_queue ON generations (status, stage);
CREATE INDEX generations_parent ON generations (parent_gen_id) WHERE parent_gen_id IS NOT NULL;
-- Evaluations in essay order, covering what evaluation_scores and browse's judge list read
-- (stage last: SQLite must see it in the index to use a partial index as covering).
CREATE INDEX generations_scores
    ON generations (parent_gen_id, template_id, model_id, state, score, gen_id, stage)
    WHERE stage = 'evaluation';
-- From a text to the generations that use it (full-text search, search.py). Partial: a plan
-- writes no entry, a result one per text.
CREATE INDEX generations_prompt_text ON generations (prompt_hash) WHERE prompt_hash IS NOT NULL;
CREATE INDEX generations_raw_text ON generations (raw_hash) WHERE raw_hash IS NOT NULL;
CREATE INDEX generations_parsed_text ON generations (parsed_hash) WHERE parsed_hash IS NOT NULL;
CREATE TABLE cohort_members (
    cohort_id TEXT NOT NULL REFERENCES cohorts(cohort_id),
    gen_id TEXT NOT NULL REFERENCES generations(gen_id),
    stage TEXT NOT NULL,
    PRIMARY KEY (cohort_id, gen_id)
) WITHOUT ROWID;
CREATE INDEX cohort_members_gen ON cohort_members (gen_id);
-- A cohort's members of one stage (a view filtered by cohort and stage) without reading
-- the others.
CREATE INDEX cohort_members_stage ON cohort_members (cohort_id, stage);
CREATE TABLE calls (
    event_id INTEGER PRIMARY KEY,
    gen_id TEXT NOT NULL REFERENCES generations(gen_id),
    model_id TEXT,
    pool TEXT,
    ok INTEGER NOT NULL,
    http_status INTEGER,
    error TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost REAL,
    latency_s REAL, -- the time at the server: the HTTP call, for failed calls too
    slot_wait_s REAL, -- the time the task waited in its worker for a pool slot first
    reasoning_tokens INTEGER,
    offline INTEGER,
    recorded_at TEXT NOT NULL,
    endpoint TEXT -- the base URL the call went to (one of a provider's replicas)
);
CREATE INDEX calls_model ON calls (model_id);
CREATE TABLE essay_judge_scores (
    cohort_id TEXT NOT NULL REFERENCES cohorts(cohort_id),
    essay_gen_id TEXT NOT NULL REFERENCES generations(gen_id),
    evaluation_template TEXT NOT NULL,
    evaluation_model TEXT NOT NULL,
    evaluations INTEGER NOT NULL,
    n INTEGER NOT NULL,
    total REAL NOT NULL,
    min REAL,
    max REAL,
    PRIMARY KEY (cohort_id, essay_gen_id, evaluation_template, evaluation_model)
) WITHOUT ROWID;
-- One row per `generation.reparsed`: the new result and the one it replaced.
CREATE TABLE reparses (
    event_id INTEGER PRIMARY KEY,
    gen_id TEXT NOT NULL REFERENCES generations(gen_id),
    stage TEXT NOT NULL,
    template_version TEXT NOT NULL REFERENCES template_versions(version),
    parser TEXT NOT NULL,
    parser_version INTEGER NOT NULL,
    previous_state TEXT,
    previous_score REAL,
    previous_parsed_hash TEXT REFERENCES texts(hash),
    state TEXT NOT NULL,
    score REAL,
    parsed_hash TEXT REFERENCES texts(hash),
    error TEXT,
    recorded_at TEXT NOT NULL
);
CREATE INDEX reparses_gen ON reparses (gen_id);
-- Human ratings (`daydream label import`): the latest per essay, rubric and rater.
CREATE TABLE human_ratings (
    essay_gen_id TEXT NOT NULL REFERENCES generations(gen_id),
    evaluation_template TEXT NOT NULL,
    rater TEXT NOT NULL,
    score REAL NOT NULL,
    note TEXT,
    template_version TEXT NOT NULL REFERENCES template_versions(version),
    source TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (essay_gen_id, evaluation_template, rater)
) WITHOUT ROWID;
CREATE TABLE pools (
    pool TEXT PRIMARY KEY,
    "limit" INTEGER NOT NULL,
    ceiling INTEGER NOT NULL,
    reason TEXT NOT NULL,
    changed_at TEXT NOT NULL
);
-- Pools no call of which can succeed (a rejected key, an unknown model): not claimed
-- until a run resumes them.
CREATE TABLE pool_stops (
    pool TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model_id TEXT NOT NULL,
    http_status INTEGER,
    message TEXT NOT NULL,
    stopped_at TEXT NOT NULL
);
-- Every endpoint (base URL) that was ever down: status 'down' while workers wait for it.
CREATE TABLE endpoints (
    endpoint TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    status TEXT NOT NULL,
    pool TEXT,
    error TEXT,
    down_since TEXT,
    changed_at TEXT NOT NULL
);
""" + SEARCH_DDL + COUNTS_DDL + CELLS_DDL


# Tables in drop/compare order (children first when dropping). The full-text index itself
# (search_texts_fts) is dropped with them, never compared: FTS5 checks it (db check).
PROJECTION_TABLES = (
    *COUNTS_TABLES,
    *CELLS_TABLES,
    "search_texts",
    "human_ratings",
    "reparses",
    "essay_judge_scores",
    "calls",
    "cohort_members",
    "generations",
    "cohorts",
    "pools",
    "pool_stops",
    "endpoints",
    "models",
    "templates",
    "template_versions",
    "combo_concepts",
    "combos",
    "concept_descriptions",
    "concepts",
)


# Indexes that only make reads faster (no applier reads through them, so the projections'
# rows do not depend on them): made with the views, so adding one to a version does not
# replay the log, it indexes the rows already there.
READ_INDEXES: dict[str, str] = {
    # A generation's calls (its page, transcripts): without it a page read every call.
    "calls_gen": "CREATE INDEX calls_gen ON calls (gen_id, event_id)",
}


def _views_ddl() -> str:
    return VIEWS_DDL + "".join(f"\n{sql};" for sql in READ_INDEXES.values())


# Bump when an applier's results change for the same events (a fix), so that databases
# whose projections the old code built are rebuilt when opened, not reported as replay
# mismatches by `daydream db check`. 2: retry takes its status from the parent's.
# 3: results index their texts for full-text search. 4: counters (cohort_counts, calls and
# judges per cohort, essay_rubric_scores) kept by triggers and the planning applier.
# 5: generations and calls counted per batch of events (tally.py); a cohort_counts row at
# 0 generations is deleted.
APPLIER_VERSION = 5


DDL_HASH = hashlib.blake2b(
    (PROJECTION_DDL + _views_ddl() + f"appliers {APPLIER_VERSION}").encode(), digest_size=8
).hexdigest()


# What the rows of the projection tables depend on: their DDL and the appliers.
TABLES_HASH = hashlib.blake2b(
    (PROJECTION_DDL + f"appliers {APPLIER_VERSION}").encode(), digest_size=8
).hexdigest()


def built_by(conn: sqlite3.Connection, key: str = "ddl_hash") -> str | None:
    """The hash of the DDL and appliers that built the projections (None: none yet);
    ``key="tables_hash"``: of the tables alone (``TABLES_HASH``)."""
    row = conn.execute("SELECT value FROM projection_meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def record_built(conn: sqlite3.Connection) -> None:
    """Note in ``projection_meta`` that this version's DDL, views and appliers built them."""
    conn.executemany(
        "INSERT OR REPLACE INTO projection_meta (key, value) VALUES (?, ?)",
        [("ddl_hash", DDL_HASH), ("tables_hash", TABLES_HASH)],
    )


def remake_views(conn: sqlite3.Connection) -> None:
    """Drop every view and create this version's, and its read indexes."""
    views = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")]
    for view in views:
        conn.execute(f'DROP VIEW IF EXISTS "{view}"')
    for name, body in VIEWS.items():
        conn.execute(f'CREATE VIEW "{name}" AS {body.strip()}')
    _make_read_indexes(conn)


def _make_read_indexes(conn: sqlite3.Connection) -> None:
    """Create the read indexes that are missing or defined otherwise than this version's."""
    for name, sql in READ_INDEXES.items():
        row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,))
        existing = row.fetchone()
        if existing is not None and existing[0] == sql:
            continue
        conn.execute(f'DROP INDEX IF EXISTS "{name}"')
        conn.execute(sql)


# Projection tables of earlier versions, dropped by a rebuild (``tasks`` is now a view).
RETIRED_TABLES = ("tasks",)


def _drop(conn: sqlite3.Connection) -> None:
    views = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")]
    for view in views:
        conn.execute(f'DROP VIEW IF EXISTS "{view}"')
    for table in (*RETIRED_TABLES, *SEARCH_TABLES, *PROJECTION_TABLES):
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def _create(conn: sqlite3.Connection, *, views: bool = True) -> None:
    for statement in split_sql(PROJECTION_DDL):
        conn.execute(statement)
    if views:
        for name, body in VIEWS.items():
            conn.execute(f'CREATE VIEW "{name}" AS {body.strip()}')
        _make_read_indexes(conn)
