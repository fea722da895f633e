"""Browsing benchmark: every browse page and canned query, the generation page, the
matrix, search, ``daydream status`` and ``daydream report``, at 10,000 and 100,000
generations (and 1,000,000 with ``--million``), each with its ratio to the 10,000 figure
of the same run; and, with ``--realistic``, the database bytes per generation with
realistic texts and where they go.

The databases are finished synthetic cohorts built the faithful way (browse_build.py):
planned with ``plan_cohort``, completed with the events a worker writes, so every
projection row comes from the log. Pages are timed through Datasette's own test client
with the ``daydream browse`` configuration (median of ``--runs`` requests after a warm-up),
search and the status as library calls, the status and the report as subprocesses too.

    python benchmarks/browse.py                          # 10,000 and 100,000
    python benchmarks/browse.py --keep /tmp/browse       # keep (or reuse) the databases
    python benchmarks/browse.py --million /tmp/browse-1m/bench.db
        # also 1,000,000: building it takes ~15 minutes on 2 cores, so it is built once at
        # that path (its folder also gets the catalog files) and reused by later runs
    python benchmarks/browse.py --realistic 10000        # bytes per generation, realistic texts
    python benchmarks/browse.py --sizes 10000 --runs 3   # a quick look

Targets (docs/benchmarks.md): every page under 200 ms (median) at 1,000,000 and at most
2x its time at 10,000; ``daydream status`` under 0.5 s, ``daydream report`` under 10 s;
the live progress of ``daydream run`` (a status per refresh) under 2% of the run's time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from browse_build import COHORT, an_essay, build
from browse_sizes import measure_sizes

from daydream.db.connection import connect

PAGE_TARGET_MS = 200.0
STATUS_TARGET_S = 0.5
REPORT_TARGET_S = 10.0
PROGRESS_TARGET = 0.02  # of the run's wall time
PROGRESS_INTERVAL_S = 0.5  # run_cohort's refresh (runner/run.py, interval_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--sizes", default="10000,100000", help="generations, comma-separated")
    parser.add_argument("--million", type=Path, metavar="DB", help="also 1,000,000 at DB")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="build (or reuse) under DIR")
    parser.add_argument("--runs", type=int, default=7, help="requests per page (median)")
    parser.add_argument("--realistic", type=int, metavar="N", help="sizes with realistic texts")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="daydream-browse-") as tmp:
        where = args.keep or Path(tmp)
        databases = [(n, where / str(n) / "bench.db") for n in sizes]
        if args.million:
            databases.append((1_000_000, args.million))
        figures: dict = {"cpus": os.cpu_count(), "sizes": {}}
        for n, db in databases:
            figures["sizes"][n] = measure(db, n, args.runs)
        if args.realistic:
            figures["realistic"] = measure_sizes(Path(tmp) / "realistic" / "bench.db", args.realistic)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(format_figures(figures))
    return 0


def measure(db: Path, n: int, runs: int) -> dict:
    built = None
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        print(f"building {n:,} generations at {db} ...", file=sys.stderr)
        built = build(db, n, log=lambda line: print(line, file=sys.stderr))
    # Bring the projections and views up to date first (as any daydream command would),
    # so no timed run pays for a rebuild.
    connect(db, create=False).close()
    print(f"measuring {n:,} ...", file=sys.stderr)
    load = os.getloadavg()[0]
    out = {
        "generations": _count(db),
        "build_s": built,
        "pages": {**measure_pages(db, runs), **measure_search(db, runs)},
        "status": measure_status(db, runs),
        "report": measure_report(db, runs=3 if n < 1_000_000 else 1),
    }
    out["load_average"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    return out


def _count(db: Path) -> int:
    conn = connect(db, create=False)
    try:
        return conn.execute("SELECT count(*) FROM generations").fetchone()[0]
    finally:
        conn.close()


def pages(database: str, essay: str) -> dict[str, str]:
    """The pages timed: name -> path (every view and canned query, and the pages)."""
    base, c = f"/{database}", COHORT
    return {
        "generation page (an essay)": f"{base}/-/generation/{essay}",
        "matrix, 50 x 4 cells (compare)": (
            f"{base}/-/compare?cohort={c}&rows=combo_id&columns=draft_llm"
            "&draft_template=draft-0&evaluation_template=rubric-0&size=50"
        ),
        "pivot page, 100 essays (pivot)": f"{base}/-/pivot?cohort={c}",
        "search box (generation_search)": f"{base}/generation_search?_search=term42&cohort_id={c}",
        "cohort_top_essays query": f"{base}/cohort_top_essays?cohort={c}&template=rubric-0",
        "generation query": f"{base}/generation?gen_id={essay}",
        "cohort_scores query": f"{base}/cohort_scores?cohort={c}",
        "cohort_failures query": f"{base}/cohort_failures?cohort={c}",
        "essay_scores": f"{base}/essay_scores?cohort_id={c}",
        "essay_score_summary": f"{base}/essay_score_summary?cohort_id={c}",
        "evaluation_scores": f"{base}/evaluation_scores?cohort_id={c}",
        "judge_agreement": f"{base}/judge_agreement?cohort_id={c}",
        "top_of_scale": f"{base}/top_of_scale?cohort_id={c}",
        "top_essays": f"{base}/top_essays?cohort_id={c}&evaluation_template=rubric-0",
        "unscored_essays": f"{base}/unscored_essays?cohort_id={c}",
        "essay_ratings": f"{base}/essay_ratings",
        "cohort_progress": f"{base}/cohort_progress?cohort_id={c}",
        "failures": f"{base}/failures?cohort_id={c}",
        "failure_reasons": f"{base}/failure_reasons?cohort_id={c}",
        "generation_texts (essays)": f"{base}/generation_texts?cohort_id={c}&stage=essay",
        "lineage": f"{base}/lineage?cohort_id={c}",
        "tasks": f"{base}/tasks",
        "combos_with_concepts": f"{base}/combos_with_concepts",
        "model_usage": f"{base}/model_usage",
        "cohort_model_usage": f"{base}/cohort_model_usage?cohort_id={c}",
        "indexed_texts": f"{base}/indexed_texts",
    }


def measure_pages(db: Path, runs: int) -> dict[str, dict]:
    from daydream.browse.app import make_datasette

    ds = make_datasette(db)
    database = next(iter(ds.databases.keys() - {"_internal", "_memory"}))
    conn = connect(db, create=False)
    try:
        essay = an_essay(conn)
    finally:
        conn.close()

    async def timed() -> dict[str, dict]:
        await ds.invoke_startup()
        out = {}
        for name, path in pages(database, essay).items():
            start = time.perf_counter()
            response = await ds.client.get(path)  # warm-up (and check)
            if response.status_code != 200:
                # Over Datasette's time limit (sql_time_limit_ms): the time it gave up at.
                failed = round((time.perf_counter() - start) * 1000, 1)
                out[name] = {"path": path, "median_ms": failed, "http": response.status_code}
                continue
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                await ds.client.get(path)
                times.append((time.perf_counter() - start) * 1000)
            out[name] = {"path": path, "median_ms": round(statistics.median(times), 1)}
        return out

    return asyncio.run(timed())


def measure_search(db: Path, runs: int) -> dict[str, dict]:
    """``daydream search`` as a library call: a rare word in the cohort's texts, and a word
    in every draft and essay (every match is ranked)."""
    from daydream.results.search import search

    conn = connect(db, create=False)
    out = {}
    try:
        for name, word in (("search, a rare word", "term42"), ("search, a common word", "developed")):
            out[name] = {"path": f"search({word!r})", "median_ms": _median_ms(
                lambda word=word: search(conn, word, cohort_id=COHORT, limit=20), runs)}
    finally:
        conn.close()
    return out


def _median_ms(call, runs: int) -> float:
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def measure_status(db: Path, runs: int) -> dict:
    """``daydream status COHORT`` as a subprocess (what a researcher waits for), and the
    status ``daydream run`` reads for each progress line (``cohort_status``, in process):
    its share of the run is its time over the refresh interval."""
    from daydream.queue.cohorts import cohort_status

    conn = connect(db, create=False)
    try:
        progress_ms = _median_ms(lambda: cohort_status(conn, COHORT), runs)
        full_ms = _median_ms(lambda: cohort_status(conn, COHORT, failures=True), runs)
    finally:
        conn.close()
    command = [sys.executable, "-m", "daydream", "status", COHORT, "--db", str(db)]
    return {
        "command_s": _subprocess_s(command, runs=3),
        "progress_ms": progress_ms,
        "with_failures_ms": full_ms,
        "progress_share": round(progress_ms / 1000 / PROGRESS_INTERVAL_S, 5),
    }


def _subprocess_s(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="daydream-bench-") as out:
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=out)
            times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command[1:])} failed:\n{done.stderr[-500:]}")
    return round(statistics.median(times), 2)


def measure_report(db: Path, runs: int) -> dict:
    command = [sys.executable, "-m", "daydream", "report", COHORT, "--db", str(db)]
    return {"command_s": _subprocess_s(command, runs)}


def format_figures(f: dict) -> str:
    sizes = sorted(f["sizes"], key=int)
    base = f["sizes"][sizes[0]]
    lines = [f"{f['cpus']} CPUs; load average before/after each size: " + ", ".join(
        f"{int(n):,}: {f['sizes'][n]['load_average']}" for n in sizes)]
    for n in sizes:
        if f["sizes"][n]["build_s"]:
            lines.append(f"built {int(n):,} generations in {f['sizes'][n]['build_s']} s")
    head = f"{'page (median ms; xN: ratio to ' + format(int(sizes[0]), ',') + ')':<44}"
    lines.append(head + "".join(f"{int(n):>18,}" for n in sizes))
    rows = [(name, lambda s, name=name: s["pages"][name]["median_ms"]) for name in base["pages"]]
    rows += [
        ("daydream status (process), ms", lambda s: s["status"]["command_s"] * 1000),
        ("cohort_status (run's progress line), ms", lambda s: s["status"]["progress_ms"]),
        ("cohort_status with failures, ms", lambda s: s["status"]["with_failures_ms"]),
        ("daydream report (process), ms", lambda s: s["report"]["command_s"] * 1000),
    ]
    for name, value in rows:
        first = value(base)
        cells = "".join(
            f"{value(f['sizes'][n]):>11.1f} x{value(f['sizes'][n]) / first:>4.1f}"
            if first else f"{value(f['sizes'][n]):>18.1f}"
            for n in sizes
        )
        failed = [str(n) for n in sizes if f["sizes"][n]["pages"].get(name, {}).get("http")]
        lines.append(f"{name:<44}{cells}" + (f"  (HTTP 400, time limit: {', '.join(failed)})" if failed else ""))
    top = f["sizes"][sizes[-1]]
    worst = max(top["pages"].items(), key=lambda item: item[1]["median_ms"])
    lines.append(
        f"at {int(sizes[-1]):,}: slowest page {worst[0]} {worst[1]['median_ms']} ms"
        f" (target {PAGE_TARGET_MS:g}); status {top['status']['command_s']} s (target"
        f" {STATUS_TARGET_S}); report {top['report']['command_s']} s (target {REPORT_TARGET_S:g});"
        f" progress {100 * top['status']['progress_share']:.3f}% of a run at one line per"
        f" {PROGRESS_INTERVAL_S:g} s (target {100 * PROGRESS_TARGET:g}%)"
    )
    if "realistic" in f:
        from browse_sizes import format_sizes

        lines.append(format_sizes(f["realistic"]))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
