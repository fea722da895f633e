"""What each event does to the projections, read back from the tables themselves.

Each test appends events in the test process (``append``, a fixed clock) and asserts the
rows of the projection they change, column by column: a replay applies an event the way
``append`` does, so ``db check`` cannot tell a wrong applier from a right one.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from daydream import events as ev
from daydream.clock import isoformat
from daydream.db.connection import connect
from daydream.db.log import append
from daydream.db.projections.lineage import select_in
from daydream.db.texts import put_text
from tests.counting import counter_mismatches
from tests.scenario import (
    FixedClock,
    cohort,
    fail_generations,
    gen_ids,
    offline_model,
    plan,
    write_spec,
)
from tests.scored import complete

# -- health: endpoints and stopped pools --------------------------------------------------


def _rows(conn, sql: str, params: tuple = ()) -> list[tuple]:
    return [tuple(row) for row in conn.execute(sql, params)]


def _endpoints(conn) -> list[tuple]:
    return _rows(
        conn,
        "SELECT endpoint, provider, status, pool, error, down_since, changed_at"
        " FROM endpoints ORDER BY endpoint",
    )


def test_an_endpoint_down_twice_keeps_its_first_down_since_and_takes_the_latest_error(
    tmp_path: Path,
) -> None:
    conn = connect(tmp_path / "health.db")
    clock = FixedClock()
    t0 = isoformat(clock())
    down = ev.EndpointDown(endpoint="http://a", provider="p1", pool="pool1", error="refused")
    append(conn, [down], actor="test", clock=clock)
    assert _endpoints(conn) == [("http://a", "p1", "down", "pool1", "refused", t0, t0)]

    clock.advance(60)
    t1 = isoformat(clock())
    again = ev.EndpointDown(endpoint="http://a", provider="p2", pool="pool2", error="timeout")
    other = ev.EndpointDown(endpoint="http://b", provider="p1", pool="pool1", error="502")
    append(conn, [again, other], actor="test", clock=clock)
    assert _endpoints(conn) == [
        ("http://a", "p2", "down", "pool2", "timeout", t0, t1),
        ("http://b", "p1", "down", "pool1", "502", t1, t1),
    ]


def test_an_endpoint_recovered_is_up_without_down_since_and_down_again_starts_anew(
    tmp_path: Path,
) -> None:
    conn = connect(tmp_path / "health.db")
    clock = FixedClock()
    t0 = isoformat(clock())
    for endpoint in ("http://a", "http://b"):
        down = ev.EndpointDown(endpoint=endpoint, provider="p1", pool="pool1", error="refused")
        append(conn, [down], actor="test", clock=clock)
    clock.advance(30)
    t1 = isoformat(clock())
    append(conn, [ev.EndpointRecovered(endpoint="http://a", by="probe")], actor="t", clock=clock)
    assert _endpoints(conn) == [
        ("http://a", "p1", "up", "pool1", "refused", None, t1),
        ("http://b", "p1", "down", "pool1", "refused", t0, t0),
    ]

    clock.advance(30)
    t2 = isoformat(clock())
    down = ev.EndpointDown(endpoint="http://a", provider="p1", pool="pool1", error="503")
    append(conn, [down], actor="test", clock=clock)
    assert _endpoints(conn)[0] == ("http://a", "p1", "down", "pool1", "503", t2, t2)


def _pool_stops(conn) -> list[tuple]:
    return _rows(
        conn,
        "SELECT pool, provider, model_id, http_status, message, stopped_at FROM pool_stops"
        " ORDER BY pool",
    )


def test_a_pool_stopped_keeps_its_first_stop_until_resumed_and_then_stops_anew(
    tmp_path: Path,
) -> None:
    conn = connect(tmp_path / "health.db")
    clock = FixedClock()
    t0 = isoformat(clock())
    first = ev.PoolStopped(pool="a", provider="p", model_id="m1", message="no key", http_status=401)
    other = ev.PoolStopped(pool="b", provider="q", model_id="m2", message="unknown model")
    append(conn, [first, other], actor="test", clock=clock)
    expected_b = ("b", "q", "m2", None, "unknown model", t0)
    assert _pool_stops(conn) == [("a", "p", "m1", 401, "no key", t0), expected_b]

    clock.advance(10)
    t1 = isoformat(clock())
    second = ev.PoolStopped(
        pool="a", provider="p", model_id="m3", message="no credit", http_status=402
    )
    append(conn, [second], actor="test", clock=clock)
    assert _pool_stops(conn)[0] == ("a", "p", "m1", 401, "no key", t0)

    append(conn, [ev.PoolResumed(pool="a", reason="run")], actor="test", clock=clock)
    assert _pool_stops(conn) == [expected_b]
    append(conn, [second], actor="test", clock=clock)
    assert _pool_stops(conn) == [("a", "p", "m3", 402, "no credit", t1), expected_b]


# -- lineage: blocking and unblocking descendants ------------------------------------------


def _chains(conn) -> dict[str, list[str]]:
    """combo -> [draft, essay, evaluation] of cohort ``k`` (one of each per combo)."""
    chains: dict[str, list[str]] = {}
    for stage in ("draft", "essay", "evaluation"):
        for gen_id, combo in conn.execute(
            "SELECT gen_id, combo_id FROM generations WHERE stage = ? ORDER BY gen_id", (stage,)
        ):
            chains.setdefault(combo, []).append(gen_id)
    return chains


def _lineage_state(conn, gen_id: str) -> tuple:
    return tuple(
        conn.execute(
            "SELECT status, blocked_reason, state, error, finished_at FROM generations"
            " WHERE gen_id = ?",
            (gen_id,),
        ).fetchone()
    )


def test_a_failed_draft_blocks_its_essay_and_evaluation_and_a_retry_unblocks_them(
    offline_cohort,
) -> None:
    conn = connect(offline_cohort(combos=3))
    chains = _chains(conn)
    (d1, e1, v1), (d2, e2, v2), (_d3, e3, v3) = chains["c1"], chains["c2"], chains["c3"]
    fail_generations(conn, [d1, d2])
    reason = f"parent {d1} failed: provider_error"
    blocked = ("blocked", reason, "blocked", reason, None)
    assert [_lineage_state(conn, g) for g in (e1, v1)] == [blocked, blocked]
    assert _lineage_state(conn, v2)[:2] == ("blocked", f"parent {d2} failed: provider_error")
    assert [_lineage_state(conn, g) for g in (e3, v3)] == [("waiting", None, None, None, None)] * 2
    assert counter_mismatches(conn) == []

    append(conn, [ev.GenerationsRetried(cohort_id="k", gen_ids=[d1])], actor="test")
    waiting = ("waiting", None, None, None, None)
    assert [_lineage_state(conn, g) for g in (e1, v1)] == [waiting, waiting]
    assert _lineage_state(conn, d1) == ("ready", None, None, None, None)
    # the other failed draft's descendants stay blocked
    assert [_lineage_state(conn, g)[0] for g in (d2, e2, v2)] == ["failed", "blocked", "blocked"]
    assert counter_mismatches(conn) == []


def test_select_in_runs_a_statement_over_any_number_of_ids_in_chunks(tmp_path: Path) -> None:
    conn = connect(tmp_path / "lineage.db")
    conn.execute("CREATE TEMP TABLE numbers (n TEXT, tag TEXT)")
    ids = [str(i) for i in range(1201)]
    conn.executemany("INSERT INTO numbers VALUES (?, 'a')", [(n,) for n in ids])
    conn.executemany("INSERT INTO numbers VALUES (?, 'b')", [(n,) for n in ids])
    sql = "SELECT n FROM numbers WHERE tag = ? AND n IN"
    found = select_in(conn, sql, ids, ("a",))
    assert sorted(n for (n,) in found) == sorted(ids)
    assert [n for (n,) in select_in(conn, sql, ["7"], ("b",))] == ["7"]
    assert select_in(conn, sql, [], ("a",)) == []
    few = select_in(conn, sql, ids[:5], ("a",), chunk=2)
    assert sorted(n for (n,) in few) == sorted(ids[:5])


# -- cells: the score cells of evaluations, per cohort -------------------------------------


def _complete(conn, gen_id: str, score: float | None = None) -> None:
    """A reply of ``gen_id`` recorded and completed (with ``score``)."""
    complete(conn, gen_id, f"text of {gen_id}", score=score)


def _cells(conn, cohort: str) -> dict[str, tuple]:
    """judge model -> (evaluations, n, total, min, max) of ``cohort``'s one essay."""
    return {
        model_id: (evaluations, n, total, low, high)
        for model_id, evaluations, n, total, low, high in conn.execute(
            "SELECT evaluation_model, evaluations, n, total, min, max FROM essay_judge_scores"
            " WHERE cohort_id = ? AND evaluation_template = 'judge'",
            (cohort,),
        )
    }


def _judges(conn) -> dict[tuple[str, int], str]:
    """(judge model, replicate) -> evaluation gen id."""
    return {
        (model_id, replicate): gen_id
        for gen_id, model_id, replicate in conn.execute(
            "SELECT gen_id, model_id, replicate FROM generations WHERE stage = 'evaluation'"
        )
    }


def test_score_cells_count_planned_evaluations_and_their_scores_in_every_cohort(
    tmp_path: Path,
) -> None:
    axes = {"evaluation_llm": ["m1", "m2"], "evaluation_replicate": [1, 2]}
    models = [offline_model("m1"), offline_model("m2")]
    db = cohort(tmp_path, models, combos=1, axes=axes)
    conn = connect(db)
    assert _cells(conn, "k") == {"m1": (2, 0, 0, None, None), "m2": (2, 0, 0, None, None)}
    for stage in ("draft", "essay"):
        _complete(conn, gen_ids(db, stage)[0])
    judges = _judges(conn)
    # m1's second score is lower (its min moves), m2's later one higher (its max moves)
    for judge, score in ((("m1", 1), 9.0), (("m1", 2), 4.0), (("m2", 1), 5.0)):
        _complete(conn, judges[judge], score)
    scored = {"m1": (2, 2, 13.0, 4.0, 9.0), "m2": (2, 1, 5.0, 5.0, 5.0)}
    assert _cells(conn, "k") == scored

    # a second cohort of the same evaluations takes them with their scores
    plan(db, tmp_path / "catalog", tmp_path / "spec.yaml", cohort="k2")
    assert _cells(conn, "k2") == scored
    # a third adds a replicate: two evaluations join scored, one is planned
    spec = yaml.safe_load((tmp_path / "spec.yaml").read_text(encoding="utf-8"))["axes"]
    more = write_spec(tmp_path / "k3.yaml", {**spec, "evaluation_replicate": [1, 2, 3]})
    plan(db, tmp_path / "catalog", more, cohort="k3")
    assert _cells(conn, "k3") == {"m1": (3, 2, 13.0, 4.0, 9.0), "m2": (3, 1, 5.0, 5.0, 5.0)}

    _complete(conn, judges[("m2", 2)], 7.0)
    assert _cells(conn, "k")["m2"] == _cells(conn, "k2")["m2"] == (2, 2, 12.0, 5.0, 7.0)
    assert _cells(conn, "k3")["m2"] == (3, 2, 12.0, 5.0, 7.0)
    assert counter_mismatches(conn) == []


# -- reparsing: a stored reply parsed again, human ratings ---------------------------------


def _reparsed(conn, gen_id: str, state: str, score: float | None = None, **fields) -> int:
    """Append a ``generation.reparsed`` of ``gen_id`` (with its template's version, parser
    ``score`` version 2); ``state`` ok takes a new parsed text. Returns the event id."""
    (version,) = conn.execute(
        "SELECT template_version FROM generations WHERE gen_id = ?", (gen_id,)
    ).fetchone()
    parsed = put_text(conn, f"reparsed {gen_id} {score}") if state == "ok" else None
    event = ev.GenerationReparsed(
        gen_id=gen_id,
        template_version=version,
        parser="score",
        parser_version=2,
        state=state,
        parsed_hash=parsed,
        score=score,
        **fields,
    )
    (event_id,) = append(conn, [event], actor="test", clock=FixedClock())
    return event_id


def _result(conn, gen_id: str) -> tuple:
    return tuple(
        conn.execute(
            "SELECT status, state, error, last_error, score, written_scale, parsed_with"
            " FROM generations WHERE gen_id = ?",
            (gen_id,),
        ).fetchone()
    )


def test_an_evaluation_reparsed_takes_its_new_result_and_recounts_its_cells_in_every_cohort(
    tmp_path: Path,
) -> None:
    axes = {"evaluation_replicate": [1, 2]}
    db = cohort(tmp_path, [offline_model("m1")], combos=1, axes=axes)
    conn = connect(db)
    for stage in ("draft", "essay"):
        _complete(conn, gen_ids(db, stage)[0])
    judges = _judges(conn)
    first, second = judges[("m1", 1)], judges[("m1", 2)]
    _complete(conn, first, 9.0)
    _complete(conn, second, 4.0)
    plan(db, tmp_path / "catalog", tmp_path / "spec.yaml", cohort="k2")  # the same spec
    (old_hash, version) = conn.execute(
        "SELECT parsed_hash, template_version FROM generations WHERE gen_id = ?", (first,)
    ).fetchone()

    event_id = _reparsed(conn, first, "ok", 2.0, written_scale=5.0)
    (new_hash,) = conn.execute(
        "SELECT parsed_hash FROM generations WHERE gen_id = ?", (first,)
    ).fetchone()
    assert new_hash == put_text(conn, f"reparsed {first} 2.0") != old_hash
    assert _result(conn, first) == ("done", "ok", None, None, 2.0, 5.0, version)
    at = isoformat(FixedClock()())
    assert _rows(conn, "SELECT * FROM reparses") == [
        (event_id, first, "evaluation", version, "score", 2, "ok", 9.0, old_hash)
        + ("ok", 2.0, new_hash, None, at)
    ]
    assert _rows(conn, "SELECT 1 FROM search_texts WHERE hash = ?", (new_hash,)) == [(1,)]
    assert _cells(conn, "k") == _cells(conn, "k2") == {"m1": (2, 2, 6.0, 2.0, 4.0)}

    _reparsed(conn, second, "parse_error", error="no score in range")
    failed = ("failed", "parse_error", "no score in range", "no score in range", None, None)
    assert _result(conn, second) == (*failed, version)
    previous = "SELECT previous_state, previous_score, state FROM reparses ORDER BY event_id"
    assert _rows(conn, previous)[1] == (
        "ok",
        4.0,
        "parse_error",
    )
    assert _cells(conn, "k") == _cells(conn, "k2") == {"m1": (2, 1, 2.0, 2.0, 2.0)}
    assert counter_mismatches(conn) == []


def test_a_draft_reparsed_as_failed_blocks_its_children_and_parsed_again_unblocks_them(
    offline_cohort,
) -> None:
    conn = connect(offline_cohort(combos=2))
    chains = _chains(conn)
    (d1, e1, v1), (d2, e2, _v2) = chains["c1"], chains["c2"]
    _complete(conn, d1)
    _complete(conn, d2)
    assert [_lineage_state(conn, g)[0] for g in (e1, v1, e2)] == ["ready", "waiting", "ready"]

    _reparsed(conn, d1, "parse_error", error="no essay block")
    reason = f"parent {d1} failed: parse_error"
    blocked = ("blocked", reason, "blocked", reason, None)
    assert [_lineage_state(conn, g) for g in (e1, v1)] == [blocked, blocked]
    assert _lineage_state(conn, e2)[0] == "ready"
    assert counter_mismatches(conn) == []
    # failed again: its children stay as they are
    _reparsed(conn, d1, "parse_error", error="still no essay block")
    assert [_lineage_state(conn, g) for g in (e1, v1)] == [blocked, blocked]

    _reparsed(conn, d1, "ok")
    assert _lineage_state(conn, e1) == ("ready", None, None, None, None)
    assert _lineage_state(conn, v1) == ("waiting", None, None, None, None)
    assert counter_mismatches(conn) == []
    # parsed again while done: nothing to unblock, the ready child stays ready
    _reparsed(conn, d1, "ok")
    assert [_lineage_state(conn, g)[0] for g in (d1, e1, v1)] == ["done", "ready", "waiting"]


def test_a_rating_by_the_same_rater_replaces_the_last_and_other_raters_keep_theirs(
    offline_cohort,
) -> None:
    conn = connect(offline_cohort(combos=1))
    [(essay, version)] = conn.execute(
        "SELECT g.gen_id, v.template_version FROM generations g, generations v"
        " WHERE g.stage = 'essay' AND v.stage = 'evaluation'"
    ).fetchall()

    def rate(rater: str, score: float, note: str | None, source: str) -> int:
        rating = ev.RatingRecorded(
            essay_gen_id=essay,
            evaluation_template="judge",
            template_version=version,
            rater=rater,
            score=score,
            note=note,
            source=source,
        )
        return append(conn, [rating], actor="test", clock=_later(score))[0]

    first = rate("ann", 3.0, "thin", "a.csv")
    bob = rate("bob", 5.0, None, "b.csv")
    again = rate("ann", 7.0, None, "c.csv")
    assert first < bob < again
    assert _rows(conn, "SELECT * FROM human_ratings ORDER BY rater") == [
        (essay, "judge", "ann", 7.0, None, version, "c.csv", again, isoformat(_later(7)())),
        (essay, "judge", "bob", 5.0, None, version, "b.csv", bob, isoformat(_later(5)())),
    ]


def _later(seconds: float) -> FixedClock:
    """A clock standing ``seconds`` after ``tests.scenario.T0``."""
    clock = FixedClock()
    clock.advance(seconds)
    return clock


def test_an_evaluation_planned_without_a_model_has_no_score_cell(offline_cohort) -> None:
    """A legacy import plans an upstream evaluation copied rather than judged with no
    model (``daydream/legacy/store.py``): it has no judge, so no cell."""
    conn = connect(offline_cohort(combos=1))
    [(essay, version)] = conn.execute(
        "SELECT g.gen_id, v.template_version FROM generations g, generations v"
        " WHERE g.stage = 'essay' AND v.stage = 'evaluation'"
    ).fetchall()
    row = ["v_copied", "evaluation", essay, None, "judge", version, None, 1, "copy", "s", "copy"]
    append(conn, [ev.GenerationsPlanned(cohort_id="k", generations=[row])], actor="test")
    assert _rows(conn, "SELECT stage, model_id FROM generations WHERE gen_id = 'v_copied'") == [
        ("evaluation", None)
    ]
    assert _cells(conn, "k") == {"m1": (1, 0, 0, None, None)}
    assert counter_mismatches(conn) == []
