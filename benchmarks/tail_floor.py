"""The zero-overhead floor of the model-bound benchmark with rate limiting.

With a share of calls answered 429 + Retry-After, a run cannot end before its unluckiest
late task has waited out every Retry-After it was given: a task first tried in the last
second of the run is throttled again on each retry with the same probability, and each
throttle costs the full Retry-After. This script simulates the benchmark's cohort (per
combination: 2 drafts, 2 essays, 8 evaluations; draft -> essay -> evaluation) on a pool of
``--limit`` slots with no overhead at all: a call takes exactly ``--latency`` (a 429 takes
``--throttle-ms``), a slot is reused the instant a call ends, a throttled task is ready
again after ``Retry-After`` plus the worker's jitter (up to a hundredth of it) and is claimed
the moment it is. Tasks are claimed in the worker's order (earliest stage first, then
oldest). It prints wall / ideal for several seeds: the best any implementation honouring
Retry-After can do on average, which is the baseline for benchmarks/run.py's 429 case.
``--order plan`` claims in plan order instead (each combination's draft, essay and
evaluations together), for comparison.

    python benchmarks/tail_floor.py
    python benchmarks/tail_floor.py --rate-429 0.2 --seeds 20
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics

STAGE_ORDER = {"draft": 0, "essay": 1, "evaluation": 2}


def cohort(combos: int) -> tuple[list[tuple], dict[tuple, list[tuple]]]:
    """Tasks as (stage, n) in plan order, and each task's children."""
    order: list[tuple] = []
    children: dict[tuple, list[tuple]] = {}
    for _ in range(combos * 2):
        draft = ("draft", len(order))
        order.append(draft)
        essay = ("essay", len(order))
        order.append(essay)
        children[draft] = [essay]
        children[essay] = []
        for _ in range(4):
            evaluation = ("evaluation", len(order))
            order.append(evaluation)
            children[essay].append(evaluation)
            children[evaluation] = []
    return order, children


def simulate(
    *,
    combos: int,
    limit: int,
    latency: float,
    rate_429: float,
    retry_after: float,
    throttle_s: float,
    seed: int,
    by_stage: bool = True,
) -> float:
    # Which calls get a 429 is drawn exactly as benchmarks/loopback_api.py --seed draws it
    # (one draw per request, in order), so a seed here is that server seed; the jitter
    # has a generator of its own.
    decide = random.Random(seed)
    jitter = random.Random(f"jitter {seed}")
    order, children = cohort(combos)
    key = {task: (STAGE_ORDER[task[0]] if by_stage else 0, task[1]) for task in order}
    ready = [(key[t], t) for t in order if t[0] == "draft"]
    heapq.heapify(ready)
    backoff: list[tuple[float, tuple]] = []  # (due, task)
    calls: list[tuple[float, tuple, bool]] = []  # (ends, task, ok)
    now, in_flight, done = 0.0, 0, 0
    spread = max(0.005, retry_after / 100)
    while done < len(order):
        while backoff and backoff[0][0] <= now:
            _, task = heapq.heappop(backoff)
            heapq.heappush(ready, (key[task], task))
        while in_flight < limit and ready:
            _, task = heapq.heappop(ready)
            in_flight += 1
            ok = decide.random() >= rate_429
            heapq.heappush(calls, (now + (latency if ok else throttle_s), task, ok))
        now = min(calls[0][0] if calls else float("inf"), backoff[0][0] if backoff else float("inf"))
        while calls and calls[0][0] <= now:
            _, task, ok = heapq.heappop(calls)
            in_flight -= 1
            if ok:
                done += 1
                for child in children[task]:
                    heapq.heappush(ready, (key[child], child))
            else:
                heapq.heappush(backoff, (now + retry_after + jitter.uniform(0, spread), task))
    return now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=12_000)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rate-429", type=float, default=0.2)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--throttle-ms", type=float, default=1.0, help="a 429's round trip")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--order",
        choices=["stage", "plan"],
        default="stage",
        help="claim order: earliest stage first (the worker's), or plan order (per combo)",
    )
    args = parser.parse_args()
    combos = max(1, args.generations // 12)
    n = combos * 12
    ideal = n * args.latency / args.limit
    ratios = []
    for seed in range(args.seeds):
        wall = simulate(
            combos=combos,
            limit=args.limit,
            latency=args.latency,
            rate_429=args.rate_429,
            retry_after=args.retry_after,
            throttle_s=args.throttle_ms / 1000,
            seed=seed,
            by_stage=args.order == "stage",
        )
        ratios.append(wall / ideal)
    print("per server seed: " + ", ".join(f"{i}: {r:.2f}" for i, r in enumerate(ratios)))
    print(
        f"zero-overhead floor, {n:,} generations, {args.rate_429:.0%} 429 + Retry-After"
        f" {args.retry_after:g}s, limit {args.limit}, {args.latency * 1000:g} ms,"
        f" {args.order} order:"
        f" wall / ideal mean {statistics.mean(ratios):.2f}, min {min(ratios):.2f},"
        f" max {max(ratios):.2f} over {args.seeds} seeds (ideal {ideal:.2f}s)"
    )


if __name__ == "__main__":
    main()
