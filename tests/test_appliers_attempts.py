"""What the events of an attempt's life do to ``generations`` and ``calls``
(``daydream/db/projections/attempts.py``), read back column by column.

Events are appended in the test process (``append``, a fixed clock) to an offline cohort
(``k``: draft -> copy essay -> judge, by ``m1``); after each step the counters the pages
read agree with a fresh count (``tests/counting.py``). A replay applies an event the way
``append`` does, so only the tables themselves can tell a wrong applier.
"""

from __future__ import annotations

from daydream import events as ev
from daydream.clock import isoformat
from daydream.db.connection import connect
from daydream.db.log import append
from daydream.db.projections.apply import apply_event
from daydream.db.texts import put_text
from daydream.db.transaction import transaction
from tests.counting import counter_mismatches
from tests.scenario import FixedClock

LATER = "2031-01-01T12:05:00.000000Z"
AT = isoformat(FixedClock()())


def _append(conn, event: ev.Event) -> int:
    (event_id,) = append(conn, [event], actor="test", clock=FixedClock())
    return event_id


def _start(conn, gen_id: str, attempt: int = 1, **fields) -> int:
    started = ev.AttemptStarted(
        gen_id=gen_id, attempt=attempt, worker="w1", lease_expires_at=LATER, **fields
    )
    return _append(conn, started)


def _gen(conn, gen_id: str, columns: str) -> tuple:
    return tuple(
        conn.execute(f"SELECT {columns} FROM generations WHERE gen_id = ?", (gen_id,)).fetchone()
    )


def _calls(conn) -> list[tuple]:
    return [
        tuple(row)
        for row in conn.execute(
            "SELECT event_id, gen_id, model_id, pool, ok, http_status, error, prompt_tokens,"
            " completion_tokens, cost, latency_s, slot_wait_s, reasoning_tokens, offline,"
            " recorded_at, endpoint FROM calls ORDER BY event_id"
        )
    ]


def _drafts(conn) -> list[tuple[str, str]]:
    """(gen id, pool) of the drafts, in gen id order."""
    return [
        tuple(row)
        for row in conn.execute(
            "SELECT gen_id, pool FROM generations WHERE stage = 'draft' ORDER BY gen_id"
        )
    ]


LEASE = "status, attempts, lease_owner, lease_token, lease_expires_at, not_before, slot"


def test_a_lease_is_taken_queued_given_a_slot_extended_and_expired_only_by_its_token(
    offline_cohort,
) -> None:
    conn = connect(offline_cohort(combos=3))
    (d1, _), (d2, _), (d3, _) = _drafts(conn)
    token = _start(conn, d1, attempt=3, queued=True, reserved_usd=0.25)
    other = _start(conn, d2, queued=True)
    _start(conn, d3)
    assert _gen(conn, d1, LEASE + ", reserved_usd") == (
        ("running", 3, "w1", token, LATER, None, 0, 0.25)
    )
    assert _gen(conn, d2, "slot") == (0,)
    assert _gen(conn, d3, "slot, reserved_usd") == (1, None)
    assert counter_mismatches(conn) == []

    # d2's lease is `other`: a slot taken with another token is not its
    _append(conn, ev.SlotsTaken(worker="w1", leases=[[d1, token], [d2, token]]))
    assert _gen(conn, d1, "slot") == (1,)
    assert _gen(conn, d2, "slot") == (0,)
    _append(
        conn,
        ev.LeasesExtended(
            worker="w1", leases=[[d1, token], [d2, token]], lease_expires_at="2031-02-01"
        ),
    )
    assert _gen(conn, d1, "lease_expires_at") == ("2031-02-01",)
    assert _gen(conn, d2, "lease_expires_at") == (LATER,)
    assert counter_mismatches(conn) == []

    _append(conn, ev.LeaseExpired(gen_id=d2, token=token, worker="w1"))  # not its token
    assert _gen(conn, d2, "status, lease_token") == ("running", other)
    _append(conn, ev.LeaseExpired(gen_id=d1, token=token, worker="w1"))
    expired = ("ready", None, None, None, "lease of w1 expired")
    released = "status, lease_owner, lease_token, lease_expires_at, last_error"
    assert _gen(conn, d1, released) == expired
    assert counter_mismatches(conn) == []


def test_a_released_lease_counts_a_release_and_keeps_the_last_error(offline_cohort) -> None:
    conn = connect(offline_cohort(combos=1))
    [(d1, _)] = _drafts(conn)
    first = _start(conn, d1)
    _append(conn, ev.LeaseExpired(gen_id=d1, token=first, worker="w1"))
    token = _start(conn, d1, attempt=2)
    _append(conn, ev.LeaseReleased(gen_id=d1, token=first, reason="stale"))  # not its token
    assert _gen(conn, d1, "status, releases") == ("running", 0)
    _append(conn, ev.LeaseReleased(gen_id=d1, token=token, reason="shutdown"))
    columns = "status, releases, lease_owner, lease_token, lease_expires_at, last_error"
    assert _gen(conn, d1, columns) == ("ready", 1, None, None, None, "lease of w1 expired")
    assert counter_mismatches(conn) == []


def test_a_throttled_or_deferred_attempt_is_ready_again_and_its_call_recorded(
    offline_cohort,
) -> None:
    conn = connect(offline_cohort(combos=1))
    [(d1, pool)] = _drafts(conn)
    token = _start(conn, d1)
    throttled = ev.AttemptThrottled(
        gen_id=d1,
        token=token,
        error="429: slow down",
        retry_at=LATER,
        latency_s=0.5,
        slot_wait_s=0.125,
        endpoint="http://e1",
    )
    t = _append(conn, throttled)
    columns = (
        "status, lease_owner, lease_token, lease_expires_at, not_before, throttles, last_error"
    )
    assert _gen(conn, d1, columns) == ("ready", None, None, None, LATER, 1, "429: slow down")
    call = (d1, "m1", pool, 0)
    no_tokens = (None, None, None)
    assert _calls(conn) == [
        (t, *call, 429, "429: slow down", *no_tokens, 0.5, 0.125, None, None, AT, "http://e1")
    ]

    token = _start(conn, d1, attempt=2)
    deferred = ev.AttemptDeferred(
        gen_id=d1,
        token=token,
        reason="endpoint_down",
        error="refused",
        http_status=503,
        endpoint="http://e2",
    )
    d = _append(conn, deferred)
    columns = "status, lease_token, not_before, throttles, deferrals, last_error"
    assert _gen(conn, d1, columns) == ("ready", None, None, 1, 1, "refused")
    assert _calls(conn)[1:] == [
        (d, *call, 503, "refused", *no_tokens, None, None, None, None, AT, "http://e2")
    ]
    token = _start(conn, d1, attempt=3)
    stopped = ev.AttemptDeferred(gen_id=d1, token=token, reason="pool_stopped", error="stopped")
    _append(conn, stopped)
    assert _gen(conn, d1, "status, deferrals, last_error") == ("ready", 2, "stopped")
    assert len(_calls(conn)) == 2  # no call was made
    assert counter_mismatches(conn) == []


def test_a_reply_then_its_completion_fill_the_generation_and_ready_its_children(
    offline_cohort,
) -> None:
    conn = connect(offline_cohort(combos=1))
    [(d1, pool)] = _drafts(conn)
    (essay,) = conn.execute("SELECT gen_id FROM generations WHERE stage = 'essay'").fetchone()
    token = _start(conn, d1)
    prompt, raw, reasoning, parsed = (
        put_text(conn, "p"),
        put_text(conn, "r"),
        put_text(conn, "t"),
        put_text(conn, "x"),
    )
    reply = ev.GenerationResponded(
        gen_id=d1,
        token=token,
        mode="llm",
        prompt_hash=prompt,
        raw_hash=raw,
        provider="vllm",
        model_id="m1",
        resolved_model="small-v2",
        finish_reason="stop",
        prompt_tokens=10,
        completion_tokens=20,
        latency_s=1.5,
        cost=0.01,
        offline=True,
        http_status=200,
        slot_wait_s=0.25,
        reasoning_hash=reasoning,
        reasoning_tokens=5,
        endpoint="http://e1",
    )
    r = _append(conn, reply)
    columns = (
        "prompt_hash, raw_hash, provider, resolved_model, finish_reason, prompt_tokens,"
        " completion_tokens, cost, latency_s, offline, reasoning_hash, reasoning_tokens"
    )
    filled = (prompt, raw, "vllm", "small-v2", "stop", 10, 20, 0.01, 1.5, 1, reasoning, 5)
    assert _gen(conn, d1, columns) == filled
    assert _calls(conn) == [
        (r, d1, "m1", pool, 1, 200, None, 10, 20, 0.01, 1.5, 0.25, 5, 1, AT, "http://e1")
    ]
    found = conn.execute("SELECT hash FROM search_texts ORDER BY hash").fetchall()
    assert sorted(h for (h,) in found) == sorted([prompt, raw])

    done = ev.GenerationCompleted(gen_id=d1, token=token, parsed_hash=parsed, written_scale=10)
    _append(conn, done)
    columns = (
        "status, lease_owner, lease_token, lease_expires_at, last_error, state, error,"
        " parsed_hash, score, written_scale, finished_at"
    )
    cleared = (None, None, None, None)  # the lease and the last error
    assert _gen(conn, d1, columns) == ("done", *cleared, "ok", None, parsed, None, 10.0, AT)
    assert _gen(conn, essay, "status") == ("ready",)
    assert conn.execute("SELECT 1 FROM search_texts WHERE hash = ?", (parsed,)).fetchone()
    assert counter_mismatches(conn) == []

    # the copy essay's reply is no call
    token = _start(conn, essay)
    copy = ev.GenerationResponded(
        gen_id=essay, token=token, mode="copy", prompt_hash=parsed, raw_hash=parsed
    )
    _append(conn, copy)
    assert len(_calls(conn)) == 1
    assert _gen(conn, essay, "raw_hash, offline") == (parsed, 0)


def test_a_failed_attempt_retried_later_or_final_and_only_provider_errors_are_calls(
    offline_cohort,
) -> None:
    conn = connect(offline_cohort(combos=1))
    [(d1, pool)] = _drafts(conn)
    token = _start(conn, d1)
    failed = ev.AttemptFailed(
        gen_id=d1,
        token=token,
        state="provider_error",
        error="500: oops",
        retryable=True,
        final=False,
        retry_at=LATER,
        http_status=500,
        latency_s=2.0,
        slot_wait_s=0.5,
        endpoint="http://e1",
    )
    f = _append(conn, failed)
    columns = (
        "status, lease_owner, lease_token, lease_expires_at, not_before, last_error, state,"
        " error, finished_at"
    )
    assert _gen(conn, d1, columns) == ("ready", None, None, None, LATER, "500: oops") + (
        None,
        None,
        None,
    )
    no_tokens = (None, None, None)
    assert _calls(conn) == [
        (f, d1, "m1", pool, 0, 500, "500: oops", *no_tokens, 2.0, 0.5, None, None, AT, "http://e1")
    ]
    assert counter_mismatches(conn) == []

    token = _start(conn, d1, attempt=2)
    parse = ev.AttemptFailed(
        gen_id=d1, token=token, state="parse_error", error="no block", retryable=False, final=True
    )
    _append(conn, parse)
    assert _gen(conn, d1, columns) == ("failed", None, None, None, None, "no block") + (
        "parse_error",
        "no block",
        AT,
    )
    assert len(_calls(conn)) == 1
    assert counter_mismatches(conn) == []


def test_an_attempt_event_applied_outside_a_batch_reads_its_own_counting_keys(
    offline_cohort,
) -> None:
    """``apply_event`` with no batch open (not through ``append``, which opens one and
    notes the generations its events name) counts the change all the same."""
    conn = connect(offline_cohort(combos=4))
    drafts = [gen_id for gen_id, _ in _drafts(conn)]
    tokens = [_start(conn, gen_id) for gen_id in drafts]
    d1, d2, d3, d4 = drafts
    failed = ev.AttemptFailed(
        gen_id=d1,
        token=tokens[0],
        state="parse_error",
        error="no block",
        retryable=True,
        final=False,
        retry_at=LATER,
    )
    throttled = ev.AttemptThrottled(gen_id=d2, token=tokens[1], error="429", retry_at=LATER)
    expired = ev.LeaseExpired(gen_id=d3, token=tokens[2], worker="w1")
    done = ev.GenerationCompleted(gen_id=d4, token=tokens[3], parsed_hash=put_text(conn, "x"))
    for event_id, event in enumerate((failed, throttled, expired, done), 9001):
        with transaction(conn):
            apply_event(conn, event_id, event, AT)
        assert counter_mismatches(conn) == []
    assert [_gen(conn, g, "status, last_error") for g in drafts] == [
        ("ready", "no block"),
        ("ready", "429"),
        ("ready", "lease of w1 expired"),
        ("done", None),
    ]
