"""Starting a process that runs a daydream module: the workers of ``daydream run`` (a fork
where that is safe, else a fresh interpreter) and the planner's deriving process (always a
fresh interpreter).

A fork of ``daydream run`` starts a worker in a few milliseconds instead of the 0.2 s a
fresh interpreter takes to import pydantic, httpx, jinja2 and the rest (``fork_blocker``
says when it is not safe: then ``start`` runs a fresh interpreter, as before). The child
is set up as a fresh interpreter would be (``_child``): its own session, default signal
handlers, ``sys.std*`` on the inherited file descriptors 0-2 (not on whatever the parent
had redirected them to), and it always leaves through ``os._exit`` (modules that
cache rows of a database, or read the environment at import, reset with
``os.register_at_fork``). Unlike a fresh interpreter it keeps the parent's other open
files until it exits, as ``multiprocessing``'s fork does (replacing them with /dev/null
in the child made the model-bound benchmark 2% slower, for reasons not found).

``python -c`` puts the working directory first on ``sys.path`` (as ``''``): a
``daydream/`` folder (or a ``click/``, an ``httpx.py``) there would replace what the
parent imported, in the child only. The child drops that entry, so it imports what the
parent imported; if ``daydream`` would then come from another directory than the parent's
copy (it was imported from the working directory, or another copy is on the path first),
the parent's directory goes first.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

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


def fork_blocker(db_path: str | Path) -> str | None:
    """Why a worker for ``db_path`` cannot be a fork of this process (None: it can).

    A fork copies SQLite's per-process record of the files it has open and locked, so no
    connection to the database may be open here (checked on the open file descriptors,
    whichever library opened them); only the forking thread survives in the child, so no
    other thread may run (one might hold a lock the child then waits on forever); and only
    Linux: macOS system libraries are not safe to use after a fork without exec.
    ``DAYDREAM_WORKER_START=spawn`` turns forking off."""
    if os.environ.get("DAYDREAM_WORKER_START") == "spawn":
        return "DAYDREAM_WORKER_START=spawn"
    if sys.platform != "linux":
        return f"workers are forked only on Linux (this is {sys.platform})"
    if threading.current_thread() is not threading.main_thread():
        return "not called from the main thread"
    if threading.active_count() > 1:
        return f"{threading.active_count() - 1} other thread(s) run in this process"
    if not os.path.isdir("/proc/self/fd"):
        return "cannot list this process's open files (/proc/self/fd)"
    if _has_open(db_path):
        return f"this process has {db_path} open"
    return None


def _has_open(db_path: str | Path) -> bool:
    """Does a file descriptor of this process point at the database or its WAL files?"""
    files = set()
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            found = os.stat(f"{db_path}{suffix}")
        except OSError:
            continue
        files.add((found.st_dev, found.st_ino))
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return True  # cannot tell: assume it is open (fork_blocker says so)
    for fd in descriptors:
        try:
            found = os.stat(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if (found.st_dev, found.st_ino) in files:
            return True
    return False


class Forked:
    """A forked child running ``target()`` (its return value, an int, is the exit code),
    with the parts of ``subprocess.Popen`` the runner uses (``pid``, ``poll``, ``wait``,
    ``send_signal``, ``returncode``)."""

    def __init__(self, target: Callable[[], object]) -> None:
        for stream in (sys.stdout, sys.stderr):  # or the child writes the parent's buffer too
            if stream is not None:
                stream.flush()
        self.returncode: int | None = None
        # A Ctrl-C meant for the parent must not run the parent's handler in the child
        # before it has its own session and handlers: signals wait until then.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            self.pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            raise
        if self.pid == 0:
            _child(target, blocked)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): as Popen, 0
                self.returncode = 0
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                self.returncode = 0
            else:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)


def _child(target: Callable[[], object], mask: set) -> None:
    """In the forked child: look like a fresh interpreter, run ``target()``, and leave
    through ``os._exit`` whatever happens (never back into the parent's stack)."""
    code = 1
    try:
        os.setsid()  # like start_new_session: a terminal's Ctrl-C reaches the runner only
        signal.set_wakeup_fd(-1)
        # As across exec: handlers back to the default, ignored signals stay ignored (nohup),
        # and Python's own KeyboardInterrupt handler for SIGINT.
        for signum in signal.valid_signals():
            try:
                handler = signal.getsignal(signum)
            except (OSError, ValueError):
                continue
            if callable(handler):
                signal.signal(signum, signal.SIG_DFL)
        if signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        sys.stdin = _stream(0, "r")
        sys.stdout = _stream(1, "w")
        sys.stderr = _stream(2, "w", errors="backslashreplace")
        result = target()
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - leaving anyway
                pass
        os._exit(code)


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _stream(fd: int, mode: str, errors: str = "strict"):
    """A text stream on an inherited descriptor (not closed with it), or None if closed."""
    try:
        return open(fd, mode, buffering=1 if mode == "w" else -1, closefd=False, errors=errors)
    except OSError:
        return None

