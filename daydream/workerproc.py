"""Starting the worker processes of ``daydream run``.

``start(ARGS, fork=...)`` runs ``daydream worker ARGS`` in a new process: a fork of this
one where the caller found that safe with ``launch.fork_blocker`` (a few milliseconds:
everything is imported already), else a fresh interpreter (``command``) that imports what ``daydream run``
imported (``launch.python_command``: a ``daydream/`` folder in the directory a run is
started from must not replace the installed package in the workers). Either way the
worker ends with an exit that skips the interpreter's teardown: by then it has written or
released every lease and closed its database connection and HTTP connections, and its
output is flushed; what the teardown would add is clearing the modules (pydantic, httpx,
jinja2, click...), about 35 ms after every run. An error that is not a clean exit leaves
the usual way.
"""

from __future__ import annotations

import os
import subprocess
import sys

from daydream.launch import Forked, python_command


def command(*args: str) -> list[str]:
    """The argument list that starts a fresh interpreter running ``daydream worker ARGS``."""
    return python_command("daydream.workerproc", *args)


def start(args: list[str], *, fork: bool) -> subprocess.Popen | Forked:
    """Start ``daydream worker ARGS`` in its own session: forked if ``fork`` (the caller
    checked ``launch.fork_blocker``), else, or if the fork fails, a fresh interpreter."""
    if fork:
        try:
            return Forked(run, args)
        except OSError:  # no memory or process slot for a fork: a fresh interpreter may fit
            pass
    return subprocess.Popen(command(*args), start_new_session=True)


def run(args: list[str]) -> None:
    """The worker command; raises SystemExit with its exit code (click's standalone mode)."""
    from daydream.cli import cli

    cli(args=["worker", *args], prog_name="daydream")


def main() -> None:
    try:
        run(sys.argv[1:])
    except SystemExit as exc:
        if not isinstance(exc.code, int | None):
            raise  # a message to print: the interpreter does that
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.code or 0)


if __name__ == "__main__":
    main()
