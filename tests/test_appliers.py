"""What the planning appliers (``daydream/db/projections/planning.py``) write, to the
column: the catalog (concepts, combinations, templates, models) defined and defined again,
a cohort planned and planned again, a pool's limit. Each test appends the events to a
fresh database with a fixed clock and reads the projection rows back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from daydream import events as ev
from daydream.clock import isoformat
from daydream.db.connection import connect
from daydream.db.log import append
from daydream.db.projections.apply import apply_event
from daydream.db.projections.tally import is_counting
from daydream.db.texts import put_text
from tests.counting import counter_mismatches
from tests.scenario import T0, FixedClock
from tests.scored import complete, fail, start


@pytest.fixture
def conn(tmp_path: Path):
    conn = connect(tmp_path / "appliers.db")
    yield conn
    conn.close()


def _rows(conn: sqlite3.Connection, sql: str) -> list[tuple]:
    return [tuple(row) for row in conn.execute(sql).fetchall()]


def _concept(conn, concept_id: str, name: str, version: str, **levels: str) -> ev.ConceptDefined:
    descriptions = {level: put_text(conn, text) for level, text in levels.items()}
    return ev.ConceptDefined(
        concept_id=concept_id, name=name, version=version, descriptions=descriptions,
        source=f"catalog/{version}",
    )  # fmt: skip


def test_a_concept_defined_again_takes_its_new_name_version_source_and_descriptions(conn):
    first = _concept(conn, "alpha", "Alpha", "v1", sentence="One.", paragraph="One. Two.")
    other = _concept(conn, "beta", "Beta", "v1", sentence="Beta.")
    append(conn, [first, other], actor="t")
    again = _concept(conn, "alpha", "Alpha waves", "v2", article="Long.")
    append(conn, [again], actor="t")
    assert _rows(conn, "SELECT * FROM concepts ORDER BY concept_id") == [
        ("alpha", "Alpha waves", "v2", "catalog/v2"),
        ("beta", "Beta", "v1", "catalog/v1"),
    ]
    assert _rows(conn, "SELECT * FROM concept_descriptions ORDER BY concept_id, level") == [
        ("alpha", "article", put_text(conn, "Long.")),
        ("beta", "sentence", put_text(conn, "Beta.")),
    ]


def test_a_combination_defined_again_takes_its_new_concepts_in_order(conn):
    concepts = [_concept(conn, c, c.title(), "v1", sentence=c) for c in ("a", "b", "c")]
    combo = ev.ComboDefined(
        combo_id="c1", version="v1", concept_ids=["a", "b"], level="sentence", source="s1"
    )
    other = ev.ComboDefined(
        combo_id="c2", version="v1", concept_ids=["b", "c"], level="sentence", source="s1"
    )
    append(conn, [*concepts, combo, other], actor="t")
    again = ev.ComboDefined(
        combo_id="c1", version="v2", concept_ids=["c", "a", "b"], level="paragraph", source="s2"
    )
    append(conn, [again], actor="t")
    assert _rows(conn, "SELECT * FROM combos ORDER BY combo_id") == [
        ("c1", "paragraph", 3, "v2", "s2"),
        ("c2", "sentence", 2, "v1", "s1"),
    ]
    assert _rows(conn, "SELECT * FROM combo_concepts ORDER BY combo_id, position") == [
        ("c1", 1, "c"),
        ("c1", 2, "a"),
        ("c1", 3, "b"),
        ("c2", 1, "b"),
        ("c2", 2, "c"),
    ]


def _template(conn, version: str, name: str, **fields) -> ev.TemplateDefined:
    return ev.TemplateDefined(
        stage="evaluation", template_id="judge", version=version, name=name,
        description=f"about {name}", body_hash=put_text(conn, f"body of {version}"),
        parser="score", generator="llm", source=f"templates/{version}", **fields,
    )  # fmt: skip


def test_each_template_version_is_kept_and_the_template_points_at_the_last(conn):
    first = _template(conn, "t1", "Judge", scale_min=0, scale_max=10, settings={"b": 1, "a": 2})
    [first_id] = append(conn, [first], actor="t")
    second = _template(conn, "t2", "Judge 2", scale_min=1, scale_max=5)
    again = _template(conn, "t1", "Judge renamed")  # a version already known changes nothing
    [second_id, _] = append(conn, [second, again], actor="t")
    assert _rows(conn, "SELECT * FROM template_versions ORDER BY version") == [
        ("t1", "evaluation", "judge", "Judge", "about Judge", put_text(conn, "body of t1"),
         "score", "llm", 0.0, 10.0, '{"a": 2, "b": 1}', "templates/t1", first_id),
        ("t2", "evaluation", "judge", "Judge 2", "about Judge 2", put_text(conn, "body of t2"),
         "score", "llm", 1.0, 5.0, "{}", "templates/t2", second_id),
    ]  # fmt: skip
    # The templates row follows the last definition, whatever its version.
    assert _rows(conn, "SELECT * FROM templates") == [
        ("evaluation", "judge", "t1", "Judge renamed", "score", "llm", None, None)
    ]
    append(conn, [second], actor="t")
    assert _rows(conn, "SELECT * FROM templates") == [
        ("evaluation", "judge", "t2", "Judge 2", "score", "llm", 1.0, 5.0)
    ]


def test_a_model_defined_again_is_replaced_whole(conn):
    model = ev.ModelDefined(
        model_id="m1", version="v1", provider="openrouter", provider_model="vendor/small",
        display_name="Small", pool="p1", price_input=1e-6, price_output=2e-6,
        settings={"z": 1, "a": {"b": 2}}, source="models.yaml",
    )  # fmt: skip
    append(conn, [model], actor="t")
    assert _rows(conn, "SELECT * FROM models") == [
        ("m1", "v1", "openrouter", "vendor/small", "Small", "p1", 1e-6, 2e-6,
         '{"a": {"b": 2}, "z": 1}', "models.yaml"),
    ]  # fmt: skip
    again = ev.ModelDefined(
        model_id="m1", version="v2", provider="vllm", provider_model="small",
        display_name="Small 2", pool="p2", source="models2.yaml",
    )  # fmt: skip
    append(conn, [again], actor="t")
    assert _rows(conn, "SELECT * FROM models") == [
        ("m1", "v2", "vllm", "small", "Small 2", "p2", None, None, "{}", "models2.yaml"),
    ]


def test_a_cohort_planned_again_keeps_its_first_time_and_counts_and_is_no_longer_cancelled(
    conn,
):
    clock = FixedClock()
    spec = put_text(conn, "axes: {}")
    planned = ev.CohortPlanned(cohort_id="k", spec_path="a.yaml", spec_hash=spec, budget_usd=2.5)
    rows = [_row("d1"), _row("d2"), _row("e1", "d1"), _row("v1", "e1")]
    generations = ev.GenerationsPlanned(cohort_id="k", generations=rows, members=[])
    append(conn, [planned, generations], actor="t", clock=clock)
    first = isoformat(T0)
    assert _rows(conn, "SELECT * FROM cohorts") == [
        ("k", "a.yaml", spec, 2, 1, 1, first, None, None, 2.5)
    ]
    clock.advance(60)
    append(conn, [ev.CohortCancelled(cohort_id="k", gen_ids=[])], actor="t", clock=clock)
    assert _rows(conn, "SELECT cancelled_at FROM cohorts") == [(isoformat(clock()),)]
    clock.advance(60)
    spec2 = put_text(conn, "axes: {a: 1}")
    again = ev.CohortPlanned(cohort_id="k", spec_path="b.yaml", spec_hash=spec2)
    append(conn, [again], actor="t", clock=clock)
    assert _rows(conn, "SELECT * FROM cohorts") == [
        ("k", "b.yaml", spec2, 2, 1, 1, first, isoformat(clock()), None, None)
    ]


def test_a_pool_limit_changed_again_is_replaced_with_its_time(conn):
    clock = FixedClock()
    first = ev.PoolLimitChanged(pool="p", limit=8, ceiling=8, reason="set")
    append(conn, [first], actor="t", clock=clock)
    clock.advance(5)
    changed = ev.PoolLimitChanged(pool="p", limit=4, ceiling=8, reason="cut after 429s")
    append(conn, [changed], actor="t", clock=clock)
    assert _rows(conn, 'SELECT pool, "limit", ceiling, reason, changed_at FROM pools') == [
        ("p", 4, 8, "cut after 429s", isoformat(clock()))
    ]


# -- generations planned, retried, cancelled ----------------------------------------------

STAGES = {"d": "draft", "e": "essay", "v": "evaluation"}


def _row(gen_id: str, parent: str | None = None) -> list:
    """A ``generations.planned`` row (``FIELDS``) of stage ``d``, ``e`` or ``v`` by its first
    letter, without catalog references."""
    return [gen_id, STAGES[gen_id[0]], parent, None, "t", None, None, 1, "llm", "s", "p"]


def _plan(conn, cohort_id: str, rows: list[list], members: tuple[str, ...] = (), clock=None):
    spec = put_text(conn, "axes: {}")
    events = [
        ev.CohortPlanned(cohort_id=cohort_id, spec_path="s.yaml", spec_hash=spec),
        ev.GenerationsPlanned(cohort_id=cohort_id, generations=rows, members=list(members)),
    ]
    append(conn, events, actor="t", clock=clock or FixedClock())


def _started(gen_id: str) -> ev.AttemptStarted:
    return ev.AttemptStarted(
        gen_id=gen_id, attempt=1, worker="w", lease_expires_at="2999-01-01T00:00:00Z"
    )


def _status(conn) -> dict[str, tuple]:
    return {
        row[0]: tuple(row[1:])
        for row in conn.execute(
            "SELECT gen_id, status, blocked_reason, state, error FROM generations"
        )
    }


def test_new_generations_start_from_their_parents_status_stored_or_planned_with_them(conn):
    _plan(conn, "k", [_row("d1"), _row("d2"), _row("d3"), _row("d4"), _row("e1", "d1")])
    complete(conn, "d2", "notes")
    fail(conn, "d3")
    append(conn, [ev.CohortCancelled(cohort_id="k", gen_ids=["d4"])], actor="t")
    start(conn, "d1")
    clock = FixedClock()
    clock.advance(60)  # later than the first plan (T0): new generations take their own time
    rows = [_row("e2", "d2"), _row("v2", "e2"), _row("e3", "d3"), _row("v3", "e3")]
    rows += [_row("e4", "d4"), _row("e6", "d1"), _row("d5"), _row("e5", "d5")]
    _plan(conn, "k2", rows, clock=clock)
    status = _status(conn)
    assert [status[g] for g in ("e1", "e2", "v2", "e6", "d5", "e5")] == [
        ("waiting", None, None, None),  # its parent was ready when planned with it
        ("ready", None, None, None),  # parent done
        ("waiting", None, None, None),  # parent planned ready with it
        ("waiting", None, None, None),  # parent running
        ("ready", None, None, None),  # no parent
        ("waiting", None, None, None),
    ]
    for child, parent in (("e3", "d3"), ("v3", "e3"), ("e4", "d4")):
        reason = f"parent {parent} did not complete"
        assert status[child] == ("blocked", reason, "blocked", reason)
    assert _rows(
        conn, "SELECT DISTINCT planned_at FROM generations WHERE gen_id IN ('e2', 'd5')"
    ) == [(isoformat(clock()),)]
    assert counter_mismatches(conn) == []


def test_a_cohorts_counts_per_stage_grow_by_the_members_actually_added(conn):
    _plan(conn, "k", [_row("d1"), _row("d2"), _row("e1", "d1"), _row("v1", "e1")])
    counts = "SELECT cohort_id, drafts, essays, evaluations FROM cohorts ORDER BY cohort_id"
    assert _rows(conn, counts) == [("k", 2, 1, 1)]
    _plan(conn, "k2", [_row("e2", "d2")], members=("d1", "e1", "v1"))
    assert _rows(conn, counts) == [("k", 2, 1, 1), ("k2", 1, 2, 1)]
    _plan(conn, "k2", [], members=("d1", "d2", "v1"))  # only d2 is new to k2
    assert _rows(conn, counts) == [("k", 2, 1, 1), ("k2", 2, 2, 1)]
    _plan(conn, "k", [], members=("d1", "e1"))  # nothing new
    assert _rows(conn, counts) == [("k", 2, 1, 1), ("k2", 2, 2, 1)]
    members = "SELECT gen_id, stage FROM cohort_members WHERE cohort_id = 'k2' ORDER BY gen_id"
    assert _rows(conn, members) == [
        ("d1", "draft"), ("d2", "draft"), ("e1", "essay"), ("e2", "essay"), ("v1", "evaluation")
    ]  # fmt: skip
    assert counter_mismatches(conn) == []


QUEUE = (
    "SELECT gen_id, status, attempts, not_before, last_error, blocked_reason, lease_owner,"
    " lease_token, lease_expires_at, throttles, releases, deferrals, state, error, finished_at"
    " FROM generations WHERE gen_id IN ({}) ORDER BY gen_id"
)


def test_a_retried_generation_starts_afresh_and_its_blocked_descendants_wait_again(conn):
    """Whatever its queue columns held (a lease, throttles, a release, a deferral, a
    failure), a retried generation is ready with none of it, and the descendants its
    failure blocked wait for it again; a running one retried is no longer leased."""
    rows = [_row("d1"), _row("e1", "d1"), _row("v1", "e1"), _row("d2"), _row("d3")]
    _plan(conn, "k", rows)
    token = start(conn, "d1")
    append(conn, [ev.LeaseReleased(gen_id="d1", token=token, reason="stop")], actor="t")
    token = start(conn, "d1")
    deferred = ev.AttemptDeferred(gen_id="d1", token=token, reason="endpoint_down", error="down")
    append(conn, [deferred], actor="t")
    token = start(conn, "d1")
    throttled = ev.AttemptThrottled(
        gen_id="d1", token=token, error="HTTP 429", retry_at="2999-01-01T00:00:00Z"
    )
    append(conn, [throttled], actor="t")
    fail(conn, "d1", "no score")
    token = start(conn, "d2")
    again = ev.AttemptFailed(
        gen_id="d2", token=token, state="provider_error", error="HTTP 500", retryable=True,
        final=False, retry_at="2999-01-01T00:00:00Z",
    )  # fmt: skip
    append(conn, [again], actor="t")
    start(conn, "d3")
    assert _status(conn)["v1"] == ("blocked", "parent d1 failed: parse_failed", "blocked",
                                   "parent d1 failed: parse_failed")  # fmt: skip
    retried = ev.GenerationsRetried(cohort_id="k", gen_ids=["d1", "d2", "d3"])
    append(conn, [retried], actor="t")
    fresh = (0, None, None, None, None, None, None, 0, 0, 0, None, None, None)
    assert _rows(conn, QUEUE.format("'d1', 'd2', 'd3'")) == [
        (gen_id, "ready", *fresh) for gen_id in ("d1", "d2", "d3")
    ]
    assert _status(conn)["e1"] == _status(conn)["v1"] == ("waiting", None, None, None)
    assert _rows(conn, "SELECT finished_at FROM generations WHERE gen_id = 'e1'") == [(None,)]
    assert counter_mismatches(conn) == []


def test_a_retried_child_takes_its_status_from_its_parents(conn):
    rows = [_row("d1"), _row("d2"), _row("d3"), _row("d4")]
    rows += [_row(f"e{i}", f"d{i}") for i in range(1, 5)]
    _plan(conn, "k", rows)
    complete(conn, "d1", "notes")
    fail(conn, "d2")
    append(conn, [ev.CohortCancelled(cohort_id="k", gen_ids=["d3"])], actor="t")
    start(conn, "d4")
    for child in ("e1", "e4"):
        fail(conn, child, "no score")
    retried = ev.GenerationsRetried(cohort_id="k", gen_ids=["e1", "e2", "e3", "e4"])
    append(conn, [retried], actor="t")
    status = _status(conn)
    assert [status[g][0] for g in ("e1", "e2", "e3", "e4")] == [
        "ready",  # parent done
        "blocked",  # parent failed
        "blocked",  # parent cancelled
        "waiting",  # parent running
    ]
    assert counter_mismatches(conn) == []


def test_a_cancel_ends_every_unfinished_generation_it_names_and_no_other(conn):
    rows = [_row("d1"), _row("d2"), _row("d3"), _row("d4"), _row("d5"), _row("e1", "d1")]
    _plan(conn, "k", rows)
    complete(conn, "d2", "notes")
    fail(conn, "d3")
    start(conn, "d4")
    clock = FixedClock()
    cancel = ev.CohortCancelled(cohort_id="k", gen_ids=["d1", "d2", "d3", "d4", "e1"])
    append(conn, [cancel], actor="t", clock=clock)
    at = isoformat(clock())
    leaseless = (None, None, None, None, None, None, 0, 0, 0, "cancelled", None, at)
    assert _rows(conn, QUEUE.format("'d1', 'd4', 'e1'")) == [
        ("d1", "cancelled", 0, *leaseless),
        ("d4", "cancelled", 1, *leaseless),  # its lease is gone
        ("e1", "cancelled", 0, *leaseless),
    ]
    status = _status(conn)
    assert [status[g][0] for g in ("d2", "d3", "d5")] == ["done", "failed", "ready"]
    assert _rows(conn, "SELECT cancelled_at FROM cohorts") == [(at,)]
    assert counter_mismatches(conn) == []


def test_an_event_applied_outside_a_batch_is_counted_at_once(conn):
    """``apply_event`` on its own (no batch open on the connection) applies the event with
    its id and time and settles its counter changes before returning."""
    _plan(conn, "k", [_row("d1"), _row("d2")])
    counts = "SELECT status, generations FROM cohort_counts ORDER BY status"
    assert _rows(conn, counts) == [("ready", 2)]
    apply_event(conn, 1000, _started("d1"), "2031-01-01T00:00:00.000000Z")
    assert _rows(conn, "SELECT lease_token FROM generations WHERE gen_id = 'd1'") == [(1000,)]
    assert _rows(conn, counts) == [("ready", 1), ("running", 1)]
    cancel = ev.CohortCancelled(cohort_id="k", gen_ids=["d2"])
    apply_event(conn, 1001, cancel, "2031-01-01T00:00:01.000000Z")
    assert _rows(conn, "SELECT finished_at FROM generations WHERE gen_id = 'd2'") == [
        ("2031-01-01T00:00:01.000000Z",)
    ]
    assert _rows(conn, counts) == [("cancelled", 1), ("running", 1)]
    assert not is_counting(conn)
