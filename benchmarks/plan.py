"""Planning benchmark: plan a synthetic cohort of N generations and compare with a ceiling.

The cohort has N/200 catalog combos x 5 draft templates x 4 draft models (the drafts), one
LLM essay per draft, and 2 rubrics x 2 judges x 2 replicates per essay (the evaluations):
1 + 1 + 8 generations per draft, so N generations from 0.8 N spec rows.

The ceiling is the time to insert N rows of the same width (gen_id, stage, parent, combo,
template, version, model, replicate, mode, signature, status) with one ``executemany`` into
a plain table, in one transaction, on a fresh file with the store's pragmas. It is measured
before and after the plan and the faster run is used, so noise from other processes makes
the ratio worse, never better. Each phase runs in its own subprocess so that its peak RSS
(``ru_maxrss``) is its own. ``--floor`` adds the projection floor: the same generations
inserted straight into the projection tables (generations, cohort_members and the
essay_judge_scores cells, with their foreign keys, the secondary indexes built after the
inserts as a first plan builds them), no planning and no event log: what the projection
schema alone costs.

    python benchmarks/plan.py                  # 1,000,000 generations
    python benchmarks/plan.py --quick          # 100,000
    python benchmarks/plan.py --generations 250000 --floor --json

Target (docs/benchmarks.md): planning within 10x of the ceiling, peak RSS under 1 GB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PER_DRAFT = 10  # draft + essay + 8 evaluations
DRAFTS_PER_COMBO = 5 * 4
COHORT = "bench"
TARGET_RATIO = 10.0
TARGET_RSS_MB = 1024.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="plan 100,000 generations")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--floor", action="store_true", help="also time the projection floor")
    parser.add_argument("--phase", choices=tuple(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    combos = combos_for(100_000 if args.quick else args.generations)
    if args.phase:
        result = PHASES[args.phase](args.dir, combos)
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return 0
    with tempfile.TemporaryDirectory(prefix="daydream-bench-") as tmp:
        work = Path(tmp)
        run_phase("setup", work, combos)
        ceilings = [run_phase("ceiling", work, combos)]
        planned = run_phase("plan", work, combos)
        ceilings.append(run_phase("ceiling", work, combos))
        floor = run_phase("floor", work, combos) if args.floor else None
    figures = summarise(planned, min(ceilings, key=lambda c: c["seconds"]), floor)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(format_table(figures))
    return 0


def combos_for(generations: int) -> int:
    """Catalog combos needed for at least ``generations`` generations."""
    per_combo = DRAFTS_PER_COMBO * PER_DRAFT
    return max(1, -(-generations // per_combo))


def run_phase(phase: str, work: Path, combos: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--dir", str(work)]
    command += ["--generations", str(combos * DRAFTS_PER_COMBO * PER_DRAFT)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"benchmark phase {phase} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's peak RSS plus that of the largest child it waited for (a big plan
    derives its generations in a child process, planpipe): the sum bounds what both held
    at once."""
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) * scale / 2**20


def cpu_seconds() -> float:
    """CPU time of this process and of the children it waited for."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


# -- phases -------------------------------------------------------------------------------


def setup(work: Path, combos: int) -> dict:
    """A database holding the synthetic catalog, and the spec that plans N generations."""
    from synthetic import SPEC, synthetic_catalog

    from daydream.catalog.recording import import_catalog
    from daydream.db.connection import connect

    conn = connect(work / "plan.db")
    import_catalog(conn, synthetic_catalog(work, combos), actor="bench")
    conn.close()
    shutil.copyfile(work / "plan.db", work / "floor.db")  # closed: the WAL is checkpointed
    (work / "combos.txt").write_text(
        "".join(f"combo-{i:06d}\n" for i in range(combos)), encoding="utf-8"
    )
    (work / "spec.yaml").write_text(SPEC, encoding="utf-8")
    return {}


def plan(work: Path, combos: int) -> dict:
    from daydream.db.connection import connect
    from daydream.plan.write import plan_cohort

    conn = connect(work / "plan.db", create=False)
    rss_before = peak_rss_mb()
    start, cpu = time.perf_counter(), cpu_seconds()
    report = plan_cohort(conn, work / "spec.yaml", COHORT, actor="bench")
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    generations = conn.execute("SELECT count(*) FROM generations").fetchone()[0]
    conn.close()
    new = sum(counts.new for counts in report.stages.values())
    if new != generations:
        raise SystemExit(f"planned {new} generations but the table holds {generations}")
    return {
        "generations": generations,
        "rows": report.rows,
        "events": report.events,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rss_before_mb": rss_before,
        "db_mb": sum(p.stat().st_size for p in work.glob("plan.db*")) / 2**20,
    }


def ceiling(work: Path, combos: int) -> dict:
    """One executemany of N rows of the same width into a plain table, one transaction."""
    from daydream.db.connection import connect

    generations = combos * DRAFTS_PER_COMBO * PER_DRAFT
    rows = list(synthetic_rows(generations))
    for path in work.glob("ceiling.db*"):
        path.unlink()  # a fresh file each time
    conn = connect(work / "ceiling.db")  # the store's pragmas: WAL, synchronous=FULL...
    conn.execute(
        "CREATE TABLE rows (gen_id TEXT, stage TEXT, parent_gen_id TEXT, combo_id TEXT,"
        " template_id TEXT, template_version TEXT, model_id TEXT, replicate INTEGER,"
        " mode TEXT, signature TEXT, status TEXT)"
    )
    start, cpu = time.perf_counter(), cpu_seconds()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    conn.close()
    return {"generations": generations, "seconds": seconds, "cpu_seconds": cpu}


def floor(work: Path, combos: int) -> dict:
    """The planned generations inserted straight into the projection tables, in batches."""
    from daydream.db.connection import connect
    from daydream.plan.derivation import BATCH
    from daydream.plan.write import PLAN_CACHE_KIB, _indexes_built_after

    source = connect(work / "plan.db", create=False)
    source.row_factory = None  # plain tuples: a million sqlite3.Row objects double the RSS
    rows = source.execute(
        "SELECT g.gen_id, g.stage, g.parent_gen_id, g.combo_id, g.template_id,"
        " g.template_version, g.model_id, g.replicate, g.mode, g.signature, g.pool, g.status"
        " FROM generations g ORDER BY g.rowid"
    ).fetchall()
    source.close()
    cells: dict[tuple, int] = {}  # essay_judge_scores: unscored evaluations per cell
    for row in rows:
        if row[1] == "evaluation":
            cells[(row[2], row[4], row[6])] = cells.get((row[2], row[4], row[6]), 0) + 1
    conn = connect(work / "floor.db", create=False)
    conn.execute(f"PRAGMA cache_size = {-PLAN_CACHE_KIB}")
    at = "2000-01-01T00:00:00.000000Z"
    start, cpu = time.perf_counter(), cpu_seconds()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO texts (hash, text, length) VALUES ('b2:floor', '', 0)")
    conn.execute(
        "INSERT INTO cohorts (cohort_id, spec_path, spec_hash, drafts, essays, evaluations,"
        " planned_at) VALUES (?, 'spec.yaml', 'b2:floor', 0, 0, 0, ?)",
        (COHORT, at),
    )
    with _indexes_built_after(conn):  # as planning does on a fresh database
        for first in range(0, len(rows), BATCH):
            batch = rows[first : first + BATCH]
            conn.executemany(
                "INSERT INTO generations (gen_id, stage, parent_gen_id, combo_id, template_id,"
                " template_version, model_id, replicate, mode, signature, pool, status,"
                " planned_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*row, at) for row in batch],
            )
            conn.executemany(
                "INSERT INTO cohort_members (cohort_id, gen_id, stage) VALUES (?, ?, ?)",
                [(COHORT, row[0], row[1]) for row in batch],
            )
    conn.executemany(
        "INSERT INTO essay_judge_scores (cohort_id, essay_gen_id, evaluation_template,"
        " evaluation_model, evaluations, n, total, min, max)"
        " VALUES (?, ?, ?, ?, ?, 0, 0, NULL, NULL)",
        [(COHORT, *cell, count) for cell, count in cells.items()],
    )
    conn.execute("COMMIT")
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    conn.close()
    return {"generations": len(rows), "seconds": seconds, "cpu_seconds": cpu}


PHASES = {"setup": setup, "plan": plan, "ceiling": ceiling, "floor": floor}


# -- the synthetic cohort -------------------------------------------------------------------



def synthetic_rows(generations: int):
    """Rows shaped like planned generations (id, signature and version lengths included)."""
    version = "b2:" + "0" * 32
    for i in range(generations):
        digest = hashlib.blake2b(str(i).encode(), digest_size=10).hexdigest()
        parent = f"e_{digest[:15]}" if i % 10 else None
        yield (
            f"v_{digest[4:19]}",
            "evaluation",
            parent,
            f"combo-{i // 200:06d}",
            "rubric-0",
            version,
            "judge-0",
            1 + i % 2,
            "llm",
            f"e_{digest[:15]}|rubric-0|judge-0|{1 + i % 2}",
            "planned",
        )


# -- report -------------------------------------------------------------------------------


def summarise(planned: dict, ceiling: dict, floor: dict | None) -> dict:
    ratio = planned["seconds"] / ceiling["seconds"]
    figures = {
        "generations": planned["generations"],
        "spec_rows": planned["rows"],
        "events": planned["events"],
        "plan_seconds": round(planned["seconds"], 2),
        "plan_cpu_seconds": round(planned["cpu_seconds"], 2),
        "plan_generations_per_s": round(planned["generations"] / planned["seconds"]),
        "plan_peak_rss_mb": round(planned["peak_rss_mb"], 1),
        "plan_rss_before_mb": round(planned["rss_before_mb"], 1),
        "plan_db_mb": round(planned["db_mb"], 1),
        "ceiling_seconds": round(ceiling["seconds"], 2),
        "ceiling_cpu_seconds": round(ceiling["cpu_seconds"], 2),
        "ceiling_rows_per_s": round(ceiling["generations"] / ceiling["seconds"]),
        "ceiling_peak_rss_mb": round(ceiling["peak_rss_mb"], 1),
        "ratio": round(ratio, 2),
        "meets_target": ratio <= TARGET_RATIO and planned["peak_rss_mb"] < TARGET_RSS_MB,
    }
    if floor is not None:
        figures.update(
            floor_seconds=round(floor["seconds"], 2),
            floor_cpu_seconds=round(floor["cpu_seconds"], 2),
            floor_rows_per_s=round(floor["generations"] / floor["seconds"]),
            floor_peak_rss_mb=round(floor["peak_rss_mb"], 1),
            floor_ratio=round(floor["seconds"] / ceiling["seconds"], 2),
        )
    return figures


def format_table(f: dict) -> str:
    def line(name: str, key: str) -> str:
        return (
            f"{name:<30}{f[key + '_seconds']:>9.2f}{f[key + '_cpu_seconds']:>9.2f}"
            f"{f[key + '_rows_per_s']:>12,}{f[key + '_peak_rss_mb']:>13.1f}"
        )

    f = {**f, "plan_rows_per_s": f["plan_generations_per_s"]}
    lines = [
        f"{f['generations']:,} generations from {f['spec_rows']:,} spec rows"
        f" in {f['events']:,} events",
        "",
        f"{'':<30}{'wall s':>9}{'cpu s':>9}{'rows/s':>12}{'peak RSS MB':>13}",
        line("plan_cohort", "plan"),
        line("ceiling (one executemany)", "ceiling"),
    ]
    if "floor_seconds" in f:
        lines.append(line("projection floor", "floor"))
    lines += [
        "",
        f"ratio plan / ceiling: {f['ratio']:.2f}x (target <= {TARGET_RATIO:g}x);"
        f" plan peak RSS {f['plan_peak_rss_mb']:.0f} MB (target < {TARGET_RSS_MB:.0f} MB;"
        f" {f['plan_rss_before_mb']:.0f} MB before planning); database {f['plan_db_mb']:.0f} MB",
    ]
    if "floor_ratio" in f:
        lines.append(f"ratio projection floor / ceiling: {f['floor_ratio']:.2f}x")
    lines.append("target met" if f["meets_target"] else "target NOT met")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
