"""Long soak (reliability T18): hours of moderate load, periodic chaos and checkpoints.

Three workers of two calls each run against ``benchmarks/loopback_api.py`` (500 ms, 5% of
calls answered 429), about 15 generations a second by default. A
planner keeps the queue fed: whenever fewer than ``--backlog`` generations are left, it
plans another cohort (new replicates, so new generations) into the same database. A chaos
loop SIGKILLs a random worker every U(``--kill-every``) seconds and starts it again (T1's
rate divided by ten by default); worker ``w0`` is never killed, so its memory can be
watched over the whole run. ``daydream db checkpoint`` runs every ``--checkpoint-every``
seconds. Every ``--sample-every`` seconds the soak records the database and WAL sizes, the
control worker's RSS and the counts.

At the end it stops planning, lets the workers drain the queue, stops them with SIGTERM
and checks: I1-I7 (``tests/invariants.py``), every generation done (kills and 429s are
retried), no ``database is locked`` in any worker's log, the WAL (looked at every 0.2 s)
below SQLite's ``journal_size_limit`` (64 MB), the control worker's
RSS not growing over the second half of the run (a least-squares slope of at most
``--rss-slope`` MB per hour, or under 5 MB of total growth), and the database's bytes
per event not growing from the middle of the run to its end. It prints a summary and
exits 0 when every check passes, 1 otherwise.

    python -m tests.soak --minutes 1440 --seed 7     # the reference's 24 h (nightly)
    python -m tests.soak --minutes 30                # a shorter look

Run it from the repository root; ``--dir`` keeps the database and the logs.
"""

from __future__ import annotations

import argparse
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daydream.db.files import wal_bytes
from tests.invariants import check_invariants
from tests.scenario import daydream_cmd, model, plan, scalar, write_catalog, write_spec

ROOT = Path(__file__).resolve().parent.parent
WAL_LIMIT = 64 * 1024 * 1024  # store.WAL_KEEP_BYTES, SQLite's journal_size_limit
COMBOS = 10
JUDGES = ["m1", "m2"]


@dataclass
class Sample:
    at: float  # seconds since the start
    done: int
    events: int
    db_bytes: int
    wal_bytes: int
    rss_mb: float | None  # the control worker's resident memory


@dataclass
class Soak:
    args: argparse.Namespace
    directory: Path
    rng: random.Random
    db: Path = field(init=False)
    base_url: str = ""
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    kills: int = 0
    cohorts: int = 0
    checkpoints: dict[str, int] = field(default_factory=lambda: {"done": 0, "blocked": 0})
    started: float = 0.0
    peak_wal: int = 0  # the WAL's largest size, looked at every 0.2 s

    def __post_init__(self) -> None:
        self.db = self.directory / "soak.db"

    # -- parts ----------------------------------------------------------------------------

    def plan_next(self) -> None:
        """Plan cohort ``soak-N``: every combo x new draft replicates -> copy -> judges."""
        first = self.cohorts * self.args.replicates + 1
        axes: dict[str, Any] = {
            "combo_id": [f"c{i}" for i in range(1, COMBOS + 1)],
            "draft_template": ["notes"],
            "draft_llm": ["m1"],
            "draft_replicate": list(range(first, first + self.args.replicates)),
            "essay_template": ["copy"],
            "evaluation_template": ["judge"],
            "evaluation_llm": JUDGES,
        }
        spec = write_spec(self.directory / "spec.yaml", axes)
        plan(self.db, self.directory / "catalog", spec, cohort=f"soak-{self.cohorts}")
        self.cohorts += 1

    def left(self) -> int:
        return scalar(
            self.db,
            "SELECT count(*) FROM generations WHERE status IN ('ready', 'running', 'waiting')",
        )

    def start_worker(self, name: str) -> None:
        log = open(self.directory / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        cmd = daydream_cmd(
            "worker", "--db", str(self.db), "--name", name, "--forever",
            "--concurrency", str(self.args.concurrency), "--lease", "5",
            "--max-attempts", "10", "--base-url", f"vllm={self.base_url}",
        )  # fmt: skip
        try:
            self.workers[name] = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=ROOT)
        finally:
            log.close()

    def kill_one(self) -> None:
        name = self.rng.choice([n for n in self.workers if n != "w0"])
        self.workers[name].send_signal(signal.SIGKILL)
        self.workers[name].wait(30)
        self.kills += 1
        self.start_worker(name)

    def checkpoint(self) -> None:
        done = subprocess.run(
            daydream_cmd("db", "checkpoint", "--db", str(self.db)),
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        self.checkpoints["done" if done.returncode == 0 else "blocked"] += 1

    def sample(self) -> None:
        self.samples.append(
            Sample(
                at=time.monotonic() - self.started,
                done=scalar(self.db, "SELECT count(*) FROM generations WHERE status = 'done'"),
                events=scalar(self.db, "SELECT max(id) FROM events"),
                db_bytes=self.db.stat().st_size,
                wal_bytes=wal_bytes(self.db),
                rss_mb=_rss_mb(self.workers["w0"].pid),
            )
        )
        last = self.samples[-1]
        print(
            f"[{last.at:7.0f}s] done {last.done:,}, events {last.events:,},"
            f" db {last.db_bytes / 1e6:.1f} MB, wal {last.wal_bytes / 1e6:.1f} MB,"
            f" w0 rss {last.rss_mb or 0:.1f} MB, kills {self.kills}, cohorts {self.cohorts}",
            flush=True,
        )

    # -- the run --------------------------------------------------------------------------

    def run(self) -> bool:
        args = self.args
        write_catalog(
            self.directory / "catalog", models=[model("m1"), model("m2")], combos=COMBOS
        )
        self.plan_next()
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "loopback_api.py"),
             "--latency", str(args.latency), "--rate-429", str(args.rate_429),
             "--retry-after", "1", "--seed", str(args.seed)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            if not select.select([server.stdout], [], [], 30)[0]:
                raise RuntimeError("benchmarks/loopback_api.py printed no address in 30 s")
            self.base_url = server.stdout.readline().strip()
            self.started = time.monotonic()
            for i in range(args.workers):
                self.start_worker(f"w{i}")
            self.load(args.minutes * 60)
            drained = self.drain()
        finally:  # also on SIGTERM (see main): no worker or server outlives the soak
            children = [*self.workers.values(), server]
            for proc in children:
                if proc.poll() is None:
                    proc.kill()
            for proc in children:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    pass
        return self.verdict(drained)

    def load(self, seconds: float) -> None:
        args, now = self.args, time.monotonic()
        next_kill = now + self.rng.uniform(*args.kill_every)
        next_checkpoint = now + args.checkpoint_every
        next_sample = now
        while (now := time.monotonic()) - self.started < seconds:
            if self.left() < args.backlog:
                self.plan_next()
            if args.workers > 1 and now >= next_kill:
                self.kill_one()
                next_kill = now + self.rng.uniform(*args.kill_every)
            if now >= next_checkpoint:
                self.checkpoint()
                next_checkpoint = now + args.checkpoint_every
            if now >= next_sample:
                self.sample()
                next_sample = now + args.sample_every
            self.peak_wal = max(self.peak_wal, wal_bytes(self.db))
            time.sleep(0.2)

    def drain(self) -> bool:
        """Let the workers finish what is planned, then stop them cleanly."""
        deadline = time.monotonic() + self.args.drain_timeout
        while self.left() and time.monotonic() < deadline:
            time.sleep(0.5)
        self.sample()
        for proc in self.workers.values():
            proc.send_signal(signal.SIGTERM)
        clean = True
        for proc in self.workers.values():
            try:
                clean = proc.wait(60) == 0 and clean
            except subprocess.TimeoutExpired:
                clean = False
        return clean and not self.left()

    # -- checks ---------------------------------------------------------------------------

    def verdict(self, drained: bool) -> bool:
        checks: list[tuple[str, bool, str]] = [("drained, workers stopped cleanly", drained, "")]
        try:
            counts = check_invariants(self.db, drained=True)
            checks.append(("I1-I7", True, ""))
            # Kills and 429s are all retried (10 attempts): a failure here is a bug
            done, planned = counts["done"], counts["generations"]
            checks.append(("every generation done", done == planned, f"{done:,} of {planned:,}"))
        except AssertionError as exc:
            checks.append(("I1-I7", False, str(exc)))
        locked = [
            log.name
            for log in sorted(self.directory.glob("w*.log"))
            if "database is locked" in log.read_text(errors="replace")
        ]
        checks.append(("no 'database is locked' (BUSY leaks)", not locked, ", ".join(locked)))
        checks += growth_checks(self.samples, rss_slope=self.args.rss_slope, peak_wal=self.peak_wal)
        print(
            f"soak: {self.samples[-1].at / 60:.1f} min, seed {self.args.seed},"
            f" {self.kills} kills, {self.cohorts} cohorts,"
            f" {self.checkpoints['done']} checkpoints ({self.checkpoints['blocked']} blocked)"
        )
        for name, ok, detail in checks:
            print(f"  {'PASS' if ok else 'FAIL'}  {name}" + (f": {detail}" if detail else ""))
        return all(ok for _, ok, _ in checks)


def growth_checks(
    samples: list[Sample], *, rss_slope: float, peak_wal: int = 0
) -> list[tuple[str, bool, str]]:
    """Is what should stay bounded bounded? (name, passed, detail) per check. The WAL is
    cut back to exactly WAL_LIMIT after a reset: one seen at that size had grown past it."""
    checks = []
    peak_wal = max([peak_wal, *(s.wal_bytes for s in samples)])
    checks.append(("WAL bounded", peak_wal < WAL_LIMIT, f"peak {peak_wal / 1e6:.1f} MB"))
    half = [s for s in samples[len(samples) // 2 :] if s.rss_mb is not None]
    if len(half) >= 3:
        rss = [s.rss_mb or 0.0 for s in half]
        slope = _slope([s.at / 3600 for s in half], rss)  # MB per hour
        growth = rss[-1] - rss[0]
        checks.append(
            (
                "control worker RSS flat",
                slope <= rss_slope or growth < 5,
                f"{slope:+.1f} MB/h, {growth:+.1f} MB over the second half",
            )
        )
    middle, end = samples[len(samples) // 2], samples[-1]
    per_event = [s.db_bytes / max(1, s.events) for s in (middle, end)]
    checks.append(
        (
            "database bytes per event not growing",
            per_event[1] <= per_event[0] * 1.25,
            f"{per_event[0]:.0f} -> {per_event[1]:.0f}",
        )
    )
    return checks


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _slope(xs: list[float], ys: list[float]) -> float:
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread if spread else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to keep load on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="calls at once per worker")
    parser.add_argument("--latency", type=float, default=0.5, help="the API's latency, seconds")
    parser.add_argument("--rate-429", type=float, default=0.05)
    parser.add_argument("--replicates", type=int, default=4, help="draft replicates per cohort")
    parser.add_argument("--backlog", type=int, default=100, help="plan more below this")
    parser.add_argument("--kill-every", type=float, nargs=2, default=(5.0, 30.0))
    parser.add_argument("--checkpoint-every", type=float, default=60.0)
    parser.add_argument("--sample-every", type=float, default=10.0)
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--rss-slope", type=float, default=2.0, help="MB per hour allowed")
    parser.add_argument("--dir", type=Path, help="keep the database and logs here")
    args = parser.parse_args(argv)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="daydream-soak-"))
    directory.mkdir(parents=True, exist_ok=True)
    print(f"soak: seed {args.seed}, {args.minutes:g} min, in {directory}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the clean-up, then stop
    return 0 if Soak(args, directory, random.Random(args.seed)).run() else 1


if __name__ == "__main__":
    sys.exit(main())
