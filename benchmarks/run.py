"""Run benchmark: orchestration throughput and model-bound efficiency.

(a) Orchestration: a 10,000-generation cohort (draft -> essay -> evaluation) through
    claim -> render -> offline provider -> parse -> record, with 1, 2 and 4 worker
    processes; prints generations/s (the old Dagster pipeline manages about 2/s).
(b) Model-bound: the same pipeline against a loopback OpenAI-compatible server
    (benchmarks/loopback_api.py, its own process) with 50 ms latency and a pool limit of
    64 across all workers (2 workers at 32 calls each, as `daydream run --workers 2`
    runs by default); prints wall time / ideal, where ideal = N x latency / limit.
    Then with 20% of calls answered 429 + Retry-After, once per server seed (which calls
    get a 429 decides how long the run's tail is); prints the ratios and failures.

    python benchmarks/run.py            # full
    python benchmarks/run.py --quick    # smaller cohorts, for a fast look
"""

from __future__ import annotations

import argparse
import compileall
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import yaml

from daydream.catalog.load import load_catalog
from daydream.catalog.recording import import_catalog
from daydream.db.connection import connect
from daydream.plan.write import plan_cohort
from daydream.queue.cohorts import cohort_status
from daydream.queue.pools import set_pool_limit
from daydream.runner.run import run_cohort
from daydream.worker.config import WorkerConfig
from daydream.worker.process import check_providers

HERE = Path(__file__).resolve().parent


def write_catalog(directory: Path, *, provider: str, combos: int) -> None:
    """A synthetic catalog: concepts, `combos` pairs, 2 draft / 1 essay / 4 evaluation templates."""
    (directory / "templates" / "draft").mkdir(parents=True)
    (directory / "templates" / "essay").mkdir()
    (directory / "templates" / "evaluation").mkdir()
    n_concepts = 2
    while n_concepts * (n_concepts - 1) // 2 < combos:
        n_concepts += 1
    concepts = [
        {"id": f"c{i}", "name": f"Concept {i}", "sentence": f"Concept {i} in one sentence.",
         "paragraph": f"Concept {i} is described here at paragraph length, with a mechanism and an example."}
        for i in range(n_concepts)
    ]
    pairs = [(a, b) for a in range(n_concepts) for b in range(a + 1, n_concepts)][:combos]
    (directory / "concepts.yaml").write_text(yaml.safe_dump(concepts))
    (directory / "combos.yaml").write_text(
        yaml.safe_dump([{"id": f"k{i}", "concepts": [f"c{a}", f"c{b}"], "level": "paragraph"} for i, (a, b) in enumerate(pairs)])
    )
    draft = "Brainstorm links between these concepts.\n{% for c in concepts %}## {{ c.name }}\n{{ c.content }}\n{% endfor %}"
    essay = "Write a short essay from these notes.\n\n{{ links_block }}\n"
    judge = "Rate the essay below from 0 to 10.\n\n{{ response }}\n\nEnd with a final line: SCORE: X\n"
    for name in ("notes-a", "notes-b"):
        (directory / "templates" / "draft" / f"{name}.j2").write_text(draft)
    (directory / "templates" / "essay" / "essay.j2").write_text(essay)
    for name in ("j1", "j2", "j3", "j4"):
        (directory / "templates" / "evaluation" / f"{name}.j2").write_text(judge)
    templates = {
        "draft": [{"id": "notes-a", "name": "A", "description": "a", "parser": "identity"},
                  {"id": "notes-b", "name": "B", "description": "b", "parser": "identity"}],
        "essay": [{"id": "essay", "name": "E", "description": "e", "parser": "identity"}],
        "evaluation": [{"id": j, "name": j, "description": j, "parser": "score", "scale": [0, 10]} for j in ("j1", "j2", "j3", "j4")],
    }
    (directory / "templates.yaml").write_text(yaml.safe_dump(templates))
    models = [{"id": "m1", "provider": provider, "model": "bench-model", "name": "bench", "pool": "bench"}]
    (directory / "models.yaml").write_text(yaml.safe_dump(models))


def plan_database(path: Path, catalog_dir: Path, combos: int, *, judges: int) -> int:
    spec = path.parent / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "axes": {
                    "combo_id": [f"k{i}" for i in range(combos)],
                    "draft_template": ["notes-a", "notes-b"],
                    "draft_llm": ["m1"],
                    "essay_template": ["essay"],
                    "essay_llm": ["m1"],
                    "evaluation_template": ["j1", "j2", "j3", "j4"][:judges],
                    "evaluation_llm": ["m1"],
                }
            }
        )
    )
    conn = connect(path)
    import_catalog(conn, load_catalog(catalog_dir))
    report = plan_cohort(conn, spec, "bench")
    conn.close()
    return sum(c.new for c in report.stages.values())


def fresh_copy(template: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(template)
    dest = sqlite3.connect(target)
    source.backup(dest)
    source.close()
    dest.close()
    return target


def run_once(db: Path, workers: int, config: WorkerConfig) -> tuple[float, dict]:
    """``daydream run``'s work, timed: its provider check, then ``run_cohort``."""
    started = time.perf_counter()
    check_providers(config)
    summary = run_cohort(replace(config, check_providers=False), workers=workers)
    wall = time.perf_counter() - started
    return wall, summary.status.stages


def log_span(db: Path) -> float:
    """Seconds from the first attempt.started to the last generation.completed."""
    conn = sqlite3.connect(db)
    first, last = conn.execute(
        "SELECT min(CASE WHEN type = 'attempt.started' THEN recorded_at END),"
        " max(CASE WHEN type = 'generation.completed' THEN recorded_at END) FROM events"
    ).fetchone()
    conn.close()
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return (parse(last) - parse(first)).total_seconds()


def orchestration(tmp: Path, total: int) -> None:
    combos = max(1, total // 12)  # per combo: 2 drafts + 2 essays + 8 evaluations
    catalog = tmp / "catalog-offline"
    write_catalog(catalog, provider="offline", combos=combos)
    template = tmp / "offline-template.db"
    n = plan_database(template, catalog, combos, judges=4)
    print(f"(a) orchestration: {n:,} generations, offline provider (no latency)")
    print(f"    {'workers':>7} {'wall s':>8} {'gen/s':>8} {'steady s':>9} {'gen/s':>8}")
    for workers in (1, 2, 4):
        db = fresh_copy(template, tmp / f"orch-{workers}" / "db.db")
        config = WorkerConfig(db_path=db, cohort="bench", concurrency=64, provider_override="offline")
        wall, stages = run_once(db, workers, config)
        done = sum(s["done"] for s in stages.values())
        assert done == n, f"only {done} of {n} done: {stages}"
        steady = log_span(db)
        print(f"    {workers:>7} {wall:>8.2f} {n / wall:>8.0f} {steady:>9.2f} {n / steady:>8.0f}")
    print("    wall: the whole `daydream run`, worker processes' start included;")
    print("    steady: first claim to last result, read from the event log's timestamps")


def model_bound(tmp: Path, total: int, *, rate_429: float, workers: int = 2, seeds=(0,)) -> None:
    combos = max(1, total // 12)
    catalog = tmp / f"catalog-vllm-{rate_429}"
    write_catalog(catalog, provider="vllm", combos=combos)
    template = tmp / f"model-{rate_429}.db"
    n = plan_database(template, catalog, combos, judges=4)
    conn = connect(template)
    set_pool_limit(conn, "bench", 64)
    conn.close()
    ideal = n * 0.05 / 64
    label = f"{int(rate_429 * 100)}% 429" if rate_429 else "no faults"
    ratios = []
    for seed in seeds:
        server = subprocess.Popen(
            [sys.executable, str(HERE / "loopback_api.py"), "--latency", "0.05",
             "--rate-429", str(rate_429), "--retry-after", "1", "--seed", str(seed)],
            stdout=subprocess.PIPE,
            text=True,
        )
        served = {}
        try:
            base_url = server.stdout.readline().strip()
            db = fresh_copy(template, tmp / f"model-{rate_429}-{seed}" / "db.db")
            config = WorkerConfig(
                db_path=db,
                cohort="bench",
                concurrency=64 // workers,
                base_urls={"vllm": base_url},
                max_attempts=5,
            )
            wall, stages = run_once(db, workers, config)
            server.terminate()  # it prints what it served, then exits
            served = json.loads(server.communicate(timeout=30)[0].strip().splitlines()[-1])
        finally:
            server.kill()
            server.wait()
        failed = sum(s["failed"] + s["blocked"] for s in stages.values())
        conn = connect(db)
        throttles = conn.execute("SELECT count(*) FROM events WHERE type = 'attempt.throttled'").fetchone()[0]
        cuts = conn.execute("SELECT count(*) FROM events WHERE type = 'pool.limit_changed'").fetchone()[0]
        status = cohort_status(conn, "bench")
        conn.close()
        ratios.append(wall / ideal)
        print(
            f"(b) model-bound, {label}: {n:,} calls, 50 ms, pool limit 64,"
            f" {workers} workers x {64 // workers} calls,"
            f" server seed {seed}: wall {wall:.2f}s, ideal {ideal:.2f}s, ratio {wall / ideal:.2f};"
            f" failed {failed}, 429s {throttles}, pool limit changes {cuts - 1},"
            f" done {status.count('done'):,}; the server's replies left"
            f" {served.get('mean_latency_ms', float('nan')):.2f} ms after their request on average"
        )
    if len(ratios) > 1:
        print(
            f"    {label}: ratio mean {sum(ratios) / len(ratios):.2f}, min {min(ratios):.2f},"
            f" max {max(ratios):.2f} over {len(ratios)} server seeds"
            " (the zero-overhead floor: python benchmarks/tail_floor.py)"
        )


def compile_bytecode() -> None:
    """Compile daydream's modules up front, as an installed package has them (pip compiles
    on install): with bytecode writing off (PYTHONDONTWRITEBYTECODE) every worker process
    would compile them again at start, about 0.1 s that a user's install does not pay."""
    import daydream

    compileall.compile_dir(Path(daydream.__file__).parent, quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller cohorts")
    parser.add_argument("--generations", type=int, default=10_000)
    parser.add_argument("--model-generations", type=int, default=12_000)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument(
        "--seeds", type=int, default=3, help="runs of the 429 case, each with its own server seed"
    )
    args = parser.parse_args()
    total = 2_400 if args.quick else args.generations
    model_total = 2_400 if args.quick else args.model_generations
    compile_bytecode()
    tmp = Path(tempfile.mkdtemp(prefix="daydream-bench-"))
    try:
        orchestration(tmp, total)
        if not args.skip_model:
            model_bound(tmp, model_total, rate_429=0.0)
            model_bound(tmp, model_total, rate_429=0.2, seeds=range(args.seeds))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
