"""A worker's settings: ``WorkerConfig``, one object that travels whole from the command
line to the worker (a forked worker gets the object, a fresh interpreter its JSON).

A new worker setting is a field here and, if users set it, an option in the command
line's shared worker options (``cli/base.py``); nothing else passes it on. Each numeric
setting has a range (``LIMITS``), checked when the config is built (a ``ConfigError``),
so a setting that would make no sense (``nan`` seconds, an infinite lease, a concurrency
beyond any machine) never reaches a worker; the command line offers the same ranges.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daydream.errors import ConfigError
from daydream.values import quote

DEFAULT_LEASE_S = 120.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_OUTAGE_LIMIT_S = 900.0

LIMITS: dict[str, tuple[float, float]] = {
    "concurrency": (1, 10_000),
    "max_attempts": (1, 100),
    "lease_s": (1, 86_400),
    "grace_s": (0, 3_600),
    "offline_latency_s": (0, 3_600),
    "timeout_s": (0.1, 86_400),
    "outage_limit_s": (0, 7 * 86_400),
    "max_cost_usd": (0, 1_000_000),
    "unpriced_per_mtok": (0, 1_000_000),
    "batch": (0, 10_000),
    "queue": (0, 100_000),
}
"""The range of each numeric setting (seconds for ``*_s``), inclusive."""


@dataclass
class WorkerConfig:
    db_path: Path
    name: str = ""  # in leases and events; default host:pid
    concurrency: int = 32  # model calls at once
    pools: tuple[str, ...] = ()  # only claim tasks of these pools (all: empty)
    cohort: str | None = None  # only claim tasks of this cohort (all: None)
    lease_s: float = DEFAULT_LEASE_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    exit_when_idle: bool = True
    grace_s: float = 10.0  # for calls in flight after a stop request
    provider_override: str | None = None  # "offline" for rehearsals
    offline_latency_s: float = 0.0
    offline_in_scale: bool = False  # offline judges answer within each rubric's scale
    base_urls: dict[str, str] = field(default_factory=dict)  # provider -> base URL
    timeout_s: float | None = None  # whole-call deadline per model call; None = provider's
    batch: int = 0  # tasks per claim; 0 = concurrency
    queue: int | None = None  # queued leases to start as calls end; None = adaptive
    seed: int | None = None
    # Build every provider the scope's calls use before the first claim (``daydream run``
    # does it once for all its workers and turns it off in theirs).
    check_providers: bool = True
    # How long an endpoint may stay down before the worker stops waiting for it (seconds).
    outage_limit_s: float = DEFAULT_OUTAGE_LIMIT_S
    # A cap on what the scope's calls may cost (USD; None: no budget), and how to count
    # calls of models without prices under it (USD per million tokens; None: refused).
    max_cost_usd: float | None = None
    unpriced_per_mtok: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"{socket.gethostname()}:{os.getpid()}"
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if value is not None and not _within(value, low, high, whole=name in _WHOLE):
                kind = "a whole number" if name in _WHOLE else "a number"
                raise ConfigError(
                    f"worker setting {name}: {quote(value)} is not {kind} from {low:g} to {high:g}"
                )

    def to_json(self) -> str:
        """The settings as JSON (``from_json`` gives an equal config back)."""
        return json.dumps({**dataclasses.asdict(self), "db_path": str(self.db_path)})

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        data: dict[str, Any] = json.loads(text)
        return cls(**{**data, "db_path": Path(data["db_path"]), "pools": tuple(data["pools"])})


_WHOLE = ("concurrency", "max_attempts", "batch", "queue")


def _within(value: Any, low: float, high: float, *, whole: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
        return False
    return low <= value <= high  # False for nan
