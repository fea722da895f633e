"""daydream.legacy: an upstream store imported as events, ids kept, idempotent, reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from daydream import ids
from daydream.catalog.load import load_catalog
from daydream.catalog.recording import import_catalog
from daydream.cli import cli
from daydream.db.check import check
from daydream.db.connection import connect
from daydream.errors import CatalogError
from daydream.legacy.importer import import_legacy
from daydream.plan.write import plan_cohort
from tests.upstream import UPSTREAM_DATA, needs_upstream

pytestmark = needs_upstream

COMBO = "combo_v1_1f3a9c2b7e4d"
# Upstream's worked examples (reference §3.3): these ids were computed by upstream's code.
D1 = "d_4cn4s48605a53v5u"  # COMBO | creative-synthesis-v10 | gemini_25_pro | 1
E_LLM = "e_12n94f3lbug84lyt"  # D1 | synthesis-theme-narrative-v19 | 1 (no model: upstream)
V_LLM = "v_2o2utey9w5n58too"  # E_LLM | novelty-v2 | sonnet-4 | 2
E_COPY = ids.essay_id(D1, "parsed-from-links-v1", None, 1, copy=True)
V_COPY = ids.evaluation_id(E_COPY, "daydreaming-verification-v2", "sonnet-4", 1)
V_MYSTERY = ids.evaluation_id(E_LLM, "novelty-v2", "mystery_model_x", 1)
D2 = ids.draft_id(COMBO, "creative-synthesis-v7", "deepseek_r1_f", 1)  # truncated
E3 = ids.essay_id(D2, "synthesis-theme-narrative-v19", None, 1, copy=True)  # never ran
D3 = ids.draft_id(COMBO, "creative-synthesis-v10", "gemini_25_pro", 2)  # never ran
V_ORPHAN = ids.evaluation_id("e_nosuchessay0001", "novelty-v2", "sonnet-4", 1)

DRAFT_TEXT = "Links between the default mode network and the missing AI discoveries.\n" * 3
ESSAY_TEXT = "An essay on daydreaming machines."
JUDGE_TEXT = "Reasoning about novelty.\nSCORE: 7"


def _json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # exactly as upstream wrote JSON: indent=2, ensure_ascii=False, no trailing newline
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def _gen(root: Path, stage: str, gen_id: str, meta: dict, **files: str | dict) -> Path:
    """gens/<stage>/<gen_id>/ with metadata.json as seed_cohort_metadata wrote it."""
    directory = root / "gens" / stage / gen_id
    _json(directory / "metadata.json", {"stage": stage, "gen_id": gen_id, **meta})
    for name, content in files.items():
        file = directory / name.replace("_txt", ".txt").replace("_json", ".json")
        if isinstance(content, dict):
            _json(file, content)
        else:
            file.write_text(content, encoding="utf-8")
    return directory


def _raw_meta(stage: str, gen_id: str, mode: str = "llm", **extra: object) -> dict:
    meta = {
        "function": f"{stage}_raw",
        "mode": mode,
        "stage": stage,
        "gen_id": gen_id,
        "run_id": "run-1",
        "input_mode": "copy" if mode == "copy" else "prompt",
        "raw_length": 100,
        "raw_lines": 3,
        "raw_path": f"/data/gens/{stage}/{gen_id}/raw.txt",
        "raw_metadata_path": f"/data/gens/{stage}/{gen_id}/raw_metadata.json",
    }
    return {**meta, **extra}


def _parsed_meta(stage: str, gen_id: str, parser: str) -> dict:
    return {
        "stage": stage,
        "gen_id": gen_id,
        "function": f"{stage}_parsed",
        "parser_name": parser,
        "success": True,
        "error": None,
        "run_id": "run-2",
        "input_mode": "prompt",
        "parsed_path": f"/data/gens/{stage}/{gen_id}/parsed.txt",
        "parsed_metadata_path": f"/data/gens/{stage}/{gen_id}/parsed_metadata.json",
    }


def _llm_raw(stage: str, gen_id: str, model: str, **extra: object) -> dict:
    llm = {
        "llm_model_id": model,
        "duration_s": 12.345,
        "finish_reason": "stop",
        "truncated": False,
        "usage": {"completion_tokens": 812, "max_tokens": 20480},
    }
    return _raw_meta(stage, gen_id, **{**llm, **extra})


def make_store(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(UPSTREAM_DATA / "1_raw", root / "1_raw")
    (root / "combo_mappings.csv").write_text(
        "combo_id,version,concept_id,description_level,k_max,created_at\n"
        f"{COMBO},v1,default-mode-network,paragraph,6,2025-09-01T00:00:00\n"
        f"{COMBO},v1,dearth-ai-discoveries,paragraph,6,2025-09-01T00:00:00\n",
        encoding="utf-8",
    )

    def seed(stage, gen_id, template, model, replicate=1, mode="llm", parent=None):
        meta = {"origin_cohort_id": "c1", "mode": mode, "template_id": template}
        if stage == "draft":
            meta["combo_id"] = COMBO
        else:
            meta["parent_gen_id"] = parent
        return {**meta, "llm_model_id": model, "replicate": replicate}

    _gen(
        root,
        "draft",
        D1,
        seed("draft", D1, "creative-synthesis-v10", "gemini_25_pro"),
        prompt_txt="Concepts: default mode network; dearth of AI discoveries.",
        raw_txt=DRAFT_TEXT,
        raw_metadata_json=_llm_raw("draft", D1, "gemini_25_pro"),
        parsed_txt=DRAFT_TEXT,
        parsed_metadata_json=_parsed_meta("draft", D1, "identity"),
    )
    _gen(  # copy mode: upstream seeded llm_model_id "None" (the string)
        root,
        "essay",
        E_COPY,
        seed("essay", E_COPY, "parsed-from-links-v1", "None", mode="copy", parent=D1),
        prompt_txt=DRAFT_TEXT,
        raw_txt=DRAFT_TEXT,
        raw_metadata_json=_raw_meta("essay", E_COPY, "copy", finish_reason="copy"),
        parsed_txt=DRAFT_TEXT,
        parsed_metadata_json=_parsed_meta("essay", E_COPY, "identity"),
    )
    _gen(
        root,
        "essay",
        E_LLM,
        seed("essay", E_LLM, "synthesis-theme-narrative-v19", "sonnet-4", parent=D1),
        prompt_txt="Write an essay from these links.",
        raw_txt=ESSAY_TEXT,
        raw_metadata_json=_llm_raw("essay", E_LLM, "sonnet-4"),
        parsed_txt=ESSAY_TEXT,
        parsed_metadata_json=_parsed_meta("essay", E_LLM, "identity"),
    )
    for gen_id, parent, template, model, rep, score in (
        (V_COPY, E_COPY, "daydreaming-verification-v2", "sonnet-4", 1, "7.0\n"),
        (V_LLM, E_LLM, "novelty-v2", "sonnet-4", 2, "8.0\n"),
        (V_MYSTERY, E_LLM, "novelty-v2", "mystery_model_x", 1, "5.333333333333333\n"),
    ):
        _gen(
            root,
            "evaluation",
            gen_id,
            seed("evaluation", gen_id, template, model, rep, parent=parent),
            prompt_txt="Judge this essay.",
            raw_txt=JUDGE_TEXT,
            raw_metadata_json=_llm_raw("evaluation", gen_id, model),
            parsed_txt=score,
            parsed_metadata_json=_parsed_meta("evaluation", gen_id, "in_last_line"),
        )
    _gen(  # raw saved, then the parsed phase refused it: no parsed.txt
        root,
        "draft",
        D2,
        seed("draft", D2, "creative-synthesis-v7", "deepseek_r1_f"),
        prompt_txt="Concepts...",
        raw_txt="<thinking>cut off mid",
        raw_metadata_json=_llm_raw(
            "draft", D2, "deepseek_r1_f", finish_reason="length", truncated=True
        ),
    )
    _gen(
        root,
        "essay",
        E3,
        seed("essay", E3, "synthesis-theme-narrative-v19", "sonnet-4", parent=D2),
    )
    _gen(root, "draft", D3, seed("draft", D3, "creative-synthesis-v10", "gemini_25_pro", 2))
    _gen(
        root,
        "evaluation",
        V_ORPHAN,
        seed("evaluation", V_ORPHAN, "novelty-v2", "sonnet-4", parent="e_nosuchessay0001"),
    )
    broken = root / "gens" / "draft" / "d_broken"
    broken.mkdir(parents=True)
    (broken / "metadata.json").write_text("{not json", encoding="utf-8")
    (root / "gens" / "essay" / "e_nometa").mkdir(parents=True)
    (root / "gens" / "summary" / "x").mkdir(parents=True)

    c1 = root / "cohorts" / "c1"
    c1.mkdir(parents=True)
    (c1 / "membership.csv").write_text(
        f"stage,gen_id\ndraft,{D1}\nessay,{E_COPY}\nevaluation,{V_COPY}\n", encoding="utf-8"
    )
    c2 = root / "cohorts" / "c2"
    c2.mkdir(parents=True)
    header = (
        "stage,gen_id,origin_cohort_id,parent_gen_id,combo_id,template_id,llm_model_id,replicate\n"
    )
    (c2 / "membership.csv").write_text(
        header
        + f"draft,{D1},c1,,{COMBO},creative-synthesis-v10,gemini_25_pro,1\n"
        + f"essay,{E_LLM},c2,{D1},{COMBO},synthesis-theme-narrative-v19,sonnet-4,1\n"
        + f"evaluation,{V_LLM},c2,{E_LLM},{COMBO},novelty-v2,sonnet-4,2\n"
        + f"evaluation,{V_MYSTERY},c2,{E_LLM},{COMBO},novelty-v2,mystery_model_x,1\n"
        + f"evaluation,v_gone,c2,{E_LLM},{COMBO},novelty-v2,sonnet-4,3\n",
        encoding="utf-8",
    )
    return root


def test_upstream_ids_are_what_daydream_derives():
    assert ids.draft_id(COMBO, "creative-synthesis-v10", "gemini_25_pro", 1) == D1
    assert ids.essay_id(D1, "synthesis-theme-narrative-v19", None, 1, copy=True) == E_LLM
    assert ids.evaluation_id(E_LLM, "novelty-v2", "sonnet-4", 2) == V_LLM


def test_import_keeps_ids_and_reports_counts_and_skips(tmp_path):
    root = make_store(tmp_path)
    conn = connect(tmp_path / "x.db")
    report = import_legacy(conn, root)

    assert report.imported == {
        "draft": {"done": 1, "failed": 1, "planned": 1},
        "essay": {"done": 2, "failed": 0, "planned": 1},
        "evaluation": {"done": 3, "failed": 0, "planned": 0},
    }
    assert report.already == {"draft": 0, "essay": 0, "evaluation": 0}
    assert [str(s) for s in report.skipped] == [
        "gens/summary: unknown stage directory (expected draft, essay or evaluation)",
        "gens/draft/d_broken: metadata.json is not valid JSON (Expecting property name"
        " enclosed in double quotes: line 1 column 2 (char 1))",
        "gens/essay/e_nometa: no metadata.json",
        f"gens/evaluation/{V_ORPHAN}: parent essay e_nosuchessay0001 is missing"
        " (no gens/essay/e_nosuchessay0001, and not in the database)",
    ]
    assert report.cohorts == ["c1", "c2", "legacy"]
    assert report.linked == {"c1": 3, "c2": 4, "legacy": 3}
    assert report.models_added == ["mystery_model_x"]
    assert report.warnings == [
        "cohorts/c2/membership.csv: 1 listed generation(s) not imported"
        " (skipped above, or without a gens/ directory)"
    ]

    rows = {
        r["gen_id"]: dict(r)
        for r in conn.execute("SELECT g.*, t.pool FROM generations g JOIN tasks t USING (gen_id)")
    }
    assert set(rows) == {D1, D2, D3, E_COPY, E_LLM, E3, V_COPY, V_LLM, V_MYSTERY}
    assert {g: r["status"] for g, r in rows.items()} == {
        D1: "done",
        D2: "failed",
        D3: "ready",
        E_COPY: "done",
        E_LLM: "done",
        E3: "blocked",
        V_COPY: "done",
        V_LLM: "done",
        V_MYSTERY: "done",
    }
    assert rows[D2]["state"] == "truncated"
    assert rows[D2]["error"] == (
        "imported from upstream: raw.txt was truncated, so upstream wrote no parsed.txt"
    )
    assert rows[E3]["error"] == f"parent {D2} failed: truncated"
    copy = rows[E_COPY]
    assert (copy["mode"], copy["model_id"], copy["pool"]) == ("copy", None, "copy")
    assert copy["signature"] == f"{D1}|parsed-from-links-v1|1"
    assert rows[E_LLM]["signature"] == f"{D1}|synthesis-theme-narrative-v19|1"
    assert rows[E_LLM]["combo_id"] == COMBO  # the draft's, as planning records it
    assert rows[D1]["signature"] == f"{COMBO}|creative-synthesis-v10|gemini_25_pro|1"
    assert (
        rows[D1]["template_version"]
        == conn.execute(
            "SELECT version FROM templates WHERE stage = 'draft'"
            " AND template_id = 'creative-synthesis-v10'"
        ).fetchone()[0]
    )
    assert (rows[D1]["finish_reason"], rows[D1]["completion_tokens"]) == ("stop", 812)
    assert rows[V_MYSTERY]["pool"] == "openrouter"
    placeholder = conn.execute(
        "SELECT provider, provider_model, pool, settings FROM models"
        " WHERE model_id = 'mystery_model_x'"
    ).fetchone()
    # upstream's client sent temperature 0.7 to every model, listed or not
    assert tuple(placeholder) == (
        "openrouter",
        "mystery_model_x",
        "openrouter",
        '{"temperature": 0.7}',
    )
    assert {c: _members(conn, c) for c in ("c1", "c2", "legacy")} == {
        "c1": {D1, E_COPY, V_COPY},
        "c2": {D1, E_LLM, V_LLM, V_MYSTERY},
        "legacy": {D2, D3, E3},
    }
    parsed = conn.execute(
        "SELECT x.text FROM generations g JOIN texts x ON x.hash = g.parsed_hash"
        " WHERE g.gen_id = ?",
        (V_COPY,),
    ).fetchone()[0]
    assert parsed == "7.0\n"
    conn.close()
    assert [(name, ok) for name, ok, _ in check(tmp_path / "x.db")] == [
        ("integrity_check", True),
        ("foreign_key_check", True),
        ("migrations", True),
        ("append_only_guards", True),
        ("replay_equals_projections", True),
        ("search_index", True),
    ]


def test_scores_are_visible_in_evaluation_scores(tmp_path):
    conn = connect(tmp_path / "x.db")
    import_legacy(conn, make_store(tmp_path))
    scores = {
        r["gen_id"]: (r["score"], r["essay_mode"], r["generation_model"], r["scale_max"])
        for r in conn.execute("SELECT * FROM evaluation_scores")
    }
    assert scores == {
        V_COPY: (7.0, "copy", "gemini_25_pro", 9.0),  # copy essay: the draft's model, not "None"
        V_LLM: (8.0, "llm", "sonnet-4", 9.0),
        V_MYSTERY: (5.333333333333333, "llm", "sonnet-4", 9.0),
    }


def test_second_import_writes_nothing(tmp_path):
    root = make_store(tmp_path)
    conn = connect(tmp_path / "x.db")
    first = import_legacy(conn, root)
    before = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert first.events == before
    again = import_legacy(conn, root)
    assert again.events == 0
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == before
    assert again.already == {"draft": 3, "essay": 3, "evaluation": 3}
    assert again.imported == {
        s: {"done": 0, "failed": 0, "planned": 0} for s in ("draft", "essay", "evaluation")
    }
    assert again.cohorts == [] and again.models_added == [] and again.linked == {}


def test_a_new_membership_row_links_an_imported_generation(tmp_path):
    root = make_store(tmp_path)
    conn = connect(tmp_path / "x.db")
    import_legacy(conn, root)
    with (root / "cohorts" / "c1" / "membership.csv").open("a", encoding="utf-8") as f:
        f.write(f"draft,{D3}\n")
    report = import_legacy(conn, root)
    assert (report.linked, report.events) == ({"c1": 1}, 1)
    assert D3 in _members(conn, "c1") and D3 in _members(conn, "legacy")


def test_planning_the_same_signatures_reuses_imported_generations(tmp_path):
    conn = connect(tmp_path / "x.db")
    import_legacy(conn, make_store(tmp_path))
    spec = tmp_path / "again.yaml"
    spec.write_text(
        "axes:\n"
        f"  combo_id: [{COMBO}]\n"
        "  draft_template: [creative-synthesis-v10]\n"
        "  draft_llm: [gemini_25_pro]\n"
        "  essay_template: [parsed-from-links-v1]\n"
        "  evaluation_template: [daydreaming-verification-v2]\n"
        "  evaluation_llm: [sonnet-4]\n",
        encoding="utf-8",
    )
    report = plan_cohort(conn, spec, "again")
    counts = {s: (c.in_cohort, c.new, c.completed) for s, c in report.stages.items()}
    assert counts == {"draft": (1, 0, 1), "essay": (1, 0, 1), "evaluation": (1, 0, 1)}
    assert _members(conn, "again") == {D1, E_COPY, V_COPY}

    # llm essays keep their upstream (model-less) ids: re-judge them by naming the essay
    judge = tmp_path / "judge.yaml"
    judge.write_text(
        "axes:\n"
        f"  essay_id: [{E_LLM}]\n"
        "  evaluation_template: [novelty-v2]\n"
        "  evaluation_llm: [sonnet-4]\n"
        "  evaluation_replicate: [2]\n",
        encoding="utf-8",
    )
    report = plan_cohort(conn, judge, "rejudge")
    assert (report.stages["evaluation"].new, report.stages["evaluation"].completed) == (0, 1)
    assert _members(conn, "rejudge") == {E_LLM, V_LLM}


def test_a_cohort_id_taken_by_a_planned_cohort_is_not_merged(tmp_path):
    root = make_store(tmp_path)
    conn = connect(tmp_path / "x.db")
    import_catalog(conn, load_catalog(root / "1_raw"))
    spec = tmp_path / "mine.yaml"
    spec.write_text(
        f"axes:\n  combo_id: [{COMBO}]\n  draft_template: [creative-synthesis-v2]\n"
        "  draft_llm: [sonnet-4]\n",
        encoding="utf-8",
    )
    plan_cohort(conn, spec, "c1")
    report = import_legacy(conn, root)
    assert (
        f"cohorts/c1: a cohort with this id was already planned here (from {spec}), so its"
        ' members were not linked (new generations went to cohort "legacy")'
    ) in [str(s) for s in report.skipped]
    assert _members(conn, "c1") == {ids.draft_id(COMBO, "creative-synthesis-v2", "sonnet-4")}
    assert {E_COPY, V_COPY} <= _members(conn, "legacy")
    assert D1 in _members(conn, "c2")


def _members(conn, cohort: str) -> set[str]:
    return {
        g
        for (g,) in conn.execute("SELECT gen_id FROM cohort_members WHERE cohort_id = ?", (cohort,))
    }


def test_a_directory_without_1_raw_is_refused_and_creates_no_database(tmp_path):
    message = (
        f"legacy store {tmp_path}: no 1_raw/ directory (give the upstream data root, the"
        " directory holding 1_raw/, gens/ and cohorts/)"
    )
    conn = connect(tmp_path / "x.db")
    with pytest.raises(CatalogError) as info:
        import_legacy(conn, tmp_path)
    assert str(info.value) == message
    db = tmp_path / "new.db"
    result = CliRunner().invoke(cli, ["import", "legacy", str(tmp_path), "--db", str(db)])
    assert (result.exit_code, result.stderr) == (1, f"Error: {message}\n")
    assert not db.exists()


def test_cli_prints_the_report(tmp_path):
    root = make_store(tmp_path)
    db = tmp_path / "x.db"
    result = CliRunner().invoke(cli, ["import", "legacy", str(root), "--db", str(db)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"legacy store {root}"
    assert "  draft           1       1        1                 0" in lines
    assert "  cohorts created: c1, c2, legacy" in lines
    assert "  models added (not in llm_models.csv; provider openrouter): mystery_model_x" in lines
    assert "  skipped 4:" in lines
    again = CliRunner().invoke(cli, ["import", "legacy", str(root), "--db", str(db), "--json"])
    data = json.loads(again.stdout)
    assert data["events_written"] == 0
    assert data["already_imported"] == {"draft": 3, "essay": 3, "evaluation": 3}


def test_a_skip_cascades_to_descendants(tmp_path):
    root = make_store(tmp_path)
    meta_file = root / "gens" / "draft" / D2 / "metadata.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    _json(meta_file, {**meta, "combo_id": "combo_v1_unknown"})
    conn = connect(tmp_path / "x.db")
    report = import_legacy(conn, root)
    assert [str(s) for s in report.skipped if D2 in s.path or E3 in s.path] == [
        f'gens/draft/{D2}: combo "combo_v1_unknown" is not in the catalog (add its rows to'
        " combo_mappings.csv)",
        f"gens/essay/{E3}: parent draft {D2} was skipped",
    ]
    assert report.imported["draft"] == {"done": 1, "failed": 0, "planned": 1}
    assert (
        f"gens/draft/{D2}: the id is not the hash of its metadata (signature" in report.warnings[0]
    )


def test_scores_outside_the_templates_scale_are_skipped_as_the_parser_would(tmp_path):
    root = make_store(tmp_path)
    for gen_id, value in ((V_COPY, "15"), (V_LLM, "-3"), (V_MYSTERY, "1e308")):
        (root / "gens" / "evaluation" / gen_id / "parsed.txt").write_text(value + "\n")
    conn = connect(tmp_path / "x.db")
    report = import_legacy(conn, root)
    assert sorted(str(s) for s in report.skipped if "outside the scale" in str(s)) == sorted(
        [
            f"gens/evaluation/{V_COPY}: parsed.txt: score 15.0 is outside the scale 0-9 of"
            ' template "daydreaming-verification-v2"',
            f"gens/evaluation/{V_LLM}: parsed.txt: score -3.0 is outside the scale 0-9 of"
            ' template "novelty-v2"',
            f"gens/evaluation/{V_MYSTERY}: parsed.txt: score 1e+308 is outside the scale 0-9"
            ' of template "novelty-v2"',
        ]
    )
    assert report.imported["evaluation"] == {"done": 0, "failed": 0, "planned": 0}
    stages = {row[0] for row in conn.execute("SELECT stage FROM generations")}
    assert stages == {"draft", "essay"}
    conn.close()


def test_links_out_of_the_data_root_are_skipped_and_never_read(tmp_path):
    """A raw.txt linked to a file outside the store, or a generation directory linked out of
    it, is skipped with its reason (and so are its descendants); a link that stays inside
    the store is followed."""
    root = make_store(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET system file\n")
    raw = root / "gens" / "draft" / D1 / "raw.txt"
    raw.unlink()
    raw.symlink_to(secret)
    outside = tmp_path / "elsewhere" / D3
    shutil.move(str(root / "gens" / "draft" / D3), outside)
    (root / "gens" / "draft" / D3).symlink_to(outside, target_is_directory=True)
    essay = root / "gens" / "essay" / E_LLM
    (essay / "parsed.txt").unlink()
    (essay / "parsed.txt").symlink_to(essay / "raw.txt")  # inside the store: followed
    conn = connect(tmp_path / "x.db")
    report = import_legacy(conn, root)
    reasons = {s.path: s.reason for s in report.skipped}
    assert reasons[f"gens/draft/{D1}"] == (
        "raw.txt is a link that leads out of the data root; not read"
    )
    assert reasons[f"gens/draft/{D3}"] == (
        "the directory is a link that leads out of the data root; not read"
    )
    assert reasons[f"gens/essay/{E_COPY}"] == f"parent draft {D1} was skipped"
    texts = [row[0] for row in conn.execute("SELECT text FROM texts")]
    assert not any("SECRET" in text for text in texts)
    imported = {row[0] for row in conn.execute("SELECT gen_id FROM generations")}
    assert imported == {D2, E3}  # everything below D1 and D3 was skipped with them
    conn.close()


def test_a_catalog_file_linked_out_of_the_data_root_is_refused_and_writes_nothing(tmp_path):
    root = make_store(tmp_path)
    secret = tmp_path / "secret.csv"
    secret.write_text("model_id\nx\n")
    models = root / "1_raw" / "llm_models.csv"
    models.unlink()
    models.symlink_to(secret)
    db = tmp_path / "new.db"
    result = CliRunner().invoke(cli, ["import", "legacy", str(root), "--db", str(db)])
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: legacy store {root}: 1_raw/llm_models.csv is a link that leads out of the"
        " data root; copy the file into the store instead\n",
    )
    assert not db.exists()


def test_metadata_numbers_beyond_reason_are_skipped_or_left_out(tmp_path):
    root = make_store(tmp_path)
    meta_file = root / "gens" / "draft" / D3 / "metadata.json"
    _json(meta_file, {**json.loads(meta_file.read_text()), "replicate": 10**30})
    raw_meta = root / "gens" / "draft" / D1 / "raw_metadata.json"
    huge = {"usage": {"completion_tokens": 10**30, "max_tokens": 2**64}, "duration_s": 1e308}
    _json(raw_meta, {**json.loads(raw_meta.read_text()), **huge})
    conn = connect(tmp_path / "x.db")
    report = import_legacy(conn, root)
    assert {s.path: s.reason for s in report.skipped}[f"gens/draft/{D3}"] == (
        "metadata.json: replicate 1000000000000000000000000000000 is not a whole number from 1"
        " to 1,000,000"
    )
    row = conn.execute(
        "SELECT completion_tokens, latency_s, status FROM generations WHERE gen_id = ?", (D1,)
    ).fetchone()
    assert tuple(row) == (None, None, "done")
    conn.close()
    assert all(passed for _, passed, _ in check(tmp_path / "x.db"))


def test_essays_with_ids_no_file_system_takes_export_under_short_clean_unique_names(tmp_path):
    """Ids from an upstream store are directory names: they can be 250 characters long or
    hold a newline. ``daydream top --export`` still writes one file per essay, each name
    short, without a newline or a path separator, and all different."""
    root = make_store(tmp_path)
    odd = ["e_" + "x" * 250, "e_" + "x" * 249 + "y", "e_new\nline", "e_new_line"]
    for n, essay in enumerate(odd):
        source = root / "gens" / "essay" / E_LLM
        shutil.copytree(source, root / "gens" / "essay" / essay)
        meta = json.loads((source / "metadata.json").read_text())
        _json(root / "gens" / "essay" / essay / "metadata.json", {**meta, "gen_id": essay})
        judge = f"v_odd{n}"
        shutil.copytree(root / "gens" / "evaluation" / V_LLM, root / "gens" / "evaluation" / judge)
        meta = json.loads((root / "gens" / "evaluation" / V_LLM / "metadata.json").read_text())
        _json(
            root / "gens" / "evaluation" / judge / "metadata.json",
            {**meta, "gen_id": judge, "parent_gen_id": essay},
        )
    db = tmp_path / "x.db"
    conn = connect(db)
    import_legacy(conn, root)
    conn.close()
    out = tmp_path / "export"
    result = CliRunner().invoke(
        cli,
        [
            "top",
            "legacy",
            "--template",
            "novelty-v2",
            "-n",
            "10",
            "--db",
            str(db),
            "--out",
            str(tmp_path / "top.csv"),
            "--export",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    texts = [(out / name).read_text() for name in names]
    for essay in odd:
        assert sum(text.startswith(f"# Essay {essay}\n") for text in texts) == 1, essay
    assert len(names) == len(set(texts))  # one file per essay, none overwritten
    for name in names:
        assert len(name.encode()) <= 130 and "\n" not in name and "/" not in name
