"""The code passes its linter (ruff) and its type checker (mypy), as configured in
pyproject.toml. Both are in the test extras; without them these tests are skipped."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(module: str) -> None:
    pytest.importorskip(module, reason=f"{module} is not installed (pip install '.[test]')")


def test_ruff_finds_nothing():
    _tool("ruff")
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    done = subprocess.run(
        [ruff, "check", "daydream", "tests", "benchmarks"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing(tmp_path):
    _tool("mypy")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_sqlite_uri_is_built_by_hand():
    """A path pasted into 'file:...?mode=ro' breaks on '#', '?' and '%' (SQLite opens, and
    may create, another file): every read-only URI goes through db.files.readonly_uri."""
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted((REPO / "daydream").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if ('"file:' in line or "'file:" in line) and not line.lstrip().startswith("#")
    ]
    assert offenders == [], offenders
