"""Starting the worker processes of ``daydream run``, each with its ``WorkerConfig``.

``start(config, fork=...)`` runs one worker in a new process: a fork of this one where the
caller found that safe with ``launch.fork_blocker`` (a few milliseconds: everything is
imported already; the child gets the config object), else a fresh interpreter that
imports what ``daydream run`` imported (``launch.python_command``: a ``daydream/`` folder
in the directory a run is started from must not replace the installed package in the
workers) and reads the config's JSON from its argument. Either way the worker ends with an
exit that skips the interpreter's teardown: by then it has written or released every
lease and closed its database connection and HTTP connections, and its output is
flushed; what the teardown would add is clearing the modules (pydantic, httpx, jinja2...),
about 35 ms after every run. An error that is not a clean exit leaves the usual way.
"""

from __future__ import annotations

import os
import subprocess
import sys

from daydream.errors import DaydreamError
from daydream.launch import Forked, python_command
from daydream.vocabulary import EXIT_CODES
from daydream.worker.config import WorkerConfig
from daydream.worker.process import run_worker


def start(config: WorkerConfig, *, fork: bool) -> subprocess.Popen | Forked:
    """Start a worker with ``config`` in its own session: forked if ``fork`` (the caller
    checked ``launch.fork_blocker``), else, or if the fork fails, a fresh interpreter."""
    if fork:
        try:
            return Forked(lambda: run(config))
        except OSError:  # no memory or process slot for a fork: a fresh interpreter may fit
            pass
    return subprocess.Popen(command(config), start_new_session=True)


def command(config: WorkerConfig) -> list[str]:
    """The argument list that starts a fresh interpreter running a worker with ``config``."""
    return python_command("daydream.runner.workers", config.to_json())


def run(config: WorkerConfig) -> int:
    """A worker process's work: run the worker to the end, say how it went on stderr (as
    ``daydream worker`` does) unless it found nothing to do; returns the exit code."""

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        stats = run_worker(config, log=log)
    except DaydreamError as exc:
        log(f"Error: {exc}")
        return 1
    except KeyboardInterrupt:  # before the worker's own handlers were installed
        log("Aborted!")
        return 1
    if stats.claimed or stats.recorded or stats.stale or stats.released:  # idle: silent
        # On a terminal the runner redraws its progress line without ending it: clear it
        # first, so the summary stands on its own line (the next redraw starts afresh).
        log(("\r\033[K" if sys.stderr.isatty() else "") + stats.line(config.name))
    # Stopped with work it cannot run (a stopped pool, an outage, the budget): the runner
    # says why once, for the whole run, and does not restart it.
    return EXIT_CODES[stats.stopped] if stats.stopped else 0


def main() -> None:
    """A fresh interpreter's entry point: the worker's config, as JSON, in ``sys.argv[1]``."""
    code = run(WorkerConfig.from_json(sys.argv[1]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
