-- The durable schema: the append-only event log and the content-addressed texts.
-- Projections (cohorts, generations, tasks, catalog tables...) are NOT here: they are
-- derived from the log by daydream/projections.py and rebuilt by replay.

CREATE TABLE events (
    id INTEGER PRIMARY KEY,            -- global order of the log
    type TEXT NOT NULL,                -- noun.past_verb, e.g. generation.completed
    subject TEXT NOT NULL,             -- what the event is about (a gen id, a cohort id...)
    data TEXT NOT NULL CHECK (json_valid(data)),
    recorded_at TEXT NOT NULL,         -- UTC ISO-8601
    actor TEXT NOT NULL                -- who wrote it: cli:plan, worker:<name>...
) STRICT;

CREATE INDEX events_type ON events (type, id);
CREATE INDEX events_subject ON events (subject, id);

-- Append-only guards. UPDATE and DELETE abort. A REPLACE (INSERT OR REPLACE, REPLACE INTO)
-- that collides with an existing id would delete the old row without firing DELETE
-- triggers (unless recursive_triggers is on), so a BEFORE INSERT trigger refuses any
-- insert whose id already exists. An UPSERT's DO UPDATE fires the UPDATE guard.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: UPDATE is not allowed');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: DELETE is not allowed');
END;

CREATE TRIGGER events_no_replace BEFORE INSERT ON events
WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM events WHERE id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: an existing event cannot be replaced');
END;

-- Large texts (template bodies, prompts, raw and parsed outputs) stored once, by hash.
CREATE TABLE texts (
    hash TEXT PRIMARY KEY,             -- "b2:" + BLAKE2b-128 hex of the UTF-8 text
    text TEXT NOT NULL,
    length INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TRIGGER texts_no_update BEFORE UPDATE ON texts
BEGIN
    SELECT RAISE(ABORT, 'texts are immutable: UPDATE is not allowed');
END;

CREATE TRIGGER texts_no_delete BEFORE DELETE ON texts
BEGIN
    SELECT RAISE(ABORT, 'texts are immutable: DELETE is not allowed');
END;
