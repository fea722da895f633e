"""Shared test set-up: where the upstream pipeline's data lives (../shared beside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
for _candidate in (_REPO.parent / "shared" / "upstream-data", Path("/work/shared/upstream-data")):
    if _candidate.is_dir():
        os.environ.setdefault("DAYDREAM_UPSTREAM_DATA", str(_candidate))
        break

UPSTREAM_DATA = Path(
    os.environ.get("DAYDREAM_UPSTREAM_DATA", _REPO.parent / "shared" / "upstream-data")
)
