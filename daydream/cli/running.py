"""Commands that run cohorts: worker, run, status, retry, cancel, parse."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from daydream.cli.base import _echo_json, _err, _open, cli, db_option, json_option

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
    from daydream.queue.pools import set_pool_limit

    if not limits:
        return
    conn = _open(db_path)
    try:
        known = {row[0] for row in conn.execute("SELECT DISTINCT pool FROM generations")}
        known |= {row[0] for row in conn.execute("SELECT pool FROM pools")}
        for pool, _ in limits:
            if pool not in known:
                raise click.BadParameter(
                    f"no generation is in pool {pool!r} (pools: {', '.join(sorted(known))});"
                    " check its spelling",
                    param_hint="--pool-limit",
                )
        for pool, limit in limits:
            set_pool_limit(conn, pool, limit)
    finally:
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
# daydream run checks the providers once, before starting its workers.
@click.option("--providers-checked", is_flag=True, hidden=True)
def worker(
    db_path: Path, concurrency: int, pools: tuple[str, ...], cohort: str | None, name: str,
    lease_s: float, max_attempts: int, grace_s: float, offline: bool, offline_latency: float,
    base_urls: tuple[str, ...], timeout_s: float | None, forever: bool, providers_checked: bool,
) -> None:
    """Run one worker process: claim ready tasks by lease, run them, record results.

    Exits when nothing is left to do (unless --forever). SIGTERM or Ctrl-C stops it
    cleanly: in-flight calls get --grace seconds, the rest are released.

    Example:

        daydream worker --concurrency 64 --cohort demo
    """
    from daydream.worker import WorkerConfig, run_worker

    urls = _base_urls(base_urls)
    config = WorkerConfig(
        db_path=db_path, name=name, concurrency=concurrency, pools=pools, cohort=cohort,
        lease_s=lease_s, max_attempts=max_attempts, grace_s=grace_s,
        provider_override="offline" if offline else None, offline_latency_s=offline_latency,
        base_urls=urls, timeout_s=timeout_s, exit_when_idle=not forever,
    )
    stats = run_worker(config, log=_err, check=not providers_checked)
    _err(
        f"worker {config.name}: {stats.ok} ok, {stats.failed} failed, {stats.throttled} throttled,"
        f" {stats.stale} stale, {stats.released} released"
    )


def _base_urls(values: tuple[str, ...]) -> dict[str, str]:
    urls = {}
    for value in values:
        provider, _, url = value.partition("=")
        if not provider or not url:
            raise click.BadParameter(
                f"{value!r} should look like PROVIDER=URL", param_hint="--base-url"
            )
        urls[provider] = url
    return urls


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
    from daydream.runner import format_progress, run_cohort

    urls = _base_urls(base_urls)
    conn = _open(db_path)
    try:
        if cohort:
            from daydream.queue.cohorts import require_cohort

            require_cohort(conn, cohort)
        # A --base-url for a provider no model of the catalog has is a typo (olama=...).
        known = {row[0] for row in conn.execute("SELECT DISTINCT provider FROM models")}
    finally:
        conn.close()
    unknown = sorted(set(urls) - known)
    if unknown:
        raise click.BadParameter(
            f"no model of the catalog uses provider {unknown[0]!r} (they use:"
            f" {', '.join(sorted(known))}); check its spelling",
            param_hint="--base-url",
        )
    if rehearse:
        from daydream.rehearsal import format_rehearsal
        from daydream.rehearsal import rehearse as run_rehearsal

        result = run_rehearsal(
            db_path, cohort, workers=workers, concurrency=concurrency, base_urls=urls
        )
        if as_json:
            _echo_json(result.to_dict())
        else:
            click.echo(format_rehearsal(result))
        if result.problems or result.setup:
            sys.exit(1)
        return
    from daydream.worker import WorkerConfig, check_providers

    # Before any worker starts: a missing API key or a bad base URL is one line here.
    check_providers(
        WorkerConfig(
            db_path=db_path,
            cohort=cohort,
            provider_override="offline" if offline else None,
            base_urls=urls,
        )
    )
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

    summary = run_cohort(
        db_path, cohort, workers=workers, concurrency=concurrency, worker_args=args,
        progress=show, providers_checked=True,
    )
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
    lines.append(f"  {'stage':<11}" + "".join(f"{s:>10}" for s in ("done", "failed", "blocked", "cancelled", "running", "queued", "ready", "waiting")))
    for stage, counts in status.stages.items():
        if sum(counts.values()):
            lines.append(f"  {stage:<11}" + "".join(f"{counts[s]:>10}" for s in ("done", "failed", "blocked", "cancelled", "running", "queued", "ready", "waiting")))
    if status.states:
        lines.append("  states: " + ", ".join(f"{k} {v}" for k, v in status.states.items()))
    for m in status.models:
        label = " (offline dry-run)" if m["offline"] else ""
        cost = f"${m['cost']:.4f}" if m["cost"] else "-"
        lines.append(
            f"  model {m['model_id']}{label}: {m['ok'] or 0} ok, {m['errors'] or 0} errors,"
            f" {m['prompt_tokens']:,} prompt + {m['completion_tokens']:,} completion tokens, {cost}"
        )
    for p in status.pools:
        grows = f", grows back to {p['ceiling']}" if p["ceiling"] > p["limit"] else ""
        lines.append(
            f"  pool {p['pool']}: {p['in_flight']} call(s) in flight of a limit of {p['limit']}"
            f"{grows}, {p['queued']} queued (all cohorts)"
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
    from daydream.db import files
    from daydream.queue.cohorts import cohort_status, require_cohort

    conn = _open(db_path)
    if cohort:
        require_cohort(conn, cohort)
    result = cohort_status(conn, cohort)
    conn.close()
    wal = files.wal_bytes(db_path)
    if as_json:
        _echo_json({**result.to_dict(), "wal_bytes": wal})
    else:
        click.echo(format_status(result))
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
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--scale", nargs=2, type=float, help="The template's score scale, e.g. --scale 0 10.")
@json_option
def parse(parser: str, file: Any, scale: tuple[float, float] | None, as_json: bool) -> None:
    """Show what a parser extracts from a saved model reply (for debugging rubrics).

    Example:

        daydream parse score judge_reply.txt --scale 0 10
    """
    from daydream.parsers import parse_output

    text = file.read()
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
