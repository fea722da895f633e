"""What the counters cost a worker: CPU seconds per generation of one offline worker.

Plans a cohort (draft -> essay -> 4 rubrics; ``--rubric-of 4``: each rubric judged by 2
models x 2 replicates, so a rubric row of ``essay_rubric_scores`` takes 4 scores), runs it
with one worker process on the offline provider, and prints the worker's user + system
CPU time (``getrusage(RUSAGE_CHILDREN)`` around ``run_cohort``) per generation. Run it from
the repository root of each version to compare, taking turns (the machine's load moves
absolute figures; only figures of the same window compare). ``--drop T1,T2`` drops those
triggers from the database before the run (the floor of a version that counts by
triggers: the counters' cost is the difference).

    python benchmarks/counting.py                    # 6,000 generations
    python benchmarks/counting.py --rubric-of 4      # 10,800: rubric rows of 4 scores
    python benchmarks/counting.py --drop generations_counted,calls_counted
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import fresh_copy, run_once, write_catalog  # noqa: E402

from daydream.catalog.load import load_catalog  # noqa: E402
from daydream.catalog.recording import import_catalog  # noqa: E402
from daydream.db.connection import connect  # noqa: E402
from daydream.plan.write import plan_cohort  # noqa: E402
from daydream.worker.config import WorkerConfig  # noqa: E402


def planned(tmp: Path, generations: int, rubric_of: int) -> tuple[Path, int]:
    """A planned cohort of about ``generations`` in ``tmp``; (database, generations)."""
    judges = ["m1", "m2"] if rubric_of == 4 else ["m1"]
    replicates = [1, 2] if rubric_of == 4 else [1]
    per_combo = 2 * (2 + 4 * len(judges) * len(replicates))
    combos = generations // per_combo
    write_catalog(tmp / "cat", provider="offline", combos=combos)
    models = yaml.safe_load((tmp / "cat" / "models.yaml").read_text())
    models.append({**models[0], "id": "m2", "model": "bench-model-2"})
    (tmp / "cat" / "models.yaml").write_text(yaml.safe_dump(models))
    axes = {
        "combo_id": [f"k{i}" for i in range(combos)],
        "draft_template": ["notes-a", "notes-b"],
        "draft_llm": ["m1"],
        "essay_template": ["essay"],
        "essay_llm": ["m1"],
        "evaluation_template": ["j1", "j2", "j3", "j4"],
        "evaluation_llm": judges,
        "evaluation_replicate": replicates,
    }
    spec = tmp / "spec.yaml"
    spec.write_text(yaml.safe_dump({"axes": axes}))
    conn = connect(tmp / "planned.db")
    import_catalog(conn, load_catalog(tmp / "cat"))
    report = plan_cohort(conn, spec, "bench")
    conn.close()
    return tmp / "planned.db", sum(c.new for c in report.stages.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=None)
    parser.add_argument("--rubric-of", type=int, choices=(1, 4), default=1)
    parser.add_argument("--drop", default="", help="triggers to drop first, comma-separated")
    args = parser.parse_args()
    generations = args.generations or (6_000 if args.rubric_of == 1 else 10_800)
    tmp = Path(tempfile.mkdtemp(prefix="daydream-counting-"))
    template, total = planned(tmp, generations, args.rubric_of)
    db = fresh_copy(template, tmp / "run" / "bench.db")
    if args.drop:
        raw = sqlite3.connect(db)
        for trigger in args.drop.split(","):
            raw.execute(f"DROP TRIGGER {trigger}")
        raw.commit()
        raw.close()
    config = WorkerConfig(db_path=db, cohort="bench", concurrency=64, provider_override="offline")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, _ = run_once(db, 1, config)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(
        f"{total} generations, 1 worker: wall {wall:.2f} s, worker CPU {cpu:.2f} s,"
        f" {1e6 * cpu / total:.0f} µs per generation (log: {db})"
    )


if __name__ == "__main__":
    main()
