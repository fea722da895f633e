"""The entry point of the worker processes that ``daydream run`` starts.

``command(ARGS)`` is ``daydream worker ARGS`` in a fresh interpreter that imports what
``daydream run`` imported (``launch.python_command``: a ``daydream/`` folder in the
directory a run is started from must not replace the installed package in the workers),
then an exit that skips the interpreter's teardown. By then the worker has written or released every lease
and closed its database connection and HTTP connections, and its output is flushed; what
the teardown would add is clearing the modules (pydantic, httpx, jinja2, click...), about
35 ms after every run. An error that is not a clean exit leaves the usual way.
"""

from __future__ import annotations

import os
import sys

from .launch import python_command


def command(*args: str) -> list[str]:
    """The argument list that starts a worker process running ``daydream worker ARGS``."""
    return python_command("daydream.workerproc", *args)


def main() -> None:
    from .cli import cli

    try:
        cli(args=["worker", *sys.argv[1:]], prog_name="daydream")
    except SystemExit as exc:
        if not isinstance(exc.code, int | None):
            raise  # a message to print: the interpreter does that
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.code or 0)


if __name__ == "__main__":
    main()
