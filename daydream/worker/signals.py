"""SIGTERM and SIGINT while a worker's event loop runs: they ask the worker to stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop`` on SIGTERM or SIGINT while the block runs, then give both back to
    their previous handlers while the loop still runs. (asyncio closes its wakeup pipe
    before it removes its handlers, so a stop arriving in between, as when ``daydream
    run`` stops its idle workers, printed "Exception ignored ... signal wakeup fd" with a
    traceback.) Outside the main thread there are no signal handlers: nothing happens."""
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not main thread
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if loop.remove_signal_handler(sig) and handler is not None:
                signal.signal(sig, handler)
