"""Deriving generations from spec rows (``daydream.plan.derivation``): what each kind of
row needs, and the one-line refusal that names each problem and the first row it is in.

Every test plans into a real SQLite file in ``tmp_path`` with the example catalog
(``specs/catalog``) imported, from small specs written next to it.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from daydream.catalog.registry import Registry
from daydream.errors import PlanError, TemplateError
from daydream.plan import derivation
from daydream.plan.report import PlanReport
from daydream.plan.write import plan_cohort
from daydream.prompts import available_variables, template_variables
from daydream.spec import normalise_row
from tests.example_catalog import CATALOG, IMPORT_HINT, MODELS, write_spec


@pytest.fixture
def conn(catalog_db):
    """A database with the example catalog imported (conftest's ``catalog_db``)."""
    return catalog_db[1]


def refusal(conn, spec_path) -> str:
    events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, spec_path, "c")
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == events
    return str(caught.value)


ESSAY = {"essay_template": ["direct-essay"], "essay_llm": ["offline-small"]}


@pytest.mark.parametrize(
    ("axes", "problem"),
    [
        (ESSAY, "essay row has no draft and no combo_id (first in row 1)"),
        (
            {"combo_id": ["fungal-market", "nowhere"], **ESSAY},
            f'unknown combo "nowhere" (define it in the catalog\'s combos and {IMPORT_HINT})'
            " (first in row 2)",
        ),
        # Nothing to write the essay from: its model (none here) is not looked at.
        (
            {"essay_template": ["direct-essay"]},
            "essay row has no draft and no combo_id (first in row 1)",
        ),
        (
            {"combo_id": ["nowhere"], "essay_template": ["direct-essay"]},
            f'unknown combo "nowhere" (define it in the catalog\'s combos and {IMPORT_HINT})'
            " (first in row 1)",
        ),
    ],
    ids=["no-combo", "unknown-combo", "no-combo-nor-model", "unknown-combo-no-model"],
)
def test_an_essay_without_a_draft_needs_a_known_combination(conn, tmp_path, axes, problem):
    spec_path = write_spec(tmp_path, "essays", {"axes": axes})
    assert refusal(conn, spec_path) == f"plan {spec_path}: {problem}"


@pytest.mark.parametrize("unknown", [8, 9, 10])
def test_a_refusal_names_the_first_eight_problems_and_counts_the_rest(conn, tmp_path, unknown):
    combos = [f"nowhere-{n}" for n in range(1, unknown + 1)]
    axes = {"combo_id": combos, "draft_template": ["rolling-idea"], "draft_llm": ["offline-small"]}
    spec_path = write_spec(tmp_path, "drafts", {"axes": axes})
    named = "; ".join(
        f'unknown combo "nowhere-{n}" (define it in the catalog\'s combos and {IMPORT_HINT})'
        f" (first in row {n})"
        for n in range(1, 9)
    )
    rest = f"; and {unknown - 8} more" if unknown > 8 else ""
    assert refusal(conn, spec_path) == f"plan {spec_path}: {named}{rest}"


def _known(stage: str) -> str:
    return ", ".join(sorted(t.template_id for t in CATALOG.templates if t.stage == stage))


CHAIN = {
    "combo_id": ["fungal-market"],
    "draft_template": ["rolling-idea"],
    "draft_llm": ["offline-small"],
    "essay_template": ["focused-essay"],
    "essay_llm": ["offline-small"],
    "evaluation_template": ["novelty-rubric"],
    "evaluation_llm": ["offline-small"],
}


@pytest.mark.parametrize("stage", ["draft", "essay", "evaluation"])
def test_an_unknown_template_is_named_with_the_catalogs_templates_of_its_stage(
    conn, tmp_path, stage
):
    axes = {**CHAIN, f"{stage}_template": [CHAIN[f"{stage}_template"][0], "nope"]}
    spec_path = write_spec(tmp_path, "chain", {"axes": axes})
    assert refusal(conn, spec_path) == (
        f'plan {spec_path}: unknown {stage} template "nope" (catalog has: {_known(stage)};'
        f" {IMPORT_HINT}) (first in row 2)"
    )


@pytest.mark.parametrize("stage", ["draft", "essay", "evaluation"])
def test_a_stage_without_a_model_or_with_an_unknown_one_is_named(conn, tmp_path, stage):
    column = f"{stage}_llm"
    missing = {name: levels for name, levels in CHAIN.items() if name != column}
    spec_path = write_spec(tmp_path, "missing", {"axes": missing})
    assert refusal(conn, spec_path) == (
        f"plan {spec_path}: {stage} row has no model ({column} column) (first in row 1)"
    )
    unknown = {**CHAIN, column: ["offline-small", "gpt-99"]}
    spec_path = write_spec(tmp_path, "unknown", {"axes": unknown})
    assert refusal(conn, spec_path) == (
        f'plan {spec_path}: unknown model "gpt-99" (catalog has: {MODELS}; add it to the'
        f" catalog and {IMPORT_HINT}) (first in row 2)"
    )


# A catalog import refuses a copy-mode draft or judge and checks nothing else; the planner
# checks every template against what its stage provides, however the catalog was written
# (an older daydream, a hand-edited database): derive() over a registry given such rows.


def derived(conn, row: dict, **bodies: str) -> tuple[list, str]:
    """derive() of one spec row over the database's catalog, some of whose templates
    (``stage`` -> ``template_id:generator:body``) are replaced; its generations' ids and
    stages, and its problems as the plan's refusal would list them."""
    registry = Registry.load(conn)
    for stage, given in bodies.items():
        template_id, generator, body = given.split(":", 2)
        old = registry.templates[(stage, template_id)]
        registry.templates[(stage, template_id)] = replace(
            old, generator=generator, body=body or None, version=f"{old.version}-edited"
        )
    problems = derivation.Problems()
    generations = derivation.derive(normalise_row(row), registry, {}, problems, 1)
    said = str(problems.error("s.yaml")).removeprefix("plan s.yaml: ") if problems else ""
    return [(g.stage, g.template_id) for g in generations], said


ROW = {name: levels[0] for name, levels in CHAIN.items()}


def test_a_copy_mode_draft_or_judge_is_refused(conn):
    assert derived(conn, ROW, draft="rolling-idea:copy:") == (
        [],
        'draft template "rolling-idea" is copy-mode, but a draft has no parent to copy'
        " (first in row 1)",
    )
    assert derived(conn, ROW, evaluation="novelty-rubric:copy:") == (
        [("draft", "rolling-idea"), ("essay", "focused-essay")],
        'evaluation template "novelty-rubric" cannot be copy-mode (first in row 1)',
    )


def _has(stage: str, has_parent: bool) -> str:
    return ", ".join(available_variables(stage, has_parent=has_parent))


@pytest.mark.parametrize(
    ("stage", "template_id", "reads", "kind", "has_parent"),
    [
        ("draft", "rolling-idea", "response", "a draft", False),
        ("essay", "focused-essay", "concepts", "an essay with a draft", True),
        ("evaluation", "novelty-rubric", "concepts", "an evaluation", True),
    ],
)
def test_a_template_reading_a_variable_its_stage_lacks_is_named(
    conn, stage, template_id, reads, kind, has_parent
):
    body = f"{{{{ {reads} }}}} and {{{{ nothing_here }}}}"
    generations, said = derived(conn, ROW, **{stage: f"{template_id}:llm:{body}"})
    assert said == (
        f'{stage} template "{template_id}" uses {", ".join(sorted([reads, "nothing_here"]))},'
        f" which {kind} does not have (it has: {_has(stage, has_parent)}) (first in row 1)"
    )


def test_a_template_that_does_not_parse_is_named_with_its_error(conn):
    with pytest.raises(TemplateError) as caught:
        template_variables("draft/rolling-idea", "{{ concepts")
    assert derived(conn, ROW, draft="rolling-idea:llm:{{ concepts") == (
        [("draft", "rolling-idea"), ("essay", "focused-essay"), ("evaluation", "novelty-rubric")],
        f"{caught.value} (first in row 1)",
    )


def test_an_essay_template_is_checked_with_and_without_a_draft_apart(conn):
    """The check of a template version is remembered per kind of essay: one fit for an
    essay over a draft is not thereby fit for one written straight from a combination."""
    registry = Registry.load(conn)
    problems = derivation.Problems()
    over_a_draft = normalise_row(ROW)
    from_the_combo = normalise_row(
        {k: v for k, v in ROW.items() if not k.startswith(("draft", "evaluation"))}
    )
    derivation.derive(over_a_draft, registry, {}, problems, 1)
    assert not problems
    derivation.derive(from_the_combo, registry, {}, problems, 2)
    assert list(problems.items) == [
        'essay template "focused-essay" uses links_block, which an essay written straight'
        f" from a combination does not have (it has: {_has('essay', False)})"
    ]
    assert problems.items[list(problems.items)[0]] == 2


def test_every_bad_row_given_in_memory_is_named_with_its_number(conn, tmp_path):
    good = {"combo_id": "fungal-market", "draft_template": "rolling-idea"}
    rows = [
        {**good, "draft_llm": "offline-small"},
        {**good, "draft_llm": "offline-small", "draft_replicate": "two"},
        {**good, "draft_llm": "offline-small", "draft_replicate": 0},
    ]
    listing = tmp_path / "picked.csv"
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, listing, "c", rows=rows)
    assert str(caught.value) == (
        f'plan {listing}: row 2: draft_replicate: "two" is not a replicate number; use a whole'
        " number from 1 to 1,000,000 (first in row 2); row 3: draft_replicate: 0 is not a"
        " replicate number; use a whole number from 1 to 1,000,000 (first in row 3)"
    )


def test_generations_are_written_in_batches_of_at_most_batch_and_every_row_is_counted(
    conn, tmp_path, monkeypatch
):
    monkeypatch.setattr(derivation, "BATCH", 4)
    axes = {"combo_id": ["fungal-market", "memory-codes"], "draft_template": ["rolling-idea"]}
    axes |= {"draft_llm": ["offline-small"], "draft_replicate": [1, 2, 3, 4]}
    report = plan_cohort(conn, write_spec(tmp_path, "drafts", {"axes": axes}), "c")
    assert (report.rows, report.stages["draft"].new, report.new_calls) == (
        8,
        8,
        {"offline-small": 8},
    )
    sizes = [
        len(json.loads(data)["generations"])
        for (data,) in conn.execute("SELECT data FROM events WHERE type = 'generations.planned'")
    ]
    assert sizes == [4, 4]


def test_a_catalog_without_templates_of_a_stage_or_without_models_says_none(conn):
    registry = Registry.load(conn)
    registry.templates = {k: t for k, t in registry.templates.items() if k[0] != "evaluation"}
    problems = derivation.Problems()
    derivation.derive(normalise_row(ROW), registry, {}, problems, 1)
    assert list(problems.items) == [
        f'unknown evaluation template "novelty-rubric" (catalog has: none; {IMPORT_HINT})'
    ]
    registry.models = {}
    problems = derivation.Problems()
    derivation.derive(normalise_row(ROW), registry, {}, problems, 1)
    assert list(problems.items) == [
        f'unknown model "offline-small" (catalog has: none; add it to the catalog and {IMPORT_HINT})'
    ]


def test_each_essay_replicate_and_model_over_one_draft_is_its_own_essay(conn, tmp_path):
    axes = {**CHAIN, "essay_llm": ["offline-small", "offline-large"], "essay_replicate": [1, 2]}
    del axes["evaluation_template"], axes["evaluation_llm"]
    report = plan_cohort(conn, write_spec(tmp_path, "essays", {"axes": axes}), "c")
    essays = conn.execute(
        "SELECT model_id, replicate FROM generations WHERE stage = 'essay' ORDER BY rowid"
    ).fetchall()
    assert (report.stages["draft"].new, report.stages["essay"].new) == (1, 4)
    assert sorted(tuple(r) for r in essays) == [
        ("offline-large", 1),
        ("offline-large", 2),
        ("offline-small", 1),
        ("offline-small", 2),
    ]


def test_a_draft_without_a_combination_is_named(conn, tmp_path):
    axes = {"draft_template": ["rolling-idea"], "draft_llm": ["offline-small"]}
    spec_path = write_spec(tmp_path, "drafts", {"axes": axes})
    assert (
        refusal(conn, spec_path) == f"plan {spec_path}: draft row has no combo_id (first in row 1)"
    )


def test_each_generation_of_a_chain_carries_its_rows_combination(conn, tmp_path):
    plan_cohort(conn, write_spec(tmp_path, "chain", {"axes": CHAIN}), "c")
    rows = conn.execute("SELECT stage, combo_id FROM generations ORDER BY rowid").fetchall()
    assert [tuple(r) for r in rows] == [
        ("draft", "fungal-market"),
        ("essay", "fungal-market"),
        ("evaluation", "fungal-market"),
    ]


def test_an_essay_over_a_draft_is_not_taken_for_one_straight_from_its_combination(conn):
    """One essay template fit for both (it reads only the combination's id): the rows that
    write it straight from the combination and over a draft make two essays."""
    registry = Registry.load(conn)
    old = registry.templates[("essay", "direct-essay")]
    registry.templates[("essay", "direct-essay")] = replace(old, body="On {{ combo_id }}.")
    essay = {"combo_id": "fungal-market", "essay_template": "direct-essay"}
    essay |= {"essay_llm": "offline-small"}
    draft = {"draft_template": "rolling-idea", "draft_llm": "offline-small"}
    report = PlanReport(cohort_id="c", spec_path="rows", dry_run=True)
    rows = [essay, {**essay, **draft}]
    batches = derivation.derive_batches(conn, rows, registry, report)
    made = [(g.stage, g.parent_gen_id is None) for batch in batches for g in batch]
    assert made == [("essay", True), ("draft", True), ("essay", False)]
    batches = derivation.derive_batches(conn, rows[::-1], registry, report)
    made = [(g.stage, g.parent_gen_id is None) for batch in batches for g in batch]
    assert made == [("draft", True), ("essay", False), ("essay", True)]


def test_a_generation_both_named_and_derived_by_the_rows_counts_once(conn, tmp_path):
    draft = {"combo_id": "fungal-market", "draft_template": "rolling-idea"}
    draft |= {"draft_llm": "offline-small"}
    plan_cohort(
        conn, write_spec(tmp_path, "one", {"axes": {k: [v] for k, v in draft.items()}}), "a"
    )
    (draft_id,) = conn.execute("SELECT gen_id FROM generations").fetchone()
    essay = {"draft_id": draft_id, "essay_template": "focused-essay", "essay_llm": "offline-small"}
    report = plan_cohort(conn, tmp_path / "rows.csv", "b", rows=[essay, draft])
    assert (report.stages["draft"].in_cohort, report.stages["essay"].new) == (1, 1)
    members = conn.execute("SELECT count(*) FROM cohort_members WHERE cohort_id = 'b'")
    assert members.fetchone()[0] == 2
