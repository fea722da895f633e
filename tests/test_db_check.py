"""``daydream db check`` and the migrations it checks: what each check reports, how a long
replay reports its progress, and how migrations are numbered, applied and split."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from daydream.db.check import _duration, _replay_progress, check
from daydream.db.connection import connect
from daydream.db.migrations import (
    apply_migrations,
    check_guards,
    guard_sql,
    list_migrations,
    split_sql,
)
from daydream.errors import StoreError
from tests.invariants import check_results, tamper_with

HEALTHY = [
    ("integrity_check", True, "ok"),
    ("foreign_key_check", True, "no violations"),
    ("migrations", True, "1 applied"),
    (
        "append_only_guards",
        True,
        "events_no_update, events_no_delete, events_no_replace, texts_no_update,"
        " texts_no_delete present, as their migration wrote them",
    ),
    ("replay_equals_projections", True, "every projection table matches a replay of the log"),
    ("search_index", True, "matches the texts"),
]


def test_a_healthy_database_passes_every_check_and_says_so(offline_cohort):
    assert check(offline_cohort()) == HEALTHY


def test_a_row_pointing_at_nothing_is_a_foreign_key_violation(offline_cohort):
    path = offline_cohort()
    dangling = "UPDATE generations SET combo_id = 'no-such-combo' WHERE rowid = 1"
    tamper_with(path, dangling, foreign_keys=False)
    results = check_results(path)
    assert results["foreign_key_check"] == (False, "1 violation(s)")


def test_a_migration_recorded_under_another_name_fails_the_migrations_check(offline_cohort):
    path = offline_cohort()
    tamper_with(path, "UPDATE schema_migrations SET name = '0001_renamed' WHERE version = 1")
    results = check_results(path)
    assert results["migrations"] == (
        False,
        "applied ['0001_renamed'], expected ['0001_event_log']",
    )


def test_a_replay_mismatch_says_whether_the_row_counts_differ(offline_cohort):
    path = offline_cohort()
    raw = sqlite3.connect(path)
    concepts = raw.execute("SELECT count(*) FROM concepts").fetchone()[0]
    models = raw.execute("SELECT count(*) FROM models").fetchone()[0]
    raw.execute("UPDATE concepts SET name = name || '~' WHERE rowid = 1")
    raw.execute("DELETE FROM models WHERE rowid = 1")
    raw.commit()
    raw.close()
    results = check_results(path)
    ok, detail = results["replay_equals_projections"]
    assert not ok and concepts > 0 and models > 0
    assert sorted(detail.split("; ")) == [
        f"concepts: live {concepts} rows, replay {concepts} rows (same count, different content)",
        f"models: live {models - 1} rows, replay {models} rows",
    ]


# ------------------------------------------------------------------ progress of a replay


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_long_replay_reports_every_interval_and_estimates_from_the_second_report():
    """Reports come no more often than every REPLAY_REPORT_EVERY_S (15 s) of the clock; the
    first gives the events and the share, later ones the time left at the rate since the
    first; the last says how long the whole replay took."""
    heard: list[str] = []
    clock = FakeClock()
    progress = _replay_progress(heard.append, 12_000, clock)
    for at, done in [(10.0, 1_000), (15.0, 2_000), (20.0, 3_000), (30.0, 4_000), (30.0, 5_000)]:
        clock.now = at
        progress(done)
    clock.now = 60.0
    progress(2_000)  # no more done than at the first report: no rate to estimate from
    clock.now = 200.0
    progress(12_000)
    assert heard == [
        "replayed 2,000 of 12,000 events (17%)",
        "replayed 4,000 of 12,000 events (33%), about 1 min 00 s left",
        "replayed 2,000 of 12,000 events (17%)",
        "replayed 12,000 events in 3 min 20 s; comparing the tables",
    ]


def test_a_replay_reports_its_estimate_in_minutes_and_hours():
    heard: list[str] = []
    clock = FakeClock()
    progress = _replay_progress(heard.append, 1_000_000, clock)
    clock.now = 15.0
    progress(1_000)
    clock.now = 30.0
    progress(2_000)  # 1,000 events in 15 s: 998,000 left take 4 h 09 min 30 s
    clock.now = 50.0
    progress(800_000)  # 799,000 in 35 s: 200,000 take 8.76 s
    assert heard[1:] == [
        "replayed 2,000 of 1,000,000 events (0%), about 4 h 09 min left",
        "replayed 800,000 of 1,000,000 events (80%), about 9 s left",
    ]


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0 s"),
        (59.4, "59 s"),
        (59.6, "1 min 00 s"),
        (61, "1 min 01 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h 00 min"),
        (3659, "1 h 00 min"),
        (3725, "1 h 02 min"),
        (36_300, "10 h 05 min"),
    ],
)
def test_a_duration_reads_in_seconds_minutes_or_hours(seconds, text):
    assert _duration(seconds) == text


# ------------------------------------------------------------------ migrations


def _migrations(directory, files: dict[str, str]):
    directory.mkdir()
    for name, sql in files.items():
        (directory / name).write_text(sql, encoding="utf-8")
    return directory


def test_migrations_are_listed_in_order_by_number(tmp_path):
    found = _migrations(
        tmp_path / "m",
        {"0002_b.sql": "SELECT 2;", "0001_a.sql": "SELECT 1;", "0003_c.sql": "SELECT 3;"},
    )
    assert [(v, name) for v, name, _ in list_migrations(found)] == [
        (1, "0001_a"),
        (2, "0002_b"),
        (3, "0003_c"),
    ]


@pytest.mark.parametrize("name", ["1_a.sql", "0001_A.sql", "0001-a.sql", "00001_a.sql"])
def test_a_migration_named_otherwise_is_refused(tmp_path, name):
    directory = _migrations(tmp_path / "m", {name: "SELECT 1;"})
    with pytest.raises(StoreError) as caught:
        list_migrations(directory)
    assert str(caught.value) == (
        f"migration {directory / name}: name must look like 0001_name.sql (4 digits, lowercase)"
    )


@pytest.mark.parametrize(
    "names, versions",
    [(["0002_b.sql"], [2]), (["0001_a.sql", "0003_c.sql"], [1, 3])],
)
def test_migrations_with_a_gap_are_refused(tmp_path, names, versions):
    directory = _migrations(tmp_path / "m", dict.fromkeys(names, "SELECT 1;"))
    with pytest.raises(StoreError) as caught:
        list_migrations(directory)
    assert str(caught.value) == (
        f"migrations in {directory}: numbers must run 1, 2, 3... without gaps; found {versions}"
    )


def test_migrations_are_applied_once_each_in_order_and_recorded(tmp_path):
    directory = _migrations(
        tmp_path / "m",
        {
            "0001_a.sql": "CREATE TABLE a (x INTEGER);\nINSERT INTO a VALUES (1);\n",
            "0002_b.sql": "INSERT INTO a VALUES (2);",
        },
    )
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    assert apply_migrations(conn, directory) == ["0001_a", "0002_b"]
    assert apply_migrations(conn, directory) == []
    (directory / "0003_c.sql").write_text("INSERT INTO a VALUES (3);", encoding="utf-8")
    assert apply_migrations(conn, directory) == ["0003_c"]
    assert [r[0] for r in conn.execute("SELECT x FROM a ORDER BY rowid")] == [1, 2, 3]
    recorded = conn.execute("SELECT version, name, applied_at FROM schema_migrations").fetchall()
    assert [(v, n) for v, n, _ in recorded] == [(1, "0001_a"), (2, "0002_b"), (3, "0003_c")]
    assert all(at.endswith("Z") or "+00:00" in at for _, _, at in recorded)


def test_a_migration_that_fails_leaves_nothing_of_itself(tmp_path):
    directory = _migrations(
        tmp_path / "m",
        {
            "0001_a.sql": "CREATE TABLE a (x INTEGER);",
            "0002_b.sql": "INSERT INTO a VALUES (2);\nINSERT INTO nowhere VALUES (1);",
        },
    )
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="no such table: nowhere"):
        apply_migrations(conn, directory)
    assert conn.execute("SELECT count(*) FROM a").fetchone()[0] == 0
    assert [r[0] for r in conn.execute("SELECT name FROM schema_migrations")] == ["0001_a"]
    assert not conn.in_transaction


def test_an_applied_migration_renamed_is_refused(tmp_path):
    directory = _migrations(tmp_path / "m", {"0001_a.sql": "CREATE TABLE a (x INTEGER);"})
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    apply_migrations(conn, directory)
    (directory / "0001_a.sql").rename(directory / "0001_renamed.sql")
    with pytest.raises(StoreError) as caught:
        apply_migrations(conn, directory)
    assert str(caught.value) == (
        "migration 1 is recorded as '0001_a' but the file is '0001_renamed': an applied"
        " migration must never be renamed or edited"
    )


def test_sql_is_split_into_statements_keeping_triggers_whole():
    sql = (
        "-- a comment before anything\n"
        "CREATE TABLE a (x INTEGER); -- after a statement\n"
        "\n"
        "CREATE TRIGGER a_no_delete BEFORE DELETE ON a\n"
        "BEGIN\n"
        "  SELECT RAISE(ABORT, 'a is append-only; really');\n"
        "END;\n"
        "SELECT 1"
    )
    assert list(split_sql(sql)) == [
        "CREATE TABLE a (x INTEGER); -- after a statement",
        "CREATE TRIGGER a_no_delete BEFORE DELETE ON a\nBEGIN\n"
        "  SELECT RAISE(ABORT, 'a is append-only; really');\nEND;",
        "SELECT 1",
    ]


def test_each_guards_sql_is_read_from_its_migration_with_whitespace_normalised():
    guards = guard_sql()
    assert sorted(guards) == sorted(
        [
            "events_no_update",
            "events_no_delete",
            "events_no_replace",
            "texts_no_update",
            "texts_no_delete",
        ]
    )
    for name, sql in guards.items():
        assert sql.startswith(f"CREATE TRIGGER {name} BEFORE ") and sql.endswith(" END")
        assert "  " not in sql and "\n" not in sql


def test_a_guard_whose_text_differs_only_in_whitespace_is_accepted(tmp_path):
    """SQLite keeps a trigger's text as written: the same trigger laid out otherwise (the
    migration re-indented) still guards, and is not refused."""
    path = tmp_path / "x.db"
    connect(path).close()
    raw = sqlite3.connect(path)
    (sql,) = raw.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'events_no_delete'"
    ).fetchone()
    raw.execute("DROP TRIGGER events_no_delete")
    raw.execute("\n   ".join(sql.split()))
    raw.commit()
    check_guards(raw, path)
    raw.close()
    assert check(path)[3] == HEALTHY[3]


def test_a_database_without_an_event_log_is_refused_by_the_guard_check(tmp_path):
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE eventsx (id INTEGER)")
    with pytest.raises(StoreError) as caught:
        check_guards(raw, path)
    assert str(caught.value) == (
        f"database {path}: no events table (create it with: daydream db init)"
    )


def test_a_database_from_its_size_on_says_what_the_check_is_busy_with(tmp_path, monkeypatch):
    """From CHECK_PROGRESS_BYTES on (not only past it) the long steps are announced, the
    size in whole MB; an empty log replays 0 events."""
    import daydream.db.check as db_check

    path = tmp_path / "x.db"
    connect(path).close()
    size = db_check.database_bytes(path)
    heard: list[str] = []
    monkeypatch.setattr(db_check, "CHECK_PROGRESS_BYTES", size + 1)
    assert check(path, progress=heard.append) == HEALTHY
    assert heard == []
    monkeypatch.setattr(db_check, "database_bytes", lambda _: 1_500_000)
    monkeypatch.setattr(db_check, "CHECK_PROGRESS_BYTES", 1_500_000)
    assert check(path, progress=heard.append) == HEALTHY
    assert heard == [
        "checking the integrity of 2 MB (PRAGMA integrity_check)",
        "replaying 0 events to compare with the projections",
        "checking the full-text index against the texts",
    ]


def test_a_database_whose_projections_were_never_built_is_told_to_rebuild(tmp_path):
    """A log without projections (an older daydream's, or one restored from the log alone)
    is not replayed against nothing: the check says to rebuild."""
    path = tmp_path / "x.db"
    raw = sqlite3.connect(path, isolation_level=None)
    apply_migrations(raw)
    raw.close()
    results = check(path)
    assert [name for name, _, _ in results] == [
        "integrity_check",
        "foreign_key_check",
        "migrations",
        "append_only_guards",
        "projections_current",
    ]
    assert results[-1][1] is False and "daydream db rebuild" in results[-1][2]


def test_a_corrupt_file_fails_the_integrity_check_quoting_sqlites_first_200_characters(
    tmp_path,
):
    path = tmp_path / "x.db"
    connect(path).close()
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE notes (a TEXT, b TEXT)")
    raw.execute("CREATE INDEX notes_a ON notes (a)")
    raw.executemany("INSERT INTO notes VALUES (?, ?)", [(f"a{i}", f"b{i}") for i in range(30)])
    raw.commit()
    raw.execute("PRAGMA writable_schema = ON")  # the index now claims to hold b, not a
    raw.execute(
        "UPDATE sqlite_master SET sql = 'CREATE INDEX notes_a ON notes (b)' WHERE name = 'notes_a'"
    )
    raw.commit()
    raw.close()
    raw = sqlite3.connect(path)
    lines = [row[0] for row in raw.execute("PRAGMA integrity_check")]
    raw.close()
    assert len(lines) > 1 and lines[0] == "row 1 missing from index notes_a"
    results = check_results(path)
    assert results["integrity_check"] == (False, "; ".join(lines)[:200])
    assert len(results["integrity_check"][1]) == 200


def test_the_migrations_are_recorded_in_a_table_of_version_name_and_time(tmp_path):
    conn = connect(tmp_path / "x.db")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(schema_migrations)")]
    conn.close()
    assert columns == ["version", "name", "applied_at"]


@pytest.mark.parametrize("how", ["dropped", "altered"])
def test_every_missing_or_altered_guard_is_named(tmp_path, how):
    path = tmp_path / "x.db"
    connect(path).close()
    raw = sqlite3.connect(path)
    for trigger in ("events_no_update", "texts_no_delete"):
        raw.execute(f"DROP TRIGGER {trigger}")
        if how == "altered":
            raw.execute(f"CREATE TRIGGER {trigger} BEFORE DELETE ON events BEGIN SELECT 1; END")
    raw.commit()
    raw.close()
    problem = "are missing" if how == "dropped" else "differ from the migration that created them"
    with pytest.raises(StoreError) as caught:
        connect(path)
    assert str(caught.value).startswith(
        f"database {path}: append-only guard trigger(s) events_no_update, texts_no_delete"
        f" {problem}, so the event log may have been altered;"
    )


def test_a_tables_digest_follows_its_key_not_the_order_rows_were_written(tmp_path):
    """db check compares each projection table by a hash of its rows in primary-key order:
    the same rows written in another order (a rowid table keeps them in that order) give
    the same digest, and a changed value another one."""
    from daydream.db.projections.replay import table_digests

    rows = [(f"concept-{i}", f"name {i}", "v1", "catalog") for i in range(5)]
    digests = []
    for name, ordered in (("forward", rows), ("backward", rows[::-1])):
        conn = connect(tmp_path / f"{name}.db")
        conn.executemany("INSERT INTO concepts VALUES (?, ?, ?, ?)", ordered)
        conn.commit()
        digests.append(table_digests(conn)["concepts"])
        conn.close()
    assert digests[0] == digests[1]
    assert digests[0][0] == 5
    conn = connect(tmp_path / "forward.db")
    conn.execute("UPDATE concepts SET name = 'renamed' WHERE concept_id = 'concept-3'")
    conn.commit()
    assert table_digests(conn)["concepts"] != digests[0]
    conn.close()


def test_a_replay_scratch_is_in_memory_below_the_bound_else_a_file_beside_the_database(
    offline_cohort, monkeypatch
):
    """db check replays a small database in memory; a larger one (here: any, the bound
    set to 0) into a ``.replay.db`` file beside it, where a leftover of a killed check is
    recognisable, removed when the check ends; both find the projections equal. "Below"
    is strict: a database of exactly the bound's size replays to a file."""
    from daydream.db.files import database_bytes
    from daydream.db.projections import replay as replay_module

    path = Path(offline_cohort())
    opened: list[str] = []
    real_open = replay_module.open_scratch

    def recording(scratch_path):
        opened.append(str(scratch_path))
        return real_open(scratch_path)

    monkeypatch.setattr(replay_module, "open_scratch", recording)
    assert replay_module.compare_with_replay(str(path)) == {}
    monkeypatch.setattr(replay_module, "REPLAY_IN_MEMORY_BELOW", database_bytes(path))
    assert replay_module.compare_with_replay(str(path)) == {}
    memory, on_disk = opened
    assert memory == ":memory:"
    assert Path(on_disk).parent == path.parent and on_disk.endswith(".replay.db")
    assert not [f for f in path.parent.iterdir() if f.name.endswith(".replay.db")]  # removed
