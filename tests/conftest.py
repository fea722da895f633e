"""The fixtures several test modules plan their cohorts with.

Test modules share set-ups through these fixtures and through the helper modules
(``scenario``, ``example_catalog``, ``upstream``, ``fakeapi``, ``invariants``), never by
importing another test module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from daydream.catalog.load import load_catalog
from daydream.catalog.recording import import_catalog
from daydream.db.connection import connect
from tests.browsing import build_browse_db
from tests.example_catalog import EXAMPLE
from tests.scenario import cohort, offline_model


@pytest.fixture
def catalog_db(tmp_path: Path):
    """A database (``plan.db``) with the example catalog imported: (path, connection)."""
    path = tmp_path / "plan.db"
    conn = connect(path)
    import_catalog(conn, load_catalog(EXAMPLE))
    yield path, conn
    conn.close()


@pytest.fixture
def offline_cohort(tmp_path: Path) -> Callable[..., Path]:
    """Plans cohort ``k`` (draft -> copy essay -> one judge, all by the offline model
    ``m1``, in pool ``pool`` if given) and returns its database:
    ``offline_cohort(combos=2, pool=None, root=tmp_path)``. The catalog is in
    ``root/catalog``, the spec in ``root/spec.yaml``."""

    def plan(combos: int = 2, pool: str | None = None, root: Path | None = None) -> Path:
        entry = offline_model("m1", pool=pool) if pool else offline_model("m1")
        return cohort(root or tmp_path, [entry], combos=combos)

    return plan


@pytest.fixture(scope="module")
def browse_db(tmp_path_factory) -> Path:
    """The demo cohort run offline plus a cohort "extra" whose draft failed (its essay and
    evaluation blocked), in ``daydream.db`` (Datasette names it "daydream"); one per test
    module (``tests/browsing.py``)."""
    return build_browse_db(tmp_path_factory.mktemp("browse") / "daydream.db")
