"""Commands for the database, the catalog, specs and planning: demo, db, events, catalog, spec, plan."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

import click

from daydream.cli.base import Whole, _echo_json, _err, _open, cli, db_option, json_option
from daydream.values import COUNT_MAX, SQLITE_INT_MAX

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
    from daydream.demo import run_demo

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
    from daydream.db.projections.replay import rebuild

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
    from daydream.db.check import check

    results = check(db_path, progress=lambda text: _err(f"db check: {text}..."))
    if as_json:
        _echo_json([{"check": n, "ok": ok, "detail": d} for n, ok, d in results])
    else:
        for name, ok, detail in results:
            click.echo(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not all(ok for _, ok, _ in results):
        sys.exit(1)


@db.command("checkpoint")
@db_option
def db_checkpoint(db_path: Path) -> None:
    """Copy the write-ahead log into the database file and reset it to empty.

    SQLite does this by itself as writes go on, except while a reader holds an old
    snapshot (a long query, an open transaction); then the log keeps growing, and
    `daydream status` warns. Waits up to a second for other connections; exits 1 when
    one still blocks it.

    Example:

        daydream db checkpoint
    """
    from daydream.db.files import checkpoint, wal_bytes

    conn = _open(db_path)
    before = wal_bytes(db_path)
    done, frames, copied = checkpoint(conn)
    conn.close()
    size = f"{before / 2**20:.1f} MB"
    if not done:
        _err(
            f"{db_path}: the write-ahead log ({size}, {copied} of {frames} page(s) copied)"
            " could not be reset: another connection still uses it (a reader of an older"
            " snapshot: a long query, an open transaction, a stuck process; or a writer);"
            " end it, or wait for it, and run again"
        )
        sys.exit(1)
    click.echo(f"{db_path}: write-ahead log of {size} checkpointed and reset")


# -- events -------------------------------------------------------------------------------


@cli.command()
@db_option
@click.option("--type", "types", multiple=True, help="Only events of this type (repeatable).")
@click.option("--subject", help="Only events about this subject (a gen id, cohort:ID...).")
@click.option("--after", type=Whole(0, SQLITE_INT_MAX), default=0, show_default=True, help="Only events after this id.")
@click.option("--limit", type=Whole(0, SQLITE_INT_MAX), help="At most this many events.")
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
    from daydream.db.log import read_events
    from daydream.events import EVENT_TYPES

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
    from daydream.catalog.load import load_catalog
    from daydream.catalog.recording import import_catalog

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
@click.option("--limit", type=Whole(0, COUNT_MAX), help="At most N rows (0: all).")
@click.option("--seed", type=Whole(0, SQLITE_INT_MAX), help="Shuffle the rows with this seed (as the upstream did).")
def spec_compile(
    spec_path: Path, fmt: str | None, out: Path | None, limit: int | None, seed: int | None
) -> None:
    """Compile a cohort spec into its rows (one per draft/essay/evaluation combination).

    Example:

        daydream spec compile specs/demo.yaml --format jsonl --limit 5
    """
    from daydream.spec import compile_rows, load_spec, write_rows

    loaded = load_spec(spec_path)
    rows = compile_rows(loaded, seed=seed)
    jsonl = fmt == "jsonl" or (fmt is None and out is not None and out.suffix == ".jsonl")
    form: Literal["csv", "jsonl"] = "jsonl" if jsonl else "csv"
    limit = None if not limit else limit
    if out is None:
        written = write_rows(rows, sys.stdout, form, limit=limit)
    else:
        with out.open("w", encoding="utf-8", newline="") as handle:
            written = write_rows(rows, handle, form, limit=limit)
        _err(f"{written} row(s) written to {out}")
    if limit is not None and rows.count > written:
        _err(f"... {rows.count - written} more row(s) not shown (--limit {limit})")


# -- plan ---------------------------------------------------------------------------------


@cli.command()
@db_option
@click.argument(
    "spec_path", metavar="[SPEC]", required=False, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "--cohort", "cohort_id", help="The cohort id to plan into (default: the spec's name)."
)
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
    cohort_id: str | None,
    list_path: Path | None,
    judges: tuple[str, ...],
    dry_run: bool,
    as_json: bool,
) -> None:
    """Plan a cohort: compile the spec, check it against the catalog, record generations.

    All or nothing: a problem anywhere leaves the database unchanged. Planning the same
    spec again adds nothing; generations shared with other cohorts are linked, not copied.
    The cohort id is --cohort, or the spec's name.

    With --from-list LIST instead of SPEC, plan a curated cohort: every selected essay of
    the list (selected = true) judged by every --judge. Finished drafts, essays and
    evaluations are reused; only the new judgements will run.

    Example:

    \b
        daydream plan specs/demo.yaml --cohort demo-1 --dry-run
        daydream plan --from-list top.csv --cohort best --judge novelty-rubric:sonnet-4.5
    """
    from daydream.plan.write import plan_cohort
    from daydream.results.text import format_plan

    if (spec_path is None) == (list_path is None):
        raise click.UsageError("give exactly one of SPEC or --from-list LIST")
    if judges and list_path is None:
        raise click.UsageError("--judge goes with --from-list")
    rows = None
    if list_path is not None:
        from daydream.results.curation import curation_rows

        rows = curation_rows(list_path, _parse_judges(judges))
        spec_path = list_path
    assert spec_path is not None  # one of SPEC or --from-list, checked above
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


