"""A large database's growing pages are not counted (daydream/browse/uncounted.py).

The fixture database is the demo cohort and a one-row cohort (tests/browsing.py): a few
dozen generations, so each test that needs a "large" database sets the limit below that
(``count_up_to``, the same setting as ``daydream browse --count-up-to``).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from daydream.browse import uncounted
from daydream.browse.app import make_datasette
from daydream.browse.descriptions import TABLES
from tests.browsing import CHROMIUM, get, query, rendered, served

DB = "daydream"
LINEAGE_FACETS = set(TABLES["lineage"]["facets"])


@pytest.fixture(scope="module")
def db(browse_db) -> Path:
    return browse_db


@pytest.fixture(scope="module")
def generations(db) -> int:
    return query(db, "SELECT count(*) AS n FROM cohort_members")[0]["n"]


def test_every_table_and_view_is_either_growing_or_flat(db):
    conn = sqlite3.connect(db)
    try:
        names = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
                " AND name NOT LIKE 'search_texts_fts%' AND name NOT LIKE 'sqlite_%'"
            )
        }
    finally:
        conn.close()
    assert not uncounted.GROWING & uncounted.FLAT
    assert names == uncounted.GROWING | uncounted.FLAT, "classify each new table or view"


def test_a_small_database_counts_and_facets_every_page(db):
    ds = make_datasette(db)
    data = get(ds, f"/{DB}/lineage.json?cohort_id=demo").json()
    members = query(db, "SELECT count(*) AS n FROM lineage WHERE cohort_id = 'demo'")[0]["n"]
    assert data["filtered_table_rows_count"] == members
    assert set(data["facet_results"]) == LINEAGE_FACETS
    assert "daydream-uncounted" not in get(ds, f"/{DB}/lineage?cohort_id=demo").text


def test_a_large_database_shows_the_rows_of_a_growing_view_without_count_or_facets(
    db, generations
):
    ds = make_datasette(db, count_up_to=generations - 1)
    path = f"/{DB}/lineage.json?cohort_id=demo&_shape=objects"
    data = get(ds, path).json()
    assert data["filtered_table_rows_count"] is None
    assert data["facet_results"] == {}
    counted = get(ds, path + "&_count=1").json()
    assert counted["filtered_table_rows_count"] == len(counted["rows"]) > 0
    assert set(counted["facet_results"]) == LINEAGE_FACETS
    assert data["rows"] == counted["rows"]


ROWS_HEADING = re.compile(r"<h3>\s*[\d,]+ rows?\b")  # Datasette's count above the filters


def test_the_notice_says_why_and_links_the_counted_page(db, generations):
    ds = make_datasette(db, count_up_to=generations - 1)
    page = get(ds, f"/{DB}/failures?cohort_id=demo&_sort=stage").text
    assert f"This database holds {generations:,} generations" in page
    assert '"href": "/daydream/failures?cohort_id=demo&_sort=stage&_count=1"' in page
    assert not ROWS_HEADING.search(page)
    # the link counts, and says nothing more
    counted = get(ds, f"/{DB}/failures?cohort_id=demo&_sort=stage&_count=1").text
    assert "daydream-uncounted" not in counted
    assert ROWS_HEADING.search(counted)


def test_the_next_page_of_an_uncounted_page_says_so_too(db, generations):
    """Datasette carries _nocount and _nofacet on in its next-page, sort and filter
    links: those pages are uncounted and say so, with the link that counts."""
    ds = make_datasette(db, count_up_to=generations - 1)
    first = get(ds, f"/{DB}/lineage.json?cohort_id=demo&_size=5").json()
    assert first["next_url"] and "_nocount=1" in first["next_url"]
    path = first["next_url"].split("://", 1)[-1].split("/", 1)[1].replace(".json", "", 1)
    page = get(ds, "/" + path).text
    assert f"This database holds {generations:,} generations" in page
    assert "_count=1" in page.split("daydream-uncounted")[1]
    assert not ROWS_HEADING.search(page)


def test_a_request_that_asks_for_facets_or_counts_is_served_as_asked(db, generations):
    ds = make_datasette(db, count_up_to=generations - 1)
    faceted = get(ds, f"/{DB}/generation_texts.json?_facet=stage").json()
    assert "stage" in faceted["facet_results"]
    assert faceted["filtered_table_rows_count"] == query(
        db, "SELECT count(*) AS n FROM generation_texts"
    )[0]["n"]
    plain = get(ds, f"/{DB}/generation_texts.json?_nocount=1").json()
    assert plain["filtered_table_rows_count"] is None
    assert "stage" in plain["facet_results"]  # a declared facet: only _nocount was asked


def test_flat_tables_and_other_pages_are_counted_whatever_the_size(db):
    ds = make_datasette(db, count_up_to=0)
    progress = get(ds, f"/{DB}/cohort_progress.json").json()
    assert progress["filtered_table_rows_count"] == len(
        query(db, "SELECT * FROM cohort_progress")
    )
    assert get(ds, f"/{DB}/events.json").json()["filtered_table_rows_count"] is None
    assert get(ds, f"/{DB}/cohort_failures.json?cohort=demo").status_code == 200


@pytest.mark.parametrize(
    "path, page",
    [
        ("/daydream/lineage", ("daydream", "lineage")),
        ("/daydream/lineage.json", ("daydream", "lineage")),
        ("/prefix/daydream/lineage", ("daydream", "lineage")),
        ("/daydream/lineage.csv", None),
        ("/daydream/-/pivot", None),
        ("/daydream", None),
        ("/-/versions.json", None),
        ("/daydream/events/1", None),
    ],
)
def test_page_of_reads_a_table_page_from_its_path(path, page):
    base = "/prefix/" if path.startswith("/prefix/") else "/"
    assert uncounted.page_of(path, base) == page


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium")
def test_headless_chromium_shows_the_notice_above_the_rows(db, generations, tmp_path):
    with served(db, "--count-up-to", str(generations - 1)) as base:
        dom = rendered(f"{base}/{DB}/lineage?cohort_id=demo", tmp_path / "profile")
    notice = dom.split('class="daydream-uncounted"')[1].split("</p>")[0]
    assert f"holds {generations:,} generations" in notice
    assert "Count them and show facets" in notice
    assert dom.index("daydream-uncounted") < dom.index('class="rows-and-columns"')
