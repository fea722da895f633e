"""daydream.db.example is current: made by `daydream demo --db daydream.db.example --fresh`
with the code as it is (migrations, projection DDL), and it passes `daydream db check`."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from daydream.db.check import check
from daydream.db.migrations import list_migrations
from daydream.db.projections.schema import DDL_HASH

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "daydream.db.example"
REMAKE = "remake it with: daydream demo --db daydream.db.example --fresh"


def test_example_database_is_current(tmp_path):
    assert EXAMPLE.is_file(), f"daydream.db.example is missing; {REMAKE}"
    copy = tmp_path / "example.db"
    shutil.copy(EXAMPLE, copy)  # check() only reads, but never risk the committed file
    raw = sqlite3.connect(copy)
    applied = [r[0] for r in raw.execute("SELECT name FROM schema_migrations ORDER BY version")]
    ddl = raw.execute("SELECT value FROM projection_meta WHERE key = 'ddl_hash'").fetchone()[0]
    raw.close()
    assert applied == [name for _, name, _ in list_migrations()], REMAKE
    assert ddl == DDL_HASH, f"its projections were built by other DDL; {REMAKE}"
    failed = [(name, detail) for name, ok, detail in check(copy) if not ok]
    assert failed == []


def test_example_database_shows_everything_at_once(tmp_path):
    copy = tmp_path / "example.db"
    shutil.copy(EXAMPLE, copy)
    conn = sqlite3.connect(copy)
    count = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    assert count("SELECT count(*) FROM generations WHERE stage = 'draft' AND state = 'ok'") >= 3
    assert count("SELECT count(*) FROM generations WHERE stage = 'essay' AND mode = 'copy'") >= 1
    assert count("SELECT count(DISTINCT model_id) FROM generations WHERE stage = 'evaluation'") >= 2
    assert count("SELECT count(DISTINCT template_id) FROM generations WHERE stage = 'evaluation'") >= 2
    assert count("SELECT count(*) FROM generations WHERE status = 'failed'") >= 1
    assert 20 <= count("SELECT count(*) FROM generations") <= 200
