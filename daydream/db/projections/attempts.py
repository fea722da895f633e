"""Appliers of an attempt's life: claimed (leased), extended, given a slot, expired or
released, throttled, answered, completed or failed.

A task's lease lives in its ``generations`` row (owner, fencing token, expiry, slot); a
result is applied only by the event of the attempt that holds it (the leases module checks
the token before appending).
"""

from __future__ import annotations

from collections.abc import Callable

from daydream import events as ev
from daydream.db.projections.cells import score_cells
from daydream.db.projections.lineage import children_of, select_in, set_blocked
from daydream.db.projections.search import index_texts
from daydream.db.projections.tally import CALL_RETURNING, WAITING_CHILDREN_SQL, tally_of


def _attempt_started(conn, event_id, e: ev.AttemptStarted, at):
    tally_of(conn).becomes(conn, e.gen_id, "queued" if e.queued else "running")
    conn.execute(
        "UPDATE generations SET status = 'running', attempts = ?, lease_owner = ?,"
        " lease_token = ?, lease_expires_at = ?, not_before = NULL, slot = ?, reserved_usd = ?"
        " WHERE gen_id = ?",
        (
            e.attempt,
            e.worker,
            event_id,
            e.lease_expires_at,
            int(not e.queued),
            e.reserved_usd,
            e.gen_id,
        ),
    )


def _leases_extended(conn, event_id, e: ev.LeasesExtended, at):
    conn.executemany(
        "UPDATE generations SET lease_expires_at = ? WHERE gen_id = ? AND lease_token = ?"
        " AND status = 'running'",
        [(e.lease_expires_at, gen_id, token) for gen_id, token in e.leases],
    )


def _slots_taken(conn, event_id, e: ev.SlotsTaken, at):
    tally_of(conn).touch(conn, [gen_id for gen_id, _ in e.leases])
    conn.executemany(
        "UPDATE generations SET slot = 1 WHERE gen_id = ? AND lease_token = ?"
        " AND status = 'running'",
        [(gen_id, token) for gen_id, token in e.leases],
    )


def _release(conn, gen_id: str, token: int, error: str | None = None) -> None:
    tally_of(conn).touch(conn, (gen_id,))
    conn.execute(
        "UPDATE generations SET status = 'ready', lease_owner = NULL, lease_token = NULL,"
        " lease_expires_at = NULL, last_error = COALESCE(?, last_error)"
        " WHERE gen_id = ? AND lease_token = ?",
        (error, gen_id, token),
    )


def _lease_expired(conn, event_id, e: ev.LeaseExpired, at):
    _release(conn, e.gen_id, e.token, f"lease of {e.worker} expired")


def _lease_released(conn, event_id, e: ev.LeaseReleased, at):
    # A clean shutdown gave the task back unfinished: not a spent attempt (counted apart).
    conn.execute(
        "UPDATE generations SET releases = releases + 1 WHERE gen_id = ? AND lease_token = ?",
        (e.gen_id, e.token),
    )
    _release(conn, e.gen_id, e.token)


def _attempt_throttled(conn, event_id, e: ev.AttemptThrottled, at):
    tally_of(conn).touch(conn, (e.gen_id,))
    conn.execute(
        "UPDATE generations SET status = 'ready', lease_owner = NULL, lease_token = NULL,"
        " lease_expires_at = NULL, not_before = ?, throttles = throttles + 1, last_error = ?"
        " WHERE gen_id = ?",
        (e.retry_at, e.error, e.gen_id),
    )
    _record_failed_call(conn, event_id, e, 429, at)


def _attempt_deferred(conn, event_id, e: ev.AttemptDeferred, at):
    # Ready again at once: claims skip the task while its endpoint is down or its pool is
    # stopped. Not an attempt that counts (deferrals, like throttles, are subtracted).
    conn.execute(
        "UPDATE generations SET deferrals = deferrals + 1 WHERE gen_id = ? AND lease_token = ?",
        (e.gen_id, e.token),
    )
    _release(conn, e.gen_id, e.token, e.error)
    if e.endpoint is not None:  # a call was made (not: skipped, its pool being stopped)
        _record_failed_call(conn, event_id, e, e.http_status, at)


def _record_failed_call(conn, event_id, e, http_status, at) -> None:
    """A call that got no usable reply, in ``calls``: its status, the time at the server
    and the wait for a slot where the event says, and the endpoint that answered."""
    cursor = conn.execute(
        "INSERT INTO calls (event_id, gen_id, model_id, pool, ok, http_status, error,"
        " latency_s, slot_wait_s, recorded_at, endpoint)"
        " SELECT ?, gen_id, model_id, pool, 0, ?, ?, ?, ?, ?, ? FROM generations"
        " WHERE gen_id = ?" + CALL_RETURNING,
        (
            event_id,
            http_status,
            e.error,
            getattr(e, "latency_s", None),
            getattr(e, "slot_wait_s", None),
            at,
            getattr(e, "endpoint", None),
            e.gen_id,
        ),
    )
    tally_of(conn).add_call(cursor.fetchone())


def _generation_responded(conn, event_id, e: ev.GenerationResponded, at):
    [stage] = conn.execute(
        "UPDATE generations SET prompt_hash = ?, raw_hash = ?, provider = ?,"
        " resolved_model = ?, finish_reason = ?, prompt_tokens = ?, completion_tokens = ?,"
        " cost = ?, latency_s = ?, offline = ?, reasoning_hash = ?, reasoning_tokens = ?"
        " WHERE gen_id = ? RETURNING stage",
        (
            e.prompt_hash,
            e.raw_hash,
            e.provider,
            e.resolved_model,
            e.finish_reason,
            e.prompt_tokens,
            e.completion_tokens,
            e.cost,
            e.latency_s,
            int(e.offline),
            e.reasoning_hash,
            e.reasoning_tokens,
            e.gen_id,
        ),
    ).fetchone()
    index_texts(conn, stage, (("prompt", e.prompt_hash), ("raw", e.raw_hash)))
    if e.mode == "llm":
        cursor = conn.execute(
            "INSERT INTO calls (event_id, gen_id, model_id, pool, ok, http_status,"
            " prompt_tokens, completion_tokens, cost, latency_s, slot_wait_s,"
            " reasoning_tokens, offline, recorded_at, endpoint)"
            " SELECT ?, ?, ?, pool, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM generations"
            " WHERE gen_id = ?" + CALL_RETURNING,
            (
                event_id,
                e.gen_id,
                e.model_id,
                e.http_status,
                e.prompt_tokens,
                e.completion_tokens,
                e.cost,
                e.latency_s,
                e.slot_wait_s,
                e.reasoning_tokens,
                int(e.offline),
                at,
                e.endpoint,
                e.gen_id,
            ),
        )
        tally_of(conn).add_call(cursor.fetchone())


def _generation_completed(conn, event_id, e: ev.GenerationCompleted, at):
    tally = tally_of(conn)
    tally.becomes(conn, e.gen_id, "done", "ok")
    [stage] = conn.execute(
        "UPDATE generations SET status = 'done', lease_owner = NULL, lease_token = NULL,"
        " lease_expires_at = NULL, last_error = NULL, state = 'ok', error = NULL,"
        " parsed_hash = ?, score = ?, written_scale = ?, finished_at = ? WHERE gen_id = ?"
        " RETURNING stage",
        (e.parsed_hash, e.score, e.written_scale, at, e.gen_id),
    ).fetchone()
    index_texts(conn, stage, (("parsed", e.parsed_hash),))
    if e.score is not None:
        score_cells(conn, e.gen_id, e.score)
    waiting = conn.execute(WAITING_CHILDREN_SQL, (e.gen_id,)).fetchall()
    if waiting:
        tally.seen(waiting)
        children = list(dict.fromkeys(row[0] for row in waiting))  # a row per cohort
        for child in children:
            tally.becomes(conn, child, "ready")
        select_in(conn, "UPDATE generations SET status = 'ready' WHERE gen_id IN", children)


def _attempt_failed(conn, event_id, e: ev.AttemptFailed, at):
    tally_of(conn).touch(conn, (e.gen_id,))
    if e.state == "provider_error":
        _record_failed_call(conn, event_id, e, e.http_status, at)
    if not e.final:
        conn.execute(
            "UPDATE generations SET status = 'ready', lease_owner = NULL, lease_token = NULL,"
            " lease_expires_at = NULL, not_before = ?, last_error = ? WHERE gen_id = ?",
            (e.retry_at, e.error, e.gen_id),
        )
        return
    conn.execute(
        "UPDATE generations SET status = 'failed', lease_owner = NULL, lease_token = NULL,"
        " lease_expires_at = NULL, not_before = NULL, last_error = ?, state = ?, error = ?,"
        " finished_at = ? WHERE gen_id = ?",
        (e.error, e.state, e.error, at, e.gen_id),
    )
    set_blocked(conn, children_of(conn, [e.gen_id]), f"parent {e.gen_id} failed: {e.state}")


APPLIERS: dict[str, Callable[..., None]] = {
    ev.AttemptStarted.type: _attempt_started,
    ev.LeasesExtended.type: _leases_extended,
    ev.SlotsTaken.type: _slots_taken,
    ev.LeaseExpired.type: _lease_expired,
    ev.LeaseReleased.type: _lease_released,
    ev.AttemptThrottled.type: _attempt_throttled,
    ev.AttemptDeferred.type: _attempt_deferred,
    ev.GenerationResponded.type: _generation_responded,
    ev.GenerationCompleted.type: _generation_completed,
    ev.AttemptFailed.type: _attempt_failed,
}
