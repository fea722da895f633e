"""The store: migrations, pragmas, the append-only guards, texts, transactions."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from daydream import events as ev
from daydream.db.check import check
from daydream.db.connection import connect
from daydream.db.log import append, event_data, read_events
from daydream.db.migrations import GUARD_TRIGGERS, list_migrations, migrations_dir
from daydream.db.texts import get_text, put_text, text_hash
from daydream.errors import StoreError

REPO = Path(__file__).resolve().parents[1]


def _event(n: int = 1) -> ev.PoolLimitChanged:
    return ev.PoolLimitChanged(pool=f"p{n}", limit=n, ceiling=n, reason="test")


def test_migrations_are_numbered_without_gaps():
    found = list_migrations(REPO / "migrations")
    assert [v for v, _, _ in found] == list(range(1, len(found) + 1))
    for _, name, _ in found:
        assert re.fullmatch(r"\d{4}_[a-z0-9_]+", name)


def test_connect_applies_and_records_migrations(tmp_path):
    conn = connect(tmp_path / "x.db")
    recorded = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY version")]
    assert recorded == [name for _, name, _ in list_migrations()]
    # Opening again applies nothing new.
    conn.close()
    conn = connect(tmp_path / "x.db")
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(recorded)


def test_connection_pragmas(tmp_path):
    conn = connect(tmp_path / "x.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000


def test_events_table_is_strict_with_json_check(tmp_path):
    conn = connect(tmp_path / "x.db")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO events (type, subject, data, recorded_at, actor)"
            " VALUES ('x', 's', 'not json', 't', 'a')"
        )
    with pytest.raises(sqlite3.IntegrityError):  # STRICT: a blob is not TEXT
        conn.execute(
            "INSERT INTO events (type, subject, data, recorded_at, actor)"
            " VALUES ('x', 's', '{}', 't', X'00')"
        )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET type = 'tampered'",
        "DELETE FROM events",
        "INSERT OR REPLACE INTO events (id, type, subject, data, recorded_at, actor)"
        " VALUES (1, 'x', 's', '{}', 't', 'a')",
        "REPLACE INTO events (id, type, subject, data, recorded_at, actor)"
        " VALUES (1, 'x', 's', '{}', 't', 'a')",
        "INSERT INTO events (id, type, subject, data, recorded_at, actor)"
        " VALUES (1, 'x', 's', '{}', 't', 'a')"
        " ON CONFLICT (id) DO UPDATE SET type = 'tampered'",
    ],
)
def test_append_only_guards_refuse_every_mutation(tmp_path, statement):
    conn = connect(tmp_path / "x.db")
    append(conn, [_event(1), _event(2)], actor="test")
    before = conn.execute("SELECT id, type, data FROM events ORDER BY id").fetchall()
    with pytest.raises(sqlite3.DatabaseError, match="append-only|constraint"):
        conn.execute(statement)
    after = conn.execute("SELECT id, type, data FROM events ORDER BY id").fetchall()
    assert [tuple(r) for r in after] == [tuple(r) for r in before]


# Named here, not taken from the code's list: a guard removed from the code must fail here.
GUARDS = {
    "events_no_update": "BEFORE UPDATE ON events",
    "events_no_delete": "BEFORE DELETE ON events",
    "events_no_replace": "BEFORE INSERT ON events",
    "texts_no_update": "BEFORE UPDATE ON texts",
    "texts_no_delete": "BEFORE DELETE ON texts",
}


def test_the_code_requires_every_guard_the_migrations_install():
    assert set(GUARD_TRIGGERS) == set(GUARDS)


@pytest.mark.parametrize("trigger", sorted(GUARDS))
def test_opening_a_database_without_a_guard_is_refused(tmp_path, trigger):
    path = tmp_path / "x.db"
    connect(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"DROP TRIGGER {trigger}")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError) as caught:
        connect(path)
    assert str(caught.value) == (
        f"database {path}: append-only guard trigger(s) {trigger} are missing, so the event"
        " log may have been altered; refusing to open it (restore the database from a backup)"
    )
    results = check(path)
    assert results[0][0] == "append_only_guards" and results[0][1] is False


@pytest.mark.parametrize("trigger", sorted(GUARDS))
def test_a_guard_that_does_nothing_under_its_own_name_is_refused(tmp_path, trigger):
    """Checking guards by name is not enough: a trigger of the right name whose body does
    nothing (or that fires on something else) is reported as altered, by every opener."""
    path = tmp_path / "x.db"
    connect(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"DROP TRIGGER {trigger}")
    raw.execute(f"CREATE TRIGGER {trigger} {GUARDS[trigger]} BEGIN SELECT 1; END")
    raw.commit()
    raw.close()
    message = (
        f"database {path}: append-only guard trigger(s) {trigger} differ from the migration"
        " that created them, so the event log may have been altered; refusing to open it"
        " (restore the database from a backup)"
    )
    with pytest.raises(StoreError) as caught:
        connect(path)
    assert str(caught.value) == message
    assert check(path)[0] == ("append_only_guards", False, message)


def test_texts_are_stored_once_and_immutable(tmp_path):
    conn = connect(tmp_path / "x.db")
    digest = put_text(conn, "hello")
    assert put_text(conn, "hello") == digest == text_hash("hello")
    assert conn.execute("SELECT count(*) FROM texts").fetchone()[0] == 1
    assert get_text(conn, digest) == "hello"
    with pytest.raises(sqlite3.DatabaseError, match="immutable"):
        conn.execute("UPDATE texts SET text = 'bye'")
    with pytest.raises(sqlite3.DatabaseError, match="immutable"):
        conn.execute("DELETE FROM texts")


def test_append_is_atomic_with_projections(tmp_path):
    conn = connect(tmp_path / "x.db")
    good = _event(3)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        from daydream.db.transaction import transaction

        with transaction(conn):
            append(conn, [good], actor="test")
            raise Boom
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM pools").fetchone()[0] == 0
    append(conn, [good], actor="test")
    assert conn.execute('SELECT pool, "limit" FROM pools').fetchone()[:] == ("p3", 3)
    rows = list(read_events(conn, types=["pool.limit_changed"]))
    assert len(rows) == 1 and rows[0]["actor"] == "test" and rows[0]["recorded_at"].endswith("Z")


def test_connection_refuses_use_after_fork(tmp_path):
    conn = connect(tmp_path / "x.db")
    conn.owner_pid = -1  # what a forked child sees: a pid other than the opener's
    with pytest.raises(StoreError, match="after fork"):
        conn.execute("SELECT 1")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_really_forked_child_is_refused_and_the_parent_is_not(tmp_path):
    conn = connect(tmp_path / "x.db")
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the connection refuses it
        try:
            conn.execute("SELECT 1")
        except StoreError:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert conn.execute("SELECT 1").fetchone()[0] == 1


def test_non_editable_install_finds_migrations(tmp_path):
    """Build a wheel, install it into a fresh venv, and open a database with it."""
    if not (REPO / "pyproject.toml").is_file():
        pytest.skip("not in a source checkout")
    wheel_dir = tmp_path / "wheel"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheel_dir),
            str(REPO),
        ],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0 and "hatchling" in build.stderr:
        pytest.skip("hatchling is not installed in this environment")
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheel_dir.glob("daydream-*.whl"))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from daydream.db import connection, migrations; from daydream import paths;"
        "print(migrations.migrations_dir());"
        "c = connection.connect(sys.argv[2]);"
        "print(c.execute('select count(*) from schema_migrations').fetchone()[0]);"
        "print(paths.project_dir('specs'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(target), str(tmp_path / "w.db")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[0].startswith(str(target)) and lines[0].endswith("migrations")
    assert int(lines[1]) == len(list_migrations(migrations_dir()))
    assert lines[2].startswith(str(target))


def test_append_records_each_event_in_order_with_its_time_and_actor(tmp_path):
    conn = connect(tmp_path / "x.db")
    at = datetime(2026, 12, 8, 1, 2, 3, 456, tzinfo=timezone.utc)
    ids = append(conn, [_event(1), _event(2), _event(3)], actor="worker-7", clock=lambda: at)
    assert ids == [1, 2, 3]
    assert append(conn, [_event(4)], actor="cli") == [4]
    rows = [tuple(r) for r in read_events(conn)]
    assert rows[:3] == [
        (
            i,
            "pool.limit_changed",
            f"pool:p{i}",
            _event(i).model_dump_json(),
            "2026-12-08T01:02:03.000456Z",
            "worker-7",
        )
        for i in (1, 2, 3)
    ]
    assert rows[3][0] == 4 and rows[3][5] == "cli"
    # read_events is public: a caller may read its rows by these names (dict(row))
    assert next(read_events(conn)).keys() == [
        "id",
        "type",
        "subject",
        "data",
        "recorded_at",
        "actor",
    ]
    assert event_data(next(read_events(conn, after=1))) == {
        "pool": "p2",
        "limit": 2,
        "ceiling": 2,
        "reason": "test",
    }


def test_read_events_filters_by_type_subject_position_and_count(tmp_path):
    conn = connect(tmp_path / "x.db")
    stop = ev.PoolResumed(pool="p2", reason="test")
    append(conn, [_event(1), _event(2), _event(1), _event(3), stop], actor="test")

    def ids(**filters):
        return [row["id"] for row in read_events(conn, **filters)]

    assert ids() == [1, 2, 3, 4, 5]
    assert ids(subject="pool:p1") == [1, 3]
    assert ids(after=2) == [3, 4, 5]
    assert ids(after=1, limit=2) == [2, 3]
    assert ids(limit=0) == []
    assert ids(types=["pool.limit_changed"], subject="pool:p2") == [2]
    assert ids(types=["no.such_type"]) == []
    assert ids(types=["no.such_type", "pool.resumed"]) == [5]
    assert ids(types=["pool.resumed", "pool.limit_changed"], after=3) == [4, 5]
