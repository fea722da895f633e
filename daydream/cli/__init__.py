"""The ``daydream`` command line: parse options, call one library function, print.

Results go to stdout (human text, or JSON with ``--json``); progress and logs to stderr.
Every expected failure is a ``DaydreamError``, printed as one ``Error: ...`` line, exit 1.
The group and shared options are in ``base``; the commands in ``core`` (database, catalog,
specs, planning), ``running`` (workers and cohorts), ``results`` (reports, comparisons, labels, legacy
import) and ``reading`` (search, show, browse), each registering itself on import.
"""

from __future__ import annotations

from daydream.cli import core, reading, results, running  # noqa: F401 - importing registers the commands
from daydream.cli.base import cli


def main() -> None:  # pragma: no cover - console entry
    cli()


__all__ = ["cli", "main"]
