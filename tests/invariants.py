"""The invariant checker every reliability test ends with (ARCHITECTURE §7, I1-I7).

``check_invariants(db)`` reads the final database and raises ``AssertionError`` listing
every violation; ``log_snapshot(db)`` captures the log so a later check can prove it only
grew (I7).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from daydream.clock import isoformat
from daydream.db.check import check
from daydream.db.files import readonly_uri
from tests.counting import counter_mismatches

TERMINAL = ("done", "failed", "blocked", "cancelled")
# An attempt after the first must be explained by how the previous one ended.
EXPLAINS_NEXT_ATTEMPT = (
    "attempt.failed",
    "attempt.throttled",
    "attempt.deferred",
    "lease.expired",
    "lease.released",
)


def log_snapshot(db: Path) -> list[tuple[int, str]]:
    """(id, hash of the whole row) for every event, in id order."""
    conn = sqlite3.connect(readonly_uri(db), uri=True)
    try:
        return [
            (row[0], hashlib.blake2b(json.dumps(row).encode(), digest_size=16).hexdigest())
            for row in conn.execute(
                "SELECT id, type, subject, data, recorded_at, actor FROM events ORDER BY id"
            )
        ]
    finally:
        conn.close()


def tamper_with(db: Path, *statements: str, foreign_keys: bool = True) -> int:
    """Run ``statements`` on the database file behind daydream's back (a plain connection,
    committed); the rows they changed, in all."""
    raw = sqlite3.connect(db)
    try:
        if not foreign_keys:
            raw.execute("PRAGMA foreign_keys = OFF")
        changed = sum(raw.execute(sql).rowcount for sql in statements)
        raw.commit()
        return changed
    finally:
        raw.close()


def check_results(db: Path) -> dict[str, tuple[bool, str]]:
    """``db check``'s results by check name: (ok, detail)."""
    return {name: (ok, detail) for name, ok, detail in check(db)}


def check_invariants(
    db: Path,
    *,
    drained: bool = True,
    before: list[tuple[int, str]] | None = None,
    now: datetime | None = None,
    pending: bool = False,
) -> dict[str, int]:
    """Check I1-I7 on ``db``; returns a few counts for the test's own assertions.

    ``drained``: no worker is running any more, so no task may still be ``running`` (I3 in
    its strict form: a clean drain leaves no lease at all). ``before``: an earlier
    ``log_snapshot`` that must be a prefix of the log now (I7). ``pending``: the run
    stopped with work left on purpose (a stopped pool, an outage, a budget), so ``ready``
    and ``waiting`` generations are allowed (after a drain, still no ``running`` one).
    """
    problems: list[str] = []
    conn = sqlite3.connect(readonly_uri(db), uri=True)
    conn.row_factory = sqlite3.Row
    try:
        _check_terminal(conn, problems, pending)
        _check_single_completion(conn, problems)
        _check_leases(conn, problems, drained, now or datetime.now(timezone.utc))
        _check_attempts(conn, problems)
        _check_log_grows(conn, db, problems, before)
        problems.extend(counter_mismatches(conn))  # the counters equal a fresh count
        counts = {
            "generations": conn.execute("SELECT count(*) FROM generations").fetchone()[0],
            "done": conn.execute(
                "SELECT count(*) FROM generations WHERE status = 'done'"
            ).fetchone()[0],
            "events": conn.execute("SELECT count(*) FROM events").fetchone()[0],
        }
    finally:
        conn.close()
    # I4 (replay == projections) and I6 (integrity_check, foreign_key_check), plus guards.
    for name, passed, detail in check(db):
        if not passed:
            problems.append(f"I4/I6 {name}: {detail}")
    if problems:
        raise AssertionError("invariants violated:\n  " + "\n  ".join(problems))
    return counts


def _check_terminal(conn: sqlite3.Connection, problems: list[str], pending: bool) -> None:
    """I1: every planned generation is done, failed (with a reason), blocked or cancelled
    (or, with ``pending``, still ready or waiting)."""
    allowed = (*TERMINAL, "ready", "waiting") if pending else TERMINAL
    for gen_id, status, error, blocked_reason in conn.execute(
        "SELECT gen_id, status, error, blocked_reason FROM generations"
    ):
        if status not in allowed:
            problems.append(f"I1 {gen_id} is {status}, not terminal")
        if status == "failed" and not error:
            problems.append(f"I1 {gen_id} failed without a reason")
        if status == "blocked" and not (error and blocked_reason):
            problems.append(f"I1 {gen_id} blocked without a visible reason")


def _check_single_completion(conn: sqlite3.Connection, problems: list[str]) -> None:
    """I2: no generation has two generation.completed events."""
    for gen_id, count in conn.execute(
        "SELECT json_extract(data, '$.gen_id'), count(*) FROM events"
        " WHERE type = 'generation.completed' GROUP BY 1 HAVING count(*) > 1"
    ):
        problems.append(f"I2 {gen_id} completed {count} times")
    # A reply that failed to parse and parses after `daydream reparse` is done by its
    # generation.reparsed event (state ok) instead.
    for (gen_id,) in conn.execute(
        "SELECT g.gen_id FROM generations g WHERE g.status = 'done' AND NOT EXISTS"
        " (SELECT 1 FROM events e WHERE e.subject = g.gen_id AND (e.type = 'generation.completed'"
        " OR (e.type = 'generation.reparsed' AND json_extract(e.data, '$.state') = 'ok')))"
    ):
        problems.append(f"I2 {gen_id} is done without a generation.completed event")


def _check_leases(
    conn: sqlite3.Connection, problems: list[str], drained: bool, now: datetime
) -> None:
    """I3: no running task with an expired lease (after a drain: no running task at all)."""
    for gen_id, expires in conn.execute(
        "SELECT gen_id, lease_expires_at FROM tasks WHERE status = 'running'"
    ):
        if drained:
            problems.append(f"I3 {gen_id} is still running (lease until {expires}) after drain")
        elif expires is None or expires < isoformat(now):
            problems.append(f"I3 {gen_id} holds an expired lease ({expires})")
    for (gen_id,) in conn.execute(
        "SELECT gen_id FROM tasks WHERE status != 'running' AND (lease_token IS NOT NULL"
        " OR lease_owner IS NOT NULL OR lease_expires_at IS NOT NULL)"
    ):
        problems.append(f"I3 {gen_id} is not running but still carries a lease")


def _check_attempts(conn: sqlite3.Connection, problems: list[str]) -> None:
    """I5: attempts == attempt.started events since the last retry, each one explained.

    Streams: the generations in id order beside their attempt events in subject order (the
    subject of these events is their generation; SQLite sorts them, spilling to temporary
    files), so memory stays flat however long the log (a day-long soak). Retries name
    many generations in one event; they are few and read up front.
    """
    retried: dict[str, list[tuple[int, str, dict]]] = {}
    for event_id, data in conn.execute(
        "SELECT id, data FROM events WHERE type = 'generations.retried' ORDER BY id"
    ):
        for gen_id in json.loads(data)["gen_ids"]:
            retried.setdefault(gen_id, []).append((event_id, "generations.retried", {}))
    events = conn.cursor().execute(
        "SELECT subject, id, type, data FROM events WHERE type IN"
        " ('attempt.started', 'attempt.failed', 'attempt.throttled', 'attempt.deferred',"
        " 'lease.expired', 'lease.released', 'generation.completed') ORDER BY subject, id"
    )
    pending = next(events, None)
    for gen_id, attempts in conn.execute("SELECT gen_id, attempts FROM generations ORDER BY gen_id"):
        while pending is not None and pending[0] < gen_id:  # events of no generation
            problems.append(f"I5 {pending[2]} #{pending[1]} names unknown generation {pending[0]}")
            pending = next(events, None)
        history = []
        while pending is not None and pending[0] == gen_id:
            history.append((pending[1], pending[2], json.loads(pending[3])))
            pending = next(events, None)
        if gen_id in retried:
            history = sorted(history + retried[gen_id], key=lambda item: item[0])
        _check_history(gen_id, attempts, history, problems)
    for subject, event_id, type_, _ in [pending, *events] if pending is not None else []:
        problems.append(f"I5 {type_} #{event_id} names unknown generation {subject}")


def _check_history(
    gen_id: str, attempts: int, history: list[tuple[int, str, dict]], problems: list[str]
) -> None:
    started = 0
    ended: dict[int, str] = {}  # token -> how that attempt ended
    previous: int | None = None
    for event_id, type_, payload in history:
        if type_ == "generations.retried":
            started, ended, previous = 0, {}, None
        elif type_ == "attempt.started":
            started += 1
            if payload["attempt"] != started:
                problems.append(
                    f"I5 {gen_id}: attempt.started #{event_id} says attempt"
                    f" {payload['attempt']}, but it is attempt {started} since the last retry"
                )
            if previous is not None and ended.get(previous) not in EXPLAINS_NEXT_ATTEMPT:
                problems.append(
                    f"I5 {gen_id}: attempt {started} (#{event_id}) follows attempt token"
                    f" {previous}, which ended with {ended.get(previous, 'nothing')}"
                )
            previous = event_id
        else:
            token = payload["token"]
            if token in ended:
                problems.append(
                    f"I5 {gen_id}: attempt token {token} ended twice"
                    f" ({ended[token]}, then {type_} #{event_id})"
                )
            ended.setdefault(token, type_)
    if attempts != started:
        problems.append(
            f"I5 {gen_id}: attempts {attempts} but {started} attempt.started event(s)"
            " since the last retry"
        )


def _check_log_grows(
    conn: sqlite3.Connection,
    db: Path,
    problems: list[str],
    before: list[tuple[int, str]] | None,
) -> None:
    """I7: ids run 1..N with no hole (nothing was deleted), and an older log is a prefix."""
    # ids are the rowid: unique, so 1..N without a hole is min 1 and max N
    count, low, high = conn.execute("SELECT count(*), min(id), max(id) FROM events").fetchone()
    if count and (low, high) != (1, count):
        problems.append("I7 event ids are not 1..N: an event was removed or reordered")
    if before is not None:
        now = log_snapshot(db)
        if now[: len(before)] != before:
            changed = next((a[0] for a, b in zip(before, now, strict=False) if a != b), len(now))
            problems.append(f"I7 the log changed at or after event {changed} since the snapshot")
