"""Commands that run cohorts: worker, run, status, retry, cancel, parse."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from daydream.cli.base import (
    Number,
    Whole,
    _echo_json,
    _err,
    _open,
    cli,
    db_option,
    json_option,
    option_type,
    worker_config,
    worker_options,
)
from daydream.queue.pools import POOL_LIMIT_MAX
from daydream.values import quote

# -- running ------------------------------------------------------------------------------


def _pool_limits(values: tuple[str, ...]) -> list[tuple[str, int]]:
    out = []
    for value in values:
        pool, _, number = value.partition("=")
        if not pool or not (number.isascii() and number.isdigit()) or not 1 <= int(number) <= POOL_LIMIT_MAX:
            raise click.BadParameter(f"{quote(value)} should look like POOL=N with N from 1 to {POOL_LIMIT_MAX}", param_hint="--pool-limit")
        out.append((pool, int(number)))
    return out


@cli.command()
@db_option
@worker_options
@click.option("--pool", "pools", multiple=True, help="Only claim tasks of this pool (repeatable).")
@click.option("--cohort", help="Only claim tasks of this cohort.")
@click.option("--name", default="", help="Worker name in leases and events (default host:pid).")
@click.option("--forever", is_flag=True, help="Keep polling when there is nothing to do (default: exit when idle).")
def worker(db_path: Path, pools: tuple[str, ...], forever: bool, **options: Any) -> None:
    """Run one worker process: claim ready tasks by lease, run them, record results.

    Exits when nothing is left to do (unless --forever). SIGTERM or Ctrl-C stops it
    cleanly: in-flight calls get --grace seconds, the rest are released.

    Example:

        daydream worker --concurrency 64 --cohort demo
    """
    from daydream.vocabulary import EXIT_CODES
    from daydream.worker.process import run_worker

    config = worker_config(db_path, pools=pools, exit_when_idle=not forever, **options)
    stats = run_worker(config, log=_err)
    _err(stats.line(config.name))
    if stats.stopped:
        _err(f"Error: {stats.stop_message}")
        sys.exit(EXIT_CODES[stats.stopped])


@cli.command()
@db_option
@click.argument("cohort", required=False)
@click.option("--workers", "-w", type=Whole(1, 1024), default=2, show_default=True, help="Worker processes.")
@worker_options
@click.option("--pool-limit", "pool_limits", multiple=True, callback=lambda _ctx, _param, values: _pool_limits(values), help="Concurrency limit of a pool across all workers: POOL=N (repeatable).")
@click.option("--rehearse", is_flag=True, help="Run everything offline in a scratch copy of the database and report what would break.")
@click.option("--max-cost", "max_cost_usd", type=option_type("max_cost_usd"), help="Stop claiming before the cohort's calls could cost more than this, in USD (default: the spec's budget_usd).")
@click.option("--unpriced-per-mtok", "unpriced_per_mtok", type=option_type("unpriced_per_mtok"), help="Under a budget, count calls of models without prices at this many USD per million tokens (0: free, e.g. a local server).")
@json_option
def run(
    db_path: Path, cohort: str | None, workers: int, pool_limits: list[tuple[str, int]],
    rehearse: bool, as_json: bool, **options: Any,
) -> None:
    """Run a cohort (or all planned work) with N worker processes until nothing is left.

    First checks every endpoint, model, key and context the remaining calls need (one
    line per problem, nothing written). Shows live progress on stderr, waits for an
    endpoint that goes down (up to --outage-limit), and ends with the failures grouped.
    Ctrl-C stops cleanly; running again resumes, and a completed generation is never
    called again. Exit codes: 0 all finished, 1 error, 3 infrastructure failures,
    4 a pool is unusable, 5 outage limit, 6 budget reached, 130 interrupted.

    Example:

        daydream run demo --workers 4 --concurrency 16 --max-cost 5
    """
    from daydream.results.text import (
        format_failures,
        format_rehearsal,
        format_run_end,
        format_status,
    )
    from daydream.runner.rehearsal import rehearse as run_rehearsal
    from daydream.runner.run import prepare_run, run_cohort
    from daydream.vocabulary import EXIT_CODES

    config = worker_config(db_path, cohort=cohort, **options)
    if rehearse:
        config, setup = prepare_run(config, rehearsal=True)
        result = run_rehearsal(config, workers=workers, setup=setup)
        if as_json:
            _echo_json(result.to_dict())
        else:
            click.echo(format_rehearsal(result))
        if result.problems or result.setup:
            sys.exit(1)
        return
    config, notes = prepare_run(config, pool_limits)  # before any worker starts
    for note in notes:  # a problem raises: one line each, nothing written
        _err(note)
    config.check_providers = False  # checked once here, not again in every worker
    summary = run_cohort(config, workers=workers, progress=_progress_line())
    if sys.stderr.isatty():
        _err("")
    if as_json:
        _echo_json({**summary.status.to_dict(), "elapsed_s": round(summary.elapsed_s, 3), "restarts": summary.restarts, "interrupted": summary.interrupted, "outcome": summary.outcome, "exit_code": EXIT_CODES[summary.outcome]})
    else:
        click.echo(format_status(summary.status))
        if failures := format_failures(summary.status, db_path):
            click.echo(failures)
        click.echo(f"elapsed {summary.elapsed_s:.1f}s" + (f", {summary.restarts} worker restart(s)" if summary.restarts else ""))
    if summary.interrupted:
        _err("interrupted: run the same command again to resume")
        sys.exit(EXIT_CODES["interrupted"])
    for line in format_run_end(summary).splitlines():
        _err(f"Error: {line}")
    sys.exit(EXIT_CODES[summary.outcome])


def _progress_line() -> Any:
    """The live progress of ``run``: one line redrawn on a terminal, else every 5 s."""
    from daydream.results.text import format_progress

    tty = sys.stderr.isatty()
    last = [0.0]

    def show(status: Any, elapsed: float, rate: float) -> None:
        line = format_progress(status, elapsed, rate)
        if tty:
            click.echo("\r" + line[:200] + "\033[K", err=True, nl=False)
        elif elapsed - last[0] >= 5:
            last[0] = elapsed
            _err(line)

    return show


@cli.command()
@db_option
@click.argument("cohort", required=False)
@json_option
def status(db_path: Path, cohort: str | None, as_json: bool) -> None:
    """Show a cohort's progress per stage, outcome states, tokens/cost per model, and why.

    Ends with the failures grouped by reason (count, state, an example) and where to see
    them in `daydream browse`, the pools stopped and the endpoints down.

    Example:

        daydream status demo --json
    """
    from daydream.db import files
    from daydream.queue.cohorts import cohort_status, require_cohort
    from daydream.results.text import format_failures, format_status

    conn = _open(db_path)
    if cohort:
        require_cohort(conn, cohort)
    result = cohort_status(conn, cohort, failures=True)
    conn.close()
    wal = files.wal_bytes(db_path)
    if as_json:
        _echo_json({**result.to_dict(), "wal_bytes": wal})
    else:
        click.echo(format_status(result))
        if failures := format_failures(result, db_path):
            click.echo(failures)
    if wal > files.WAL_WARN_BYTES:
        _err(
            f"warning: the write-ahead log is {wal / 2**20:.0f} MB: a reader holding an old"
            " snapshot keeps SQLite from resetting it; end long-lived readers, then run:"
            f" daydream db checkpoint --db {db_path}"
        )


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
    from daydream.queue.cohorts import retry as retry_generations

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
    from daydream.queue.cohorts import cancel as cancel_cohort
    from daydream.queue.cohorts import kept_for_others

    conn = _open(db_path)
    cancelled = cancel_cohort(conn, cohort)
    kept, others = kept_for_others(conn, cohort)
    conn.close()
    line = f"{len(cancelled)} generation(s) cancelled"
    if kept:
        line += f"; {kept} unfinished kept: cohort(s) {', '.join(others)} still need them"
    click.echo(line)


# -- parse --------------------------------------------------------------------------------


@cli.command()
@click.argument("parser")
@click.argument("file", type=click.File("rb"))
@click.option("--scale", nargs=2, type=Number(-1e9, 1e9), help="The template's score scale, e.g. --scale 0 10.")
@json_option
def parse(parser: str, file: Any, scale: tuple[float, float] | None, as_json: bool) -> None:
    """Show what a parser extracts from a saved model reply (for debugging rubrics).

    Example:

        daydream parse score judge_reply.txt --scale 0 10
    """
    from daydream.parsers import parse_output

    data = file.read()
    try:
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{file.name}: not UTF-8 text (byte {exc.start}); give a saved model"
            " reply as UTF-8 text"
        ) from None
    result = parse_output(parser, text, scale=(scale[0], scale[1]) if scale else None)
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
