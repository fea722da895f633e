"""Deriving generations from spec rows (``daydream.plan.derivation``): what each kind of
row needs, and the one-line refusal that names each problem and the first row it is in.

Every test plans into a real SQLite file in ``tmp_path`` with the example catalog
(``specs/catalog``) imported, from small specs written next to it.
"""

from __future__ import annotations

import pytest

from daydream.catalog.load import load_catalog
from daydream.catalog.recording import import_catalog
from daydream.db.connection import connect
from daydream.errors import PlanError
from daydream.plan.write import plan_cohort
from tests.example_catalog import CATALOG, EXAMPLE, IMPORT_HINT, write_spec


@pytest.fixture
def conn(tmp_path):
    """A database with the example catalog imported."""
    conn = connect(tmp_path / "plan.db")
    import_catalog(conn, load_catalog(EXAMPLE))
    yield conn
    conn.close()


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
    ],
    ids=["no-combo", "unknown-combo", "no-combo-nor-model"],
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
