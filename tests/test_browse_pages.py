"""daydream's own pages in Datasette, through Datasette's own client: the generation page
(transcript), the comparison matrix, the per-cohort pivot, search through the view's
search box, links from every generation id, and bookmarks that work whatever the file is
called. The fixture database is ``tests/browsing.py``'s: the demo cohort and the failed
"extra" cohort."""

from __future__ import annotations

import html
import os
import re
import shutil
import sqlite3
from pathlib import Path

import httpx
import markupsafe
import pytest
from datasette.app import Datasette

from daydream.browse import pages
from daydream.browse.app import make_datasette
from daydream.db.connection import connect
from daydream.db.texts import get_text, put_text
from daydream.plan.write import plan_cohort
from daydream.results.search import search
from tests.browsing import (
    CHROMIUM,
    EXTRA_ROW,
    PROVIDER_ERROR,
    assert_png,
    get,
    query,
    rows,
    screenshot,
    served,
)

DB = "daydream"


@pytest.fixture(scope="module")
def ds(browse_db) -> Datasette:
    return make_datasette(browse_db)


def text_of(db: Path, digest: str | None) -> str | None:
    conn = connect(db, create=False, migrate=False)
    try:
        return get_text(conn, digest)
    finally:
        conn.close()


def escaped(text: str) -> str:
    """As Jinja escapes it."""
    return str(markupsafe.escape(text))


def one(db: Path, sql: str, params: tuple = ()) -> dict:
    found = query(db, sql, params)
    assert found, sql
    return found[0]


# -- the generation page -----------------------------------------------------------------


def test_essay_page_shows_prompt_reply_parsed_text_and_every_judge_side_by_side(browse_db, ds):
    essay = one(
        browse_db,
        "SELECT g.* FROM generations g JOIN cohort_members m USING (gen_id)"
        " WHERE m.cohort_id = 'demo' AND g.stage = 'essay' AND g.mode = 'llm'"
        " AND EXISTS (SELECT 1 FROM generations v WHERE v.parent_gen_id = g.gen_id"
        "   AND v.status = 'failed') ORDER BY g.gen_id LIMIT 1",
    )
    response = get(ds, f"/{DB}/-/generation/{essay['gen_id']}")
    assert response.status_code == 200
    page = response.text
    assert escaped(text_of(browse_db, essay["prompt_hash"])) in page
    assert escaped(text_of(browse_db, essay["parsed_hash"])) in page
    # Lineage: concepts -> combination -> draft -> this essay -> its evaluations.
    names = [r["name"] for r in query(
        browse_db,
        "SELECT c.name FROM combo_concepts cc JOIN concepts c USING (concept_id)"
        " WHERE cc.combo_id = ? ORDER BY cc.position",
        (essay["combo_id"],),
    )]
    lineage = page[page.index('<nav class="dd-lineage"') : page.index("</nav>", page.index('<nav class="dd-lineage"'))]
    assert escaped(" + ".join(names)) in lineage
    assert f'href="/{DB}/-/generation/{essay["parent_gen_id"]}"' in lineage
    assert f"combination {essay['combo_id']}" in lineage
    judges = query(
        browse_db,
        "SELECT * FROM generations WHERE parent_gen_id = ? ORDER BY template_id, model_id",
        (essay["gen_id"],),
    )
    assert len(judges) >= 2
    assert f"{len(judges)} evaluations" in lineage
    cards = page.split('<section class="dd-card">')[1:]
    assert len(cards) == len(judges)
    for judge, card in zip(judges, cards, strict=True):
        assert f'href="/{DB}/-/generation/{judge["gen_id"]}"' in card
        assert escaped(text_of(browse_db, judge["raw_hash"])) in card
        if judge["status"] == "done":
            assert f'<span class="dd-score">{judge["score"]:g}</span>' in card
        else:  # the failure is explained, not hidden
            assert judge["state"] in card and escaped(judge["error"]) in card
    # Per rubric, on its own scale (never pooled across scales).
    for template in {j["template_id"] for j in judges}:
        scores = [j["score"] for j in judges if j["template_id"] == template and j["state"] == "ok"]
        if scores:
            assert f"{template} (" in page
            assert f"mean <strong>{round(sum(scores) / len(scores), 3):g}</strong> over {len(scores)}" in page
    assert escaped(f"{essay['prompt_tokens']:,} prompt") in page
    assert essay["resolved_model"] in page and essay["finish_reason"] in page


def test_evaluation_page_shows_its_score_on_its_scale_and_the_chain_above_it(browse_db, ds):
    v = one(
        browse_db,
        "SELECT v.*, e.parent_gen_id AS draft FROM generations v"
        " JOIN generations e ON e.gen_id = v.parent_gen_id"
        " WHERE v.stage = 'evaluation' AND v.state = 'ok' ORDER BY v.gen_id LIMIT 1",
    )
    page = get(ds, f"/{DB}/-/generation/{v['gen_id']}").text
    lineage = page[page.index('<nav class="dd-lineage"') :]
    draft_at = lineage.index(f'href="/{DB}/-/generation/{v["draft"]}"')
    essay_at = lineage.index(f'href="/{DB}/-/generation/{v["parent_gen_id"]}"')
    this_at = lineage.index(f'<span class="dd-step dd-this">evaluation {v["gen_id"]}</span>')
    assert draft_at < essay_at < this_at
    scale = one(
        browse_db, "SELECT scale_min, scale_max FROM template_versions WHERE version = ?",
        (v["template_version"],),
    )
    assert f"score <strong>{v['score']:g}</strong> on {scale['scale_min']:g}-{scale['scale_max']:g}" in page


def test_draft_page_lists_what_was_made_from_it(browse_db, ds):
    draft = one(
        browse_db,
        "SELECT d.gen_id FROM generations d WHERE d.stage = 'draft' AND d.status = 'done'"
        " AND (SELECT count(*) FROM generations e WHERE e.parent_gen_id = d.gen_id) > 1"
        " ORDER BY d.gen_id LIMIT 1",
    )
    essays = query(
        browse_db, "SELECT gen_id FROM generations WHERE parent_gen_id = ?", (draft["gen_id"],)
    )
    page = get(ds, f"/{DB}/-/generation/{draft['gen_id']}").text
    made = page[page.index('id="made-from-it"') :]
    for essay in essays:
        assert f'href="/{DB}/-/generation/{essay["gen_id"]}"' in made


def test_failed_and_blocked_generations_say_why(browse_db, ds):
    draft, essay = (
        one(
            browse_db,
            "SELECT g.gen_id FROM generations g JOIN cohort_members m USING (gen_id)"
            " WHERE m.cohort_id = 'extra' AND g.stage = ?",
            (stage,),
        )["gen_id"]
        for stage in ("draft", "essay")
    )
    failed = get(ds, f"/{DB}/-/generation/{draft}").text
    assert "<strong>Failed (provider_error)</strong> after 1 attempt." in failed
    assert escaped(PROVIDER_ERROR) in failed
    blocked = get(ds, f"/{DB}/-/generation/{essay}").text
    assert (
        f'<strong>Blocked (blocked)</strong>: its parent <a href="/{DB}/-/generation/{draft}">'
        f"{draft}</a> did not complete, so it never ran." in blocked
    )
    assert f"parent {draft} failed: provider_error" in blocked


def test_a_long_prompt_starts_folded_and_a_short_one_open(browse_db, ds, monkeypatch):
    essay = one(browse_db, "SELECT gen_id, prompt_hash FROM generations WHERE stage = 'essay'"
                " AND prompt_hash IS NOT NULL LIMIT 1")
    length = len(text_of(browse_db, essay["prompt_hash"]))
    monkeypatch.setattr(pages, "LONG_PROMPT", length)
    assert '<details class="dd-prompt" open>' in get(ds, f"/{DB}/-/generation/{essay['gen_id']}").text
    monkeypatch.setattr(pages, "LONG_PROMPT", length - 1)
    page = get(ds, f"/{DB}/-/generation/{essay['gen_id']}").text
    assert '<details class="dd-prompt">' in page and "click to show" in page


def test_reasoning_is_shown_where_the_database_records_it(browse_db, tmp_path):
    """A reasoning model's reasoning (``generations.reasoning_hash``) gets its own block,
    escaped; a generation without one says nothing of reasoning."""
    copy = tmp_path / "daydream.db"
    shutil.copy(browse_db, copy)
    gen_id = one(copy, "SELECT gen_id FROM generations WHERE stage = 'draft' LIMIT 1")["gen_id"]
    assert "Reasoning" not in get(make_datasette(copy), f"/{DB}/-/generation/{gen_id}").text
    conn = sqlite3.connect(copy)
    digest = put_text(conn, "First I weigh the two concepts <carefully>.")
    conn.execute("UPDATE generations SET reasoning_hash = ? WHERE gen_id = ?", (digest, gen_id))
    conn.commit()
    conn.close()
    page = get(make_datasette(copy), f"/{DB}/-/generation/{gen_id}").text
    assert "Reasoning (43 characters)" in page
    assert "First I weigh the two concepts &lt;carefully&gt;." in page


def test_an_unknown_generation_is_a_404_that_says_how_to_find_one(ds):
    response = get(ds, f"/{DB}/-/generation/e_nope")
    assert response.status_code == 404
    assert escaped('generation "e_nope" does not exist in this database') in response.text
    assert "daydream search WORDS" in response.text


# -- links to it -------------------------------------------------------------------------


def test_every_generation_id_in_browse_links_to_its_page(browse_db, ds):
    essay = one(browse_db, "SELECT gen_id, parent_gen_id FROM generations WHERE stage = 'essay' LIMIT 1")
    link = f'href="/{DB}/-/generation/{essay["gen_id"]}"'
    # a view, a canned query, a table's foreign key, the log's subjects
    assert link in get(ds, f"/{DB}/lineage?gen_id={essay['gen_id']}").text
    assert link in get(ds, f"/{DB}/cohort_scores?cohort=demo").text
    assert link in get(ds, f"/{DB}/cohort_members?gen_id={essay['gen_id']}").text
    assert link in get(ds, f"/{DB}/events?subject={essay['gen_id']}").text
    parent = f'href="/{DB}/-/generation/{essay["parent_gen_id"]}"'
    assert parent in get(ds, f"/{DB}/generations?gen_id={essay['gen_id']}").text
    # The generations table's own key links to its row page, which is the generation page.
    moved = get(ds, f"/{DB}/generations/{essay['gen_id']}")
    assert moved.status_code == 302
    assert moved.headers["location"] == f"/{DB}/-/generation/{essay['gen_id']}"
    assert get(ds, f"/{DB}/generations/{essay['gen_id']}.json").json()["rows"][0][0] == essay["gen_id"]


def test_bookmarks_work_whatever_the_database_file_is_called(browse_db, tmp_path):
    renamed = tmp_path / "run-2031.db"
    shutil.copy(browse_db, renamed)
    ds = make_datasette(renamed)
    moved = get(ds, "/-/daydream/cohort_progress?cohort_id=demo")
    assert moved.status_code == 302
    assert moved.headers["location"] == "/run-2031/cohort_progress?cohort_id=demo"
    assert get(ds, moved.headers["location"]).status_code == 200
    page = get(ds, "/-/daydream/-/compare?cohort=demo")
    assert page.headers["location"] == "/run-2031/-/compare?cohort=demo"


def test_the_pages_leave_other_databases_alone(browse_db, tmp_path):
    other = tmp_path / "notes.db"
    raw = sqlite3.connect(other)
    raw.execute("CREATE TABLE generations (gen_id TEXT PRIMARY KEY, body TEXT)")
    raw.execute("INSERT INTO generations VALUES ('e_1', 'mine')")
    raw.execute("CREATE TABLE cohort_pivot (essay TEXT, note TEXT)")
    raw.execute("INSERT INTO cohort_pivot VALUES ('e_1', 'also mine')")
    raw.commit()
    raw.close()
    plain = Datasette([str(browse_db), str(other)])  # the plugin comes by entry point
    for path in ("/notes/-/generation/e_1", "/notes/-/compare?cohort=demo", "/notes/-/pivot"):
        assert get(plain, path).status_code == 404, path
    row = get(plain, "/notes/generations/e_1")  # Datasette's own row page
    assert row.status_code == 200 and "mine" in row.text
    table = get(plain, "/notes/cohort_pivot")  # Datasette's own table page
    assert table.status_code == 200 and "also mine" in table.text
    assert get(plain, "/notes/cohort_pivot.json?_shape=array").json() == [
        {"rowid": 1, "essay": "e_1", "note": "also mine"}
    ]
    gen_id = one(browse_db, "SELECT gen_id FROM generations LIMIT 1")["gen_id"]
    assert get(plain, f"/{DB}/-/generation/{gen_id}").status_code == 200


# -- the comparison matrix ---------------------------------------------------------------


def matrix_cells(page: str) -> list[list[str]]:
    """The matrix's body cells, row by row, as HTML."""
    body = page[page.index("<tbody>") : page.index("</tbody>")]
    return [re.split(r"<td>", row)[1:] for row in body.split("<tr>")[1:]]


def test_the_matrix_shows_each_cells_essays_with_texts_and_scores(browse_db, ds):
    template = "novelty-rubric"
    page = get(
        ds,
        f"/{DB}/-/compare?cohort=demo&rows=combo_id&columns=essay_template"
        f"&evaluation_template={template}",
    ).text
    combos = [r["combo_id"] for r in query(browse_db, "SELECT DISTINCT combo_id FROM generations"
                                           " g JOIN cohort_members m USING (gen_id) WHERE"
                                           " m.cohort_id = 'demo' ORDER BY 1")]
    columns = ["focused-essay", "idea-verbatim"]
    head = page[page.index("<thead>") : page.index("</thead>")]
    assert re.findall(r"<th>([^<]+)</th>", head)[1:] == columns
    grid = matrix_cells(page)
    assert len(grid) == len(combos)
    for combo, cells in zip(combos, grid, strict=True):
        for column, cell in zip(columns, cells, strict=True):
            essays = query(
                browse_db,
                "SELECT e.gen_id, e.parsed_hash, d.template_id AS draft_template,"
                " (SELECT avg(v.score) FROM generations v WHERE v.parent_gen_id = e.gen_id"
                "   AND v.template_id = ? AND v.state = 'ok') AS mean,"
                " (SELECT count(v.score) FROM generations v WHERE v.parent_gen_id = e.gen_id"
                "   AND v.template_id = ? AND v.state = 'ok') AS n"
                " FROM generations e JOIN generations d ON d.gen_id = e.parent_gen_id"
                " JOIN cohort_members m ON m.gen_id = e.gen_id AND m.cohort_id = 'demo'"
                " WHERE e.stage = 'essay' AND d.combo_id = ? AND e.template_id = ?"
                " ORDER BY e.gen_id",
                (template, template, combo, column),
            )
            if not essays:
                assert f"none planned: no essay with combo_id {combo} and essay_template {column}" in cell
                continue
            assert re.findall(r'href="/daydream/-/generation/(e_\w+)"', cell) == [e["gen_id"] for e in essays]
            for essay in essays:
                assert f"draft_template {essay['draft_template']}" in cell  # it varies in a cell
                text = text_of(browse_db, essay["parsed_hash"])
                assert escaped(text[: pages.CLIP]) in cell
                assert f"<strong>{round(essay['mean'], 3):g}</strong> <span class=\"dd-scale\">(n={essay['n']})</span>" in cell
    assert "Note: scores" not in page  # one rubric chosen: no pooling to explain


def test_the_matrix_explains_failed_and_missing_cells(browse_db, ds):
    page = get(ds, f"/{DB}/-/compare?cohort=extra&rows=combo_id&columns=essay_llm").text
    [[cell]] = matrix_cells(page)
    draft = one(
        browse_db,
        "SELECT g.gen_id FROM generations g JOIN cohort_members m USING (gen_id)"
        " WHERE m.cohort_id = 'extra' AND g.stage = 'draft'",
    )["gen_id"]
    assert f"blocked: parent {draft} failed: provider_error" in cell
    # The demo's five-point rubric fails for some essays: their score is missing, and why.
    page = get(
        ds, f"/{DB}/-/compare?cohort=demo&rows=combo_id&columns=essay_template&evaluation_template=clarity-five"
    ).text
    assert escaped("no score: failed (parse_failed): score") in page
    assert escaped("is outside the template's scale 1-5") in page


def test_without_a_rubric_the_matrix_does_not_pool_scales_and_says_so(ds):
    page = get(ds, f"/{DB}/-/compare?cohort=demo&rows=combo_id&columns=essay_llm").text
    assert escaped("the rubrics' scales differ, so only feasibility-rubric (the most scored)") in page
    chosen = re.search(r'<select name="evaluation_template">.*?</select>', page, re.S).group(0)
    assert "<option selected>feasibility-rubric</option>" in chosen


def test_the_matrix_pages_its_rows_by_keyset_and_pins_other_axes(browse_db, ds):
    first = get(ds, f"/{DB}/-/compare?cohort=demo&rows=combo_id&columns=draft_template&size=1").text
    assert len(matrix_cells(first)) == 1
    [next_url] = re.findall(r'<a href="(\?[^"]+)">Next 1 rows', first)
    second = get(ds, f"/{DB}/-/compare" + html.unescape(next_url)).text
    row_of = lambda page: re.findall(r'combo_id=([\w-]+)">', page[page.index("<tbody>") :])[0]  # noqa: E731
    assert row_of(first) < row_of(second)
    pinned = get(
        ds, f"/{DB}/-/compare?cohort=demo&rows=combo_id&columns=essay_llm&draft_template=free-notes"
    ).text
    shown = set(re.findall(r'href="/daydream/-/generation/(e_\w+)"', pinned))
    assert shown == _demo_essays(browse_db, "free-notes")


def _demo_essays(db: Path, draft_template: str, essay_model: str | None = None) -> set[str]:
    """The demo cohort's essays of a draft template (and an essay model)."""
    found = query(
        db,
        "SELECT e.gen_id FROM generations e JOIN generations d ON d.gen_id = e.parent_gen_id"
        " JOIN cohort_members m ON m.gen_id = e.gen_id AND m.cohort_id = 'demo'"
        " WHERE e.stage = 'essay' AND d.template_id = ? AND (? IS NULL OR e.model_id = ?)",
        (draft_template, essay_model, essay_model),
    )
    return {r["gen_id"] for r in found}


def test_the_matrix_shows_each_set_of_pins_own_rows_when_pins_change(browse_db, ds):
    """The rows left by a set of pins are kept with the cohort's lineage: pinning another
    draft template, two axes, and the first again shows each time the essays a direct
    query finds."""
    templates = [
        r["t"]
        for r in query(
            browse_db,
            "SELECT DISTINCT d.template_id AS t FROM generations e"
            " JOIN generations d ON d.gen_id = e.parent_gen_id"
            " JOIN cohort_members m ON m.gen_id = e.gen_id AND m.cohort_id = 'demo'"
            " WHERE e.stage = 'essay' ORDER BY 1",
        )
    ]
    assert len(templates) > 1
    model = query(browse_db, "SELECT model_id FROM generations WHERE stage = 'essay' LIMIT 1")[0]["model_id"]
    cases = [(t, None) for t in templates] + [(templates[0], model), (templates[0], None)]
    for template, essay_model in cases:
        pins = f"&draft_template={template}" + (f"&essay_llm={essay_model}" if essay_model else "")
        page = get(ds, f"/{DB}/-/compare?cohort=demo&rows=combo_id&columns=essay_template{pins}").text
        shown = set(re.findall(r'href="/daydream/-/generation/(e_\w+)"', page))
        assert shown == _demo_essays(browse_db, template, essay_model), (template, essay_model)


def test_a_misspelt_axis_is_a_clear_error_with_a_suggestion(ds):
    response = get(ds, f"/{DB}/-/compare?cohort=demo&rows=combo_id&columns=essay_lm")
    assert response.status_code == 400
    assert escaped('columns: "essay_lm" is not an axis (did you mean "essay_llm"?)') in response.text
    unknown = get(ds, f"/{DB}/-/compare?cohort=nope")
    assert unknown.status_code == 400 and escaped('cohort "nope" does not exist') in unknown.text


# -- the pivot ----------------------------------------------------------------------------


def test_the_pivot_page_shows_only_the_chosen_cohorts_judges(browse_db, ds):
    page = get(ds, f"/{DB}/-/pivot?cohort=demo").text
    judges = query(
        browse_db,
        "SELECT DISTINCT evaluation_template || ' / ' || evaluation_model AS j FROM essay_scores"
        " WHERE cohort_id = 'demo' ORDER BY evaluation_template, evaluation_model",
    )
    head = page[page.index("<thead>") : page.index("</thead>")]
    assert [j for j in re.findall(r"<th>([^<]+)</th>", head) if " / " in j] == [j["j"] for j in judges]
    extra = get(ds, f"/{DB}/-/pivot?cohort=extra").text
    extra_head = extra[extra.index("<thead>") : extra.index("</thead>")]
    assert [j for j in re.findall(r"<th>([^<]+)</th>", extra_head) if " / " in j] == [
        "novelty-rubric / offline-small"
    ]
    for r in rows(ds, f"/{DB}/essay_scores.json?cohort_id=demo&n__gt=0")[:5]:
        row = page[page.index(f'/-/generation/{r["essay_gen_id"]}"') :].split("</tr>")[0]
        assert f"{r['mean']:g} <span class=\"dd-scale\">({r['n']})</span>" in row


# -- search through Datasette's search box ------------------------------------------------


def test_the_search_box_finds_the_generations_search_finds(browse_db, ds):
    conn = connect(browse_db, create=False, migrate=False)
    try:
        expected = {(h.gen_id) for h in search(conn, "fungal", cohort_id="demo", limit=1000)}
    finally:
        conn.close()
    assert expected
    found = rows(ds, f"/{DB}/generation_search.json?_search=fungal&cohort_id=demo")
    assert {r["gen_id"] for r in found} == expected
    assert all("fungal" in r["text"].lower() for r in found)
    page = get(ds, f"/{DB}/generation_search?_search=fungal").text
    assert 'name="_search"' in page  # Datasette's own search box
    assert f'href="/{DB}/-/generation/{sorted(expected)[0]}"' in page


def test_the_matrix_sees_essays_planned_after_it_was_first_shown(browse_db, tmp_path):
    """The lineage of a cohort's essays is read once per plan of the cohort: planning more
    into it shows them at once."""
    copy = tmp_path / "daydream.db"
    shutil.copy(browse_db, copy)
    ds = make_datasette(copy)
    page = "/daydream/-/compare?cohort=extra&rows=combo_id&columns=essay_llm"
    assert len(matrix_cells(get(ds, page).text)) == 1
    conn = connect(copy)
    plan_cohort(conn, copy.parent / "extra.yaml", "extra", rows=[{**EXTRA_ROW, "combo_id": "fungal-market"}])
    conn.close()
    assert len(matrix_cells(get(ds, page).text)) == 2


# -- a real browser --------------------------------------------------------------------------


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")
def test_headless_chromium_renders_the_generation_page_and_the_matrix(browse_db, tmp_path):
    """Screenshots of the pages as ``daydream browse`` serves them, kept in the test's
    directory (or DAYDREAM_SCREENSHOTS, to look at them)."""
    essay = one(
        browse_db,
        "SELECT gen_id FROM generations WHERE stage = 'essay' AND mode = 'llm' ORDER BY gen_id LIMIT 1",
    )["gen_id"]
    out = Path(os.environ.get("DAYDREAM_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    pages = {
        "generation.png": (f"/{DB}/-/generation/{essay}", (1280, 1800)),
        "compare.png": (
            f"/{DB}/-/compare?cohort=demo&rows=combo_id&columns=essay_llm&evaluation_template=novelty-rubric",
            (1280, 1100),
        ),
    }
    with served(browse_db) as base:
        for name, (path, size) in pages.items():
            page = httpx.get(base + path)
            assert page.status_code == 200
            assert_png(screenshot(base + path, out / name, tmp_path / "profile", size), size)
        assert "Judges (5)" in httpx.get(base + pages["generation.png"][0]).text


def test_every_bookmark_in_the_docs_opens_whatever_the_file_is_called(browse_db, tmp_path):
    """docs/browse.md's "Pages to bookmark", against a database file of another name."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "browse.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Pages to bookmark") :].split("```")[1]
    urls = re.findall(r"http://127\.0\.0\.1:8001(\S+)", section)
    assert len(urls) >= 6
    renamed = tmp_path / "run-7.db"
    shutil.copy(browse_db, renamed)
    ds = make_datasette(renamed)
    for url in urls:
        moved = get(ds, url)
        assert moved.status_code == 302, url
        assert moved.headers["location"].startswith("/run-7/"), url
        page = get(ds, moved.headers["location"])
        assert page.status_code == 200, (url, page.text[:300])
