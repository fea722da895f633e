"""Commands for results: report, top, browse, import legacy."""

from __future__ import annotations

from pathlib import Path

import click

from daydream.cli.base import _echo_json, _err, _open, cli, db_option, json_option

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
    from daydream.results.reports import build_report, write_report
    from daydream.results.text import format_report

    conn = _open(db_path)
    result = build_report(conn, cohort)
    conn.close()
    written = write_report(result, out_dir or Path("reports") / cohort, fmt=fmt, html=html)
    if as_json:
        _echo_json({**result.summary, "files": [str(p) for p in written]})
    else:
        click.echo(format_report(result.summary, written))




@cli.command("top")
@db_option
@click.argument("cohort")
@click.option(
    "--template", help="Rank by this evaluation template (default: the cohort's only one)."
)
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
    help="Write the selection list CSV here (default: reports/COHORT/top-TEMPLATE.csv,"
    " written when it does not exist yet).",
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
    template: str | None,
    top_n: int | None,
    span: float | None,
    models: tuple[str, ...],
    out: Path | None,
    overwrite: bool,
    export_dir: Path | None,
    as_json: bool,
) -> None:
    """Rank a cohort's essays by one evaluation template and keep an editable list.

    Per essay and judge model the best score counts; essays are ordered by the average
    over judge models, then by id; essays whose evaluations have no score are listed
    after the ranking with the reason. The list (a selected column per essay) is written
    to --out, or to reports/COHORT/top-TEMPLATE.csv when that file does not exist yet: an
    existing list (it may hold your edits) is kept unless --overwrite, so the command can
    be run again. Edit the selected column, then curate a new cohort from it with:
    daydream plan --from-list LIST --cohort NEW --judge T:M.

    Example:

        daydream top demo --template novelty-rubric -n 5 --export reports/demo/top
    """
    from daydream.results.curation import export_essays, is_same_list, rank_essays, write_ranking
    from daydream.results.text import format_ranking

    chosen = [m.strip() for value in models for m in value.split(",") if m.strip()]
    conn = _open(db_path)
    ranking = rank_essays(conn, cohort, template, models=chosen, top_n=top_n, span=span)
    path = out or Path("reports") / cohort / f"top-{ranking.template}.csv"
    same = is_same_list(ranking, path)
    existed = path.exists()
    if not same:
        write_ranking(ranking, path, overwrite=overwrite, keep_existing=out is None)
    exported = export_essays(conn, ranking, export_dir) if export_dir else []
    conn.close()
    if as_json:
        _echo_json(
            {
                "list": str(path),
                "list_written": not same and (overwrite or not existed),
                "exported": [str(p) for p in exported],
                "rows": ranking.rows,
                "unscored": ranking.unscored,
            }
        )
        return
    click.echo(format_ranking(ranking))
    if same:
        _err(f"the list {path} already holds this ranking")
    elif existed and not overwrite:
        _err(f"kept your list {path} (it differs: it may hold edits); --overwrite replaces it")
    else:
        _err(f"wrote {len(ranking.rows)} essay(s) to {path}")
    if exported:
        _err(f"exported {len(exported)} essay(s) to {export_dir}")
    _err(
        f"next: edit its selected column, then: daydream plan --from-list {path}"
        " --cohort NEW --judge TEMPLATE:MODEL"
    )


# -- reading: search, show (results/search.py, results/transcript.py) ---------------------


@cli.command("search")
@db_option
@click.argument("query")
@click.option("--cohort", help="Only this cohort's generations.")
@click.option("--stage", type=click.Choice(["draft", "essay", "evaluation"]), help="Only this stage.")
@click.option(
    "--field",
    type=click.Choice(["parsed", "raw", "prompt"]),
    help="Only this text of each generation (default: any).",
)
@click.option(
    "-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Results to show."
)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip the first N results.")
@json_option
def search_command(
    db_path: Path,
    query: str,
    cohort: str | None,
    stage: str | None,
    field: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """Search the prompts, replies and parsed texts of every generation (full text).

    Words must all appear (matched by their stem: invent finds inventing); "a phrase" in
    quotes, OR, NOT, prefix* and NEAR(a b) work as in SQLite FTS5. Best match first, one
    line per generation with its best passage; open one with: daydream show GEN_ID.

    Example:

        daydream search "carbon capture" --cohort demo --stage essay
    """
    from daydream.queue.cohorts import require_cohort
    from daydream.results.search import search
    from daydream.results.text import format_search

    conn = _open(db_path)
    if cohort:
        require_cohort(conn, cohort)
    hits = search(
        conn, query, cohort_id=cohort, stage=stage, field=field, limit=limit, offset=offset
    )
    conn.close()
    if as_json:
        _echo_json([hit.to_dict() for hit in hits])
        return
    click.echo(format_search(hits))
    if hits:
        _err(f"open one with: daydream show {hits[0].gen_id}")
        if len(hits) == limit:
            _err(f"more may match: add --offset {offset + limit}")


@cli.command("show")
@db_option
@click.argument("gen_id")
@json_option
def show_command(db_path: Path, gen_id: str, as_json: bool) -> None:
    """Show one generation: lineage, call, prompt, reply, parsed text and judges.

    For an essay, every judge's score and reply; for a draft, what was made from it. The
    same transcript as the generation page of daydream browse.

    Example:

        daydream show e_2ry5fekzryvabjd1
    """
    from daydream.results.text import format_transcript
    from daydream.results.transcript import read_transcript

    conn = _open(db_path)
    transcript = read_transcript(conn, gen_id)
    conn.close()
    if as_json:
        _echo_json(transcript.to_dict())
    else:
        click.echo(format_transcript(transcript))


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
    from daydream.browse.app import serve

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
    from daydream.legacy.importer import import_legacy as run_import
    from daydream.legacy.importer import read_legacy
    from daydream.results.text import format_legacy

    source = read_legacy(data_root, cohort=cohort)  # errors here create no database
    conn = _open(db_path, create=True)
    report = run_import(conn, source)
    conn.close()
    if as_json:
        _echo_json(report.to_dict())
        return
    for warning in [*(report.catalog.warnings if report.catalog else ()), *report.warnings]:
        _err(f"warning: {warning}")
    click.echo(format_legacy(report))


