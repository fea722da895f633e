"""Where the upstream pipeline's data lives, for the tests that compare daydream with it:
``$DAYDREAM_UPSTREAM_DATA``, else ``shared/upstream-data`` beside the repository, else
``/work/shared/upstream-data``. Tests that need it are skipped where it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]
_PLACES = (_REPO.parent / "shared" / "upstream-data", Path("/work/shared/upstream-data"))

UPSTREAM_DATA = Path(
    os.environ.get("DAYDREAM_UPSTREAM_DATA")
    or next((place for place in _PLACES if place.is_dir()), _PLACES[0])
)
UPSTREAM_RAW = UPSTREAM_DATA / "1_raw"

needs_upstream = pytest.mark.skipif(
    not UPSTREAM_RAW.is_dir(),
    reason=f"upstream data not found at {UPSTREAM_RAW} (set DAYDREAM_UPSTREAM_DATA)",
)
