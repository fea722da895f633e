"""A worker's settings: ``WorkerConfig``, one object that travels whole from the command
line to the worker (a forked worker gets the object, a fresh interpreter its JSON).

A new worker setting is a field here and, if users set it, an option in the command
line's shared worker options (``cli/base.py``); nothing else passes it on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_LEASE_S = 120.0
DEFAULT_MAX_ATTEMPTS = 3


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

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"{socket.gethostname()}:{os.getpid()}"

    def to_json(self) -> str:
        """The settings as JSON (``from_json`` gives an equal config back)."""
        return json.dumps({**dataclasses.asdict(self), "db_path": str(self.db_path)})

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        data: dict[str, Any] = json.loads(text)
        return cls(**{**data, "db_path": Path(data["db_path"]), "pools": tuple(data["pools"])})
