"""Browsing benchmark: the generation page, the comparison matrix, search, the pivot and
top-essays pages, and ``daydream report``, at 100,000 generations.

Builds a finished synthetic cohort the faithful way: a generated catalog, planned with
``plan_cohort`` (500 combos x 5 draft templates x 4 writers = 10,000 drafts, one essay
each, 2 rubrics x 2 judges x 2 replicates per essay = 100,000 generations), then completed
by appending the events a worker would write (``attempt.started``,
``generation.responded``, ``generation.completed``, and ``attempt.failed`` for ~1% of
drafts and ~2% of evaluations) in bulk through ``daydream.db.log.append``, so every
projection row comes from the log. Then it times, through Datasette's own test client
with the ``daydream browse`` configuration, the median of several requests of each page,
and the median wall time of ``daydream report COHORT`` (a subprocess).

    python benchmarks/browse.py                     # 100,000 generations
    python benchmarks/browse.py --generations 20000 --runs 5
    python benchmarks/browse.py --db /tmp/bench.db  # keep (or reuse) the database

Targets (docs/benchmarks.md): the generation page, the matrix (50 x 4 cells), a search
and the pivot and top pages each under 200 ms (median), the report under 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from synthetic import SPEC, synthetic_catalog

from daydream.db.connection import connect

COHORT = "bench"
PER_DRAFT = 10  # draft + essay + 8 evaluations
DRAFTS_PER_COMBO = 5 * 4
BATCH = 2000
PAGE_TARGET_MS = 200.0
REPORT_TARGET_S = 10.0



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=9, help="requests per page (median)")
    parser.add_argument("--db", type=Path, help="build here (or reuse if it exists)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="daydream-browse-") as tmp:
        db_path = args.db or Path(tmp) / "bench.db"
        built = None
        if not db_path.exists():
            built = build(db_path, args.generations)
        # Bring the projections and views up to date first (as any daydream command would),
        # so no timed run pays for a rebuild.
        connect(db_path, create=False).close()
        load_before = os.getloadavg()[0]
        figures = {
            "generations": count_generations(db_path),
            "build_s": built,
            "cpus": os.cpu_count(),
            "pages": {**measure_pages(db_path, args.runs), **measure_search(db_path, args.runs)},
            "report": measure_report(db_path, runs=3),
            "statistics": measure_statistics(db_path, runs=3),
        }
        figures["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(format_figures(figures))
    return 0


# -- building the database ------------------------------------------------------------------


def build(db_path: Path, generations: int) -> float:
    """Plan and complete a synthetic cohort of about ``generations`` generations."""
    from daydream.catalog.recording import import_catalog
    from daydream.db.connection import connect
    from daydream.plan.write import plan_cohort

    start = time.perf_counter()
    combos = max(1, -(-generations // (DRAFTS_PER_COMBO * PER_DRAFT)))
    work = db_path.parent
    conn = connect(db_path)
    import_catalog(conn, synthetic_catalog(work, combos, priced=True), actor="bench")
    (work / "combos.txt").write_text("".join(f"combo-{i:06d}\n" for i in range(combos)))
    (work / "spec.yaml").write_text(SPEC)
    plan_cohort(conn, work / "spec.yaml", COHORT, actor="bench")
    for stage in ("draft", "essay", "evaluation"):
        complete_stage(conn, stage)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return round(time.perf_counter() - start, 1)


def complete_stage(conn, stage: str) -> None:
    """Run every ready generation of ``stage`` as a worker would record it, in batches."""
    from daydream import events as ev
    from daydream.db.log import append
    from daydream.db.texts import put_texts
    from daydream.db.transaction import transaction

    clock = _clock()
    while True:
        ready = conn.execute(
            "SELECT gen_id, model_id FROM generations"
            " WHERE status = 'ready' AND stage = ? ORDER BY gen_id LIMIT ?",
            (stage, BATCH),
        ).fetchall()
        if not ready:
            return
        with transaction(conn):
            started = [
                ev.AttemptStarted(
                    gen_id=gen_id,
                    attempt=1,
                    worker="bench",
                    lease_expires_at="2030-01-01T00:00:00Z",
                )
                for gen_id, _ in ready
            ]
            tokens = append(conn, started, actor="worker:bench", clock=clock)
            finished = []
            for (gen_id, model_id), token in zip(ready, tokens, strict=True):
                roll = _roll(gen_id)
                prompt = f"{stage} prompt for {gen_id}\n" + "context line\n" * 12
                if stage == "evaluation":
                    score = float(roll % 10)
                    raw = f"The essay {gen_id} is judged here.\n" * 4 + f"SCORE: {score:g}\n"
                else:
                    score = None
                    # Two words of a 500-word vocabulary: what a search looks for.
                    words = f"It touches on term{roll % 500} and term{roll // 500 % 500}.\n"
                    raw = f"{stage} text of {gen_id}.\n" + words + "An idea, developed.\n" * 20
                prompt_hash, raw_hash = put_texts(conn, [prompt, raw])
                finished.append(
                    ev.GenerationResponded(
                        gen_id=gen_id,
                        token=token,
                        mode="llm",
                        prompt_hash=prompt_hash,
                        raw_hash=raw_hash,
                        provider="offline",
                        model_id=model_id,
                        resolved_model=f"offline/{model_id}",
                        finish_reason="stop",
                        prompt_tokens=len(prompt) // 4,
                        completion_tokens=len(raw) // 4,
                        latency_s=0.5 + roll % 7 / 10,
                        cost=len(prompt) // 4 * 1e-6 + len(raw) // 4 * 4e-6,
                        offline=True,
                    )
                )
                failing = (stage == "draft" and roll % 100 == 0) or (
                    stage == "evaluation" and roll % 50 == 1
                )
                if failing:
                    state = "provider_error" if stage == "draft" else "parse_failed"
                    finished.append(
                        ev.AttemptFailed(
                            gen_id=gen_id,
                            token=token,
                            state=state,
                            error=f"{state}: synthetic failure (gave up after 1 attempt(s))",
                            retryable=stage == "draft",
                            final=True,
                        )
                    )
                else:
                    finished.append(
                        ev.GenerationCompleted(
                            gen_id=gen_id, token=token, parsed_hash=raw_hash, score=score
                        )
                    )
            append(conn, finished, actor="worker:bench", clock=clock)


def _roll(gen_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(gen_id.encode(), digest_size=4).digest(), "big")


def _clock():
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return lambda: moment


def count_generations(db_path: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM generations").fetchone()[0]
    finally:
        conn.close()


# -- measuring ------------------------------------------------------------------------------


def pages(database: str, essay: str) -> dict[str, str]:
    """The pages timed: name -> path. Names in ``TARGETED`` have the target."""
    base = f"/{database}"
    return {
        "generation page (an essay)": f"{base}/-/generation/{essay}",
        "matrix, 50 x 4 cells (compare)": (
            f"{base}/-/compare?cohort={COHORT}&rows=combo_id&columns=draft_llm"
            "&draft_template=draft-0&evaluation_template=rubric-0&size=50"
        ),
        "search, search box (generation_search)": (
            f"{base}/generation_search?_search=term42&cohort_id={COHORT}"
        ),
        "pivot page, 100 essays (pivot)": f"{base}/-/pivot?cohort={COHORT}",
        "pivot, long (essay_scores)": f"{base}/essay_scores?cohort_id={COHORT}",
        "top essays (cohort_top_essays)": (
            f"{base}/cohort_top_essays?cohort={COHORT}&template=rubric-0"
        ),
        "top essays (top_essays view)": (
            f"{base}/top_essays?cohort_id={COHORT}&evaluation_template=rubric-0"
        ),
        "cohort_progress": f"{base}/cohort_progress?cohort_id={COHORT}",
        "failure_reasons": f"{base}/failure_reasons?cohort_id={COHORT}",
        "generation_texts (essays)": f"{base}/generation_texts?cohort_id={COHORT}&stage=essay",
        "lineage": f"{base}/lineage?cohort_id={COHORT}",
        "model_usage": f"{base}/model_usage",
    }


def measure_pages(db_path: Path, runs: int) -> dict[str, dict]:
    from daydream.browse.app import make_datasette

    ds = make_datasette(db_path)
    database = next(iter(ds.databases.keys() - {"_internal", "_memory"}))
    essay = _an_essay(db_path)

    async def timed() -> dict[str, dict]:
        await ds.invoke_startup()
        out = {}
        for name, path in pages(database, essay).items():
            response = await ds.client.get(path)  # warm-up (and check)
            if response.status_code != 200:
                raise SystemExit(f"{path}: HTTP {response.status_code}\n{response.text[:500]}")
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                response = await ds.client.get(path)
                times.append((time.perf_counter() - start) * 1000)
            out[name] = {
                "path": path,
                "median_ms": round(statistics.median(times), 1),
                "max_ms": round(max(times), 1),
                "target_ms": PAGE_TARGET_MS if _targeted(name) else None,
            }
        return out

    return asyncio.run(timed())


def _targeted(name: str) -> bool:
    return name.startswith(("pivot", "top", "generation page", "matrix", "search"))


def _an_essay(db_path: Path) -> str:
    import sqlite3

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT gen_id FROM generations WHERE stage = 'essay' AND status = 'done'"
            " ORDER BY gen_id LIMIT 1 OFFSET 500"
        ).fetchone()[0]
    finally:
        conn.close()


def measure_search(db_path: Path, runs: int) -> dict[str, dict]:
    """``daydream search`` as a library call: a rare word in the cohort's essays, and a
    word in every draft and essay (the worst case: every match is ranked)."""
    from daydream.db.connection import connect
    from daydream.results.search import search

    conn = connect(db_path, create=False)
    out = {}
    try:
        for name, word in (("search, a rare word (library)", "term42"), ("search, a word in every text (library)", "developed")):
            search(conn, word, cohort_id=COHORT, limit=20)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                search(conn, word, cohort_id=COHORT, limit=20)
                times.append((time.perf_counter() - start) * 1000)
            out[name] = {
                "path": f"search({word!r}, cohort_id={COHORT!r}, limit=20)",
                "median_ms": round(statistics.median(times), 1),
                "max_ms": round(max(times), 1),
                "target_ms": PAGE_TARGET_MS,
            }
    finally:
        conn.close()
    return out


def measure_report(db_path: Path, runs: int) -> dict:
    command = [sys.executable, "-m", "daydream", "report", COHORT, "--db", str(db_path)]
    probe = subprocess.run(
        [sys.executable, "-m", "daydream", "report", "--help"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return {"skipped": "`daydream report` does not exist yet"}
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="daydream-report-") as out:
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=out)
            times.append(time.perf_counter() - start)
        if done.returncode != 0:
            return {"failed": done.stderr.strip()[-500:], "command": " ".join(command[1:])}
    return {
        "command": "daydream report " + COHORT,
        "median_s": round(statistics.median(times), 2),
        "target_s": REPORT_TARGET_S,
    }


def measure_statistics(db_path: Path, runs: int) -> dict:
    """What the report's inference costs: ``build_report`` in this process as it is, then
    with the bootstrap intervals and the reliability table stubbed out (the baseline),
    alternating, medians; the ratio is the report's time over the baseline's."""
    from unittest import mock

    from daydream.db.connection import connect
    from daydream.results import reports

    def plain() -> None:
        conn = connect(db_path, create=False)
        try:
            reports.build_report(conn, COHORT)
        finally:
            conn.close()

    def baseline() -> None:
        with (
            mock.patch.object(reports, "_interval_arrays", lambda scored: {}),
            mock.patch.object(
                reports, "_interval_columns", lambda *args: dict.fromkeys(reports.INTERVAL_COLUMNS)
            ),
            mock.patch.object(reports, "judge_reliability", lambda rows: []),
            mock.patch.object(reports, "t_interval", lambda values: None),
        ):
            plain()

    timed: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(runs):
        for name, run in (("without", baseline), ("with", plain)):
            start = time.perf_counter()
            run()
            timed[name].append(time.perf_counter() - start)
    with_s, without_s = statistics.median(timed["with"]), statistics.median(timed["without"])
    return {
        "build_report_s": round(with_s, 2),
        "without_intervals_s": round(without_s, 2),
        "ratio": round(with_s / without_s, 2),
    }


def format_figures(f: dict) -> str:
    lines = [
        f"{f['generations']:,} generations"
        + (f" (built in {f['build_s']} s)" if f["build_s"] else "")
    ]
    lines[0] += (
        f"; {f['cpus']} CPUs, load average {f['load_average'][0]} before,"
        f" {f['load_average'][1]} after (other processes slow every figure)"
    )
    lines.append(f"{'page':<42}{'median ms':>11}{'max ms':>9}  target")
    for name, page in f["pages"].items():
        target = page["target_ms"]
        verdict = (
            ""
            if target is None
            else (f"< {target:g} ms " + ("ok" if page["median_ms"] < target else "MISSED"))
        )
        lines.append(f"{name:<42}{page['median_ms']:>11.1f}{page['max_ms']:>9.1f}  {verdict}")
    report = f["report"]
    if "median_s" in report:
        ok = "ok" if report["median_s"] < report["target_s"] else "MISSED"
        lines.append(
            f"{report['command']:<42}{report['median_s']:>10.2f}s{'':>9}  < {report['target_s']:g} s {ok}"
        )
    else:
        lines.append(f"daydream report: {report.get('skipped') or report.get('failed')}")
    stats = f.get("statistics")
    if stats:
        lines.append(
            f"build_report in process: {stats['build_report_s']:.2f} s, without intervals and"
            f" reliability {stats['without_intervals_s']:.2f} s (ratio {stats['ratio']:.2f})"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
