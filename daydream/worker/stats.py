"""What a worker did: tasks claimed, results recorded (or discarded as stale), leases
released, and its outcomes: ok, failed, throttled. Printed in one line when it exits.
"""

from __future__ import annotations

from dataclasses import dataclass

from daydream.queue.tasks import Outcome


@dataclass
class WorkerStats:
    claimed: int = 0
    recorded: int = 0
    stale: int = 0
    released: int = 0
    ok: int = 0
    failed: int = 0
    throttled: int = 0
    deferred: int = 0
    stopped: str | None = None  # why it ended with work left (``stop``)
    stop_message: str = ""

    def line(self, name: str) -> str:
        """How worker ``name`` did, in one line (printed when it exits)."""
        return (
            f"worker {name}: {self.ok} ok, {self.failed} failed, {self.throttled} throttled,"
            f" {self.stale} stale, {self.released} released"
            + (f", {self.deferred} deferred" if self.deferred else "")
            + (f"; stopped: {self.stop_message}" if self.stopped else "")
        )

    def add(self, outcomes: list[Outcome], recorded: int, stale: int) -> str | None:
        """Count what one exchange recorded; returns a line to log about it, if any."""
        self.recorded += recorded
        self.stale += stale
        for outcome in outcomes:
            if outcome.ok:
                self.ok += 1
            elif outcome.throttled:
                self.throttled += 1
            elif outcome.deferred:
                self.deferred += 1
            else:
                self.failed += 1
        if not stale:
            return None
        return (
            f"{stale} result(s) discarded: the lease was no longer held (the task was"
            " cancelled, or taken over by another worker after the lease expired)"
        )

    def stop(self, reason: str, message: str) -> None:
        """The worker ends with work left that it cannot run: ``reason`` (``pool_stopped``,
        ``outage``, ``budget``) and one line saying why."""
        self.stopped, self.stop_message = reason, message
