"""The ``daydream`` command line: parse options, call one library function, print.

Results go to stdout (human text, or JSON with ``--json``); progress and logs to stderr.
Every expected failure is a ``DaydreamError``, printed as one ``Error: ...`` line, exit 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import DaydreamError


class _Group(click.Group):
    """A group whose commands turn DaydreamError into a one-line error, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DaydreamError as exc:
            raise click.ClickException(str(exc)) from None

    def group(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", _Group)
        return super().group(*args, **kwargs)


def db_option(function: Any) -> Any:
    return click.option(
        "--db",
        "db_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default="daydream.db",
        envvar="DAYDREAM_DB",
        show_default=True,
        show_envvar=True,
        help="The database file.",
    )(function)


def json_option(function: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(
        function
    )


def _open(db_path: Path, *, create: bool = False):
    from .store import connect

    return connect(db_path, create=create)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _err(message: str) -> None:
    click.echo(message, err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="daydream")
def cli() -> None:
    """daydream: structured LLM idea-generation experiments.

    API keys come from the environment or a .env file in the current directory
    (OPENROUTER_API_KEY, OPENAI_API_KEY...); they are never written anywhere.

    Declare a cohort (concept combinations x templates x models x replicates) in a YAML
    spec, plan it into generations, run draft -> essay -> evaluation with workers, and
    browse and report the results. Everything is recorded in an append-only event log in
    one SQLite file.

    Example:

        daydream demo
    """
    from .providers import load_dotenv

    load_dotenv(".env")


# -- demo ---------------------------------------------------------------------------------


@cli.command()
@db_option
@click.option("--fresh", is_flag=True, help="Delete the database first if it exists.")
def demo(db_path: Path, fresh: bool) -> None:
    """Run the example cohort end to end on the offline provider.

    Creates the database, imports the example catalog, plans the example cohort and runs
    it, then prints a results summary and how to browse it.

    Example:

        daydream demo --db demo.db --fresh
    """
    from .demo import run_demo

    run_demo(db_path, fresh=fresh, out=click.echo, err=_err)


# -- db -----------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Create, check and rebuild the database."""


@db.command("init")
@db_option
def db_init(db_path: Path) -> None:
    """Create the database (or migrate an existing one).

    Example:

        daydream db init --db experiments.db
    """
    conn = _open(db_path, create=True)
    applied = [
        row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY version")
    ]
    conn.close()
    click.echo(f"{db_path}: ready ({len(applied)} migration(s): {', '.join(applied)})")


@db.command("rebuild")
@db_option
def db_rebuild(db_path: Path) -> None:
    """Drop the projections and rebuild them by replaying the event log.

    Example:

        daydream db rebuild
    """
    from .projections import rebuild

    conn = _open(db_path)
    applied = rebuild(conn)
    conn.close()
    click.echo(f"{db_path}: projections rebuilt from {applied} event(s)")


@db.command("check")
@db_option
@json_option
def db_check(db_path: Path, as_json: bool) -> None:
    """Verify integrity, the append-only guards, and that replay equals the projections.

    Exits 1 when any check fails.

    Example:

        daydream db check
    """
    from .store import check

    results = check(db_path)
    if as_json:
        _echo_json([{"check": n, "ok": ok, "detail": d} for n, ok, d in results])
    else:
        for name, ok, detail in results:
            click.echo(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not all(ok for _, ok, _ in results):
        sys.exit(1)


# -- events -------------------------------------------------------------------------------


@cli.command()
@db_option
@click.option("--type", "types", multiple=True, help="Only events of this type (repeatable).")
@click.option("--subject", help="Only events about this subject (a gen id, cohort:ID...).")
@click.option("--after", type=int, default=0, show_default=True, help="Only events after this id.")
@click.option("--limit", type=int, help="At most this many events.")
@json_option
def events(
    db_path: Path,
    types: tuple[str, ...],
    subject: str | None,
    after: int,
    limit: int | None,
    as_json: bool,
) -> None:
    """List the event log, oldest first.

    Example:

        daydream events --type generation.completed --after 100 --json
    """
    from .events import EVENT_TYPES
    from .store import read_events

    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise click.BadParameter(
            f"unknown event type {unknown[0]!r} (known: {', '.join(sorted(EVENT_TYPES))})",
            param_hint="--type",
        )
    conn = _open(db_path)
    for row in read_events(conn, types=types, subject=subject, after=after, limit=limit):
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "id": row["id"],
                        "type": row["type"],
                        "subject": row["subject"],
                        "recorded_at": row["recorded_at"],
                        "actor": row["actor"],
                        "data": json.loads(row["data"]),
                    },
                    ensure_ascii=False,
                )
            )
        else:
            data = row["data"]
            if len(data) > 160:
                data = data[:157] + "..."
            click.echo(
                f"{row['id']:>8} {row['recorded_at']} {row['type']:<22} {row['subject']:<28} {data}"
            )
    conn.close()


# -- catalog ------------------------------------------------------------------------------


@cli.group()
def catalog() -> None:
    """Import and list concepts, combinations, templates and models."""


@catalog.command("import")
@db_option
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@json_option
def catalog_import(db_path: Path, directory: Path, as_json: bool) -> None:
    """Import a catalog directory (daydream layout, or the upstream 1_raw layout).

    Unchanged entries write nothing; an edited entry becomes a new version.

    Example:

        daydream catalog import specs/catalog
    """
    from .catalog import load_catalog
    from .registry import import_catalog

    loaded = load_catalog(directory)
    conn = _open(db_path, create=True)
    report = import_catalog(conn, loaded)
    conn.close()
    if as_json:
        _echo_json(vars(report))
        return
    for warning in report.warnings:
        _err(f"warning: {warning}")
    for kind in ("concepts", "combos", "templates", "models"):
        click.echo(
            f"{kind:<10} {report.added[kind]:>4} new  {report.changed[kind]:>4} changed"
            f"  {report.unchanged[kind]:>4} unchanged"
        )
    click.echo(f"{report.events} event(s) written ({report.layout} layout, {report.source})")


@catalog.command("list")
@db_option
@click.argument(
    "kind", type=click.Choice(["concepts", "combos", "templates", "models"]), required=False
)
@json_option
def catalog_list(db_path: Path, kind: str | None, as_json: bool) -> None:
    """List the current catalog entries.

    Example:

        daydream catalog list templates
    """
    queries = {
        "concepts": "SELECT concept_id, name, version FROM concepts ORDER BY concept_id",
        "combos": "SELECT c.combo_id, c.level, group_concat(cc.concept_id, ', ') AS concepts"
        " FROM combos c JOIN combo_concepts cc USING (combo_id)"
        " GROUP BY c.combo_id ORDER BY c.combo_id",
        "templates": "SELECT stage, template_id, parser, generator, scale_min, scale_max, version"
        " FROM templates ORDER BY CASE stage WHEN 'draft' THEN 1 WHEN 'essay' THEN 2 ELSE 3 END,"
        " template_id",
        "models": "SELECT model_id, provider, provider_model, pool, price_input, price_output"
        " FROM models ORDER BY model_id",
    }
    conn = _open(db_path)
    kinds = [kind] if kind else list(queries)
    result = {k: [dict(r) for r in conn.execute(queries[k])] for k in kinds}
    conn.close()
    if as_json:
        _echo_json(result if not kind else result[kind])
        return
    for k in kinds:
        if not kind:
            click.echo(f"# {k} ({len(result[k])})")
        for row in result[k]:
            click.echo("  ".join("" if v is None else str(v) for v in row.values()))


# -- spec ---------------------------------------------------------------------------------


@cli.group()
def spec() -> None:
    """Compile cohort specs."""


@spec.command("compile")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    help="Output format (default: from --out's suffix, else csv).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write rows here instead of stdout.",
)
@click.option("--limit", type=click.IntRange(min=0), help="At most N rows (0: all).")
@click.option("--seed", type=int, help="Shuffle the rows with this seed (as the upstream did).")
def spec_compile(
    spec_path: Path, fmt: str | None, out: Path | None, limit: int | None, seed: int | None
) -> None:
    """Compile a cohort spec into its rows (one per draft/essay/evaluation combination).

    Example:

        daydream spec compile specs/demo.yaml --format jsonl --limit 5
    """
    from .spec import compile_rows, load_spec, write_rows

    loaded = load_spec(spec_path)
    rows = compile_rows(loaded, seed=seed)
    if fmt is None:
        fmt = "jsonl" if out is not None and out.suffix == ".jsonl" else "csv"
    limit = None if not limit else limit
    if out is None:
        written = write_rows(rows, sys.stdout, fmt, limit=limit)
    else:
        with out.open("w", encoding="utf-8", newline="") as handle:
            written = write_rows(rows, handle, fmt, limit=limit)
        _err(f"{written} row(s) written to {out}")
    if limit is not None and rows.count > written:
        _err(f"... {rows.count - written} more row(s) not shown (--limit {limit})")


# -- plan ---------------------------------------------------------------------------------


@cli.command()
@db_option
@click.argument(
    "spec_path", metavar="[SPEC]", required=False, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option("--cohort", "cohort_id", required=True, help="The cohort id to plan into.")
@click.option(
    "--from-list",
    "list_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Instead of SPEC: a selection list (as `daydream top` writes) to curate a cohort from.",
)
@click.option(
    "--judge",
    "judges",
    multiple=True,
    metavar="TEMPLATE:MODEL",
    help="With --from-list: judge each selected essay with this evaluation template and model"
    " (repeatable; default: the list's evaluation_template x source_models).",
)
@click.option("--dry-run", is_flag=True, help="Compute and print the plan; write nothing.")
@json_option
def plan(
    db_path: Path,
    spec_path: Path | None,
    cohort_id: str,
    list_path: Path | None,
    judges: tuple[str, ...],
    dry_run: bool,
    as_json: bool,
) -> None:
    """Plan a cohort: compile the spec, check it against the catalog, record generations.

    All or nothing: a problem anywhere leaves the database unchanged. Planning the same
    spec again adds nothing; generations shared with other cohorts are linked, not copied.

    With --from-list LIST instead of SPEC, plan a curated cohort: every selected essay of
    the list (selected = true) judged by every --judge. Finished drafts, essays and
    evaluations are reused; only the new judgements will run.

    Example:

    \b
        daydream plan specs/demo.yaml --cohort demo-1 --dry-run
        daydream plan --from-list top.csv --cohort best --judge novelty-rubric:sonnet-4.5
    """
    from .plan import plan_cohort

    if (spec_path is None) == (list_path is None):
        raise click.UsageError("give exactly one of SPEC or --from-list LIST")
    if judges and list_path is None:
        raise click.UsageError("--judge goes with --from-list")
    rows = None
    if list_path is not None:
        from .curation import curation_rows

        rows = curation_rows(list_path, _parse_judges(judges))
        spec_path = list_path
    conn = _open(db_path)  # a plan needs a catalog, so never a new database
    report = plan_cohort(conn, spec_path, cohort_id, dry_run=dry_run, rows=rows)
    conn.close()
    if as_json:
        _echo_json(report.to_dict())
    else:
        click.echo(format_plan(report))


def _parse_judges(values: tuple[str, ...]) -> list[tuple[str, str]]:
    judges = []
    for value in values:
        template, _, model = value.partition(":")
        if not template.strip() or not model.strip():
            raise click.BadParameter(
                f"{value!r} should look like TEMPLATE:MODEL, e.g. novelty-rubric:sonnet-4.5",
                param_hint="--judge",
            )
        judges.append((template.strip(), model.strip()))
    return judges


def format_plan(report: Any) -> str:
    lines = [
        f"cohort {report.cohort_id}{' (dry run: nothing written)' if report.dry_run else ''}:"
        f" {report.rows} spec row(s)",
        f"  {'stage':<11}{'in cohort':>10}{'new':>8}{'shared':>8}{'completed':>11}",
    ]
    for stage, c in report.stages.items():
        lines.append(f"  {stage:<11}{c.in_cohort:>10}{c.new:>8}{c.shared:>8}{c.completed:>11}")
    if report.new_calls:
        calls = ", ".join(f"{m} {n}" for m, n in report.new_calls.items())
        lines.append(f"  new model calls: {calls}")
        if report.cost_high > 0:
            lines.append(
                f"  estimated cost: ${report.cost_low:.2f} - ${report.cost_high:.2f} (rough; `daydream run --rehearse` forecasts from real prompts)"
            )
        if report.unpriced_models:
            lines.append(
                f"  no prices for: {', '.join(report.unpriced_models)} (not in the estimate)"
            )
    for note in report.notes:
        lines.append(f"  note: {note}")
    if not report.dry_run:
        lines.append(f"  {report.events} event(s) written")
    return "\n".join(lines)


# -- running ------------------------------------------------------------------------------


def _pool_limits(values: tuple[str, ...]) -> list[tuple[str, int]]:
    out = []
    for value in values:
        pool, _, number = value.partition("=")
        if not pool or not number.isdigit() or int(number) < 1:
            raise click.BadParameter(f"{value!r} should look like POOL=N with N >= 1", param_hint="--pool-limit")
        out.append((pool, int(number)))
    return out


def _set_pool_limits(db_path: Path, limits: list[tuple[str, int]]) -> None:
    from .leases import set_pool_limit

    if not limits:
        return
    conn = _open(db_path)
    for pool, limit in limits:
        set_pool_limit(conn, pool, limit)
    conn.close()


@cli.command()
@db_option
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=32, show_default=True, help="Model calls at once in this process.")
@click.option("--pool", "pools", multiple=True, help="Only claim tasks of this pool (repeatable).")
@click.option("--cohort", help="Only claim tasks of this cohort.")
@click.option("--name", default="", help="Worker name in leases and events (default host:pid).")
@click.option("--lease", "lease_s", type=click.FloatRange(min=1), default=120.0, show_default=True, help="Lease length in seconds (heartbeats extend it).")
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True, help="Attempts before a generation fails.")
@click.option("--grace", "grace_s", type=click.FloatRange(min=0), default=10.0, show_default=True, help="Seconds to finish in-flight calls on SIGTERM before releasing them.")
@click.option("--offline", is_flag=True, help="Answer every model call with the offline dry-run provider.")
@click.option("--offline-latency", type=click.FloatRange(min=0), default=0.0, help="Simulated latency of the offline provider, seconds.")
@click.option("--base-url", "base_urls", multiple=True, help="Override a provider's base URL: PROVIDER=URL (repeatable).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), help="Deadline of one model call in seconds (default: the provider's, 300).")
@click.option("--forever", is_flag=True, help="Keep polling when there is nothing to do (default: exit when idle).")
def worker(
    db_path: Path, concurrency: int, pools: tuple[str, ...], cohort: str | None, name: str,
    lease_s: float, max_attempts: int, grace_s: float, offline: bool, offline_latency: float,
    base_urls: tuple[str, ...], timeout_s: float | None, forever: bool,
) -> None:
    """Run one worker process: claim ready tasks by lease, run them, record results.

    Exits when nothing is left to do (unless --forever). SIGTERM or Ctrl-C stops it
    cleanly: in-flight calls get --grace seconds, the rest are released.

    Example:

        daydream worker --concurrency 64 --cohort demo
    """
    from .worker import WorkerConfig, run_worker

    urls = {}
    for value in base_urls:
        provider, _, url = value.partition("=")
        if not provider or not url:
            raise click.BadParameter(f"{value!r} should look like PROVIDER=URL", param_hint="--base-url")
        urls[provider] = url
    config = WorkerConfig(
        db_path=db_path, name=name, concurrency=concurrency, pools=pools, cohort=cohort,
        lease_s=lease_s, max_attempts=max_attempts, grace_s=grace_s,
        provider_override="offline" if offline else None, offline_latency_s=offline_latency,
        base_urls=urls, timeout_s=timeout_s, exit_when_idle=not forever,
    )
    stats = run_worker(config, log=_err)
    _err(
        f"worker {config.name}: {stats.ok} ok, {stats.failed} failed, {stats.throttled} throttled,"
        f" {stats.stale} stale, {stats.released} released"
    )


@cli.command()
@db_option
@click.argument("cohort", required=False)
@click.option("--workers", "-w", type=click.IntRange(min=1), default=2, show_default=True, help="Worker processes.")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=32, show_default=True, help="Model calls at once per worker.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True, help="Attempts before a generation fails.")
@click.option("--pool-limit", "pool_limits", multiple=True, help="Concurrency limit of a pool across all workers: POOL=N (repeatable).")
@click.option("--offline", is_flag=True, help="Answer every model call with the offline dry-run provider.")
@click.option("--rehearse", is_flag=True, help="Run everything offline in a scratch copy of the database and report what would break.")
@click.option("--base-url", "base_urls", multiple=True, help="Override a provider's base URL: PROVIDER=URL.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), help="Deadline of one model call in seconds (default: the provider's, 300).")
@click.option("--lease", "lease_s", type=click.FloatRange(min=1), default=120.0, show_default=True, help="Lease length in seconds (heartbeats extend it).")
@click.option("--grace", "grace_s", type=click.FloatRange(min=0), default=10.0, show_default=True, help="Seconds workers give in-flight calls on Ctrl-C before releasing them.")
@json_option
def run(
    db_path: Path, cohort: str | None, workers: int, concurrency: int, max_attempts: int,
    pool_limits: tuple[str, ...], offline: bool, rehearse: bool, base_urls: tuple[str, ...],
    timeout_s: float | None, lease_s: float, grace_s: float, as_json: bool,
) -> None:
    """Run a cohort (or all planned work) with N worker processes until nothing is left.

    Shows live progress on stderr. Ctrl-C stops cleanly; running again resumes, and a
    completed generation is never called again.

    Example:

        daydream run demo --workers 4 --concurrency 16
    """
    from .runner import format_progress, run_cohort

    if rehearse:
        from .rehearsal import format_rehearsal
        from .rehearsal import rehearse as run_rehearsal

        result = run_rehearsal(db_path, cohort, workers=workers, concurrency=concurrency)
        if as_json:
            _echo_json(result.to_dict())
        else:
            click.echo(format_rehearsal(result))
        if result.problems:
            sys.exit(1)
        return
    if cohort:
        from .cohorts import _require_cohort

        conn = _open(db_path)
        _require_cohort(conn, cohort)
        conn.close()
    _set_pool_limits(db_path, _pool_limits(pool_limits))
    args = ["--max-attempts", str(max_attempts), "--lease", str(lease_s), "--grace", str(grace_s)]
    if offline:
        args.append("--offline")
    for value in base_urls:
        args += ["--base-url", value]
    if timeout_s is not None:
        args += ["--timeout", str(timeout_s)]
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(status: Any, elapsed: float, rate: float) -> None:
        line = format_progress(status, elapsed, rate)
        if tty:
            click.echo("\r" + line[:200] + "\033[K", err=True, nl=False)
        elif elapsed - last[0] >= 5:
            last[0] = elapsed
            _err(line)

    summary = run_cohort(db_path, cohort, workers=workers, concurrency=concurrency, worker_args=args, progress=show)
    if tty:
        _err("")
    if as_json:
        _echo_json({**summary.status.to_dict(), "elapsed_s": round(summary.elapsed_s, 3), "restarts": summary.restarts, "interrupted": summary.interrupted})
    else:
        click.echo(format_status(summary.status))
        click.echo(f"elapsed {summary.elapsed_s:.1f}s" + (f", {summary.restarts} worker restart(s)" if summary.restarts else ""))
    if summary.interrupted:
        _err("interrupted: run the same command again to resume")
        sys.exit(130)
    if summary.status.remaining:
        raise click.ClickException(
            f"{summary.status.remaining} generation(s) are still pending: the workers kept"
            f" dying ({summary.restarts} restarts; see their errors above); run the same"
            " command again to resume"
        )


def format_status(status: Any) -> str:
    lines = [f"cohort {status.cohort or '(all)'}:"]
    lines.append(f"  {'stage':<11}" + "".join(f"{s:>10}" for s in ("done", "failed", "blocked", "cancelled", "running", "ready", "waiting")))
    for stage, counts in status.stages.items():
        if sum(counts.values()):
            lines.append(f"  {stage:<11}" + "".join(f"{counts[s]:>10}" for s in ("done", "failed", "blocked", "cancelled", "running", "ready", "waiting")))
    if status.states:
        lines.append("  states: " + ", ".join(f"{k} {v}" for k, v in status.states.items()))
    for m in status.models:
        label = " (offline dry-run)" if m["offline"] else ""
        cost = f"${m['cost']:.4f}" if m["cost"] else "-"
        lines.append(
            f"  model {m['model_id']}{label}: {m['ok'] or 0} ok, {m['errors'] or 0} errors,"
            f" {m['prompt_tokens']:,} prompt + {m['completion_tokens']:,} completion tokens, {cost}"
        )
    return "\n".join(lines)


@cli.command()
@db_option
@click.argument("cohort", required=False)
@json_option
def status(db_path: Path, cohort: str | None, as_json: bool) -> None:
    """Show a cohort's progress per stage, outcome states, and tokens/cost per model.

    Example:

        daydream status demo --json
    """
    from .cohorts import _require_cohort, cohort_status

    conn = _open(db_path)
    if cohort:
        _require_cohort(conn, cohort)
    result = cohort_status(conn, cohort)
    conn.close()
    if as_json:
        _echo_json(result.to_dict())
    else:
        click.echo(format_status(result))


@cli.command()
@db_option
@click.argument("cohort")
@click.option("--failed", is_flag=True, help="Retry every failed or cancelled generation of the cohort.")
@click.option("--gen", "gen_ids", multiple=True, help="Retry this generation (repeatable).")
def retry(db_path: Path, cohort: str, failed: bool, gen_ids: tuple[str, ...]) -> None:
    """Put failed generations back to work (their blocked children wait for them again).

    Example:

        daydream retry demo --failed && daydream run demo
    """
    from .cohorts import retry as retry_generations

    if not failed and not gen_ids:
        raise click.UsageError("say what to retry: --failed or --gen ID")
    conn = _open(db_path)
    chosen = retry_generations(conn, cohort, failed=failed, gen_ids=gen_ids)
    conn.close()
    click.echo(f"{len(chosen)} generation(s) queued again" + ("; run: daydream run " + cohort if chosen else ""))


@cli.command()
@db_option
@click.argument("cohort")
def cancel(db_path: Path, cohort: str) -> None:
    """Cancel a cohort's unfinished generations (those no other cohort still needs).

    Example:

        daydream cancel demo
    """
    from .cohorts import cancel as cancel_cohort

    conn = _open(db_path)
    cancelled = cancel_cohort(conn, cohort)
    conn.close()
    click.echo(f"{len(cancelled)} generation(s) cancelled")


# -- parse --------------------------------------------------------------------------------


@cli.command()
@click.argument("parser")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--scale", nargs=2, type=float, help="The template's score scale, e.g. --scale 0 10.")
@json_option
def parse(parser: str, file: Any, scale: tuple[float, float] | None, as_json: bool) -> None:
    """Show what a parser extracts from a saved model reply (for debugging rubrics).

    Example:

        daydream parse score judge_reply.txt --scale 0 10
    """
    from .parsers import parse_output

    text = file.read()
    result = parse_output(parser, text, scale=tuple(scale) if scale else None)
    if as_json:
        _echo_json(
            {
                "parser": parser,
                "text": result.text,
                "score": result.score,
                "scale_max": result.scale_max,
                "score_line": result.score_line,
            }
        )
        return
    if result.score is not None:
        click.echo(
            f"score: {result.score:g}"
            + (f" (written as /{result.scale_max:g})" if result.scale_max else "")
        )
        if result.score_line:
            click.echo(f"from line: {result.score_line}")
    else:
        click.echo(result.text, nl=not result.text.endswith("\n"))


# -- report: report, top (reports.py) ------------------------------------------------------


@cli.command("report")
@db_option
@click.argument("cohort")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the report files (default: reports/COHORT/).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="File format of the tables.",
)
@click.option(
    "--html", is_flag=True, help="Also write report.html: one self-contained page of charts."
)
@json_option
def report_command(
    db_path: Path, cohort: str, out_dir: Path | None, fmt: str, html: bool, as_json: bool
) -> None:
    """Write a cohort's score reports (CSV or JSON, optionally one HTML page).

    Tables: evaluation_scores (every evaluation with lineage, state and error),
    essay_pivot (one row per essay, per-judge mean/min/max/n, summary), final_results
    (count, mean, std, high/low/top counts per axis), judge_agreement (spread across judge
    models per essay and rubric, with a stability class) and top_of_scale. High, low and
    top are measured on each template's declared scale; docs/reports.md defines them.

    Example:

        daydream report demo --html
    """
    from .reports import build_report, write_report

    conn = _open(db_path)
    result = build_report(conn, cohort)
    conn.close()
    written = write_report(result, out_dir or Path("reports") / cohort, fmt=fmt, html=html)
    if as_json:
        _echo_json({**result.summary, "files": [str(p) for p in written]})
    else:
        click.echo(format_report(result.summary, written))


def format_report(summary: dict[str, Any], written: list[Path]) -> str:
    s = summary
    lines = [
        f"cohort {s['cohort_id']}: {s['evaluations']} evaluation(s), {s['scored']} scored"
        f" ({s['scored_pct'] if s['scored_pct'] is not None else 0}%), {s['failed']} failed,"
        f" {s['blocked_or_cancelled']} blocked or cancelled, {s['unfinished']} unfinished",
        f"  {s['essays']} essay(s) ({s['copy_essays']} copy-mode), {len(s['judges'])} judge(s)",
    ]
    if s["by_evaluation_template"]:
        columns = ("scale", "count", "mean", "std", "min", "max", "high", "low", "top_of_scale")
        width = max(
            len("evaluation template"),
            *(len(r["evaluation_template"]) for r in s["by_evaluation_template"]),
        )
        lines.append(
            f"  {'evaluation template':<{width}}"
            + "".join(f"{c.replace('top_of_scale', 'top'):>7}" for c in columns)
        )
        for row in s["by_evaluation_template"]:
            cells = "".join(f"{'' if row[c] is None else row[c]:>7}" for c in columns)
            lines.append(f"  {row['evaluation_template']:<{width}}{cells}")
    agreement = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s["agreement"].items())
    lines.append(f"  judge agreement (essay x evaluation template): {agreement}")
    lines.append(f"  top of scale: {s['top_of_scale']} evaluation(s)")
    if written:
        lines.append(
            f"wrote {len(written)} file(s) to {written[0].parent}: {', '.join(p.name for p in written)}"
        )
    return "\n".join(lines)


@cli.command("top")
@db_option
@click.argument("cohort")
@click.option("--template", required=True, help="Rank by this evaluation template.")
@click.option(
    "-n",
    "--top-n",
    "top_n",
    type=click.IntRange(min=1),
    help="Keep the best N essays (default 10, or all within --span).",
)
@click.option(
    "--span",
    type=click.FloatRange(min=0),
    help="Keep essays whose average is within X of the best one (then -n applies).",
)
@click.option(
    "--models",
    multiple=True,
    help="Only these judge models (repeatable or comma-separated; default: all that judged).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The selection list CSV (default: reports/COHORT/top-TEMPLATE.csv).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing selection list.")
@click.option(
    "--export",
    "export_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write each chosen essay to DIR/<rank>-<essay id>.md with its lineage and scores.",
)
@json_option
def top_command(
    db_path: Path,
    cohort: str,
    template: str,
    top_n: int | None,
    span: float | None,
    models: tuple[str, ...],
    out: Path | None,
    overwrite: bool,
    export_dir: Path | None,
    as_json: bool,
) -> None:
    """Rank a cohort's essays by one evaluation template and write an editable list.

    Per essay and judge model the best score counts; essays are ordered by the average
    over judge models, then by id. Edit the list's selected column, then curate a new
    cohort from it with: daydream plan --from-list LIST --cohort NEW --judge T:M.

    Example:

        daydream top demo --template novelty-rubric -n 5 --export reports/demo/top
    """
    from .curation import export_essays, rank_essays, write_ranking

    chosen = [m.strip() for value in models for m in value.split(",") if m.strip()]
    conn = _open(db_path)
    ranking = rank_essays(conn, cohort, template, models=chosen, top_n=top_n, span=span)
    path = write_ranking(
        ranking, out or Path("reports") / cohort / f"top-{template}.csv", overwrite=overwrite
    )
    exported = export_essays(conn, ranking, export_dir) if export_dir else []
    conn.close()
    if as_json:
        _echo_json(
            {"list": str(path), "exported": [str(p) for p in exported], "rows": ranking.rows}
        )
        return
    click.echo(format_ranking(ranking))
    _err(f"wrote {len(ranking.rows)} essay(s) to {path}")
    if exported:
        _err(f"exported {len(exported)} essay(s) to {export_dir}")
    _err(
        f"next: edit its selected column, then: daydream plan --from-list {path}"
        " --cohort NEW --judge TEMPLATE:MODEL"
    )


def format_ranking(ranking: Any) -> str:
    keys = ["selection_rank", "essay_gen_id", "avg_score", "max_score", "models_covered"]
    keys += [f"score__{m}" for m in ranking.models]
    keys += ["combo_id", "essay_template", "generation_model"]
    header = ["rank", "essay", "avg", "max", "models", *ranking.models]
    header += ["combo", "essay template", "generation model"]
    table = [header, *(["" if r[k] is None else str(r[k]) for k in keys] for r in ranking.rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table
    )


# -- browse (browse.py) ---------------------------------------------------------------------


@cli.command()
@db_option
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8001, show_default=True, help="Port on 127.0.0.1."
)
@click.option("--open", "open_browser", is_flag=True, help="Open the browser at the index page.")
def browse(db_path: Path, port: int, open_browser: bool) -> None:
    """Browse the database in Datasette on 127.0.0.1, read-only (safe while workers run).

    Shows cohort progress, generations with their texts, lineage, failures, the score
    pivot and top essays, with descriptions, facets and canned queries. The same views
    work in plain `datasette DB` and `sqlite3`. Ctrl-C stops.

    Example:

        daydream browse --db demo.db --port 8001 --open
    """
    from .browse import serve

    serve(db_path, port=port, open_browser=open_browser, log=_err)


# -- import legacy (legacy.py) --------------------------------------------------------------


@cli.group("import")
def import_group() -> None:
    """Import data from elsewhere (the upstream pipeline's store)."""


@import_group.command("legacy")
@db_option
@click.argument("data_root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--cohort",
    default="legacy",
    show_default=True,
    help="Cohort for imported generations that no cohorts/*/membership.csv lists.",
)
@json_option
def import_legacy(db_path: Path, data_root: Path, cohort: str, as_json: bool) -> None:
    """Import an upstream store (1_raw/, gens/, cohorts/) as events, keeping its ids.

    Generations with a parsed.txt end done (evaluations with their score), with only a
    raw.txt failed (truncated or parse_failed), with neither planned. Idempotent: ids
    already in the database are left alone. Reports what was skipped and why.

    Example:

        daydream import legacy ../daydreaming/data --db experiments.db
    """
    from .legacy import import_legacy as run_import

    conn = _open(db_path, create=True)
    report = run_import(conn, data_root, cohort=cohort)
    conn.close()
    if as_json:
        _echo_json(report.to_dict())
        return
    for warning in [*(report.catalog.warnings if report.catalog else ()), *report.warnings]:
        _err(f"warning: {warning}")
    click.echo(format_legacy(report))


def format_legacy(report: Any) -> str:
    lines = [f"legacy store {report.source}"]
    if report.catalog:
        added = ", ".join(f"{n} {k}" for k, n in report.catalog.added.items() if n)
        changed = ", ".join(f"{n} {k}" for k, n in report.catalog.changed.items() if n)
        lines.append(
            f"  catalog: {added or 'nothing'} new"
            + (f", {changed} changed" if changed else "")
        )
    lines.append(f"  {'stage':<11}{'done':>6}{'failed':>8}{'planned':>9}{'already imported':>18}")
    for stage, counts in report.imported.items():
        lines.append(
            f"  {stage:<11}{counts['done']:>6}{counts['failed']:>8}{counts['planned']:>9}"
            f"{report.already[stage]:>18}"
        )
    if report.cohorts:
        lines.append(f"  cohorts created: {', '.join(report.cohorts)}")
    if report.linked:
        members = ", ".join(f"{c} {n}" for c, n in report.linked.items())
        lines.append(f"  generations added to cohorts: {members}")
    if report.models_added:
        lines.append(
            f"  models added (not in llm_models.csv; provider openrouter):"
            f" {', '.join(report.models_added)}"
        )
    if report.skipped:
        lines.append(f"  skipped {len(report.skipped)}:")
        lines += [f"    {skip}" for skip in report.skipped]
    lines.append(f"  {report.events} event(s) written")
    return "\n".join(lines)



def main() -> None:  # pragma: no cover - console entry
    cli()


__all__ = ["cli", "main"]
