"""What is left in the queue, per cohort: a worker started for one cohort waits for its
work, checks and calls the models of its work, and never waits for another cohort's.

The worker reads these inside its own process (``daydream run --cohort``); here they are
read directly from a database holding two cohorts, so a cohort filter that is lost shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from daydream import events as ev
from daydream.catalog.load import load_catalog
from daydream.catalog.recording import import_catalog
from daydream.db.connection import connect
from daydream.queue.leases import claim, record, release
from daydream.queue.tasks import (
    Outcome,
    has_pending,
    has_running,
    load_model,
    remaining_models,
)
from daydream.worker.config import WorkerConfig
from tests.scenario import (
    CONCEPTS,
    TEMPLATES,
    FixedClock,
    cohort,
    combo_ids,
    execute,
    fail_generations,
    offline_model,
    plan,
    query,
    write_catalog,
    write_spec,
)


def two_cohorts(root: Path) -> Path:
    """Cohort ``k`` (its draft and judge by ``m1``, in pool ``a``) and cohort ``other`` (by
    ``m2``, in pool ``b``), one combination each, in one database."""
    models = [offline_model("m1", pool="a"), offline_model("m2", pool="b")]
    db = cohort(root, models, combos=1)
    spec = {
        "combo_id": combo_ids(1),
        "draft_template": ["notes"],
        "draft_llm": ["m2"],
        "essay_template": ["copy"],
        "evaluation_template": ["judge"],
        "evaluation_llm": ["m2"],
    }
    plan(db, root / "catalog", write_spec(root / "other.yaml", spec), cohort="other")
    return db


def members(db: Path, cohort_id: str, stage: str) -> list[str]:
    sql = (
        "SELECT g.gen_id FROM generations g JOIN cohort_members m USING (gen_id)"
        " WHERE m.cohort_id = ? AND g.stage = ?"
    )
    return [gen_id for (gen_id,) in query(db, sql, [cohort_id, stage])]


def run_one(db: Path):
    """Claim the database's one ready task as worker A and run it: (task, outcome)."""
    config = WorkerConfig(db_path=db, name="A")
    clock = FixedClock()
    conn = connect(db, create=False)
    try:
        (task,) = claim(conn, config, 1, clock=clock)
        (outcome,) = execute(config, [task], clock)
    finally:
        conn.close()
    return task, outcome


def test_the_models_left_to_call_are_those_of_the_cohort_asked_about(tmp_path):
    db = two_cohorts(tmp_path)
    conn = connect(db, create=False)
    try:
        assert [m["model_id"] for m in remaining_models(conn, "k")] == ["m1"]
        assert [m["model_id"] for m in remaining_models(conn, "other")] == ["m2"]
        assert [m["model_id"] for m in remaining_models(conn, None)] == ["m1", "m2"]
        assert [m["model_id"] for m in remaining_models(conn, None, ("b",))] == ["m2"]
        assert [m["model_id"] for m in remaining_models(conn, None, ("a", "b"))] == ["m1", "m2"]
    finally:
        conn.close()


def test_a_cohort_whose_work_failed_has_nothing_pending_while_another_still_has(tmp_path):
    db = two_cohorts(tmp_path)
    conn = connect(db, create=False)
    try:
        assert has_pending(conn, "k") and has_pending(conn, "other")
        fail_generations(conn, members(db, "k", "draft"))  # its essay and judge are blocked
        assert not has_pending(conn, "k")
        assert has_pending(conn, "other") and has_pending(conn, None)
    finally:
        conn.close()


def test_a_running_call_counts_only_for_its_own_cohort(tmp_path):
    db = two_cohorts(tmp_path)
    conn = connect(db, create=False)
    try:
        assert not has_running(conn, None)
        config = WorkerConfig(db_path=db, name="A", cohort="other")
        (task,) = claim(conn, config, 1, clock=FixedClock())
        assert task.gen_id in members(db, "other", "draft")
        assert has_running(conn, "other") and has_running(conn, None)
        assert not has_running(conn, "k")
    finally:
        conn.close()


def test_with_a_pool_stopped_work_waiting_on_it_is_pending_only_while_a_call_runs(tmp_path):
    """Drafts by ``m1`` in pool ``a``, their judges by ``m2`` in pool ``b`` (the essays are
    copies). A stopped pool's ready tasks cannot run, nor what waits for them: with pool
    ``a`` stopped nothing is pending, until a draft is already running there (it may still
    finish, and its children run elsewhere)."""
    models = [offline_model("m1", pool="a"), offline_model("m2", pool="b")]
    db = cohort(tmp_path, models, combos=1, axes={"evaluation_llm": ["m2"]})
    conn = connect(db, create=False)
    try:
        assert has_pending(conn, "k") and has_pending(conn, "k", ("b",))
        assert has_pending(conn, "k", stopped=("b",))  # the draft is ready in pool a
        assert not has_pending(conn, "k", stopped=("a",))
        assert not has_pending(conn, "k", ("b",), stopped=("a",))
        config = WorkerConfig(db_path=db, name="A")
        (task,) = claim(conn, config, 1, clock=FixedClock())
        assert task.pool == "a"
        assert has_pending(conn, "k", stopped=("a",))  # the running draft may finish
        assert has_pending(conn, "k", ("b",), stopped=("a",))  # and its judge run in b
        assert has_pending(conn, "k", stopped=("b",))
        assert not has_pending(conn, "k", ("a",), stopped=("a",))
        assert not has_pending(conn, "other", stopped=("b",))  # no such cohort
        assert not has_pending(conn, "k", ("b",), stopped=("a", "b"))  # nothing outside both
    finally:
        conn.close()


def test_another_cohorts_running_call_keeps_no_work_pending_behind_a_stopped_pool(tmp_path):
    db = two_cohorts(tmp_path)
    conn = connect(db, create=False)
    try:
        config = WorkerConfig(db_path=db, name="A", cohort="other")
        (task,) = claim(conn, config, 1, clock=FixedClock())
        assert task.pool == "b"
        assert not has_pending(conn, "k", stopped=("a",))  # k's draft can never run
        assert has_pending(conn, None, stopped=("a",))  # other's judge waits on a call
    finally:
        conn.close()


def test_a_task_given_back_at_a_clean_stop_says_so_when_claimed_again(offline_cohort):
    """A released lease is not an attempt that counts (the worker subtracts releases, like
    throttles and deferrals): the next claim's task carries the release, apart from the
    deferrals."""
    db = offline_cohort(combos=1)
    config = WorkerConfig(db_path=db, name="A")
    clock = FixedClock()
    conn = connect(db, create=False)
    try:
        first = claim(conn, config, 1, clock=clock)
        assert release(conn, first, "stopping", actor="worker:A", clock=clock)
        (again,) = claim(conn, config, 1, clock=clock)
    finally:
        conn.close()
    assert again.gen_id == first[0].gen_id
    assert (again.attempt, again.throttles, again.released, again.deferred) == (2, 0, 1, 0)


def test_a_claimed_task_carries_its_templates_parser_scale_settings_and_body(offline_cohort):
    """What the worker renders and parses with: the judge's score parser and its 0-10
    scale, the template's settings, its body; a draft has no scale. Read again for a second
    task of the same template (the per-process cache gives the same)."""
    db = offline_cohort(combos=2)
    config = WorkerConfig(db_path=db, name="A")
    clock = FixedClock()
    conn = connect(db, create=False)
    try:
        drafts = claim(conn, config, 2, clock=clock)
        record(conn, execute(config, drafts, clock), config, clock=clock)
        essays = claim(conn, config, 2, clock=clock)  # copies of the drafts
        record(conn, execute(config, essays, clock), config, clock=clock)
        evaluations = claim(conn, config, 2, clock=clock)
    finally:
        conn.close()
    assert [task.stage for task in drafts + evaluations] == ["draft"] * 2 + ["evaluation"] * 2
    for task in evaluations:
        judge = {k: task.template[k] for k in ("parser", "scale", "settings")}
        assert judge == {
            "parser": "score",
            "scale": (0, 10),
            "settings": {"temperature": 0.0, "max_tokens": 300},
        }
        assert task.template["body"].startswith("[gen {{ gen_id }}]\nESSAY\n")
        assert task.template["version"] == query(
            db, "SELECT template_version FROM generations WHERE gen_id = ?", [task.gen_id]
        )[0][0]
    for task in drafts:
        assert (task.template["parser"], task.template["scale"]) == ("identity", None)
        assert task.template["settings"] == {"temperature": 0.3, "max_tokens": 400}


def test_an_essay_straight_from_a_combination_is_written_from_its_concepts(tmp_path):
    """Its prompt names the concepts, and the combination and replicate it was planned for."""
    templates = {**TEMPLATES, "essay": [{"id": "direct", "parser": "identity"}]}
    body = (
        "[gen {{ gen_id }}] {{ combo_id }} {{ replicate }}\n"
        "{% for c in concepts %}{{ c.name }}\n{% endfor %}Write an essay.\n"
    )
    catalog = write_catalog(
        tmp_path / "catalog",
        models=[offline_model("m1")],
        combos=1,
        templates=templates,
        bodies={("essay", "direct"): body},
    )
    spec = {"combo_id": combo_ids(1), "essay_template": ["direct"], "essay_llm": ["m1"]}
    db = tmp_path / "run.db"
    plan(db, catalog, write_spec(tmp_path / "spec.yaml", spec))
    task, outcome = run_one(db)
    assert (task.stage, task.parent_gen_id, outcome.ok) == ("essay", None, True)
    prompt = next(text for text in outcome.texts.values() if text.startswith("[gen "))
    assert prompt == f"[gen {task.gen_id}] c1 1\nAlpha\nBeta\nWrite an essay."


def test_a_draft_is_given_each_concept_at_its_combinations_level(tmp_path):
    """The combinations are at the sentence level: a concept that also has a paragraph is
    given by its sentence (a missing level would fall back to the paragraph)."""
    catalog = write_catalog(tmp_path / "catalog", models=[offline_model("m1")], combos=1)
    concepts = [
        {"id": c, "name": name, "sentence": sentence, "paragraph": f"{name}, at length."}
        for c, name, sentence in CONCEPTS
    ]
    (catalog / "concepts.yaml").write_text(yaml.safe_dump(concepts), encoding="utf-8")
    # a combination id of its own: a process caches a combination's concepts by id
    combos = [{"id": "c-levels", "concepts": ["alpha", "beta"], "level": "sentence"}]
    (catalog / "combos.yaml").write_text(yaml.safe_dump(combos), encoding="utf-8")
    spec = {"combo_id": ["c-levels"], "draft_template": ["notes"], "draft_llm": ["m1"]}
    db = tmp_path / "run.db"
    plan(db, catalog, write_spec(tmp_path / "spec.yaml", spec))
    task, outcome = run_one(db)
    prompt = next(text for text in outcome.texts.values() if text.startswith("[gen "))
    assert f"- Alpha: {CONCEPTS[0][2]}\n- Beta: {CONCEPTS[1][2]}\n" in prompt


def test_a_model_changed_in_the_catalog_is_called_as_it_now_is(tmp_path):
    """Re-importing the catalog with a model's settings changed gives it a new version: a
    worker that already called it (and cached it) calls it with the new settings."""
    db = cohort(tmp_path, [offline_model("m1", temperature=0.2)], combos=1)
    conn = connect(db, create=False)
    try:
        assert load_model(conn, "m1")["settings"] == {"temperature": 0.2}
        catalog = write_catalog(
            tmp_path / "catalog", models=[offline_model("m1", temperature=0.9)], combos=1
        )
        import_catalog(conn, load_catalog(catalog), actor="test")
        assert load_model(conn, "m1")["settings"] == {"temperature": 0.9}
    finally:
        conn.close()


def test_a_model_left_to_call_is_read_as_the_catalog_gives_it(tmp_path):
    """What the run's checks and the worker's calls use: the provider, the provider's name
    for the model, its prices (per token, from the catalog's per million tokens) and its
    settings."""
    model = offline_model(
        "m1", price_input_per_mtok=0.5, price_output_per_mtok=1.5, temperature=0.2
    )
    db = cohort(tmp_path, [model], combos=1)
    conn = connect(db, create=False)
    try:
        (got,) = remaining_models(conn, "k")
    finally:
        conn.close()
    assert got == {
        "model_id": "m1",
        "provider": "offline",
        "provider_model": "small",
        "price_input": pytest.approx(0.5e-6),
        "price_output": pytest.approx(1.5e-6),
        "settings": {"temperature": 0.2},
    }


def test_a_task_deferred_by_a_down_endpoint_says_so_when_claimed_again(offline_cohort):
    """An attempt that met a down endpoint does not count either: the next claim's task
    carries the deferral, apart from the releases."""
    db = offline_cohort(combos=1)
    config = WorkerConfig(db_path=db, name="A")
    clock = FixedClock()
    conn = connect(db, create=False)
    try:
        (task,) = claim(conn, config, 1, clock=clock)
        deferred = ev.AttemptDeferred(
            gen_id=task.gen_id, token=task.token, reason="endpoint_down", error="refused"
        )
        outcome = Outcome(task, [deferred], ok=False, deferred=True)
        assert record(conn, [outcome], config, clock=clock) == (1, 0)
        (again,) = claim(conn, config, 1, clock=clock)
    finally:
        conn.close()
    assert again.gen_id == task.gen_id
    assert (again.attempt, again.throttles, again.released, again.deferred) == (2, 0, 0, 1)
