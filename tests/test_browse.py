"""Browsing: the views and the `daydream browse` Datasette, checked through Datasette's own
client against direct SQL and the library's own numbers, plus one real headless browser.

The fixture database holds the demo cohort ("demo", run end to end on the offline
provider; its five-point rubric fails where the offline judge answers off the scale) and a
one-row cohort ("extra") whose draft failed with a provider error, so its essay and
evaluation are blocked.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import html
import io
import re
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from datasette.app import Datasette

from daydream.browse.app import make_datasette
from daydream.browse.metadata import HIDDEN_TABLES, column_description
from daydream.cli import cli
from daydream.db.connection import connect
from daydream.db.projections.views import VIEWS
from daydream.db.texts import get_text
from daydream.plan.write import plan_cohort
from daydream.queue.cohorts import cohort_status
from daydream.results.curation import rank_essays
from tests.browsing import (
    CHROMIUM,
    PROVIDER_ERROR,
    assert_png,
    get,
    query,
    rows,
    screenshot,
    served,
)

DB = "daydream"  # the fixture file is daydream.db, so Datasette names the database "daydream"


@pytest.fixture(scope="module")
def db(browse_db) -> Path:
    return browse_db


@pytest.fixture(scope="module")
def ds(db) -> Datasette:
    return make_datasette(db)


# -- the views through Datasette --------------------------------------------------------------


def test_cohort_progress_matches_daydream_status(db, ds):
    conn = connect(db)
    status = cohort_status(conn, "demo")
    conn.close()
    got = rows(ds, f"/{DB}/cohort_progress.json?cohort_id=demo")
    assert [r["stage"] for r in got] == ["draft", "essay", "evaluation"]
    for r in got:
        counts = status.stages[r["stage"]]
        assert {s: r[s] for s in counts} == counts
        assert r["generations"] == sum(counts.values())
        assert r["pct_done"] == round(100 * counts["done"] / r["generations"], 1)
        assert r["pct_finished"] == 100.0
    evaluation = got[-1]
    assert 0 < evaluation["failed"] < evaluation["generations"]  # the demo's failures
    extra = rows(ds, f"/{DB}/cohort_progress.json?cohort_id=extra")
    assert [(r["stage"], r["failed"], r["blocked"]) for r in extra] == [
        ("draft", 1, 0),
        ("essay", 0, 1),
        ("evaluation", 0, 1),
    ]


def test_generation_texts_shows_prompt_raw_and_parsed_text_whole(db, ds):
    [essay] = query(
        db,
        "SELECT g.* FROM generations g JOIN cohort_members m USING (gen_id)"
        " WHERE m.cohort_id = 'demo' AND g.stage = 'essay' AND g.mode = 'llm'"
        " ORDER BY g.gen_id LIMIT 1",
    )
    conn = connect(db)
    texts = {k: get_text(conn, essay[f"{k}_hash"]) for k in ("prompt", "raw", "parsed")}
    conn.close()
    [row] = rows(ds, f"/{DB}/generation_texts.json?gen_id={essay['gen_id']}")
    assert {k: row[f"{k}_text"] for k in texts} == texts
    assert row["cohort_id"] == "demo" and row["template_id"] == essay["template_id"]
    # Whole, not cut at truncate_cells_html like other long cells.
    short = make_datasette(db, settings={"truncate_cells_html": 200})
    page = get(short, f"/{DB}/generation_texts?gen_id={essay['gen_id']}").text
    assert len(texts["prompt"]) > 200
    assert html.escape(texts["prompt"], quote=False) in page
    assert '<div class="daydream-text"' in page


def test_lineage_links_evaluation_essay_draft_combination_and_concepts(db, ds):
    got = {r["gen_id"]: r for r in rows(ds, f"/{DB}/lineage.json?cohort_id=demo")}
    expected = query(
        db,
        "SELECT v.gen_id, e.gen_id AS essay, d.gen_id AS draft, d.combo_id FROM generations v"
        " JOIN generations e ON e.gen_id = v.parent_gen_id"
        " JOIN generations d ON d.gen_id = e.parent_gen_id"
        " JOIN cohort_members m ON m.gen_id = v.gen_id AND m.cohort_id = 'demo'",
    )
    assert expected
    concepts = {
        c["combo_id"]: c["ids"]
        for c in query(
            db,
            "SELECT combo_id, group_concat(concept_id, ', ') AS ids FROM"
            " (SELECT * FROM combo_concepts ORDER BY combo_id, position) GROUP BY combo_id",
        )
    }
    for e in expected:
        r = got[e["gen_id"]]
        assert (r["evaluation_gen_id"], r["essay_gen_id"], r["draft_gen_id"]) == (
            e["gen_id"],
            e["essay"],
            e["draft"],
        )
        assert r["combo_id"] == e["combo_id"]
        assert r["concept_ids"] == concepts[e["combo_id"]]
    drafts = [r for r in got.values() if r["stage"] == "draft"]
    assert drafts and all(
        r["draft_gen_id"] == r["gen_id"] and r["essay_gen_id"] is None for r in drafts
    )
    page = get(ds, f"/{DB}/lineage?gen_id={expected[0]['gen_id']}").text
    assert f'href="/{DB}/-/generation/{expected[0]["draft"]}"' in page
    assert f'href="/{DB}/combos_with_concepts?combo_id={expected[0]["combo_id"]}"' in page


def test_failures_grouped_by_state_and_reason(db, ds):
    got = rows(ds, f"/{DB}/failure_reasons.json?cohort_id=extra")
    assert [(r["stage"], r["status"], r["state"], r["reason"], r["generations"]) for r in got] == [
        ("draft", "failed", "provider_error", "HTTP 500 from offline: upstream exploded", 1),
        ("essay", "blocked", "blocked", "parent failed: provider_error", 1),
        ("evaluation", "blocked", "blocked", "parent failed: provider_error", 1),
    ]
    demo = rows(ds, f"/{DB}/failure_reasons.json?cohort_id=demo")
    direct = query(
        db,
        "SELECT g.state, count(*) AS n FROM generations g JOIN cohort_members m USING (gen_id)"
        " WHERE m.cohort_id = 'demo' AND g.status IN ('failed', 'blocked', 'cancelled')"
        " GROUP BY g.state",
    )
    assert direct
    by_state: dict[str, int] = {}
    for r in demo:
        by_state[r["state"]] = by_state.get(r["state"], 0) + r["generations"]
    assert by_state == {d["state"]: d["n"] for d in direct}
    listed = rows(ds, f"/{DB}/cohort_failures.json?cohort=extra")
    [failed] = [r for r in listed if r["status"] == "failed"]
    assert failed["error"] == PROVIDER_ERROR and failed["stage"] == "draft"


def test_score_pivot_equals_a_direct_computation_and_essay_scores(db, ds):
    direct = query(
        db,
        "SELECT v.parent_gen_id AS essay, v.template_id AS t, v.model_id AS m,"
        " avg(v.score) AS mean, count(v.score) AS n FROM generations v"
        " JOIN cohort_members c ON c.gen_id = v.gen_id AND c.cohort_id = 'demo'"
        " WHERE v.stage = 'evaluation' AND v.state = 'ok' GROUP BY 1, 2, 3",
    )
    assert len(direct) > 20
    wide = {r["essay_gen_id"]: r for r in rows(ds, f"/{DB}/-/pivot.json?cohort=demo")}
    for d in direct:
        assert wide[d["essay"]][f"{d['t']} / {d['m']}"] == round(d["mean"], 3)
    for essay, r in wide.items():
        scores = [s for s in direct if s["essay"] == essay]
        assert r["n"] == sum(s["n"] for s in scores)
    long = rows(ds, f"/{DB}/essay_scores.json?cohort_id=demo")
    means = {
        (r["essay_gen_id"], r["evaluation_template"], r["evaluation_model"]): r["mean"]
        for r in long
    }
    assert {
        (d["essay"], d["t"], d["m"]): round(d["mean"], 3) for d in direct
    }.items() <= means.items()
    page = get(ds, f"/{DB}/-/pivot?cohort=demo").text
    assert "<th>novelty-rubric / offline-large</th>" in page
    # The canned query it replaced: its bookmarks lead to the page, in every format.
    for old, new in (("", ""), (".json", ".json"), (".csv", ".csv")):
        moved = get(ds, f"/{DB}/cohort_pivot{old}?cohort=demo")
        assert (moved.status_code, moved.headers["location"]) == (302, f"/{DB}/-/pivot{new}?cohort=demo")
    csv_rows = list(csv.DictReader(io.StringIO(get(ds, f"/{DB}/-/pivot.csv?cohort=demo").text)))
    assert {r["essay_gen_id"]: r["n"] for r in csv_rows} == {e: str(r["n"]) for e, r in wide.items()}


def test_top_essays_rank_as_daydream_curation_does(db, ds):
    conn = connect(db)
    for template in ("novelty-rubric", "feasibility-rubric"):
        ranking = rank_essays(conn, "demo", template, top_n=100)
        got = rows(ds, f"/{DB}/top_essays.json?cohort_id=demo&evaluation_template={template}")
        assert [
            (r["rank"], r["essay_gen_id"], r["avg_score"], r["max_score"], r["models_covered"])
            for r in got
        ] == [
            (
                r["selection_rank"],
                r["essay_gen_id"],
                r["avg_score"],
                r["max_score"],
                r["models_covered"],
            )
            for r in ranking.rows
        ]
        canned = rows(ds, f"/{DB}/cohort_top_essays.json?cohort=demo&template={template}")
        assert canned == got
    conn.close()
    every = rows(ds, f"/{DB}/cohort_top_essays.json?cohort=demo&template=&top=2")
    ranks: dict[str, list[int]] = {}
    for r in every:
        ranks.setdefault(r["evaluation_template"], []).append(r["rank"])
    assert set(ranks) >= {"novelty-rubric", "feasibility-rubric"}
    assert all(found == [1, 2] for found in ranks.values())


def test_tokens_and_cost_per_model_come_from_calls(db, ds):
    direct = query(
        db,
        "SELECT model_id, count(*) AS calls, sum(prompt_tokens) AS p, sum(completion_tokens) AS c,"
        " sum(cost) AS cost FROM calls GROUP BY model_id ORDER BY model_id",
    )
    got = rows(ds, f"/{DB}/model_usage.json")
    assert [
        (r["model_id"], r["calls"], r["prompt_tokens"], r["completion_tokens"]) for r in got
    ] == [(d["model_id"], d["calls"], d["p"], d["c"]) for d in direct]
    conn = connect(db)
    status = cohort_status(conn, "demo")
    conn.close()
    per_cohort = rows(ds, f"/{DB}/cohort_model_usage.json?cohort_id=demo")
    assert [
        (r["model_id"], r["ok"], r["prompt_tokens"], r["completion_tokens"]) for r in per_cohort
    ] == [
        (m["model_id"], m["ok"], m["prompt_tokens"], m["completion_tokens"]) for m in status.models
    ]


def test_generation_query_shows_the_lineage_with_texts(db, ds):
    [v] = query(
        db,
        "SELECT v.gen_id, v.parent_gen_id AS essay, e.parent_gen_id AS draft, v.prompt_hash"
        " FROM generations v JOIN generations e ON e.gen_id = v.parent_gen_id"
        " WHERE v.stage = 'evaluation' AND v.state = 'ok' ORDER BY v.gen_id LIMIT 1",
    )
    got = rows(ds, f"/{DB}/generation.json?gen_id={v['gen_id']}")
    assert [(r["relation"], r["gen_id"]) for r in got] == [
        ("ancestor", v["draft"]),
        ("ancestor", v["essay"]),
        ("this", v["gen_id"]),
    ]
    conn = connect(db)
    assert got[-1]["prompt_text"] == get_text(conn, v["prompt_hash"])
    conn.close()
    assert got[0]["parsed_text"] and got[0]["prompt_text"] is None
    draft = rows(ds, f"/{DB}/generation.json?gen_id={v['draft']}")
    assert draft[0]["relation"] == "this"
    assert {r["stage"] for r in draft if r["relation"] == "descendant"} == {"essay", "evaluation"}


def test_every_canned_query_runs(ds):
    queries = ds.metadata("queries", database=DB)
    assert set(queries) == {
        "cohort_top_essays",
        "generation",
        "cohort_scores",
        "cohort_failures",
    }
    params = {"cohort": "demo", "template": "novelty-rubric", "top": "", "gen_id": "none"}
    for name in queries:
        response = get(ds, f"/{DB}/{name}.json?{'&'.join(f'{k}={v}' for k, v in params.items())}")
        assert response.status_code == 200, (name, response.text)
        assert response.json()["ok"], name
        assert get(ds, f"/{DB}/{name}?cohort=demo").status_code == 200
    assert rows(ds, f"/{DB}/cohort_scores.json?cohort=demo")


@pytest.mark.parametrize(
    ("query_name", "cohort", "size"), [("cohort_scores", "demo", 2), ("cohort_failures", "extra", 1)]
)
def test_paged_canned_queries_link_to_the_next_page_until_the_last(ds, query_name, cohort, size):
    """A paged canned query shows ``size`` rows (default 100) and links to the rows after
    the last one shown; following the links lists every row once, in order, and the last
    page has no link."""
    every = [r["gen_id"] for r in rows(ds, f"/{DB}/{query_name}.json?cohort={cohort}&size=-1")]
    assert len(every) > 2 * size
    assert len(rows(ds, f"/{DB}/{query_name}.json?cohort={cohort}")) == min(100, len(every))
    seen: list[str] = []
    query_string: str | None = f"?cohort={cohort}&size={size}"
    while query_string is not None and len(seen) <= len(every):
        page = rows(ds, f"/{DB}/{query_name}.json{query_string}")
        seen += [r["gen_id"] for r in page]
        shown = get(ds, f"/{DB}/{query_name}{query_string}").text
        found = re.search(r'class="daydream-next-page"><a href="([^"]+)"', shown)
        query_string = html.unescape(found.group(1)) if found else None
        if query_string is not None:
            assert f"after={page[-1]['gen_id']}" in query_string
    assert seen == every
    assert query_string is None


def test_metadata_describes_every_table_view_and_column(db, ds):
    names = {
        r["name"]: r["type"]
        for r in query(db, "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')")
    }
    tables = ds.metadata("tables", database=DB)
    assert set(VIEWS) <= set(names)
    missing = []
    for name in names:
        if name.startswith("sqlite_"):
            continue
        if not tables.get(name, {}).get("description"):
            missing.append(name)
        for column in (
            r["name"] for r in query(db, f'SELECT name FROM pragma_table_info("{name}")')
        ):
            if not column_description(name, column):
                missing.append(f"{name}.{column}")
    assert not missing, f"describe these in daydream/descriptions.py: {missing}"
    assert ds.metadata("title") == "daydream"
    for name in tables:
        for facet in tables[name].get("facets", []):
            assert facet in tables[name]["columns"], (name, facet)


def test_internal_tables_are_hidden(ds):
    listed = {t["name"]: t for t in get(ds, f"/{DB}.json").json()["tables"]}
    for name in HIDDEN_TABLES:
        assert listed[name]["hidden"] is True
    assert not listed["generations"]["hidden"] and not listed["texts"]["hidden"]
    page = get(ds, f"/{DB}").text
    assert f'href="/{DB}/schema_migrations"' not in page
    assert f'href="/{DB}/generations"' in page and f'href="/{DB}/cohort_progress"' in page


def test_browse_cannot_write_and_sees_what_workers_write(db, ds):
    def fingerprint() -> dict[str, str]:
        # The database and its WAL (the -shm index is shared memory, not data; a reader
        # may create an empty WAL).
        files = (db, db.with_name(db.name + "-wal"))
        return {
            f.name: hashlib.sha256(f.read_bytes()).hexdigest()
            for f in files
            if f.exists() and f.stat().st_size
        }

    before = fingerprint()
    database = ds.get_database(DB)
    assert database.is_mutable  # mode=ro reads, never immutable=1 (unsafe while workers write)
    assert not any(q.get("write") for q in ds.metadata("queries", database=DB).values())
    for sql in (
        "insert into texts (hash, text, length) values ('x', 'x', 1)",
        "delete from cohorts",
        "pragma query_only = 0",
    ):
        response = get(ds, f"/{DB}.json?sql={sql}")
        assert response.status_code == 400, sql
        assert "Statement must be a SELECT" in response.json()["error"]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        asyncio.run(database.execute_write("DELETE FROM cohorts"))
    for path in (f"/{DB}/-/pivot?cohort=demo", f"/{DB}/generation_texts", f"/{DB}/events"):
        assert get(ds, path).status_code == 200
    assert fingerprint() == before
    # A write by another connection (a worker) shows on the next request.
    conn = connect(db)
    plan_cohort(
        conn,
        db.parent / "later.yaml",
        "later",
        rows=[
            {
                "combo_id": "fungal-market",
                "draft_template": "free-notes",
                "draft_llm": "offline-large",
            }
        ],
    )
    conn.close()
    assert [r["cohort_id"] for r in rows(ds, f"/{DB}/cohort_progress.json?cohort_id=later")] == [
        "later"
    ]


def test_plain_datasette_shows_what_daydream_browse_shows_and_leaves_other_databases_alone(
    db, ds, tmp_path
):
    """daydream's hooks are a Datasette plugin found by entry point: ``datasette
    daydream.db`` (no daydream command) has the same readable texts, links, canned queries
    and descriptions as ``daydream browse``, and cannot write; another database served
    beside it is shown exactly as Datasette shows it, writable."""
    other = tmp_path / "notes.db"
    raw = sqlite3.connect(other)
    raw.execute("CREATE TABLE notes (gen_id TEXT, body_text TEXT)")
    raw.execute("CREATE VIEW notes_view AS SELECT * FROM notes")
    raw.execute("INSERT INTO notes VALUES ('g1', 'a long text')")
    raw.commit()
    raw.close()
    plain = Datasette([str(db), str(other)])
    page = asyncio.run(plain.client.get(f"/{DB}/generation_texts?stage=essay")).text
    assert page.count('class="daydream-text"') == page_texts(ds, "essay")
    lineage = asyncio.run(plain.client.get(f"/{DB}/lineage?_size=1")).text
    assert f'href="/{DB}/-/generation/' in lineage
    (essay,) = [r for r in query(db, "SELECT gen_id FROM generations WHERE stage = 'essay'")][:1]
    chain = asyncio.run(
        plain.client.get(f"/{DB}/generation.json?gen_id={essay['gen_id']}&_shape=array")
    ).json()
    assert [r["relation"] for r in chain][:2] == ["ancestor", "this"]
    assert plain.metadata("tables", database=DB) == ds.metadata("tables", database=DB)
    assert plain.metadata("queries", database=DB) == ds.metadata("queries", database=DB)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        asyncio.run(plain.databases[DB].execute_write("DELETE FROM cohorts"))
    # The other database: no daydream texts, links or metadata; its writes go through.
    notes = asyncio.run(plain.client.get("/notes/notes_view")).text
    assert "daydream-text" not in notes and "/-/generation/" not in notes
    assert plain.metadata("queries", database="notes") is None
    asyncio.run(plain.databases["notes"].execute_write("DELETE FROM notes"))
    assert ds.setting("suggest_facets") is False  # daydream's settings: its instance only
    assert plain.setting("suggest_facets") is True


def page_texts(ds: Datasette, stage: str) -> int:
    """How many text blocks ``daydream browse`` renders on a generation_texts page."""
    return get(ds, f"/{DB}/generation_texts?stage={stage}").text.count('class="daydream-text"')


def test_browse_command_refuses_a_missing_database(tmp_path):
    result = CliRunner().invoke(cli, ["browse", "--db", str(tmp_path / "nope.db")])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: database {tmp_path / 'nope.db'} does not exist; start with: daydream catalog"
        " import CATALOG_DIR (it creates the database), or try: daydream demo\n"
    )


def test_browse_refuses_a_path_datasette_would_misread_and_says_how_to_browse_it(db, tmp_path):
    """Datasette builds an unescaped SQLite URI from the path: in 'run #2' SQLite would open
    (and create) 'run ' and show no tables. daydream refuses it in one line instead."""
    odd = tmp_path / "run #2"
    odd.mkdir()
    shutil.copy(db, odd / "cli.db")
    result = CliRunner().invoke(cli, ["browse", "--db", str(odd / "cli.db")])
    assert result.exit_code == 1
    resolved = (odd / "cli.db").resolve()
    assert result.output == (
        f"Error: database {odd / 'cli.db'}: Datasette cannot open a path containing '#', '?'"
        f" or '%'; link it from a plain path (ln -s '{resolved}' /tmp/daydream.db) and"
        " browse that\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run #2"]  # no stray 'run ' file
    link = tmp_path / "plain.db"
    link.symlink_to(resolved)
    assert make_datasette(link)  # the suggested link opens


# -- one real browser --------------------------------------------------------------------------


LOOPBACK_HOSTS = ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}"]
FOREIGN_HOSTS = [
    "rebind.attacker.example:{port}",
    "127.0.0.1.nip.io:{port}",
    "localhost.attacker.example",
    "127.0.0.1:{port}@evil",
    "",
]


def test_browse_answers_only_requests_for_a_loopback_host(db):
    """A page on a domain rebound to 127.0.0.1 sends its own host name: it gets 403 and no
    data; the addresses browse prints (and localhost) work."""
    answers = {}
    with served(db) as base:
        port = base.rsplit(":", 1)[1]
        for host in LOOPBACK_HOSTS + FOREIGN_HOSTS:
            response = httpx.get(
                f"{base}/{DB}/generations.json",
                headers={"Host": host.format(port=port)},
            )
            answers[host] = (response.status_code, response.text)
    refusal = (
        "daydream browse answers only requests for 127.0.0.1 or localhost;"
        " open the address it printed.\n"
    )
    assert {host: answers[host] for host in FOREIGN_HOSTS} == dict.fromkeys(
        FOREIGN_HOSTS, (403, refusal)
    )
    for host in LOOPBACK_HOSTS:
        status, text = answers[host]
        assert status == 200 and '"rows"' in text, host


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")
def test_headless_chromium_renders_the_pivot_page_served_by_daydream_browse(db, tmp_path):
    with served(db) as base:
        url = f"{base}/{DB}/-/pivot?cohort=demo"
        assert "novelty-rubric / offline-large" in httpx.get(url).text
        shot = screenshot(url, tmp_path / "pivot.png", tmp_path / "profile")
    assert_png(shot, (1280, 900))
