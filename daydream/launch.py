"""Starting a fresh Python process that runs a daydream module (the workers of ``daydream
run``, the planner's deriving process), never a fork of a process holding SQLite.

``python -c`` puts the working directory first on ``sys.path``: a ``daydream/`` folder (or
a ``click/``, an ``httpx.py``) there would replace what the parent imported, in the child
only. The child drops that entry, so it imports what the parent imported; if this copy of
daydream is not otherwise on the path (it was imported from the working directory), its
directory takes the entry's place, as it did in the parent.
"""

from __future__ import annotations

import sys
from pathlib import Path

_LAUNCH = (
    "import sys, importlib; root, entry = sys.argv.pop(1), sys.argv.pop(1);"
    " sys.path[0:1] = [] if root in sys.path[1:] else [root];"
    " importlib.import_module(entry).main()"
)


def python_command(entry: str, *args: str) -> list[str]:
    """Arguments that run ``entry.main()`` (a daydream module) in a fresh interpreter, with
    ``args`` as its ``sys.argv[1:]``."""
    root = str(Path(__file__).resolve().parent.parent)
    return [sys.executable, "-c", _LAUNCH, root, entry, *args]
