"""Writing a plan (``daydream.plan.write``): which cohort it plans into, what it reports,
and what it leaves of the connection it was given.

Every test plans into a real SQLite file in ``tmp_path`` with the example catalog
(``specs/catalog``) imported, from small specs written next to it.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from daydream.catalog.load import load_catalog
from daydream.catalog.recording import import_catalog
from daydream.catalog.registry import Registry
from daydream.db.connection import connect
from daydream.errors import PlanError, SpecError
from daydream.plan import pipeline
from daydream.plan import write as plan_write
from daydream.plan.write import plan_cohort
from tests.example_catalog import DRAFTS, EXAMPLE, write_spec
from tests.scored import complete


@pytest.fixture
def conn(catalog_db):
    """A database with the example catalog imported (conftest's ``catalog_db``)."""
    return catalog_db[1]


def test_a_list_planned_without_a_cohort_id_asks_for_one(conn, tmp_path):
    listing = tmp_path / "top.csv"
    rows = [{"essay_id": "e_1", "evaluation_template": "novelty-rubric"}]
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, listing, rows=rows)
    assert str(caught.value) == f"list {listing}: give the new cohort's id with --cohort ID"


def test_completed_work_of_an_edited_template_is_reused_and_named_per_template(conn, tmp_path):
    """A template's id, not its text, is in a generation's id: after an edit, a plan reuses
    the completed generations made with the old text, and says how many per template."""
    axes = {**DRAFTS["axes"], "draft_template": ["rolling-idea", "free-notes"]}
    spec_path = write_spec(tmp_path, "drafts", {"axes": axes})
    plan_cohort(conn, spec_path, "before")
    done = {"rolling-idea": 3, "free-notes": 5}
    for name, count in done.items():
        for (gen_id,) in conn.execute(
            "SELECT gen_id FROM generations WHERE template_id = ? LIMIT ?", (name, count)
        ).fetchall():
            complete(conn, gen_id, "IDEA: a finished draft")
    unedited = plan_cohort(conn, spec_path, "unedited")
    assert (unedited.stages["draft"].completed, unedited.stale, unedited.notes) == (8, {}, [])
    catalog = Path(shutil.copytree(EXAMPLE, tmp_path / "catalog"))
    for name in done:
        body = catalog / "templates" / "draft" / f"{name}.j2"
        body.write_text(body.read_text(encoding="utf-8") + "\nEdited.\n", encoding="utf-8")
    import_catalog(conn, load_catalog(catalog))

    report = plan_cohort(conn, spec_path, "after")
    counts = report.stages["draft"]
    assert (counts.in_cohort, counts.new, counts.shared, counts.completed) == (12, 0, 12, 8)
    assert report.stale == done
    assert report.notes == [
        f"{done[name]} completed generation(s) of template {name} were made with an older"
        " version of it and are reused as they are (the id does not include the text);"
        " to run the new text, give the template a new id"
        for name in ("free-notes", "rolling-idea")
    ]


def test_a_plan_gives_the_connection_its_page_cache_size_back(conn, tmp_path):
    conn.execute("PRAGMA cache_size = -3000")
    plan_cohort(conn, write_spec(tmp_path, "drafts", DRAFTS), "drafts")
    plan_cohort(conn, write_spec(tmp_path, "drafts", DRAFTS), "dry", dry_run=True)
    bad = {"axes": {**DRAFTS["axes"], "draft_llm": ["gpt-99"]}}
    with pytest.raises(PlanError):
        plan_cohort(conn, write_spec(tmp_path, "bad", bad), "bad")
    assert conn.execute("PRAGMA cache_size").fetchone()[0] == -3000


@pytest.mark.parametrize("late_indexes", [True, False], ids=["indexes-after", "indexes-live"])
def test_a_second_cohort_over_a_thousand_generations_links_every_one(
    conn, tmp_path, monkeypatch, late_indexes
):
    """The generations of a batch are looked up 500 at a time: none is missed, the
    first window, the last, or the ones between."""
    monkeypatch.setattr(plan_write, "BULK_BELOW", 10**6 if late_indexes else 1)
    axes = {**DRAFTS["axes"], "draft_replicate": list(range(1, 401))}
    spec_path = write_spec(tmp_path, "many", {"axes": axes})
    plan_cohort(conn, spec_path, "first")
    events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    report = plan_cohort(conn, spec_path, "second")
    counts = report.stages["draft"]
    assert (counts.in_cohort, counts.new, counts.shared, counts.completed) == (1200, 0, 1200, 0)
    assert conn.execute("SELECT count(*) FROM generations").fetchone()[0] == 1200
    assert (
        conn.execute("SELECT count(*) FROM cohort_members WHERE cohort_id = 'second'").fetchone()[0]
        == 1200
    )
    # cohort.planned and one generations.planned of memberships
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == events + 2
    again = plan_cohort(conn, spec_path, "second")
    assert (again.events, again.stages["draft"].new) == (0, 0)


def test_a_spec_without_a_name_or_a_cohort_id_asks_for_one(conn, tmp_path):
    spec_path = write_spec(tmp_path, "drafts", DRAFTS)
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, spec_path)
    assert str(caught.value) == (
        f"spec {spec_path} has no name: give the cohort id with --cohort ID, or add"
        " name: ID to the spec"
    )
    named = write_spec(tmp_path, "named", {"name": "first-try", **DRAFTS})
    assert plan_cohort(conn, named).cohort_id == "first-try"


@pytest.mark.parametrize(
    ("cohort_id", "valid"),
    [
        ("a", True),
        ("Z9", True),
        ("9.a_b-c", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("-a", False),
        ("_a", False),
        (".a", False),
        ("a b", False),
        ("a/b", False),
        ("a\n", False),
        ("é", False),
    ],
)
def test_a_cohort_id_is_letters_digits_and_dashes_dots_underscores(
    conn, tmp_path, cohort_id, valid
):
    spec_path = write_spec(tmp_path, "drafts", DRAFTS)
    if valid:
        assert plan_cohort(conn, spec_path, cohort_id, dry_run=True).cohort_id == cohort_id
        return
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, spec_path, cohort_id, dry_run=True)
    assert str(caught.value) == (
        f'cohort id "{cohort_id}" is invalid: use letters, digits, "-", "_" or "."'
        " (starting with a letter or digit)"
    )


def test_misspelt_columns_of_the_axes_or_a_tuple_are_refused_with_the_names_meant(conn, tmp_path):
    spec = {
        "axes": {
            "combo_id": ["fungal-market"],
            "draft_template": ["rolling-idea"],
            "drafts_llm": ["offline-small"],
        },
        "rules": {
            "tuples": {
                "bundle": {"axes": ["essay_template", "essay_lm"], "items": [["x", "y"]]},
            }
        },
    }
    spec_path = write_spec(tmp_path, "typo", spec)
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, spec_path, "typo")
    assert str(caught.value) == (
        f'spec {spec_path}: axes.drafts_llm: "drafts_llm" is not a column the planner reads'
        ' (did you mean "draft_llm"?); axes.essay_lm: "essay_lm" is not a column the planner reads'
        ' (did you mean "essay_llm"?); rename it'
    )
    assert conn.execute("SELECT count(*) FROM cohorts").fetchone()[0] == 0


def test_a_plans_events_name_its_actor(conn, tmp_path):
    first = write_spec(tmp_path, "drafts", DRAFTS)
    plan_cohort(conn, first, "by-default")
    more = {"axes": {**DRAFTS["axes"], "draft_replicate": [3]}}
    plan_cohort(conn, write_spec(tmp_path, "more", more), "by-hand", actor="test:someone")
    actors = conn.execute(
        "SELECT actor, type, count(*) FROM events"
        " WHERE type IN ('cohort.planned', 'generations.planned')"
        " GROUP BY actor, type ORDER BY actor, type"
    ).fetchall()
    assert [tuple(r) for r in actors] == [
        ("cli:plan", "cohort.planned", 1),
        ("cli:plan", "generations.planned", 1),
        ("test:someone", "cohort.planned", 1),
        ("test:someone", "generations.planned", 1),
    ]


def test_a_specs_budget_is_recorded_with_its_cohort(conn, tmp_path):
    plan_cohort(conn, write_spec(tmp_path, "capped", {"budget_usd": 2.5, **DRAFTS}), "capped")
    plan_cohort(conn, write_spec(tmp_path, "open", DRAFTS), "open")
    budgets = conn.execute("SELECT cohort_id, budget_usd FROM cohorts ORDER BY cohort_id")
    assert [tuple(r) for r in budgets] == [("capped", 2.5), ("open", None)]


def test_rows_given_in_memory_are_planned_and_planned_again_with_more(conn, tmp_path):
    """``plan --from-list`` gives the rows; the same list planned again with another judge
    adds that judge's evaluations (the list's text, its spec text, is unchanged)."""
    source = write_spec(tmp_path, "drafts", DRAFTS)
    plan_cohort(conn, source, "drafts")
    chain = {"essay_template": "focused-essay", "essay_llm": "offline-small"}
    drafts = [r[0] for r in conn.execute("SELECT gen_id FROM generations ORDER BY rowid")]
    listing = tmp_path / "picked.csv"
    listing.write_text("the list a curation wrote\n", encoding="utf-8")
    rows = [{"draft_id": d, **chain} for d in drafts[:2]]
    first = plan_cohort(conn, listing, "picked", rows=rows)
    assert (first.stages["draft"].in_cohort, first.stages["essay"].new) == (2, 2)
    judged = [{**row, "evaluation_template": "novelty-rubric"} for row in rows]
    second = plan_cohort(
        conn, listing, "picked", rows=[{**r, "evaluation_llm": "offline-small"} for r in judged]
    )
    assert (second.stages["essay"].new, second.stages["evaluation"].new) == (0, 2)
    assert second.events == 2
    texts = conn.execute(
        "SELECT t.text FROM cohorts c JOIN texts t ON t.hash = c.spec_hash"
        " WHERE c.cohort_id = 'picked'"
    ).fetchall()
    assert [r[0] for r in texts] == ["the list a curation wrote\n"]


def test_rows_without_a_file_are_planned_with_an_empty_spec_text(conn, tmp_path):
    rows = [
        {
            "combo_id": "fungal-market",
            "draft_template": "rolling-idea",
            "draft_llm": "offline-small",
        }
    ]
    report = plan_cohort(conn, tmp_path / "nowhere.csv", "memory", rows=rows)
    assert report.stages["draft"].new == 1
    text = conn.execute(
        "SELECT t.text FROM cohorts c JOIN texts t ON t.hash = c.spec_hash"
    ).fetchone()[0]
    assert text == ""


def test_a_small_spec_or_a_database_without_a_file_is_derived_in_the_planning_process(
    conn, tmp_path, monkeypatch
):
    def no_second_process(*args, **kwargs):
        raise AssertionError("a second process was started")

    monkeypatch.setattr(pipeline, "derived_elsewhere", no_second_process)
    spec_path = write_spec(tmp_path, "drafts", DRAFTS)
    assert plan_cohort(conn, spec_path, "small").stages["draft"].new == 6
    monkeypatch.setattr(pipeline, "PIPELINE_ROWS", 0)
    memory = connect(":memory:")
    import_catalog(memory, load_catalog(EXAMPLE))
    assert plan_cohort(memory, spec_path, "in-memory").stages["draft"].new == 6
    memory.close()


def test_the_cost_of_new_calls_is_priced_with_their_own_templates_body(conn, tmp_path):
    axes = {**DRAFTS["axes"], "draft_llm": ["sonnet-4.5"]}
    report = plan_cohort(conn, write_spec(tmp_path, "priced", {"axes": axes}), "priced")
    registry = Registry.load(conn)
    body = len(registry.templates[("draft", "rolling-idea")].body) // 4
    model = registry.models["sonnet-4.5"]
    # 6 drafts: template body and concepts (300 to 600 tokens) in, 400 to 3000 tokens out
    low = 6 * ((body + 300) * model.price_input + 400 * model.price_output)
    high = 6 * ((body + 600) * model.price_input + 3000 * model.price_output)
    assert report.new_calls == {"sonnet-4.5": 6}
    assert (report.cost_low, report.cost_high) == (pytest.approx(low), pytest.approx(high))


def test_a_dry_run_plans_while_another_connection_holds_the_write_lock(conn, tmp_path):
    spec_path = write_spec(tmp_path, "drafts", DRAFTS)
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    writer = connect(path)
    writer.execute("BEGIN IMMEDIATE")
    conn.execute("PRAGMA busy_timeout = 50")
    try:
        report = plan_cohort(conn, spec_path, "dry", dry_run=True)
    finally:
        writer.rollback()
        writer.close()
    assert (report.stages["draft"].new, report.events) == (6, 0)


def test_a_plan_warns_of_nothing(conn, tmp_path):
    """The planned generations are serialised as the lists the event declares (a tuple
    would be written the same, with a pydantic warning per generation on stderr)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan_cohort(conn, write_spec(tmp_path, "drafts", DRAFTS), "drafts")
    assert [str(w.message) for w in caught] == []


def test_rows_whose_file_is_not_utf8_are_refused_with_the_byte(conn, tmp_path):
    listing = tmp_path / "picked.csv"
    listing.write_bytes(b"essay_gen_id\ne_caf\xe9\n")
    rows = [{"combo_id": "fungal-market", "draft_template": "rolling-idea"}]
    with pytest.raises(SpecError) as caught:
        plan_cohort(conn, listing, "picked", rows=rows)
    assert str(caught.value) == f"spec {listing}: is not valid UTF-8 (byte 18); save it as UTF-8"
