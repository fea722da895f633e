"""Planning: ids, per-stage counts, idempotence, sharing, all-or-nothing, copy mode, dry runs.

Every test plans into a real SQLite file in ``tmp_path`` with the example catalog
(``specs/catalog``) imported, from small specs written next to it.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from daydream import ids
from daydream.catalog.entries import combo_id_for
from daydream.catalog.load import load_catalog
from daydream.catalog.recording import import_catalog
from daydream.cli import cli
from daydream.db.connection import connect
from daydream.errors import PlanError
from daydream.plan import derivation
from daydream.plan import write as plan_module
from daydream.plan.write import plan_cohort
from daydream.results.text import format_plan
from daydream.worker.config import WorkerConfig
from daydream.worker.process import run_worker
from tests.example_catalog import (
    CATALOG_EVENTS,
    DRAFT_TEMPLATES,
    DRAFTS,
    EXAMPLE,
    IMPORT_HINT,
    MODELS,
    SIZES,
    write_spec,
)
from tests.scenario import fail_generations


@pytest.fixture
def db(catalog_db):
    """A database with the example catalog imported: (path, connection)."""
    return catalog_db


def snapshot(path: Path) -> tuple[int, str]:
    """The event count and a full SQL dump, read by a separate connection."""
    raw = sqlite3.connect(path)
    try:
        count = raw.execute("SELECT count(*) FROM events").fetchone()[0]
        dump = "\n".join(raw.iterdump())
    finally:
        raw.close()
    return count, dump


def stage_counts(report) -> dict[str, tuple[int, int, int, int]]:
    return {
        stage: (c.in_cohort, c.new, c.shared, c.completed) for stage, c in report.stages.items()
    }


def members(conn, cohort: str) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT stage, count(*) FROM cohort_members WHERE cohort_id = ? GROUP BY stage",
            (cohort,),
        ).fetchall()
    )


def run_offline(path: Path, cohort: str | None = None):
    """Run every ready task (of one cohort) to the end with the offline provider."""
    config = WorkerConfig(
        db_path=path, name="test", cohort=cohort, provider_override="offline", concurrency=8
    )
    return run_worker(config)


FULL = {
    "axes": {
        "combo_id": ["fungal-market", "memory-codes"],
        "draft_template": ["rolling-idea", "free-notes"],
        "draft_llm": ["offline-small"],
        "essay_template": ["focused-essay"],
        "essay_llm": ["offline-small", "offline-large"],
        "evaluation_template": ["novelty-rubric"],
        "evaluation_llm": ["offline-small", "offline-large"],
        "evaluation_replicate": [1, 2],
    }
}


# ------------------------------------------------------------------ (a) ids


def test_draft_id_is_upstreams_worked_example():
    signature = ids.draft_signature(
        "combo_v1_1f3a9c2b7e4d", "creative-synthesis-v10", "gemini_25_pro", 1
    )
    assert signature == "combo_v1_1f3a9c2b7e4d|creative-synthesis-v10|gemini_25_pro|1"
    digest = hashlib.blake2b(signature.encode(), digest_size=10).digest()
    assert digest.hex() == "cbb27e54cb22752e9d82"
    assert int.from_bytes(digest, "big") == 961933019591753956498818
    assert ids.gen_id("draft", signature) == "d_4cn4s48605a53v5u"
    assert ids.draft_id("combo_v1_1f3a9c2b7e4d", "creative-synthesis-v10", "gemini_25_pro") == (
        "d_4cn4s48605a53v5u"
    )
    # Normalisation: strip, lowercase, replicate as an int.
    assert (
        ids.draft_id("  COMBO_V1_1F3A9C2B7E4D ", "Creative-Synthesis-V10", "Gemini_25_Pro", "1")
        == "d_4cn4s48605a53v5u"
    )
    assert ids.draft_id("combo-1", "draft-A", "draft-llm", 1) == "d_3rdru73r8ppaqlsz"


def test_collision_variant_is_upstreams():
    signature = ids.draft_signature(
        "combo_v1_1f3a9c2b7e4d", "creative-synthesis-v10", "gemini_25_pro", 1
    )
    assert ids.gen_id("draft", signature, collision_index=1) == "d_3obpsywze975lv4p-1"


def test_copy_essay_and_evaluation_ids_are_upstreams():
    signature = ids.essay_signature(
        "d_4cn4s48605a53v5u", "synthesis-theme-narrative-v19", None, 1, copy=True
    )
    assert signature == "d_4cn4s48605a53v5u|synthesis-theme-narrative-v19|1"
    assert hashlib.blake2b(signature.encode(), digest_size=10).hexdigest() == (
        "3241460fee32901c3035"
    )
    assert ids.essay_id(
        "d_4cn4s48605a53v5u", "synthesis-theme-narrative-v19", None, 1, copy=True
    ) == ("e_12n94f3lbug84lyt")
    signature = ids.evaluation_signature("e_12n94f3lbug84lyt", "novelty-v2", "sonnet-4", 2)
    assert signature == "e_12n94f3lbug84lyt|novelty-v2|sonnet-4|2"
    assert hashlib.blake2b(signature.encode(), digest_size=10).hexdigest() == (
        "7cf0eb997455f21f7948"
    )
    assert ids.evaluation_id("e_12n94f3lbug84lyt", "novelty-v2", "sonnet-4", 2) == (
        "v_2o2utey9w5n58too"
    )


def test_llm_essay_id_includes_the_model_and_copy_essay_id_does_not():
    """Upstream bug (reference §11.1): essays differing only by model shared one id."""
    draft = "d_4cn4s48605a53v5u"
    small = ids.essay_id(draft, "focused-essay", "offline-small", 1, copy=False)
    large = ids.essay_id(draft, "focused-essay", "offline-large", 1, copy=False)
    assert small != large
    assert ids.essay_signature(draft, "focused-essay", "offline-small", 1, copy=False) == (
        f"v2|{draft}|focused-essay|offline-small|1"
    )
    # Neither is upstream's (model-less) id.
    upstream = ids.gen_id("essay", f"{draft}|focused-essay|1")
    assert upstream not in (small, large)
    # A copy essay has no model: whatever is passed, its id is upstream's.
    copies = {
        ids.essay_id(draft, "idea-verbatim", model, 1, copy=True)
        for model in (None, "offline-small", "offline-large")
    }
    assert copies == {ids.gen_id("essay", f"{draft}|idea-verbatim|1")}


def test_planned_ids_follow_the_signatures(db, tmp_path):
    path, conn = db
    plan_cohort(conn, write_spec(tmp_path, "full", FULL), "full")
    drafts = {
        (r["combo_id"], r["template_id"]): r["gen_id"]
        for r in conn.execute("SELECT * FROM generations WHERE stage = 'draft'")
    }
    assert drafts[("fungal-market", "rolling-idea")] == ids.draft_id(
        "fungal-market", "rolling-idea", "offline-small", 1
    )
    draft = drafts[("fungal-market", "rolling-idea")]
    essays = {
        r["model_id"]: r
        for r in conn.execute(
            "SELECT * FROM generations WHERE stage = 'essay' AND parent_gen_id = ?", (draft,)
        )
    }
    assert set(essays) == {"offline-small", "offline-large"}
    for model, row in essays.items():
        assert row["gen_id"] == ids.essay_id(draft, "focused-essay", model, 1, copy=False)
        assert row["signature"] == f"v2|{draft}|focused-essay|{model}|1"
        evaluations = conn.execute(
            "SELECT gen_id, model_id, replicate, signature FROM generations"
            " WHERE parent_gen_id = ? ORDER BY model_id, replicate",
            (row["gen_id"],),
        ).fetchall()
        assert [(e[0], e[3]) for e in evaluations] == [
            (
                ids.evaluation_id(row["gen_id"], "novelty-rubric", judge, rep),
                f"{row['gen_id']}|novelty-rubric|{judge}|{rep}",
            )
            for judge in ("offline-large", "offline-small")
            for rep in (1, 2)
        ]


# ------------------------------------------------------------------ (b) counts per stage


def test_full_chain_counts(db, tmp_path):
    path, conn = db
    report = plan_cohort(conn, write_spec(tmp_path, "full", FULL), "full")
    assert report.rows == 32
    assert stage_counts(report) == {
        "draft": (4, 4, 0, 0),
        "essay": (8, 8, 0, 0),
        "evaluation": (32, 32, 0, 0),
    }
    assert report.new_calls == {"offline-large": 20, "offline-small": 24}
    assert members(conn, "full") == {"draft": 4, "essay": 8, "evaluation": 32}
    assert conn.execute(
        "SELECT drafts, essays, evaluations FROM cohorts WHERE cohort_id = 'full'"
    ).fetchone()[:] == (4, 8, 32)
    statuses = dict(
        conn.execute("SELECT stage || ':' || status, count(*) FROM tasks GROUP BY 1").fetchall()
    )
    assert statuses == {"draft:ready": 4, "essay:waiting": 8, "evaluation:waiting": 32}
    # One cohort.planned, then the generations (one batch here).
    types = [
        r[0]
        for r in conn.execute("SELECT type FROM events WHERE id > ? ORDER BY id", (CATALOG_EVENTS,))
    ]
    assert types == ["cohort.planned", "generations.planned"]
    assert report.events == 2


def test_draft_only_counts(db, tmp_path):
    path, conn = db
    report = plan_cohort(conn, write_spec(tmp_path, "drafts", DRAFTS), "drafts")
    assert stage_counts(report) == {
        "draft": (6, 6, 0, 0),
        "essay": (0, 0, 0, 0),
        "evaluation": (0, 0, 0, 0),
    }
    replicates = conn.execute(
        "SELECT combo_id, replicate FROM generations ORDER BY rowid"
    ).fetchall()
    assert [tuple(r) for r in replicates] == [
        (combo, rep) for combo in DRAFTS["axes"]["combo_id"] for rep in (1, 2)
    ]
    assert conn.execute(
        "SELECT drafts, essays, evaluations FROM cohorts WHERE cohort_id = 'drafts'"
    ).fetchone()[:] == (6, 0, 0)


def test_essays_straight_from_a_combination(db, tmp_path):
    path, conn = db
    spec = {
        "axes": {
            "combo_id": ["fungal-market", "memory-codes"],
            "essay_template": ["direct-essay"],
            "essay_llm": ["offline-small"],
        }
    }
    report = plan_cohort(conn, write_spec(tmp_path, "essays", spec), "essays")
    assert stage_counts(report) == {
        "draft": (0, 0, 0, 0),
        "essay": (2, 2, 0, 0),
        "evaluation": (0, 0, 0, 0),
    }
    rows = conn.execute(
        "SELECT g.gen_id, g.parent_gen_id, g.combo_id, g.signature, t.status FROM generations g"
        " JOIN tasks t USING (gen_id) ORDER BY g.rowid"
    ).fetchall()
    assert [tuple(r) for r in rows] == [
        (
            ids.essay_id(f"combo:{combo}", "direct-essay", "offline-small", 1, copy=False),
            None,
            combo,
            f"v2|combo:{combo}|direct-essay|offline-small|1",
            "ready",
        )
        for combo in ("fungal-market", "memory-codes")
    ]


def test_an_essay_template_that_needs_a_draft_is_refused_without_one(db, tmp_path):
    path, conn = db
    before = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    spec = {
        "axes": {
            "combo_id": ["fungal-market"],
            "essay_template": ["focused-essay"],
            "essay_llm": ["offline-small"],
        }
    }
    spec_path = write_spec(tmp_path, "needs-draft", spec)
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, spec_path, "needs-draft")
    assert str(caught.value) == (
        f'plan {spec_path}: essay template "focused-essay" uses links_block, which an essay'
        " written straight from a combination does not have (it has: concepts, combo_id,"
        " template_id, model_id, replicate, gen_id) (first in row 1)"
    )
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == before


def test_evaluations_over_existing_essays(db, tmp_path):
    path, conn = db
    plan_cohort(conn, write_spec(tmp_path, "full", FULL), "full")
    essays = [
        r[0] for r in conn.execute("SELECT gen_id FROM generations WHERE stage = 'essay' LIMIT 3")
    ]
    spec = {
        "axes": {
            "essay_id": essays,
            "evaluation_template": ["feasibility-rubric"],
            "evaluation_llm": ["offline-small", "offline-large"],
        }
    }
    report = plan_cohort(conn, write_spec(tmp_path, "judge", spec), "judge")
    assert stage_counts(report) == {
        "draft": (0, 0, 0, 0),
        "essay": (3, 0, 3, 0),
        "evaluation": (6, 6, 0, 0),
    }
    assert members(conn, "judge") == {"essay": 3, "evaluation": 6}
    parents = conn.execute(
        "SELECT parent_gen_id, count(*) FROM generations g JOIN cohort_members m USING (gen_id)"
        " WHERE m.cohort_id = 'judge' AND g.stage = 'evaluation' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [tuple(r) for r in parents] == [(e, 2) for e in sorted(essays)]
    assert conn.execute("SELECT count(*) FROM generations").fetchone()[0] == 4 + 8 + 32 + 6


def test_essays_over_existing_drafts(db, tmp_path):
    path, conn = db
    plan_cohort(conn, write_spec(tmp_path, "drafts", DRAFTS), "drafts")
    drafts = [r[0] for r in conn.execute("SELECT gen_id FROM generations LIMIT 2")]
    spec = {
        "axes": {
            "draft_id": drafts,
            "essay_template": ["focused-essay"],
            "essay_llm": ["offline-large"],
            "essay_replicate": [1, 2],
            "evaluation_template": ["novelty-rubric"],
            "evaluation_llm": ["offline-small"],
        }
    }
    report = plan_cohort(conn, write_spec(tmp_path, "essays", spec), "essays")
    assert stage_counts(report) == {
        "draft": (2, 0, 2, 0),
        "essay": (4, 4, 0, 0),
        "evaluation": (4, 4, 0, 0),
    }
    essays = conn.execute(
        "SELECT parent_gen_id, gen_id FROM generations WHERE stage = 'essay' ORDER BY rowid"
    ).fetchall()
    assert [tuple(r) for r in essays] == [
        (d, ids.essay_id(d, "focused-essay", "offline-large", rep, copy=False))
        for d in drafts
        for rep in (1, 2)
    ]
    assert members(conn, "essays") == {"draft": 2, "essay": 4, "evaluation": 4}


def test_a_concept_pool_registers_its_combos(db, tmp_path):
    path, conn = db
    pool = ["mycelial-networks", "spaced-repetition", "market-making", "daydreaming"]
    spec = {
        "axes": {
            "combo_id": {"concepts": pool, "k": 2, "level": "sentence"},
            "draft_template": ["free-notes"],
            "draft_llm": ["offline-small"],
        }
    }
    spec_path = write_spec(tmp_path, "pool", spec)
    before = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    report = plan_cohort(conn, spec_path, "pool")
    assert stage_counts(report)["draft"] == (6, 6, 0, 0)
    expected = {
        combo_id_for(pair, "sentence", 2): pair
        for pair in [(a, b) for i, a in enumerate(pool) for b in pool[i + 1 :]]
    }
    combos = {
        combo_id: (level, size)
        for combo_id, level, size in conn.execute(
            "SELECT combo_id, level, size FROM combos WHERE combo_id LIKE 'combo_v1_%'"
        )
    }
    assert combos == {combo_id: ("sentence", 2) for combo_id in expected}
    for combo_id, pair in expected.items():
        concepts = [
            r[0]
            for r in conn.execute(
                "SELECT concept_id FROM combo_concepts WHERE combo_id = ? ORDER BY position",
                (combo_id,),
            )
        ]
        assert tuple(concepts) == pair
    assert {r[0] for r in conn.execute("SELECT combo_id FROM generations")} == set(expected)
    types = [
        r[0] for r in conn.execute("SELECT type FROM events WHERE id > ? ORDER BY id", (before,))
    ]
    assert types == ["combo.defined"] * 6 + ["cohort.planned", "generations.planned"]
    # The combos are registered once: planning the pool again writes nothing.
    again = plan_cohort(conn, spec_path, "pool")
    assert again.events == 0
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == before + 8


# ------------------------------------------------------------------ (c) idempotent re-plan


@pytest.mark.parametrize("kind", ["full", "drafts", "judge", "essays-over-drafts", "pool"])
def test_replanning_writes_nothing(db, tmp_path, kind):
    path, conn = db
    plan_cohort(conn, write_spec(tmp_path, "full", FULL), "full")
    essays = [r[0] for r in conn.execute("SELECT gen_id FROM generations WHERE stage = 'essay'")]
    drafts = [r[0] for r in conn.execute("SELECT gen_id FROM generations WHERE stage = 'draft'")]
    specs = {
        "full": FULL,
        "drafts": DRAFTS,
        "judge": {
            "axes": {
                "essay_id": essays[:3],
                "evaluation_template": ["feasibility-rubric"],
                "evaluation_llm": ["offline-small"],
            }
        },
        "essays-over-drafts": {
            "axes": {
                "draft_id": drafts[:2],
                "essay_template": ["focused-essay", "idea-verbatim"],
                "essay_llm": ["offline-large"],
            }
        },
        "pool": {
            "axes": {
                "combo_id": {"concepts": ["daydreaming", "tidal-energy", "market-making"], "k": 2},
                "draft_template": ["free-notes"],
                "draft_llm": ["offline-small"],
            }
        },
    }
    spec_path = write_spec(tmp_path, kind, specs[kind])
    first = plan_cohort(conn, spec_path, "c2")
    assert first.events > 0
    generations = conn.execute("SELECT count(*) FROM generations").fetchone()[0]
    before = snapshot(path)
    second = plan_cohort(conn, spec_path, "c2")
    assert second.events == 0
    assert snapshot(path) == before
    assert conn.execute("SELECT count(*) FROM generations").fetchone()[0] == generations
    assert all(c.new == 0 for c in second.stages.values())
    assert {s: c.in_cohort for s, c in second.stages.items()} == {
        s: c.in_cohort for s, c in first.stages.items()
    }
    assert "0 event(s) written" in format_plan(second)


def test_replanning_an_edited_spec_adds_only_the_new_work(db, tmp_path):
    path, conn = db
    spec_path = write_spec(tmp_path, "full", FULL)
    plan_cohort(conn, spec_path, "full")
    generations = conn.execute("SELECT count(*) FROM generations").fetchone()[0]
    more = {
        "axes": {**FULL["axes"], "evaluation_template": ["novelty-rubric", "feasibility-rubric"]}
    }
    write_spec(tmp_path, "full", more)
    report = plan_cohort(conn, spec_path, "full")
    assert stage_counts(report) == {
        "draft": (4, 0, 0, 0),
        "essay": (8, 0, 0, 0),
        "evaluation": (64, 32, 0, 0),
    }
    assert conn.execute("SELECT count(*) FROM generations").fetchone()[0] == generations + 32
    assert conn.execute(
        "SELECT drafts, essays, evaluations FROM cohorts WHERE cohort_id = 'full'"
    ).fetchone()[:] == (4, 8, 64)


# ------------------------------------------------------------------ (d) sharing across cohorts


@pytest.mark.parametrize("late_indexes", [True, False], ids=["indexes-after", "indexes-live"])
def test_a_second_cohort_links_shared_generations_and_reports_completed(
    db, tmp_path, monkeypatch, late_indexes
):
    path, conn = db
    if not late_indexes:  # memberships are then looked up through cohort_members_gen
        monkeypatch.setattr(plan_module, "BULK_BELOW", 0)
    warmup = {
        "axes": {
            "combo_id": ["fungal-market", "memory-codes"],
            "draft_template": ["rolling-idea"],
            "draft_llm": ["offline-small"],
        }
    }
    plan_cohort(conn, write_spec(tmp_path, "warmup", warmup), "warmup")
    stats = run_offline(path, "warmup")
    assert stats.ok == 2
    done = [r[0] for r in conn.execute("SELECT gen_id FROM generations WHERE status = 'done'")]
    assert len(done) == 2

    report = plan_cohort(conn, write_spec(tmp_path, "full", FULL), "full")
    assert stage_counts(report) == {
        "draft": (4, 2, 2, 2),
        "essay": (8, 8, 0, 0),
        "evaluation": (32, 32, 0, 0),
    }
    assert "  draft               4       2       2          2" in format_plan(report)
    # Linked, not copied: one generation row, two memberships.
    assert conn.execute("SELECT count(*) FROM generations WHERE stage = 'draft'").fetchone()[0] == 4
    for gen_id in done:
        cohorts = [
            r[0]
            for r in conn.execute(
                "SELECT cohort_id FROM cohort_members WHERE gen_id = ? ORDER BY 1", (gen_id,)
            )
        ]
        assert cohorts == ["full", "warmup"]
    # Essays of the completed drafts are ready at once; the others wait for their draft.
    ready = conn.execute(
        "SELECT count(*) FROM tasks WHERE stage = 'essay' AND status = 'ready'"
    ).fetchone()[0]
    assert ready == 4
    new_calls = report.new_calls
    assert new_calls == {"offline-large": 20, "offline-small": 22}

    run_offline(path, "full")
    # The shared drafts were not run again: one attempt and one call each.
    for gen_id in done:
        attempts = conn.execute(
            "SELECT count(*) FROM events WHERE type = 'attempt.started' AND subject = ?",
            (gen_id,),
        ).fetchone()[0]
        assert attempts == 1
    assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 2 + 2 + 8 + 32

    # A third cohort over the same spec: everything shared and completed, nothing new.
    before = conn.execute("SELECT count(*) FROM generations").fetchone()[0]
    third = plan_cohort(conn, tmp_path / "full.yaml", "again")
    assert stage_counts(third) == {
        "draft": (4, 0, 4, 4),
        "essay": (8, 0, 8, 8),
        "evaluation": (32, 0, 32, 32),
    }
    assert third.new_calls == {}
    assert conn.execute("SELECT count(*) FROM generations").fetchone()[0] == before
    assert members(conn, "again") == {"draft": 4, "essay": 8, "evaluation": 32}


def _index_sql(conn) -> dict[str, str]:
    return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql"))


@pytest.mark.parametrize("held", [0, 1], ids=["few-generations", "many-generations"])
def test_a_plan_builds_the_indexes_after_its_inserts_only_while_few_generations_exist(
    db, tmp_path, monkeypatch, held
):
    path, conn = db
    plan_cohort(
        conn,
        write_spec(
            tmp_path,
            "warmup",
            {
                "axes": {
                    "combo_id": ["fungal-market"],
                    "draft_template": ["rolling-idea"],
                    "draft_llm": ["offline-small"],
                }
            },
        ),
        "warmup",
    )
    # With BULK_BELOW = 1 the one generation planned above counts as "many".
    monkeypatch.setattr(plan_module, "BULK_BELOW", 1 if held else 100)
    before = _index_sql(conn)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    report = plan_cohort(conn, write_spec(tmp_path, "full", FULL), "full")
    conn.set_trace_callback(None)
    dropped = sorted(s.split('"')[1] for s in statements if s.startswith("DROP INDEX"))
    assert dropped == ([] if held else sorted(plan_module.LATE_INDEXES))
    # The same indexes, from the same SQL, and consistent with the rows.
    assert _index_sql(conn) == before
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert report.stages["evaluation"].new == 32
    # The queries that need them use them.
    plan = " ".join(
        r[3]
        for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT gen_id FROM generations WHERE status = 'ready'"
            " ORDER BY stage, rowid LIMIT 5"
        )
    )
    assert "generations_queue" in plan
    assert run_offline(path, "full").ok == 4 + 8 + 32


# ------------------------------------------------------------------ (e) all or nothing


def _many_rows(first_axis: str, bad: str | None) -> dict:
    """30 rows (3 x 2 x 1 x 5): the bad level is last on the slowest axis, in rows 21-30."""
    good = {
        "draft_template": ("rolling-idea", "free-notes"),
        "draft_llm": ("offline-small", "offline-large"),
        "combo_id": ("fungal-market", "memory-codes"),
    }
    others = [name for name in good if name != first_axis]
    axes = {
        first_axis: [*good[first_axis], *([bad] if bad else [])],
        others[0]: list(good[others[0]]),
        others[1]: [good[others[1]][0]],
        "draft_replicate": [1, 2, 3, 4, 5],
    }
    return {"axes": axes}


@pytest.mark.parametrize(
    ("axis", "bad", "problem"),
    [
        (
            "draft_template",
            "nope-template",
            f'unknown draft template "nope-template" (catalog has: {DRAFT_TEMPLATES};'
            f" {IMPORT_HINT})",
        ),
        (
            "draft_llm",
            "gpt-99",
            f'unknown model "gpt-99" (catalog has: {MODELS}; add it to the catalog and'
            f" {IMPORT_HINT})",
        ),
        (
            "combo_id",
            "no-such-combo",
            f'unknown combo "no-such-combo" (define it in the catalog\'s combos and {IMPORT_HINT})',
        ),
    ],
)
def test_a_problem_in_the_last_rows_leaves_the_database_unchanged(
    db, tmp_path, monkeypatch, axis, bad, problem
):
    path, conn = db
    monkeypatch.setattr(derivation, "BATCH", 4)  # earlier rows are appended, then undone
    plan_cohort(conn, write_spec(tmp_path, "full", FULL), "existing")
    spec_path = write_spec(tmp_path, "bad", _many_rows(axis, bad))
    before = snapshot(path)
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, spec_path, "bad")
    assert str(caught.value) == f"plan {spec_path}: {problem} (first in row 21)"
    assert snapshot(path) == before
    assert not conn.in_transaction
    # The same rows without the bad level plan fine, in several batches.
    report = plan_cohort(conn, write_spec(tmp_path, "good", _many_rows(axis, None)), "bad")
    assert report.stages["draft"].in_cohort == 20 and report.events > 3


def test_every_problem_is_named_once_on_one_line(db, tmp_path):
    path, conn = db
    spec = {
        "axes": {
            "combo_id": ["fungal-market", "nowhere"],
            "draft_template": ["rolling-idea", "nope"],
            "draft_llm": ["offline-small"],
        }
    }
    spec_path = write_spec(tmp_path, "bad", spec)
    before = snapshot(path)
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, spec_path, "bad")
    assert str(caught.value) == (
        f'plan {spec_path}: unknown draft template "nope" (catalog has:'
        f' {DRAFT_TEMPLATES}; {IMPORT_HINT}) (first in row 2); unknown combo "nowhere" (define'
        f" it in the catalog's combos and {IMPORT_HINT}) (first in row 3)"
    )
    assert "\n" not in str(caught.value)
    assert snapshot(path) == before


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (
            {
                "axes": {
                    "essay_id": ["e_nope"],
                    "evaluation_template": ["novelty-rubric"],
                    "evaluation_llm": ["offline-small"],
                }
            },
            'essay_id "e_nope" is not an existing essay generation (first in row 1)',
        ),
        (
            {
                "axes": {
                    "draft_id": ["d_nope"],
                    "essay_template": ["focused-essay"],
                    "essay_llm": ["offline-small"],
                }
            },
            'draft_id "d_nope" is not an existing draft generation (first in row 1)',
        ),
        (
            {"axes": {"combo_id": ["fungal-market"], "essay_template": ["idea-verbatim"]}},
            'essay template "idea-verbatim" is copy-mode and needs a draft (add draft_template'
            " and draft_llm columns) (first in row 1)",
        ),
        (
            {"axes": {"combo_id": ["fungal-market"], "draft_template": ["rolling-idea"]}},
            "draft row has no model (draft_llm column) (first in row 1)",
        ),
        (
            {
                "axes": {
                    "combo_id": ["fungal-market"],
                    "evaluation_template": ["novelty-rubric"],
                    "evaluation_llm": ["offline-small"],
                }
            },
            "evaluation columns need an essay (essay_template) or an essay_id (first in row 1)",
        ),
        (
            {"axes": {"combo_id": ["fungal-market"], "draft_llm": ["offline-small"]}},
            "row names no stage to run (needs draft_template, essay_template or"
            " evaluation_template columns) (first in row 1)",
        ),
        (
            {
                "axes": {
                    "combo_id": ["fungal-market"],
                    "draft_template": ["rolling-idea"],
                    "draft_llm": ["offline-small"],
                    "draft_rep": ["2.0"],
                }
            },
            'row 1: draft_rep: "2.0" is not a replicate number; use a whole number from 1 to 1,000,000'
            " (first in row 1)",
        ),
    ],
)
def test_other_planning_problems(db, tmp_path, spec, problem):
    path, conn = db
    spec_path = write_spec(tmp_path, "bad", spec)
    before = snapshot(path)
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, spec_path, "bad")
    assert str(caught.value) == f"plan {spec_path}: {problem}"
    assert snapshot(path) == before


def test_a_pool_with_an_unknown_concept_or_a_bad_row_registers_no_combo(db, tmp_path):
    path, conn = db
    before = snapshot(path)
    spec = {
        "axes": {
            "combo_id": {"concepts": ["daydreaming", "ghost-concept"], "k": 2},
            "draft_template": ["free-notes"],
            "draft_llm": ["offline-small"],
        }
    }
    spec_path = write_spec(tmp_path, "pool", spec)
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, spec_path, "pool")
    assert str(caught.value) == (
        f"plan {spec_path}: combo_id pool names unknown concept(s) ghost-concept"
        " (import them with: daydream catalog import DIR)"
    )
    assert snapshot(path) == before
    spec["axes"]["combo_id"]["concepts"] = ["daydreaming", "tidal-energy"]
    spec["axes"]["draft_llm"] = ["gpt-99"]
    with pytest.raises(PlanError, match='unknown model "gpt-99"'):
        plan_cohort(conn, write_spec(tmp_path, "pool", spec), "pool")
    assert snapshot(path) == before


def test_an_invalid_cohort_id(db, tmp_path):
    path, conn = db
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, write_spec(tmp_path, "full", FULL), "bad id")
    assert str(caught.value) == (
        'cohort id "bad id" is invalid: use letters, digits, "-", "_" or "."'
        " (starting with a letter or digit)"
    )


# ------------------------------------------------------------------ (f) copy mode


def test_copy_essays_collapse_replicates_and_have_no_model(db, tmp_path):
    path, conn = db
    spec = {
        "axes": {
            "combo_id": ["fungal-market"],
            "draft_template": ["rolling-idea"],
            "draft_llm": ["offline-small"],
            "essay_template": ["idea-verbatim", "focused-essay"],
            "essay_llm": ["offline-small", "offline-large"],
            "essay_replicate": [1, 2],
            "evaluation_template": ["novelty-rubric"],
            "evaluation_llm": ["offline-small"],
            "evaluation_replicate": [1, 2],
        }
    }
    report = plan_cohort(conn, write_spec(tmp_path, "copy", spec), "copy")
    # 16 rows: one copy essay (not 4), four LLM essays; two judgements of each.
    assert report.rows == 16
    assert stage_counts(report) == {
        "draft": (1, 1, 0, 0),
        "essay": (5, 5, 0, 0),
        "evaluation": (10, 10, 0, 0),
    }
    draft = ids.draft_id("fungal-market", "rolling-idea", "offline-small", 1)
    copy = conn.execute(
        "SELECT g.gen_id, g.model_id, g.replicate, g.mode, g.signature, t.pool"
        " FROM generations g JOIN tasks t USING (gen_id) WHERE g.template_id = 'idea-verbatim'"
    ).fetchall()
    assert [tuple(r) for r in copy] == [
        (
            ids.essay_id(draft, "idea-verbatim", None, 1, copy=True),
            None,
            1,
            "copy",
            f"{draft}|idea-verbatim|1",
            "copy",
        )
    ]
    assert report.new_calls == {"offline-large": 2, "offline-small": 1 + 2 + 10}
    copy_id = copy[0][0]
    judged = conn.execute(
        "SELECT replicate FROM generations WHERE parent_gen_id = ? ORDER BY replicate",
        (copy_id,),
    ).fetchall()
    assert [r[0] for r in judged] == [1, 2]

    run_offline(path, "copy")
    essay, parent = conn.execute(
        "SELECT e.parsed_hash, d.parsed_hash FROM generations e JOIN generations d"
        " ON d.gen_id = e.parent_gen_id WHERE e.gen_id = ?",
        (copy_id,),
    ).fetchone()
    assert essay == parent  # a verbatim copy of the draft's parsed text
    assert (
        conn.execute("SELECT count(*) FROM calls WHERE gen_id = ?", (copy_id,)).fetchone()[0] == 0
    )
    assert (
        conn.execute("SELECT count(*) FROM generations WHERE status != 'done'").fetchone()[0] == 0
    )


# ------------------------------------------------------------------ (g) dry runs


def test_a_dry_run_writes_nothing_and_reports_what_a_plan_would(db, tmp_path):
    path, conn = db
    spec = {
        "axes": {
            "combo_id": {"concepts": ["daydreaming", "tidal-energy", "market-making"], "k": 2},
            "draft_template": ["free-notes"],
            "draft_llm": ["offline-small"],
            "essay_template": ["focused-essay"],
            "essay_llm": ["sonnet-4.5"],
        }
    }
    spec_path = write_spec(tmp_path, "pool", spec)
    before = snapshot(path)
    dry = plan_cohort(conn, spec_path, "pool", dry_run=True)
    assert snapshot(path) == before
    assert dry.events == 0 and dry.dry_run
    assert "(dry run: nothing written)" in format_plan(dry)
    assert dry.cost_high > dry.cost_low > 0
    real = plan_cohort(conn, spec_path, "pool")
    assert (
        stage_counts(dry)
        == stage_counts(real)
        == {
            "draft": (3, 3, 0, 0),
            "essay": (3, 3, 0, 0),
            "evaluation": (0, 0, 0, 0),
        }
    )
    assert (dry.new_calls, dry.cost_low, dry.cost_high) == (
        real.new_calls,
        real.cost_low,
        real.cost_high,
    )


def test_cli_dry_run_writes_nothing(db, tmp_path):
    path, conn = db
    spec_path = write_spec(tmp_path, "full", FULL)
    before = snapshot(path)
    result = CliRunner().invoke(
        cli, ["plan", str(spec_path), "--cohort", "x", "--dry-run", "--db", str(path)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "cohort x (dry run: nothing written): 32 spec row(s)"
    assert snapshot(path) == before


# ------------------------------------------------------------------ catalog import


def test_catalog_import_twice_then_an_edited_template(tmp_path):
    catalog = tmp_path / "catalog"
    shutil.copytree(EXAMPLE, catalog)
    fresh = tmp_path / "fresh.db"
    runner = CliRunner()

    def import_(*extra):
        result = runner.invoke(cli, ["catalog", "import", str(catalog), "--db", str(fresh), *extra])
        assert result.exit_code == 0, result.output
        return result.stdout

    first = import_()
    assert first.splitlines()[-1] == (
        f"{CATALOG_EVENTS} event(s) written (daydream layout, {catalog})"
    )
    count, _ = snapshot(fresh)
    assert count == CATALOG_EVENTS
    second = import_()
    assert second.splitlines() == [
        *(f"{kind:<10}    0 new     0 changed  {n:>4} unchanged" for kind, n in SIZES.items()),
        f"0 event(s) written (daydream layout, {catalog})",
    ]
    assert snapshot(fresh)[0] == CATALOG_EVENTS

    conn2 = connect(fresh)
    spec_path = write_spec(tmp_path, "drafts", DRAFTS)
    plan_cohort(conn2, spec_path, "before")
    old_version = conn2.execute(
        "SELECT version FROM templates WHERE stage = 'draft' AND template_id = 'rolling-idea'"
    ).fetchone()[0]
    run_offline(fresh, "before")
    conn2.close()
    events_before_edit = snapshot(fresh)[0]

    body = catalog / "templates" / "draft" / "rolling-idea.j2"
    body.write_text(body.read_text(encoding="utf-8") + "\nAlso: MARKER-LINE.\n", encoding="utf-8")
    edited = f"templates     0 new     1 changed  {SIZES['templates'] - 1:>4} unchanged"
    assert edited in import_().splitlines()
    assert snapshot(fresh)[0] == events_before_edit + 1
    conn2 = connect(fresh)
    new_version = conn2.execute(
        "SELECT version FROM templates WHERE stage = 'draft' AND template_id = 'rolling-idea'"
    ).fetchone()[0]
    assert new_version != old_version
    versions = {
        r[0]
        for r in conn2.execute(
            "SELECT version FROM template_versions WHERE template_id = 'rolling-idea'"
        )
    }
    assert versions == {old_version, new_version}
    # Finished work keeps the version (and the prompt) it was made with.
    kept = conn2.execute(
        "SELECT DISTINCT template_version FROM generations WHERE template_id = 'rolling-idea'"
    ).fetchall()
    assert [r[0] for r in kept] == [old_version]
    # New work uses the new version.
    more = {"axes": {**DRAFTS["axes"], "draft_replicate": [3]}}
    plan_cohort(conn2, write_spec(tmp_path, "more", more), "after")
    run_offline(fresh, "after")
    prompts = conn2.execute(
        "SELECT g.template_version, x.text FROM generations g JOIN texts x ON x.hash = g.prompt_hash"
    ).fetchall()
    assert {(v, "MARKER-LINE" in text) for v, text in prompts} == {
        (old_version, False),
        (new_version, True),
    }
    conn2.close()


def test_sixteen_processes_planning_the_same_spec_at_once_make_one_set_of_generations(db, tmp_path):
    """Reference T13: concurrent submissions of the same work create it exactly once."""
    import subprocess

    from tests.scenario import daydream_cmd, env

    path, conn = db
    conn.close()
    spec = write_spec(tmp_path, "full", FULL)
    cohorts = ["same"] * 12 + ["other"] * 4  # "other" shares every generation with "same"
    procs = [
        subprocess.Popen(
            daydream_cmd("plan", str(spec), "--cohort", cohort, "--db", str(path)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        for cohort in cohorts
    ]
    results = [(proc.wait(60), *proc.communicate()) for proc in procs]
    assert [code for code, _, _ in results] == [0] * 16, results
    assert not [err for _, _, err in results if "Traceback" in err or "IntegrityError" in err]
    check = sqlite3.connect(path)
    try:
        assert check.execute("SELECT count(*) FROM generations").fetchone()[0] == 44
        planned = check.execute(
            "SELECT subject, count(*) FROM events WHERE type = 'cohort.planned' GROUP BY 1"
        ).fetchall()
        assert sorted(planned) == [("cohort:other", 1), ("cohort:same", 1)]
        assert (
            check.execute(
                "SELECT count(*) FROM events WHERE type = 'generations.planned'"
            ).fetchone()[0]
            == 2
        )  # the first plan creates them, the other cohort links them
        members = check.execute(
            "SELECT cohort_id, count(*) FROM cohort_members GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert members == [("other", 44), ("same", 44)]
    finally:
        check.close()
    checked = subprocess.run(
        daydream_cmd("db", "check", "--db", str(path)), capture_output=True, text=True, env=env()
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# ------------------------------------------------------------------ planpipe


def _log_and_projections(path: Path) -> tuple[list[tuple], dict]:
    raw = sqlite3.connect(path)
    try:
        log = [tuple(r) for r in raw.execute("SELECT type, subject, data FROM events ORDER BY id")]
        rows = {
            table: [
                tuple(r)
                for r in raw.execute(
                    f"SELECT * FROM {table} ORDER BY rowid"
                    if table == "generations"
                    else f"SELECT * FROM {table} ORDER BY 1, 2"
                )
            ]
            for table in ("generations", "cohort_members", "essay_judge_scores")
        }
    finally:
        raw.close()
    # Planning times differ between the two databases; everything else must not.
    for table, found in rows.items():
        rows[table] = [
            tuple(v for v in r if not (isinstance(v, str) and v[:2] == "20")) for r in found
        ]
    return log, rows


def test_a_plan_derived_in_a_second_process_writes_exactly_what_one_process_writes(
    tmp_path, monkeypatch
):
    from daydream.plan import pipeline as planpipe

    pool = ["mycelial-networks", "spaced-repetition", "market-making", "daydreaming"]
    specs = [
        ("full", FULL),
        ("more", {**FULL, "axes": {**FULL["axes"], "evaluation_replicate": [1, 2, 3]}}),
        (
            "pool",
            {
                "axes": {
                    "combo_id": {"concepts": pool, "k": 2, "level": "sentence"},
                    "draft_template": ["free-notes"],
                    "draft_llm": ["offline-small"],
                }
            },
        ),
    ]
    results = []
    for pipelined in (False, True):
        monkeypatch.setattr(planpipe, "PIPELINE_ROWS", 0 if pipelined else 10**9)
        monkeypatch.setattr(derivation, "BATCH", 7)  # several batches per plan
        directory = tmp_path / ("two" if pipelined else "one")
        directory.mkdir()
        path = directory / "daydream.db"
        conn = connect(path)
        import_catalog(conn, load_catalog(EXAMPLE))
        reports = []
        for name, spec in specs:  # the second shares the first's work, the third pools
            spec_path = write_spec(tmp_path, name, spec)
            reports.append(plan_cohort(conn, spec_path, name).to_dict())
        conn.close()
        results.append((reports, _log_and_projections(path)))
    assert results[1] == results[0]
    reports, (log, rows) = results[1]
    assert reports[1]["stages"]["draft"]["shared"] == 4 and len(rows["generations"]) > 50


def test_a_problem_found_by_the_deriving_process_is_the_same_one_line_error(
    db, tmp_path, monkeypatch
):
    from daydream.plan import pipeline as planpipe

    path, conn = db
    monkeypatch.setattr(planpipe, "PIPELINE_ROWS", 0)
    monkeypatch.setattr(derivation, "BATCH", 4)  # earlier rows are appended, then undone
    spec_path = write_spec(tmp_path, "bad", _many_rows("draft_llm", "gpt-99"))
    before = snapshot(path)
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, spec_path, "bad")
    assert str(caught.value).startswith(f'plan {spec_path}: unknown model "gpt-99"')
    assert str(caught.value).endswith("(first in row 21)")
    assert snapshot(path) == before and not conn.in_transaction


def test_a_deriving_process_that_dies_fails_the_plan_and_changes_nothing(db, tmp_path, monkeypatch):
    from daydream.plan import pipeline as planpipe

    path, conn = db
    dies = tmp_path / "dies.sh"
    dies.write_text("#!/bin/sh\necho 'out of memory' >&2\nexit 3\n")
    dies.chmod(0o755)
    monkeypatch.setattr(planpipe, "PIPELINE_ROWS", 0)
    monkeypatch.setattr(planpipe.sys, "executable", str(dies))
    spec_path = write_spec(tmp_path, "full", FULL)
    before = snapshot(path)
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, spec_path, "full")
    assert str(caught.value) == (
        f"plan {spec_path}: the process deriving its generations stopped (exit code 3:"
        " out of memory); nothing was planned"
    )
    assert snapshot(path) == before and not conn.in_transaction


@pytest.mark.parametrize("ended", ["cancelled", "failed"])
@pytest.mark.parametrize("late_indexes", [True, False], ids=["indexes-after", "indexes-live"])
def test_new_work_over_a_draft_that_did_not_complete_is_planned_blocked_with_the_reason(
    db, tmp_path, monkeypatch, late_indexes, ended
):
    from daydream.queue.cohorts import cancel

    path, conn = db
    if not late_indexes:
        monkeypatch.setattr(plan_module, "BULK_BELOW", 0)
    drafts = {key: FULL["axes"][key] for key in ("combo_id", "draft_template", "draft_llm")}
    plan_cohort(conn, write_spec(tmp_path, "drafts", {"axes": drafts}), "drafts")
    if ended == "cancelled":
        assert len(cancel(conn, "drafts")) == 4
    else:
        fail_generations(conn, [r[0] for r in conn.execute("SELECT gen_id FROM generations")])
    assert {r[0] for r in conn.execute("SELECT status FROM generations")} == {ended}
    monkeypatch.setattr(derivation, "BATCH", 3)  # parents and children in other batches
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    plan_cohort(conn, write_spec(tmp_path, "full", FULL), "full")
    conn.set_trace_callback(None)
    # No walk down the lineage: it would scan the table per generation while the parent
    # index is built after the inserts.
    assert not [s for s in statements if "parent_gen_id IN" in s]
    rows = conn.execute(
        "SELECT g.stage, g.status, g.state, g.error, g.blocked_reason, g.parent_gen_id"
        " FROM generations g WHERE g.stage != 'draft'"
    ).fetchall()
    assert len(rows) == 8 + 32
    for stage, status, state, error, reason, parent in rows:
        assert (status, state) == ("blocked", "blocked"), stage
        assert reason == error == f"parent {parent} did not complete"


def test_a_plan_that_fails_while_writing_stops_its_deriving_process(db, tmp_path, monkeypatch):
    from daydream.plan import pipeline as planpipe

    path, conn = db
    children = []

    class Recorded(planpipe.subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            children.append(self)

    writes = []

    def failing_append(conn_, events, **kwargs):
        writes.append(events)
        if len(writes) == 2:  # the first batch of generations, after the cohort's head
            raise sqlite3.OperationalError("disk I/O error")
        return real_append(conn_, events, **kwargs)

    real_append = plan_module.append
    monkeypatch.setattr(planpipe, "PIPELINE_ROWS", 0)
    monkeypatch.setattr(derivation, "BATCH", 4)
    monkeypatch.setattr(planpipe.subprocess, "Popen", Recorded)
    monkeypatch.setattr(plan_module, "append", failing_append)
    # Enough generations that the child is still writing batches when the plan fails.
    many = {**FULL, "axes": {**FULL["axes"], "evaluation_replicate": list(range(1, 101))}}
    before = snapshot(path)
    try:
        plan_cohort(conn, write_spec(tmp_path, "many", many), "many")
    except sqlite3.OperationalError:
        # Checked while the traceback (and every frame in it) is still alive: the child
        # must have been stopped by the plan itself, not by garbage collection later.
        stopped = [child.poll() is not None for child in children]
    else:
        raise AssertionError("the plan should have failed")
    assert stopped == [True]
    assert snapshot(path) == before and not conn.in_transaction


def test_a_plan_inside_a_callers_transaction_keeps_its_indexes_and_derives_in_process(
    db, tmp_path, monkeypatch
):
    """Dropping indexes or reading the catalog from another process is only safe in a
    transaction the plan owns; inside a caller's, neither happens."""
    from daydream.db.transaction import transaction
    from daydream.plan import pipeline as planpipe

    path, conn = db
    monkeypatch.setattr(planpipe, "PIPELINE_ROWS", 0)
    started = []
    monkeypatch.setattr(planpipe, "derived_elsewhere", lambda *a: started.append(a))
    before = _index_sql(conn)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    with pytest.raises(PlanError), transaction(conn):
        plan_cohort(conn, write_spec(tmp_path, "full", FULL), "full")
        raise PlanError("the caller gives up")
    conn.set_trace_callback(None)
    assert not [s for s in statements if s.startswith("DROP INDEX")] and not started
    assert _index_sql(conn) == before
    assert conn.execute("SELECT count(*) FROM generations").fetchone()[0] == 0


def test_the_deriving_process_imports_the_planners_daydream_whatever_its_directory(
    db, tmp_path, monkeypatch
):
    from daydream.plan import pipeline as planpipe

    path, conn = db
    impostor = tmp_path / "cwd" / "daydream"
    impostor.mkdir(parents=True)
    (impostor / "__init__.py").write_text("raise ImportError('an impostor daydream')\n")
    monkeypatch.chdir(impostor.parent)
    monkeypatch.setattr(planpipe, "PIPELINE_ROWS", 0)
    report = plan_cohort(conn, write_spec(tmp_path, "full", FULL), "full")
    assert report.stages["evaluation"].new == 32


def test_a_generation_retried_while_its_parent_stays_failed_waits_blocked(db, tmp_path):
    """What a ``generations.retried`` event does to a child whose parent has failed: it
    becomes blocked (never waiting, which would wait forever). The command refuses such a
    retry; the applier must still be right for any event in the log."""
    from daydream import events as ev
    from daydream.db.log import append

    path, conn = db
    plan_cohort(conn, write_spec(tmp_path, "full", FULL), "full")
    draft = conn.execute("SELECT gen_id FROM generations WHERE stage = 'draft'").fetchone()[0]
    essays = [
        r[0]
        for r in conn.execute(
            "SELECT gen_id FROM generations WHERE parent_gen_id = ? ORDER BY 1", (draft,)
        )
    ]
    fail_generations(conn, [draft])
    append(conn, [ev.GenerationsRetried(cohort_id="full", gen_ids=essays)], actor="test")
    statuses = {
        r[0] for r in conn.execute(
            f"SELECT status FROM generations WHERE gen_id IN ({', '.join('?' * len(essays))})",
            essays,
        )
    }
    assert statuses == {"blocked"}
