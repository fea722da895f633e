"""Writing a plan (``daydream.plan.write``): which cohort it plans into, what it reports,
and what it leaves of the connection it was given.

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
from tests.example_catalog import EXAMPLE


@pytest.fixture
def conn(tmp_path):
    """A database with the example catalog imported."""
    conn = connect(tmp_path / "plan.db")
    import_catalog(conn, load_catalog(EXAMPLE))
    yield conn
    conn.close()


def test_a_list_planned_without_a_cohort_id_asks_for_one(conn, tmp_path):
    listing = tmp_path / "top.csv"
    rows = [{"essay_id": "e_1", "evaluation_template": "novelty-rubric"}]
    with pytest.raises(PlanError) as caught:
        plan_cohort(conn, listing, rows=rows)
    assert str(caught.value) == f"list {listing}: give the new cohort's id with --cohort ID"
