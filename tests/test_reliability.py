"""Reliability: crashes, stale workers, contention, poison tasks, shutdown, key hygiene.

The tests of ``/work/shared/reference/reliability-tests.md`` (T1-T4, T6c, T7, T10-T12), scaled
to run in CI: real SQLite files, real worker processes (``python -m daydream worker`` and
``daydream run``), and the loopback ``FakeAPI`` standing in for the model API. Each test
takes a ``seed`` (``DAYDREAM_TEST_SEED`` overrides it; it is printed, so a failure shows it)
that drives the fake API's latency draws and the moments of the faults, and each ends with
the invariant checker (I1-I7, ``tests/invariants.py``) on the final database.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from daydream import events as ev
from daydream.clock import utcnow
from daydream.db.connection import connect
from daydream.db.log import append
from daydream.queue.leases import claim, heartbeat, record, release
from daydream.worker.config import WorkerConfig
from tests.fakeapi import FakeAPI, Fault
from tests.invariants import check_invariants, log_snapshot
from tests.scenario import (
    TEMPLATES,
    FixedClock,
    cohort,
    daydream_cmd,
    env,
    events_of,
    execute,
    gen_ids,
    gen_of,
    model,
    offline_model,
    query,
    requests_per_gen,
    run,
    scalar,
    script_by_gen,
    start,
    stop,
    wait_for,
    worker_cmd,
)

# Shaped like an OpenRouter key (the redaction looks for that shape) but broken by "_" so
# that secret scanners do not take it for a real one.
FAKE_KEY = "sk-or-v1-FAKE_KEY_FAKE_KEY_FAKE_KEY_0000"
FIELDS = ("gen_id", "token", "parsed_hash", "score", "written_scale")


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("DAYDREAM_TEST_SEED", "20251125"))
    print(f"seed={value} (rerun with DAYDREAM_TEST_SEED={value})")
    return value


def count_done(db: Path) -> int:
    return scalar(db, "SELECT count(*) FROM generations WHERE status = 'done'")


def leased_by(db: Path, worker: str) -> set[str]:
    """The worker's leases: its calls and its queued tasks."""
    return {
        r[0]
        for r in query(
            db, "SELECT gen_id FROM tasks WHERE status = 'running' AND lease_owner = ?", [worker]
        )
    }


def query_set(db: Path, sql: str) -> set[str]:
    return {r[0] for r in query(db, sql)}


def calling(db: Path, worker: str | None = None) -> set[str]:
    """Leases that hold pool slots (calls in flight, or ended and not yet recorded)."""
    sql = "SELECT gen_id FROM tasks WHERE status = 'running' AND slot = 1"
    params = []
    if worker is not None:
        sql += " AND lease_owner = ?"
        params.append(worker)
    return {r[0] for r in query(db, sql, params)}


def duplicate_calls(api: FakeAPI) -> dict[str, int]:
    return {gen: n - 1 for gen, n in requests_per_gen(api).items() if n > 1}


# -- T1-lite: kill -9 workers mid-run, resume -----------------------------------------------


def test_t1_kill_9_workers_mid_run_then_resume_completes_each_generation_once(tmp_path, seed):
    rng = random.Random(seed)
    with FakeAPI(latency_s=(0.15, 0.6), seed=seed) as api:
        db = cohort(
            tmp_path, [model("m1"), model("m2")], combos=10, axes={"evaluation_llm": ["m1", "m2"]}
        )
        total = len(gen_ids(db))  # 10 drafts, 10 copy essays, 20 judgements
        workers = {
            name: start(
                worker_cmd(
                    db, "--name", name, "--lease", "2", "--concurrency", "4", base_url=api.base_url
                ),
                tmp_path / f"{name}.log",
            )
            for name in ("A", "B")
        }
        at_risk: set[str] = set()  # tasks a killed worker held: the only ones it may re-run
        try:
            # A dies with calls in flight; B carries on and takes A's work after its leases expire.
            wait_for(lambda: count_done(db) >= 4 and leased_by(db, "A"), what="A busy")
            time.sleep(rng.uniform(0, 0.3))
            workers["A"].send_signal(signal.SIGKILL)
            workers["A"].wait(10)
            at_risk |= leased_by(db, "A")
            assert at_risk, "the kill must hit A mid-call for this test to mean anything"
            # Then B dies too, with its own calls in flight.
            done_at_first_kill = count_done(db)
            wait_for(
                lambda: count_done(db) >= done_at_first_kill + 4 and leased_by(db, "B"),
                what="B busy",
            )
            workers["B"].send_signal(signal.SIGKILL)
            workers["B"].wait(10)
            at_risk |= leased_by(db, "B")
        finally:
            stop(workers.values())
        assert count_done(db) < total, "both workers died before the end"
        before = log_snapshot(db)
        # Resume: `daydream run` waits out the dead workers' leases and finishes the rest.
        done = run(
            daydream_cmd("run", "k", "--db", str(db), "--base-url", f"vllm={api.base_url}"),
            timeout=60,
        )
        assert "Traceback" not in done.stderr
    counts = check_invariants(db, before=before)
    assert counts["done"] == counts["generations"] == total
    duplicates = duplicate_calls(api)
    # At-least-once calls, exactly-once results: only a task a dead worker held is called
    # twice, and never more than once more per kill.
    assert set(duplicates) <= at_risk, (duplicates, at_risk)
    assert sum(duplicates.values()) <= len(at_risk)
    assert events_of(db, types=["lease.expired"]), "the dead workers' leases were never reaped"
    assert all(
        n == 1
        for n in Counter(
            e["gen_id"] for e in events_of(db, types=["generation.completed"])
        ).values()
    )


# -- T3: a stale worker cannot complete -----------------------------------------------------


def test_t3_stale_worker_past_its_lease_writes_nothing(offline_cohort, seed):
    db = offline_cohort(combos=2)
    clock = FixedClock(utcnow())
    a = WorkerConfig(db_path=db, name="A", lease_s=10, seed=seed)
    b = WorkerConfig(db_path=db, name="B", lease_s=10, seed=seed)
    conn_a = connect(db, create=False)
    conn_b = connect(db, create=False)
    try:
        (task_a,) = claim(conn_a, a, 1, clock=clock)
        (outcome_a,) = execute(a, [task_a], clock)  # A did the work, but stalls before recording
        assert outcome_a.ok
        clock.advance(10.5)  # A's lease has expired
        claimed_b = claim(conn_b, b, 2, clock=clock)
        task_b = next(t for t in claimed_b if t.gen_id == task_a.gen_id)
        assert task_b.token > task_a.token
        assert record(conn_b, execute(b, claimed_b, clock), b, clock=clock) == (2, 0)
        events_before = scalar(db, "SELECT count(*) FROM events")

        # A wakes up: its heartbeat, its result and its release all write nothing.
        assert heartbeat(conn_a, a, [task_a], clock=clock) == {task_a.gen_id}
        assert record(conn_a, [outcome_a], a, clock=clock) == (0, 1)
        assert release(conn_a, [task_a], "worker stopped", actor="worker:A") == 0
        assert scalar(db, "SELECT count(*) FROM events") == events_before
        # A reaper that comes later never expires or fails a finished task (a claim reaps
        # expired leases first; this one may take nothing itself).
        clock.advance(3600)
        reaper = WorkerConfig(db_path=db, name="reaper", pools=("no-such-pool",))
        assert claim(conn_a, reaper, 100, clock=clock) == []
        assert [e["gen_id"] for e in events_of(db, types=["lease.expired"])] == [task_a.gen_id]
        completed = events_of(db, task_a.gen_id, ["generation.completed"])
        assert [e["token"] for e in completed] == [task_b.token]
        assert not events_of(db, types=["attempt.failed"])
    finally:
        conn_a.close()
        conn_b.close()
    run(worker_cmd(db))  # drain the rest (offline model)
    check_invariants(db)


def test_t3_a_frozen_worker_process_is_fenced_after_its_lease_expires(tmp_path, seed):
    """SIGSTOP a worker mid-call past its lease; another finishes its tasks; SIGCONT it."""
    with FakeAPI(latency_s=0.8, seed=seed) as api:
        db = cohort(tmp_path, [model("m1")], combos=3)
        a = start(
            worker_cmd(
                db, "--name", "A", "--lease", "1.5", "--concurrency", "2", base_url=api.base_url
            ),
            tmp_path / "A.log",
        )
        try:
            wait_for(lambda: api.calls >= 2, what="A's calls in flight")
            a.send_signal(signal.SIGSTOP)
            frozen = leased_by(db, "A")
            assert len(calling(db, "A")) == 2 and len(frozen) == 3  # 2 calls + 1 queued
            time.sleep(1.6)  # past the lease (A's heartbeats are frozen too)
            run(worker_cmd(db, "--name", "B", base_url=api.base_url))  # B finishes everything
            assert count_done(db) == len(gen_ids(db))
            last_before = scalar(db, "SELECT max(id) FROM events")
            a.send_signal(signal.SIGCONT)
            assert a.wait(30) == 0
        finally:
            if a.poll() is None:
                a.send_signal(signal.SIGCONT)
            stop([a])
    log = (tmp_path / "A.log").read_text()
    assert "Traceback" not in log
    # A's results for the tasks B took over were discarded: A wrote nothing after waking.
    assert query(db, "SELECT count(*) FROM events WHERE id > ?", [last_before]) == [(0,)]
    for gen_id in frozen:
        (completed,) = events_of(db, gen_id, ["generation.completed"])
        assert completed["actor"] == "worker:B"
    check_invariants(db)


# -- T2: deterministic crash points -----------------------------------------------------------


def crash(db: Path, point: str, api: FakeAPI, *, name: str = "crash", **extra: str) -> None:
    """Run a worker that dies (exit 137, like SIGKILL) at crash point ``point``."""
    done = run(
        worker_cmd(db, "--name", name, "--lease", "1", "--concurrency", "4", base_url=api.base_url),
        environ=env(DAYDREAM_CRASH_AT=point, **extra),
        check=False,
    )
    assert done.returncode == 137, f"no crash at {point}: {done.returncode}\n{done.stderr}"


def by_actor(db: Path, actor: str, types: list[str]) -> set[str]:
    return {e["gen_id"] for e in events_of(db, types=types) if e["actor"] == f"worker:{actor}"}


@pytest.mark.parametrize(
    "point",
    # The first claim and the first call come before anything is recorded; the others crash
    # on their second visit, mid-run, with results committed before.
    ["after_claim:1", "before_call:1", "after_response:2", "before_commit:2", "after_commit:2"],
)
def test_t2_a_crash_at_each_step_of_a_task_loses_nothing_and_duplicates_nothing(
    tmp_path, seed, point
):
    with FakeAPI(latency_s=0.05, seed=seed) as api:
        db = cohort(tmp_path, [model("m1")], combos=5, axes={"draft_replicate": [1, 2, 3, 4]})
        crash(db, point, api)
        called_by_crash = {gen_of(r.body) for r in api.requests}
        recorded = by_actor(db, "crash", ["generation.completed", "attempt.failed"])
        run(worker_cmd(db, "--name", "drain", base_url=api.base_url), timeout=60)
    counts = check_invariants(db)  # I1-I7: all done, none twice, no lease left, replay equal
    assert counts["done"] == counts["generations"] == 60
    calls = requests_per_gen(api)
    twice = {gen for gen, n in calls.items() if n > 1}
    # A result committed before the crash is never asked for again...
    assert not (twice & recorded)
    # ...and only calls the crash cut off before their results were committed are repeated.
    assert twice <= called_by_crash - recorded
    name = point.partition(":")[0]
    if name in ("after_claim", "before_call"):
        assert not called_by_crash and not twice  # the crash came before any call went out
    # The recording transactions the crashed worker committed (one clock reading each).
    commits = {
        e["recorded_at"]
        for e in events_of(db, types=["generation.responded"])
        if e["actor"] == "worker:crash"
    }
    if name in ("after_response", "before_commit"):
        assert twice  # replies were in memory, not in the database: asked again
    if name == "before_commit":
        assert len(commits) == 1  # the second recording transaction left no trace
    if name == "after_commit":
        assert len(commits) == 2 and recorded  # the second one survived the crash


def test_t2_a_crash_inside_a_heartbeat_or_a_reap_rolls_it_back(tmp_path, seed):
    with FakeAPI(latency_s=0.6, seed=seed) as api:
        db = cohort(tmp_path, [model("m1")], combos=3)
        # Inside a heartbeat (every lease / 3 = 0.33 s; calls take 0.6 s): the extension is
        # rolled back, so the leases run out at their old expiry.
        crash(db, "heartbeat", api, name="beat")
        assert not events_of(db, types=["leases.extended"])
        held = leased_by(db, "beat")
        assert held
        # Inside a reap: the next worker expires beat's leases, then dies before COMMIT.
        time.sleep(1.1)
        crash(db, "reap", api, name="reaper")
        assert not events_of(db, types=["lease.expired"])
        assert leased_by(db, "beat") == held
        run(worker_cmd(db, "--name", "drain", base_url=api.base_url), timeout=60)
    expired = [e["gen_id"] for e in events_of(db, types=["lease.expired"])]
    assert sorted(expired) == sorted(held)  # reaped once, by the drain
    counts = check_invariants(db)
    assert counts["done"] == counts["generations"]


def test_t12_failed_result_writes_are_kept_and_retried_without_calling_again(tmp_path, seed):
    """A recording transaction that fails (a full disk, an I/O error: DAYDREAM_FAIL_AT)
    rolls back; the worker keeps the results in memory, backs off, writes them later, and
    never asks the model again for a result it already has."""
    with FakeAPI(latency_s=0.02, seed=seed) as api:
        db = cohort(tmp_path, [model("m1")], combos=5, axes={"draft_replicate": [1, 2, 3, 4]})
        done = run(
            worker_cmd(db, "--name", "w", base_url=api.base_url),
            environ=env(DAYDREAM_FAIL_AT="before_commit:3"),
            timeout=60,
        )
    failures = [
        line for line in done.stderr.splitlines() if "writing to the database failed" in line
    ]
    assert len(failures) == 3, done.stderr
    assert "disk I/O error (injected by DAYDREAM_FAIL_AT=before_commit)" in failures[0]
    assert "result(s) kept in memory, trying again in 0.5s" in failures[0]
    assert "Traceback" not in done.stderr
    assert not duplicate_calls(api)  # each generation asked for once
    counts = check_invariants(db)
    assert counts["done"] == counts["generations"] == 60


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs of its own (T7 needs a disk that really fills up)."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"T7 needs to mount a small tmpfs: {done.stderr.strip() or 'mount failed'}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _padded_reply(body: Any) -> str:
    """The default reply after 32 KB of filler lines: big results that fill a small disk."""
    from daydream.providers.offline import render_offline_reply

    prompt = body["messages"][-1]["content"]
    filler = "".join(f"filler line {i} of a long reply\n" for i in range(1000))
    return filler + render_offline_reply(prompt, model=body["model"], label="[fakeapi]")


def test_t7_a_full_disk_stops_the_worker_writing_until_space_is_freed(tmp_path, small_disk, seed):
    """The database's disk fills up during a run (SQLITE_FULL on a real tmpfs): the worker
    keeps its results, backs off without a crash loop, and once space is freed it writes
    them and finishes by itself; nothing is lost or half-written, nothing asked twice, and
    a checkpoint empties the WAL."""
    # The padded replies are about 8,500 tokens: the calls must allow that many, or a
    # reply reaching max_tokens would (rightly) be truncated.
    templates = {
        stage: [{**entry, "max_tokens": 9000} if "max_tokens" in entry else entry for entry in entries]
        for stage, entries in TEMPLATES.items()
    }
    with FakeAPI(latency_s=0.02, seed=seed, reply=_padded_reply) as api:
        db = cohort(
            small_disk,
            [model("m1")],
            combos=5,
            axes={"draft_replicate": [1, 2, 3, 4]},
            templates=templates,
        )
        filler = small_disk / "filler"
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        filler.write_bytes(b"\0" * (free - 768 * 1024))  # leave 768 KB
        log = tmp_path / "worker.log"
        worker = start(worker_cmd(db, "--name", "w", base_url=api.base_url), log)
        try:
            full = "writing to the database failed (database or disk is full)"
            wait_for(lambda: log.read_text().count(full) >= 2, timeout=60, what="a full disk")
            assert worker.poll() is None  # backing off, not dead
            done_while_full = count_done(db)
            filler.unlink()
            assert worker.wait(60) == 0, log.read_text()
        finally:
            stop([worker])
    output = log.read_text()
    assert "Traceback" not in output, output
    failures = output.count(full)
    # Backoff (0.5 s, doubling): a couple of failures a second at most, never a loop.
    assert 2 <= failures <= 8, output
    assert "result(s) kept in memory" in output
    assert not duplicate_calls(api)  # results kept in memory were not asked for again
    counts = check_invariants(db)
    assert counts["done"] == counts["generations"] == 60 > done_while_full
    conn = connect(db, create=False)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        wal_bytes = Path(f"{db}-wal").stat().st_size
    finally:
        conn.close()
    assert busy == 0 and wal_bytes == 0


def test_a_failed_heartbeat_is_skipped_and_the_next_one_keeps_the_leases(tmp_path, seed):
    with FakeAPI(latency_s=1.2, seed=seed) as api:
        db = cohort(tmp_path, [model("m1")], combos=2)
        done = run(
            worker_cmd(db, "--name", "w", "--lease", "1.5", base_url=api.base_url),
            environ=env(DAYDREAM_FAIL_AT="heartbeat:1"),
            timeout=60,
        )
    assert "heartbeat not written (disk I/O error (injected" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not events_of(db, types=["lease.expired"])  # the next beat came in time
    assert not duplicate_calls(api)
    counts = check_invariants(db)
    assert counts["done"] == counts["generations"]


def test_a_misspelt_crash_point_is_refused(tmp_path):
    db = cohort(tmp_path, [model("m1")], combos=1)
    done = run(worker_cmd(db), environ=env(DAYDREAM_CRASH_AT="before_cal"), check=False)
    assert done.returncode == 1
    assert "DAYDREAM_CRASH_AT='before_cal' is not a crash point" in done.stderr
    assert "Traceback" not in done.stderr
    # A failure point exists only where a write can fail (not, say, after a claim).
    done = run(worker_cmd(db), environ=env(DAYDREAM_FAIL_AT="after_claim"), check=False)
    assert done.returncode == 1
    assert (
        "DAYDREAM_FAIL_AT='after_claim' is not a failure point: use one of before_commit,"
        " heartbeat" in done.stderr
    )


# -- T6(c): a crash-consistent snapshot ------------------------------------------------------


def test_t6c_a_snapshot_taken_with_the_workers_frozen_opens_checks_and_resumes(tmp_path, seed):
    """The database, its WAL and its shared-memory file copied while every writer is
    frozen mid-run (what a power cut leaves with synchronous=FULL) open as a sound
    database that replays to the same tables and runs to the end."""
    with FakeAPI(latency_s=(0.01, 0.05), seed=seed) as api:
        db = cohort(tmp_path, [model("m1")], combos=5, axes={"draft_replicate": [1, 2, 3, 4]})
        procs = [
            start(
                worker_cmd(db, "--name", f"w{i}", "--lease", "1", base_url=api.base_url),
                tmp_path / f"w{i}.log",
            )
            for i in range(2)
        ]
        snapshot = tmp_path / "snapshot"
        snapshot.mkdir()
        try:
            wait_for(lambda: count_done(db) >= 10, what="work under way")
            for proc in procs:
                proc.send_signal(signal.SIGSTOP)
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{db}{suffix}")
                if source.exists():
                    (snapshot / f"run.db{suffix}").write_bytes(source.read_bytes())
            for proc in procs:
                proc.send_signal(signal.SIGCONT)
            assert [proc.wait(60) for proc in procs] == [0, 0]
        finally:
            stop(procs)
        copy = snapshot / "run.db"
        assert count_done(copy) < 60  # taken mid-run
        checked = run(daydream_cmd("db", "check", "--db", str(copy)))
        assert "replay_equals_projections" in checked.stdout
        time.sleep(1.1)  # the frozen workers' leases in the copy run out
        run(worker_cmd(copy, "--name", "resume", base_url=api.base_url), timeout=60)
    counts = check_invariants(copy)
    assert counts["done"] == counts["generations"] == 60


# -- T4: writer contention ------------------------------------------------------------------


def test_t4_sixteen_workers_on_one_database_never_see_database_is_locked(tmp_path, seed):
    db = cohort(
        tmp_path,
        [offline_model("m1"), offline_model("m2", "large")],
        combos=10,
        axes={
            "draft_llm": ["m1", "m2"],
            "evaluation_llm": ["m1", "m2"],
            "draft_replicate": list(range(1, 31)),
        },
    )
    total = len(gen_ids(db))
    assert total == 2400
    logs = [tmp_path / f"w{i}.log" for i in range(16)]
    procs = [
        start(
            worker_cmd(
                db,
                "--name",
                f"w{i}",
                "--offline",
                "--offline-latency",
                "0.01",
                "--concurrency",
                "8",
                "--lease",
                "1.5",
            ),
            log,
        )
        for i, log in enumerate(logs)
    ]
    try:
        codes = [proc.wait(120) for proc in procs]
    finally:
        stop(procs)
    output = "\n".join(log.read_text() for log in logs)
    assert "database is locked" not in output
    assert "SQLITE_BUSY" not in output and "Traceback" not in output
    assert codes == [0] * 16
    counts = check_invariants(db)
    assert counts["done"] == total
    # every worker took part, and heartbeats ran under contention
    actors = {
        r[0] for r in query(db, "SELECT DISTINCT actor FROM events WHERE type = 'attempt.started'")
    }
    assert len(actors) >= 8
    assert events_of(db, types=["leases.extended"])


DEFERRED_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
for _ in range(300):
    conn.execute("BEGIN")  # deferred: the write lock is taken only at the UPDATE
    n = conn.execute("SELECT n FROM counter").fetchone()[0]
    conn.execute("UPDATE counter SET n = ?", (n + 1,))
    conn.execute("COMMIT")
"""


def test_t4_negative_control_deferred_read_then_write_does_hit_database_is_locked(tmp_path):
    """The check above can fail: the mistake it guards against shows up as this message."""
    db = tmp_path / "control.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE counter (n INTEGER)")
    conn.execute("INSERT INTO counter VALUES (0)")
    conn.commit()
    conn.close()
    logs = [tmp_path / f"c{i}.log" for i in range(8)]
    procs = [start([sys.executable, "-c", DEFERRED_WRITER, str(db)], log) for log in logs]
    try:
        for proc in procs:
            proc.wait(60)
    finally:
        stop(procs)
    output = "\n".join(log.read_text() for log in logs)
    assert "database is locked" in output


# -- T10: a poison task ---------------------------------------------------------------------


def test_t10_a_poison_task_fails_after_exactly_max_attempts_with_backoff(tmp_path, seed):
    def always_500_for_poison(index: int, body: Any) -> Any:
        return "500" if body and body.get("model") == "poison" else None

    with FakeAPI(script=always_500_for_poison, latency_s=(0.0, 0.05), seed=seed) as api:
        db = cohort(
            tmp_path,
            [model("m1"), model("poison")],
            combos=3,
            axes={"draft_llm": ["m1", "poison"]},
        )
        done = run(
            daydream_cmd(
                "run",
                "k",
                "--db",
                str(db),
                "--max-attempts",
                "3",
                "--base-url",
                f"vllm={api.base_url}",
            ),
            timeout=60,
            check=False,
        )
    assert done.returncode == 3, done.stderr  # finished, with infrastructure failures
    poison = [r[0] for r in query(db, "SELECT gen_id FROM generations WHERE model_id = 'poison'")]
    assert len(poison) == 3
    calls = requests_per_gen(api)
    for gen_id in poison:
        assert calls[gen_id] == 3
        row = query(
            db, "SELECT status, state, attempts, error FROM generations WHERE gen_id = ?", [gen_id]
        )[0]
        assert row[:3] == ("failed", "provider_error", 3)
        assert row[3] == (
            "provider vllm, model poison: HTTP 500: fakeapi: scripted 500 (gave up after 3 attempt(s))"
        )
        history = [e for e in events_of(db, gen_id) if e["type"] != "leases.extended"]
        failures = [e for e in history if e["type"] == "attempt.failed"]
        assert [(f["final"], f["retry_at"] is not None) for f in failures] == [
            (False, True),
            (False, True),
            (True, False),
        ]
        starts = [e for e in history if e["type"] == "attempt.started"]
        assert len(starts) == 3
        for failure, following in zip(failures[:-1], starts[1:], strict=True):
            assert following["recorded_at"] >= failure["retry_at"]  # backoff honoured
        for child in query(
            db, "SELECT gen_id, status, error FROM generations WHERE parent_gen_id = ?", [gen_id]
        ):
            assert child[1:] == ("blocked", f"parent {gen_id} failed: provider_error")
    healthy = query(
        db,
        "SELECT status, count(*) FROM generations WHERE gen_id NOT IN (SELECT gen_id FROM"
        " generations WHERE model_id = 'poison' OR status = 'blocked') GROUP BY 1",
    )
    assert healthy == [("done", 9)]  # 3 drafts, 3 essays, 3 judgements
    check_invariants(db)


def test_t10_a_task_whose_worker_dies_every_time_fails_after_max_attempts(offline_cohort, seed):
    """A crash-looping task (its worker dies holding it) must not be retried forever."""
    db = offline_cohort(combos=1)
    (draft,) = gen_ids(db, "draft")
    clock = FixedClock(utcnow())
    doomed = WorkerConfig(db_path=db, name="doomed", lease_s=10, max_attempts=3, seed=seed)
    reaper = WorkerConfig(db_path=db, name="reaper", max_attempts=3, pools=("no-such-pool",))
    conn = connect(db, create=False)
    try:
        for attempt in (1, 2, 3):
            (task,) = claim(conn, doomed, 1, clock=clock)  # ... and the worker dies with it
            assert (task.gen_id, task.attempt) == (draft, attempt)
            clock.advance(10.5)
        assert claim(conn, reaper, 10, clock=clock) == []
    finally:
        conn.close()
    endings = [
        e["type"] for e in events_of(db, draft) if e["type"] in ("lease.expired", "attempt.failed")
    ]
    assert endings == ["lease.expired", "lease.expired", "attempt.failed"]
    row = query(
        db, "SELECT status, state, attempts, error FROM generations WHERE gen_id = ?", [draft]
    )[0]
    assert row == (
        "failed",
        "error",
        3,
        "the lease of worker doomed expired on attempt 3 of 3: the worker died or stalled"
        " while running it, every time (see the workers' logs); gave up",
    )
    blocked = query(db, "SELECT DISTINCT status, error FROM generations WHERE stage != 'draft'")
    assert blocked == [("blocked", f"parent {draft} failed: error")]
    check_invariants(db)


# -- T11: clean shutdown ---------------------------------------------------------------------


def test_t11_sigterm_and_ctrl_c_shut_down_cleanly_and_running_again_resumes(tmp_path, seed):
    faults: dict[str, list[Any]] = {}
    slow = {"latency": 3.0}

    def script(index: int, body: Any) -> Any:
        scripted = script_by_gen(faults)(index, body)
        return scripted if scripted is not None else Fault("ok", delay_s=slow["latency"])

    with FakeAPI(script=script, seed=seed) as api:
        db = cohort(tmp_path, [model("m1")], combos=8)

        # 1. SIGTERM with calls slower than --grace: the worker releases their leases.
        log = tmp_path / "term.log"
        worker = start(
            worker_cmd(
                db, "--name", "T", "--grace", "0.3", "--concurrency", "5", base_url=api.base_url
            ),
            log,
        )
        try:
            wait_for(lambda: api.calls >= 5, what="five calls in flight")
            held = leased_by(db, "T")
            cut_off = calling(db, "T")  # calls released mid-flight
            assert len(held) == 6 and len(cut_off) == 5  # 5 calls + 1 queued
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(10) == 0
        finally:
            stop([worker])
        assert "Traceback" not in log.read_text()
        assert "6 released" in log.read_text()
        released = {e["gen_id"] for e in events_of(db, types=["lease.released"])}
        assert released == held
        assert scalar(db, "SELECT count(*) FROM tasks WHERE status = 'running'") == 0
        assert not events_of(db, types=["generation.completed"])

        # 2. SIGTERM with calls shorter than --grace but longer than the lease: they finish
        # and are recorded; heartbeats keep the leases through the grace period, at the
        # worker's usual pace (lease / 3), not on every turn of the shutdown loop.
        slow["latency"] = 2.0
        calls_before = api.calls
        log = tmp_path / "grace.log"
        worker = start(
            worker_cmd(
                db,
                "--name",
                "G",
                "--grace",
                "10",
                "--lease",
                "1.5",
                "--concurrency",
                "2",
                base_url=api.base_url,
            ),
            log,
        )
        try:
            wait_for(lambda: api.calls >= calls_before + 2, what="two calls in flight")
            graced = calling(db, "G")
            queued_g = leased_by(db, "G") - graced
            stopped_at = scalar(db, "SELECT max(id) FROM events")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(20) == 0
        finally:
            stop([worker])
        # The queued lease is given back at once; the two calls finish within the grace.
        assert "2 ok" in log.read_text() and "1 released" in log.read_text()
        finished = {e["gen_id"] for e in events_of(db, types=["generation.completed"])}
        assert finished == graced and len(graced) == 2 and len(queued_g) == 1
        released |= queued_g
        beats = query(
            db,
            "SELECT count(*) FROM events WHERE type = 'leases.extended' AND id > ?",
            [stopped_at],
        )[0][0]
        assert 1 <= beats <= 5  # ~2 s of grace at one beat per 0.5 s
        assert not ({e["gen_id"] for e in events_of(db, types=["lease.expired"])} & graced)

        # 3. Ctrl-C on `daydream run` (SIGINT to its process group): calls shorter than the
        # grace period finish and are recorded; nothing is left leased.
        slow["latency"] = 1.0
        calls_before = api.calls
        runner_log = tmp_path / "run.log"
        runner = start(
            daydream_cmd(
                "run",
                "k",
                "--db",
                str(db),
                "--workers",
                "1",
                "--concurrency",
                "2",
                "--base-url",
                f"vllm={api.base_url}",
            ),
            runner_log,
            start_new_session=True,
        )
        try:
            wait_for(lambda: api.calls >= calls_before + 2, what="the run's calls in flight")
            time.sleep(0.2)
            in_flight = {gen_of(r.body) for r in api.requests[calls_before:]}
            queued_r = query_set(
                db, "SELECT gen_id FROM tasks WHERE status = 'running' AND slot = 0"
            )
            released |= queued_r
            os.killpg(runner.pid, signal.SIGINT)
            assert runner.wait(20) == 130
        finally:
            stop([runner])
        output = runner_log.read_text()
        assert "interrupted: run the same command again to resume" in output
        assert "Traceback" not in output
        finished = {e["gen_id"] for e in events_of(db, types=["generation.completed"])}
        assert in_flight <= finished, "Ctrl-C abandoned calls instead of letting them finish"
        assert {e["gen_id"] for e in events_of(db, types=["lease.released"])} == released
        assert scalar(db, "SELECT count(*) FROM tasks WHERE status = 'running'") == 0

        # 4. Running again resumes. A released lease was not a failed attempt, so with
        # --max-attempts 2 one 500 on each released task is still survivable.
        slow["latency"] = 0.0
        pending = released - finished  # released in step 1, not picked up in steps 2 and 3
        assert pending, "steps 2 and 3 must leave a released task for step 4 to mean anything"
        for gen_id in pending:
            faults[gen_id] = ["500"]
        run(
            daydream_cmd(
                "run",
                "k",
                "--db",
                str(db),
                "--max-attempts",
                "2",
                "--base-url",
                f"vllm={api.base_url}",
            ),
            timeout=60,
        )
    counts = check_invariants(db)
    assert counts["done"] == counts["generations"] == 24
    # A task released mid-call was called again once (once more if step 4 made it fail
    # once); a queued lease released before its call costs no call; every other
    # generation was called exactly once.
    calls = requests_per_gen(api)
    expected = {gen: (gen in cut_off) + 1 + (gen in pending) for gen in released}
    assert {gen: n for gen, n in calls.items() if n != 1} == {
        gen: n for gen, n in expected.items() if n != 1
    }


# -- API keys never reach the database or the logs -------------------------------------------


def test_the_api_key_never_reaches_the_database_wal_or_logs(tmp_path, seed):
    faults: dict[str, list[Any]] = {}
    with FakeAPI(script=script_by_gen(faults), seed=seed) as api:
        db = cohort(
            tmp_path,
            [{"id": "m1", "provider": "openrouter", "model": "fake/model-1"}],
            combos=3,
        )
        # A hostile provider that quotes the key back in its error messages: retried
        # errors (500, 429) on every draft, and a permanent one (400) on one judgement.
        for draft in gen_ids(db, "draft"):
            faults[draft] = [
                Fault("500", message=f"upstream rejected Bearer {FAKE_KEY}"),
                Fault("429", retry_after="0", message=f"slow down, key {FAKE_KEY}"),
            ]
        judged = gen_ids(db, "evaluation")[0]
        faults[judged] = [Fault("400", message=f"key {FAKE_KEY} may not use this model")]
        holder = sqlite3.connect(db)  # keeps the -wal file on disk after the workers close
        try:
            holder.execute("SELECT count(*) FROM events").fetchone()
            done = run(  # the workers' stderr is the runner's
                daydream_cmd(
                    "run",
                    "k",
                    "--db",
                    str(db),
                    "--base-url",
                    f"openrouter={api.base_url}",
                ),
                environ=env(**{"OPENROUTER_API_KEY": FAKE_KEY}),
                timeout=60,
                check=False,
            )
            assert done.returncode == 3, done.stderr  # the 400 and the 500s: provider errors
            files = {p.name: p.read_bytes() for p in tmp_path.glob("run.db*")}
        finally:
            holder.close()
    # the key was really sent, and errors quoting it were really recorded
    assert {r.headers.get("authorization") for r in api.requests} == {f"Bearer {FAKE_KEY}"}
    assert len(events_of(db, types=["attempt.throttled"])) == 3
    assert len(events_of(db, types=["attempt.failed"])) == 4
    assert "run.db-wal" in files and len(files["run.db-wal"]) > 0
    needles = [FAKE_KEY.encode(), b"FAKEKEYFAKEKEYFAKEKEY"]
    for name, content in files.items():
        for needle in needles:
            assert needle not in content, f"the API key is in {name}"
    for stream in (done.stdout, done.stderr):
        assert "FAKEKEYFAKEKEYFAKEKEY" not in stream
    errors = [e["error"] for e in events_of(db, types=["attempt.failed", "attempt.throttled"])]
    assert all("[redacted]" in error for error in errors), errors
    assert query(db, "SELECT status, error FROM generations WHERE gen_id = ?", [judged]) == [
        (
            "failed",
            "provider openrouter, model fake/model-1: HTTP 400: key [redacted] may not use"
            " this model",
        )
    ]
    counts = check_invariants(db)
    assert counts["done"] == counts["generations"] - 1


# -- the checker itself ---------------------------------------------------------------------


def test_the_invariant_checker_reports_each_kind_of_violation(offline_cohort, seed):
    """A checker that cannot fail proves nothing: feed it a database that breaks I1-I5."""
    db = offline_cohort(combos=2)
    with pytest.raises(AssertionError, match=r"I1 d_\w+ is ready, not terminal"):
        check_invariants(db)
    clock = FixedClock(utcnow())
    config = WorkerConfig(db_path=db, name="A", lease_s=10, seed=seed)
    conn = connect(db, create=False)
    try:
        first, second = claim(conn, config, 2, clock=clock)
        assert record(conn, execute(config, [first], clock), config, clock=clock) == (1, 0)
        with pytest.raises(AssertionError, match=rf"I3 {second.gen_id} is still running"):
            check_invariants(db)
        # a second completion (bypassing the fencing check) and an attempt out of sequence
        (completed,) = [
            ev.GenerationCompleted(**{k: v for k, v in e.items() if k in FIELDS})
            for e in events_of(db, first.gen_id, ["generation.completed"])
        ]
        append(conn, [completed], actor="test")
        append(
            conn,
            [
                ev.AttemptStarted(
                    gen_id=second.gen_id,
                    attempt=5,
                    worker="A",
                    lease_expires_at="2000-01-01T00:00:00.000000Z",
                ),
                # attempts of generations that were never planned, before and after the rest
                *(
                    ev.AttemptStarted(
                        gen_id=ghost, attempt=1, worker="A", lease_expires_at="2000-01-01T00:00:00Z"
                    )
                    for ghost in ("a_ghost", "z_ghost1", "z_ghost2")
                ),
            ],
            actor="test",
        )
    finally:
        conn.close()
    with pytest.raises(AssertionError) as error:
        check_invariants(db)
    message = str(error.value)
    assert f"I2 {first.gen_id} completed 2 times" in message
    assert f"I5 {second.gen_id}: attempt.started" in message
    assert f"I3 {second.gen_id} is still running" in message
    for ghost in ("a_ghost", "z_ghost1", "z_ghost2"):
        assert f"names unknown generation {ghost}" in message


# -- T18: the long soak, run short ----------------------------------------------------------


def test_t18_a_short_soak_keeps_load_on_kills_workers_and_passes_its_checks(tmp_path, seed):
    """``python -m tests.soak`` is the long soak (hours, nightly); here it runs for 20 s with
    a kill every 2-5 s and a checkpoint every 5 s, and must pass every one of its checks."""
    soak = subprocess.Popen(
        [sys.executable, "-m", "tests.soak", "--minutes", "0.33", "--seed", str(seed),
         "--kill-every", "2", "5", "--checkpoint-every", "5", "--sample-every", "1",
         "--dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=Path(__file__).resolve().parent.parent, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = soak.communicate(timeout=400)
    finally:  # its workers and server are in its process group: none may outlive the test
        if soak.poll() is None:
            os.killpg(soak.pid, signal.SIGKILL)
            soak.wait()
    assert soak.returncode == 0, output
    summary = output[output.index("soak: ", 10) :]
    assert int(summary.split(" kills")[0].rsplit(" ", 1)[1]) >= 3, summary
    assert "FAIL" not in summary and summary.count("PASS") == 7, summary
    assert "PASS  every generation done" in summary


def test_t18_the_soak_flags_a_growing_worker_wal_or_database():
    from tests.soak import Sample, growth_checks

    def samples(rss, wal=1e6, per_event=800.0):
        return [
            Sample(at=i * 600.0, done=i, events=1000 * (i + 1), wal_bytes=wal(i) if callable(wal)
                   else int(wal), db_bytes=int(per_event(i) if callable(per_event) else per_event)
                   * 1000 * (i + 1), rss_mb=rss(i))
            for i in range(12)
        ]  # fmt: skip

    def failed(checks):
        return [name for name, ok, _ in checks if not ok]

    assert failed(growth_checks(samples(lambda i: 45.0), rss_slope=2.0)) == []
    # 1 MB every 10 minutes: 6 MB/h, 5 MB over the second half
    leaking = growth_checks(samples(lambda i: 45.0 + i), rss_slope=2.0)
    assert failed(leaking) == ["control worker RSS flat"]
    assert failed(growth_checks(samples(lambda i: 45.0, wal=lambda i: i * 8e6), rss_slope=2.0)) == [
        "WAL bounded"
    ]
    # seen between samples (the soak looks at the WAL every 0.2 s)
    assert failed(growth_checks(samples(lambda i: 45.0), rss_slope=2.0, peak_wal=64 << 20)) == [
        "WAL bounded"
    ]
    bloating = growth_checks(samples(lambda i: 45.0, per_event=lambda i: 800.0 * 1.1**i), rss_slope=2.0)
    assert failed(bloating) == ["database bytes per event not growing"]
