"""Starting a fresh Python process that runs a daydream module (the workers of ``daydream
run``, the planner's deriving process), never a fork of a process holding SQLite.

``python -c`` puts the working directory first on ``sys.path`` (as ``''``): a
``daydream/`` folder (or a ``click/``, an ``httpx.py``) there would replace what the
parent imported, in the child only. The child drops that entry, so it imports what the
parent imported; if ``daydream`` would then come from another directory than the parent's
copy (it was imported from the working directory, or another copy is on the path first),
the parent's directory goes first.
"""

from __future__ import annotations

import os
import sys

_LAUNCH = """\
import importlib, importlib.util, os, sys
root, entry = sys.argv.pop(1), sys.argv.pop(1)
if sys.path and sys.path[0] == "":
    del sys.path[0]
spec = importlib.util.find_spec("daydream")
try:
    same = spec is not None and os.path.samefile(
        os.path.dirname(os.path.dirname(spec.origin)), root)
except (OSError, TypeError):
    same = False
if not same:
    sys.path.insert(0, root)
importlib.import_module(entry).main()
"""


def python_command(entry: str, *args: str) -> list[str]:
    """Arguments that run ``entry.main()`` (a daydream module) in a fresh interpreter, with
    ``args`` as its ``sys.argv[1:]``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [sys.executable, "-c", _LAUNCH, root, entry, *args]
