"""``daydream db check``: every invariant of a database, checked.

Integrity, foreign keys, migrations, the append-only guards, that replaying the log
reproduces every projection table exactly, and that the full-text index matches the texts.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from daydream.db.connection import connect
from daydream.db.files import database_bytes
from daydream.db.migrations import GUARD_TRIGGERS, _has_table, list_migrations
from daydream.db.projections.replay import compare_with_replay
from daydream.db.projections.schema import DDL_HASH, built_by
from daydream.db.projections.search import check_search_index
from daydream.errors import StoreError

CHECK_PROGRESS_BYTES = 64 * 2**20  # `daydream db check` says what it does from this size
REPLAY_REPORT_EVERY_S = 15.0  # how often a long replay says how far it is and how long is left
REPLAY_BATCH = 5000  # events replayed between two looks at the clock


def check(
    path: str | Path, *, progress: Callable[[str], None] | None = None
) -> list[tuple[str, bool, str]]:
    """``daydream db check``: (check name, passed, detail) for each invariant.

    ``progress`` hears what a database of ``CHECK_PROGRESS_BYTES`` or more is busy with
    (an integrity check and a replay take minutes on a day-long log)."""
    results: list[tuple[str, bool, str]] = []
    try:
        conn = connect(path, create=False, migrate=False)  # a missing file: one-line error
    except StoreError as exc:
        if "guard" not in str(exc):
            raise
        return [("append_only_guards", False, str(exc))]
    size = database_bytes(path)
    say = progress if progress is not None and size >= CHECK_PROGRESS_BYTES else (lambda _: None)
    try:
        say(f"checking the integrity of {size / 1e6:,.0f} MB (PRAGMA integrity_check)")
        results += _file_checks(conn)
        built = built_by(conn) if _has_table(conn, "projection_meta") else None
        events = conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0
    finally:
        conn.close()
    if built != DDL_HASH:
        # Built by another version's DDL or appliers: a replay would differ by design.
        results.append(
            (
                "projections_current",
                False,
                "the projections were built by another version of daydream; rebuild them"
                " from the log with: daydream db rebuild (any other daydream command that"
                " opens the database does it too)",
            )
        )
        return results
    say(f"replaying {events:,} events to compare with the projections")
    mismatches = compare_with_replay(
        str(path), progress=_replay_progress(say, events), batch=REPLAY_BATCH
    )
    if mismatches:
        detail = "; ".join(
            f"{table}: live {live[0]} rows, replay {replayed[0]} rows"
            + (" (same count, different content)" if live[0] == replayed[0] else "")
            for table, (live, replayed) in mismatches.items()
        )
        results.append(("replay_equals_projections", False, detail))
    else:
        results.append(
            (
                "replay_equals_projections",
                True,
                "every projection table matches a replay of the log",
            )
        )
    say("checking the full-text index against the texts")
    conn = connect(path, create=False, migrate=False)
    try:
        problem = check_search_index(conn)
    finally:
        conn.close()
    results.append(("search_index", problem is None, problem or "matches the texts"))
    return results


def _replay_progress(
    say: Callable[[str], None], total: int, clock: Callable[[], float] = time.monotonic
) -> Callable[[int], None]:
    """What hears a replay's progress: every ``REPLAY_REPORT_EVERY_S``, the events replayed
    and, from the second report on, how long the rest will take at the rate since the
    first (the first events include the plans, far slower to apply than the rest); at the
    end, that the tables are being compared (the live and the replayed projections, each
    read in key order)."""
    start = last = clock()
    first: tuple[float, int] | None = None

    def heard(done: int) -> None:
        nonlocal last, first
        now = clock()
        if done >= total:
            say(f"replayed {total:,} events in {_duration(now - start)}; comparing the tables")
            return
        if now - last < REPLAY_REPORT_EVERY_S:
            return
        last = now
        line = f"replayed {done:,} of {total:,} events ({100 * done / total:.0f}%)"
        if first is None:
            first = (now, done)
        elif done > first[1]:
            left = (total - done) * (now - first[0]) / (done - first[1])
            line += f", about {_duration(left)} left"
        say(line)

    return heard


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 20 s``, ``1 h 05 min``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _file_checks(conn: sqlite3.Connection) -> list[tuple[str, bool, str]]:
    """The file's own checks: SQLite's integrity and foreign keys, the migrations applied,
    the append-only guards (``connect`` refuses a database whose guards differ)."""
    results: list[tuple[str, bool, str]] = []
    integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    results.append(("integrity_check", integrity == ["ok"], "; ".join(integrity)[:200]))
    fk = conn.execute("PRAGMA foreign_key_check").fetchall()
    results.append(
        ("foreign_key_check", not fk, f"{len(fk)} violation(s)" if fk else "no violations")
    )
    recorded = [
        row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY version")
    ]
    expected = [name for _, name, _ in list_migrations()]
    results.append(
        (
            "migrations",
            recorded == expected,
            f"{len(recorded)} applied"
            if recorded == expected
            else f"applied {recorded}, expected {expected}",
        )
    )
    results.append(
        (
            "append_only_guards",
            True,
            ", ".join(GUARD_TRIGGERS) + " present, as their migration wrote them",
        )
    )
    return results
