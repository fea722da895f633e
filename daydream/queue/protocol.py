"""What passes between a worker and the queue: who claims (``Claimant``), what one exchange
records and asks for (``Exchange``), and what it gives back (``Exchanged``).

``queue.leases`` acts on these in one transaction; the worker fills them from what it
holds in memory. Nothing here touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from daydream import events as ev
from daydream.queue.budget import Budget
from daydream.queue.tasks import Outcome, Task


class Claimant(Protocol):
    """Who claims tasks (a ``WorkerConfig`` is one): its name in leases and events, how long
    its leases last, how many attempts a task gets, and which tasks it may take (one
    cohort's, some pools'; all when unset)."""

    name: str
    lease_s: float
    max_attempts: int
    cohort: str | None
    pools: tuple[str, ...]


@dataclass
class Exchange:
    """What a worker hands to one exchange (``exchange``): what to record and what to claim.

    ``outcomes``: calls that ended, to record. ``taken``: queued tasks that started calls in
    the slots of those outcomes (the slots pass to them in the same transaction). ``want``:
    new tasks to claim into slots; ``queue``: how many more to claim as queued leases (no
    slot; only in pools where the worker holds slots). ``held``: the worker's slots per
    pool, after this exchange's hand-overs; ``shedding``: those it is letting go after a
    limit cut. ``promote``: queued tasks to give a slot first, where a pool has room.
    ``queued`` and ``running``: leases to check are still held (the worker's other queued
    tasks; its calls in flight, now and then). ``health``: what the worker learnt of
    endpoints and pools (``endpoint.down``, ``endpoint.recovered``, ``pool.stopped``),
    recorded where it changes something. ``skip_models`` and ``skip_pools``: not to be
    claimed (models whose endpoints are all down, stopped pools). ``budget``: the run's
    cap on cost, if any (``queue.budget``)."""

    outcomes: list[Outcome] = field(default_factory=list)
    taken: list[Task] = field(default_factory=list)
    want: int = 0
    queue: int = 0
    held: dict[str, int] = field(default_factory=dict)
    shedding: dict[str, int] = field(default_factory=dict)
    promote: list[Task] = field(default_factory=list)
    queued: list[Task] = field(default_factory=list)
    running: list[Task] = field(default_factory=list)
    health: list[ev.Event] = field(default_factory=list)
    skip_models: tuple[str, ...] = ()
    skip_pools: tuple[str, ...] = ()
    budget: Budget | None = None


@dataclass
class Exchanged:
    recorded: int
    stale: int
    tasks: list[Task]  # promoted queued tasks first (the same objects), then new claims
    lost: set[str] = field(default_factory=set)  # queued/taken leases no longer held
    # pool -> slots this worker should give up as its calls end: the pool holds more slots
    # than its limit (the limit was cut); this worker's share of the excess.
    shed: dict[str, int] = field(default_factory=dict)
    # taken tasks refused a slot (none was freed for them and the pool had no room): the
    # worker stops their calls and gives their leases back.
    untaken: set[str] = field(default_factory=set)
    # endpoint -> since when it is down (UTC ISO-8601), and pool -> why it is stopped, as
    # the database says after this exchange (``queue.health``).
    down: dict[str, str] = field(default_factory=dict)
    stopped: dict[str, str] = field(default_factory=dict)
