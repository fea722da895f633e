"""The demo: the example catalog and cohort, end to end on the offline provider.

``run_demo()`` is what the README's first command runs: create the database, import
``specs/catalog``, plan ``specs/demo.yaml`` as cohort ``demo``, run it with two worker
processes, print a summary and how to browse the result. Running it again resumes (and
finds nothing left to do); ``--fresh`` starts over.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from daydream.catalog.load import load_catalog
from daydream.catalog.recording import import_catalog
from daydream.db.connection import connect, is_daydream_database
from daydream.errors import DaydreamError
from daydream.paths import project_dir
from daydream.plan.write import plan_cohort
from daydream.results.text import format_plan, format_status
from daydream.runner.run import run_cohort
from daydream.worker.config import WorkerConfig

COHORT = "demo"


def _refuse_to_replace(db_path: Path) -> None:
    """``--fresh`` deletes the file: only an empty one or a daydream database."""
    if not db_path.is_file() or db_path.stat().st_size == 0:
        return
    if not is_daydream_database(db_path):
        raise DaydreamError(
            f"{db_path} is not a daydream database; --fresh only replaces one"
            " (choose another --db)"
        )


def run_demo(
    db_path: Path,
    *,
    fresh: bool = False,
    out: Callable[[str], None] = print,
    err: Callable[[str], None] = print,
    workers: int = 2,
) -> None:
    specs = project_dir("specs")
    if specs.is_relative_to(Path.cwd()):
        # Recorded as written (cohorts.spec_path, catalog sources): relative from the
        # repo, so a database made there does not name the machine it was made on.
        specs = specs.relative_to(Path.cwd())
    if fresh:
        _refuse_to_replace(db_path)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    conn = connect(db_path, create=True)
    report = import_catalog(conn, load_catalog(specs / "catalog"), actor="cli:demo")
    out(f"catalog: {report.events} new or changed entries from {specs / 'catalog'}")
    plan = plan_cohort(conn, specs / "demo.yaml", COHORT, actor="cli:demo")
    conn.close()
    out(format_plan(plan))
    err(f"running cohort {COHORT} with {workers} worker processes (offline provider)...")
    summary = run_cohort(
        WorkerConfig(db_path=db_path, cohort=COHORT, concurrency=16), workers=workers
    )
    out(format_status(summary.status))
    conn = connect(db_path, create=False)
    out(_top_scores(conn))
    conn.close()
    out("")
    out("All outputs come from the offline dry-run provider (deterministic, labelled [offline]).")
    prog = _program()
    out("Browse the results:")
    out(f"  {prog} browse --db {db_path}      (or: datasette {db_path})")
    out(f"  {prog} report {COHORT} --db {db_path} --html")
    out(f"  {prog} status {COHORT} --db {db_path}")


def _program() -> str:
    """How the user can run daydream again: ``daydream`` when it is on PATH, else the path
    they used (``.venv/bin/daydream`` right after the README's install command)."""
    import os
    import shutil
    import sys

    used = sys.argv[0] if sys.argv else ""
    if os.path.basename(used) == "daydream" and not shutil.which("daydream"):
        return os.path.relpath(used)
    return "daydream"


def _top_scores(conn) -> str:
    """The five best essays by mean score, each score normalised to its rubric's scale."""
    rows = conn.execute(
        "SELECT s.essay_gen_id, s.essay_template, s.generation_model,"
        " round(avg((s.score - s.scale_min) / (s.scale_max - s.scale_min)), 3) AS mean,"
        " count(*) AS n FROM evaluation_scores s"
        " JOIN cohort_members m ON m.gen_id = s.gen_id AND m.cohort_id = ?"
        " WHERE s.state = 'ok' GROUP BY s.essay_gen_id ORDER BY mean DESC, s.essay_gen_id LIMIT 5",
        (COHORT,),
    ).fetchall()
    if not rows:
        return "no scored essays yet"
    lines = ["top essays (mean score, each normalised to its rubric's scale, 0-1):"]
    for gen_id, template, model, mean, n in rows:
        lines.append(f"  {gen_id:<19} {template:<14} {model or '-':<14} {mean:.3f} over {n} judgement(s)")
    failed = conn.execute(
        "SELECT count(*), min(g.error) FROM generations g JOIN cohort_members m USING (gen_id)"
        " WHERE m.cohort_id = ? AND g.status = 'failed'",
        (COHORT,),
    ).fetchone()
    if failed[0]:
        lines.append(f"{failed[0]} generation(s) failed, for example: {failed[1]}")
    return "\n".join(lines)
