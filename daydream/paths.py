"""Where the project's own files are: ``migrations/`` and ``specs/``, inside a wheel or
at the repository root.
"""

from __future__ import annotations

from pathlib import Path

from daydream.errors import StoreError


def project_dir(name: str) -> Path:
    """A project directory (``migrations``, ``specs``): inside a wheel, or the repo root."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise StoreError(f"{name}/ directory not found next to {here} (reinstall: pip install .)")
