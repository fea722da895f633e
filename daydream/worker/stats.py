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

    def line(self, name: str) -> str:
        """How worker ``name`` did, in one line (printed when it exits)."""
        return (
            f"worker {name}: {self.ok} ok, {self.failed} failed, {self.throttled} throttled,"
            f" {self.stale} stale, {self.released} released"
        )

    def add(self, outcomes: list[Outcome], recorded: int, stale: int) -> None:
        """Count what one exchange recorded."""
        self.recorded += recorded
        self.stale += stale
        for outcome in outcomes:
            if outcome.ok:
                self.ok += 1
            elif outcome.throttled:
                self.throttled += 1
            else:
                self.failed += 1
