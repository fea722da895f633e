"""Reading results in the terminal and the index behind search: full-text search kept in
step with the texts (a projection, rebuilt by replay, checked by ``db check``),
``daydream search``, ``daydream show`` and ``daydream top`` run again and again. The
database is ``tests/browsing.py``'s: the demo cohort and the failed "extra" cohort."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from daydream.cli import cli
from daydream.db.check import check
from daydream.db.connection import connect
from daydream.db.projections.replay import rebuild
from daydream.plan.write import plan_cohort
from daydream.results.search import fts_query, search
from tests.browsing import query
from tests.invariants import check_results, tamper_with


@pytest.fixture
def db(browse_db, tmp_path) -> Path:
    """A copy of the module's database that a test may change."""
    copy = tmp_path / "daydream.db"
    shutil.copy(browse_db, copy)
    return copy


def run(*args: str, db: Path | None = None) -> object:
    result = CliRunner().invoke(cli, [*args, *(["--db", str(db)] if db else [])])
    return result


def texts_of_generations(db: Path) -> set[str]:
    found = query(
        db,
        "SELECT prompt_hash AS h FROM generations UNION SELECT raw_hash FROM generations"
        " UNION SELECT parsed_hash FROM generations",
    )
    return {r["h"] for r in found if r["h"]}


# -- the index -----------------------------------------------------------------------------


def test_every_text_of_every_result_is_indexed_once(browse_db):
    indexed = query(browse_db, "SELECT hash FROM search_texts")
    assert len(indexed) == len({r["hash"] for r in indexed})
    assert {r["hash"] for r in indexed} == texts_of_generations(browse_db)
    fts = query(browse_db, "SELECT count(*) AS n FROM search_texts_fts_docsize")[0]["n"]
    assert fts == len(indexed)


def test_search_finds_exactly_the_generations_whose_texts_hold_the_word(browse_db):
    """A word with no other forms, compared with a plain scan of the texts."""
    word = "mycelial"
    expected = {
        (r["gen_id"], r["kind"])
        for r in query(
            browse_db,
            "SELECT g.gen_id, k.kind FROM generations g JOIN (SELECT 'prompt' AS kind UNION"
            " SELECT 'raw' UNION SELECT 'parsed') k JOIN texts t ON t.hash = CASE k.kind"
            " WHEN 'prompt' THEN g.prompt_hash WHEN 'raw' THEN g.raw_hash ELSE g.parsed_hash END"
            " WHERE lower(t.text) LIKE '%' || ? || '%'",
            (word,),
        )
    }
    assert expected
    conn = connect(browse_db, create=False, migrate=False)
    hits = search(conn, word, limit=10_000)
    conn.close()
    assert {(h.gen_id, f) for h in hits for f in h.fields} == expected
    assert len(hits) == len({h.gen_id for h in hits})  # one hit per generation
    assert all("**" in h.snippet and word in h.snippet.lower() for h in hits)


def test_filters_by_cohort_stage_and_field(browse_db):
    conn = connect(browse_db, create=False, migrate=False)
    every = search(conn, "offline", limit=10_000)
    essays = search(conn, "offline", cohort_id="demo", stage="essay", limit=10_000)
    parsed = search(conn, "offline", field="parsed", limit=10_000)
    conn.close()
    demo = {r["gen_id"] for r in query(browse_db, "SELECT gen_id FROM cohort_members WHERE cohort_id = 'demo'")}
    assert {h.gen_id for h in essays} == {
        h.gen_id for h in every if h.stage == "essay" and h.gen_id in demo
    }
    assert essays and all(h.stage == "essay" for h in essays)
    assert parsed and all("parsed" in h.fields for h in parsed)


def test_the_query_language(browse_db):
    assert fts_query("fungal market") == '"fungal" "market"'
    assert fts_query('say "hi"') == 'say "hi"'  # FTS5 syntax passes as written
    assert fts_query("fungal-market") == '"fungal-market"'  # a phrase of its tokens
    conn = connect(browse_db, create=False, migrate=False)
    both = {h.gen_id for h in search(conn, "fungal market", limit=1000)}
    either = {h.gen_id for h in search(conn, "fungal OR market", limit=1000)}
    fungal = {h.gen_id for h in search(conn, "fungal", limit=1000)}
    conn.close()
    assert both <= fungal <= either and both != either


def test_a_rebuild_from_the_log_gives_the_same_search(db):
    conn = connect(db)
    before = [h.to_dict() for h in search(conn, "thread", limit=1000)]
    ids_before = conn.execute("SELECT id, hash FROM search_texts ORDER BY id").fetchall()
    rebuild(conn)
    after = [h.to_dict() for h in search(conn, "thread", limit=1000)]
    assert [tuple(r) for r in conn.execute("SELECT id, hash FROM search_texts ORDER BY id")] == [
        tuple(r) for r in ids_before
    ]
    conn.close()
    assert before and after == before


def test_db_check_finds_an_index_that_no_longer_matches_the_texts(db):
    assert dict((n, ok) for n, ok, _ in check(db))["search_index"] is True
    tamper_with(db, "INSERT INTO search_texts_fts (rowid, text) VALUES (1, 'zebra crossing')")
    results = check_results(db)
    assert results["search_index"][0] is False
    assert results["search_index"][1].startswith("the full-text index does not match the texts")
    assert results["search_index"][1].endswith("run: daydream db rebuild")
    conn = connect(db)
    rebuild(conn)
    conn.close()
    assert dict((n, ok) for n, ok, _ in check(db))["search_index"] is True


# -- daydream search -----------------------------------------------------------------------


def test_search_command_prints_one_line_per_generation_and_how_to_open_it(browse_db):
    conn = connect(browse_db, create=False, migrate=False)
    hits = search(conn, "fungal", cohort_id="demo", stage="draft", limit=3)
    conn.close()
    result = run("search", "fungal", "--cohort", "demo", "--stage", "draft", "-n", "3", db=browse_db)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[::2]] == [h.gen_id for h in hits]
    assert all(line.startswith("    ") and "**" in line for line in lines[1::2])
    assert result.stderr.splitlines() == [
        f"open one with: daydream show {hits[0].gen_id}",
        "more may match: add --offset 3",
    ]
    as_json = json.loads(run("search", "fungal", "--cohort", "demo", "--stage", "draft", "-n", "3", "--json", db=browse_db).stdout)
    assert [h["gen_id"] for h in as_json] == [h.gen_id for h in hits]


def test_search_command_errors_are_one_line(browse_db):
    bad = run("search", '"unbalanced', db=browse_db)
    assert bad.exit_code == 1
    assert bad.output.startswith("Error: search query '\"unbalanced' is not valid FTS5 syntax")
    assert len(bad.output.splitlines()) == 1
    missing = run("search", "x", "--cohort", "nope", db=browse_db)
    assert missing.exit_code == 1 and 'cohort "nope" does not exist' in missing.output
    none = run("search", "zzzqqq", db=browse_db)
    assert none.exit_code == 0 and none.stdout == "no generation matches\n"


# -- daydream show -------------------------------------------------------------------------


def test_show_prints_an_essays_transcript_with_its_judges(browse_db):
    essay = query(
        browse_db,
        "SELECT * FROM generations WHERE stage = 'essay' AND mode = 'llm' ORDER BY gen_id LIMIT 1",
    )[0]
    result = run("show", essay["gen_id"], db=browse_db)
    assert result.exit_code == 0, result.output
    out = result.stdout
    texts = {r["hash"]: r["text"] for r in query(browse_db, "SELECT hash, text FROM texts")}
    assert out.startswith(f"essay {essay['gen_id']}: {essay['template_id']} / {essay['model_id']}")
    assert f"draft {essay['parent_gen_id']} -> essay {essay['gen_id']} (this)" in out
    assert texts[essay["prompt_hash"]].rstrip() in out
    assert texts[essay["parsed_hash"]].rstrip() in out
    judges = query(browse_db, "SELECT * FROM generations WHERE parent_gen_id = ?", (essay["gen_id"],))
    assert f"== judges ({len(judges)}) ==" in out
    for judge in judges:
        assert f"({judge['gen_id']})" in out
        assert texts[judge["raw_hash"]].rstrip() in out
    as_json = json.loads(run("show", essay["gen_id"], "--json", db=browse_db).stdout)
    assert as_json["generation"]["gen_id"] == essay["gen_id"]
    assert as_json["texts"]["prompt"] == texts[essay["prompt_hash"]]
    assert {j["gen_id"] for j in as_json["judges"]} == {j["gen_id"] for j in judges}


def test_show_explains_a_failure_and_refuses_an_unknown_id(browse_db):
    draft = query(
        browse_db,
        "SELECT g.gen_id FROM generations g JOIN cohort_members m USING (gen_id)"
        " WHERE m.cohort_id = 'extra' AND g.stage = 'draft'",
    )[0]["gen_id"]
    out = run("show", draft, db=browse_db).stdout
    assert out.splitlines()[0] == (
        f"draft {draft}: free-notes / offline-large, replicate 1, failed (provider_error):"
        " HTTP 500 from offline: upstream exploded"
    )
    missing = run("show", "e_nope", db=browse_db)
    assert missing.exit_code == 1
    assert missing.output == (
        'Error: generation "e_nope" does not exist in this database (find ids with:'
        " daydream search WORDS, or daydream top COHORT)\n"
    )


# -- daydream top, again and again ------------------------------------------------------------


def test_top_runs_again_without_touching_an_edited_list(db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = run("top", "demo", "--template", "novelty-rubric", "-n", "3", db=db)
    assert first.exit_code == 0, first.output
    path = Path("reports/demo/top-novelty-rubric.csv")
    assert f"wrote 3 essay(s) to {path}" in first.stderr
    again = run("top", "demo", "--template", "novelty-rubric", "-n", "3", db=db)
    assert again.exit_code == 0 and again.stdout == first.stdout
    assert f"the list {path} already holds this ranking" in again.stderr
    edited = path.read_text(encoding="utf-8").replace(",true,", ",false,", 1)
    path.write_text(edited, encoding="utf-8")
    third = run("top", "demo", "--template", "novelty-rubric", "-n", "2", db=db)
    assert third.exit_code == 0
    assert f"kept your list {path} (it differs: it may hold edits); --overwrite replaces it" in third.stderr
    assert path.read_text(encoding="utf-8") == edited
    replaced = run("top", "demo", "--template", "novelty-rubric", "-n", "2", "--overwrite", db=db)
    assert replaced.exit_code == 0 and len(path.read_text(encoding="utf-8").splitlines()) == 3
    asked = run("top", "demo", "--template", "novelty-rubric", "--out", str(path), db=db)
    assert asked.exit_code == 1 and "exists (it may hold your edits)" in asked.output


def test_top_takes_the_only_rubric_and_asks_when_there_are_several(db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    several = run("top", "demo", db=db)
    assert several.exit_code == 1
    assert several.output == (
        'Error: cohort "demo" has 3 evaluation templates (clarity-five, feasibility-rubric,'
        " novelty-rubric); pick one with --template\n"
    )
    # The "extra" cohort has one rubric, and its only essay was never scored: it says why.
    only = run("top", "extra", db=db)
    assert only.exit_code == 1
    assert 'no scored "novelty-rubric" evaluations' in only.output


def test_top_lists_the_essays_it_could_not_rank_with_the_reason(db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("top", "demo", "--template", "clarity-five", db=db)
    assert result.exit_code == 0, result.output
    failed = query(
        db,
        "SELECT v.parent_gen_id AS essay FROM generations v JOIN cohort_members m"
        " ON m.gen_id = v.gen_id AND m.cohort_id = 'demo'"
        " WHERE v.template_id = 'clarity-five' AND v.status = 'failed' ORDER BY 1",
    )
    assert failed
    lines = result.stdout.splitlines()
    at = lines.index(
        f"not ranked: {len(failed)} essay(s) with no scored clarity-five evaluation"
    )
    assert lines[at + 1 :] == [
        f"  {f['essay']}: its evaluations: 1 failed (parse_failed)" for f in failed
    ]
    header = re.split(r"\s{2,}", lines[0])
    assert "draft template" in header  # the demo varies it: every varied axis is shown
    view = query(
        db,
        "SELECT essay_gen_id, reason FROM unscored_essays WHERE cohort_id = 'demo'"
        " AND evaluation_template = 'clarity-five' ORDER BY essay_gen_id",
    )
    assert [(v["essay_gen_id"], v["reason"]) for v in view] == [
        (f["essay"], "its evaluations: 1 failed (parse_failed)") for f in failed
    ]


def test_pages_of_a_filtered_search_are_slices_of_the_whole_ranking(db, monkeypatch):
    """Only the best-ranked texts are joined to their generations, more while the filters
    leave too few: each page must still be the same slice of the complete ranking. A small
    cohort ("solo": two essays and their judges, shared with the demo) leaves few."""
    import daydream.results.search

    conn = connect(db)
    essays = [r[0] for r in conn.execute(
        "SELECT gen_id FROM generations WHERE stage = 'essay' AND mode = 'llm' ORDER BY gen_id LIMIT 2"
    )]
    judge = {"evaluation_template": "novelty-rubric", "evaluation_llm": "offline-small"}
    plan_cohort(conn, db.parent / "solo.yaml", "solo", rows=[{"essay_id": e, **judge} for e in essays])
    monkeypatch.setattr(daydream.results.search, "FIRST_TEXTS", 1)
    monkeypatch.setattr(daydream.results.search, "TEXTS_PER_RESULT", 1)
    rounds: list[str] = []

    class Counting:
        def execute(self, sql, params=()):
            if "search_texts_fts MATCH" in sql and "snippet(" not in sql:  # a ranking round
                rounds.append(sql)
            return conn.execute(sql, params)

    try:
        for filters in ({"stage": "essay"}, {"cohort_id": "solo"}, {}):
            whole = [h.gen_id for h in search(conn, "offline", limit=10_000, **filters)]
            assert len(whole) >= 4, filters
            rounds.clear()
            pages = [
                h.gen_id
                for offset in (0, 3, 6)
                for h in search(Counting(), "offline", limit=3, offset=offset, **filters)
            ]
            assert pages == whole[:9], filters
            if filters == {"cohort_id": "solo"}:
                assert len(rounds) > 3  # some page needed more texts than it first joined
    finally:
        conn.close()
