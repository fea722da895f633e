"""Commands for results: report, top, compare, reparse, label, import legacy."""

from __future__ import annotations

from pathlib import Path

import click

from daydream.cli.base import Number, Whole, _echo_json, _err, _open, cli, db_option, json_option
from daydream.values import COUNT_MAX

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
    type=Whole(1, COUNT_MAX),
    help="Keep the best N essays (default 10, or all within --span).",
)
@click.option(
    "--span",
    type=Number(0, 1e9),
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
    from daydream.results.files import safe_name
    from daydream.results.text import format_ranking

    chosen = [m.strip() for value in models for m in value.split(",") if m.strip()]
    conn = _open(db_path)
    ranking = rank_essays(conn, cohort, template, models=chosen, top_n=top_n, span=span)
    path = out or Path("reports") / cohort / f"top-{safe_name(ranking.template)}.csv"
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


# -- compare (comparison.py) -----------------------------------------------------------------


@cli.command("compare")
@db_option
@click.argument("cohorts", nargs=-1, required=True)
@click.option("--axis", help="The axis whose levels to compare within one cohort.")
@click.option(
    "--levels",
    multiple=True,
    help="The levels to compare, in order (default: all with scores): --levels A B, or A,B.",
)
@click.option("--template", help="Only this evaluation template (rubric); default: each one.")
@json_option
def compare_command(
    db_path: Path,
    cohorts: tuple[str, ...],
    axis: str | None,
    levels: tuple[str, ...],
    template: str | None,
    as_json: bool,
) -> None:
    """Compare an axis's levels on matched units, or two cohorts, with paired statistics.

    With --axis (draft_template, draft_model, essay_template, generation_model,
    evaluation_model): each unit is the same draft, combination or essay with every other
    axis equal; b minus a is averaged over matched units with a 95% interval that resamples
    combinations, and tested with Wilcoxon's signed-rank test (Holm-adjusted over all pairs
    when more than two levels). Unmatched units are counted and left out. With two cohorts:
    the same on their shared essays, else their shared combinations. docs/reports.md
    explains each number and when not to trust it.

    Example:

        daydream compare demo --axis essay_template --levels idea-verbatim focused-essay
        daydream compare demo demo-best --template novelty-rubric --json
    """
    from daydream.results.comparison import compare_cohorts, compare_levels
    from daydream.results.text import format_comparisons

    if axis is None and len(cohorts) != 2:
        raise click.UsageError(
            "give --axis AXIS to compare levels within a cohort, or two cohorts to compare them"
        )
    if axis is not None and len(cohorts) > 1 and not levels:
        raise click.UsageError(
            "--axis compares levels within one cohort: give one cohort (to compare two"
            " cohorts, leave out --axis)"
        )
    conn = _open(db_path)
    try:
        if axis is None:
            result = compare_cohorts(conn, cohorts[0], cohorts[1], template=template)
        else:
            # `--levels A B`: click gives --levels A, and B lands among the cohorts.
            wanted = [v.strip() for value in (*levels, *cohorts[1:]) for v in value.split(",")]
            result = compare_levels(
                conn, cohorts[0], axis, levels=[v for v in wanted if v], template=template
            )
    finally:
        conn.close()
    if as_json:
        _echo_json(result.to_dict())
    else:
        click.echo(format_comparisons(result))


# -- reparse (worker/reparse.py) -------------------------------------------------------------


@cli.command("reparse")
@db_option
@click.argument("cohort")
@click.option("--stage", type=click.Choice(["draft", "essay", "evaluation"]), help="Only this stage.")
@click.option("--template", help="Only generations of this template.")
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
@json_option
def reparse_command(
    db_path: Path,
    cohort: str,
    stage: str | None,
    template: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Parse stored replies again with the current templates and parsers (no model call).

    After a parser fix, or after re-importing a catalog whose template changed its scale,
    parser or min_lines: every stored reply of the cohort (of --stage and --template) is
    validated and parsed again with the template's current version, exactly as a worker
    would, and each changed result is recorded as a generation.reparsed event with the
    parser version. Reports and pivots follow; the previous results stay in the log and in
    the reparses table. Running it twice changes nothing the second time.

    Example:

        daydream catalog import specs/catalog
        daydream reparse demo --stage evaluation --dry-run
        daydream reparse demo --stage evaluation
    """
    from daydream.results.text import format_reparse
    from daydream.worker.reparse import reparse

    def progress(done: int, total: int) -> None:
        if total >= 5_000:
            _err(f"parsed {done:,} of {total:,} replies")

    conn = _open(db_path)
    try:
        report = reparse(
            conn, cohort, stage=stage, template=template, dry_run=dry_run, progress=progress
        )
    finally:
        conn.close()
    if as_json:
        _echo_json(report.to_dict())
    else:
        click.echo(format_reparse(report))


# -- label export / import (labels.py) -------------------------------------------------------


@cli.group("label")
def label_group() -> None:
    """Human ratings: a sheet for raters, and their ratings recorded beside the judges'."""


@label_group.command("export")
@db_option
@click.argument("cohort")
@click.option("--template", required=True, help="The rubric (evaluation template) to rate on.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The sheet (default: reports/COHORT/labels-TEMPLATE.csv).",
)
@click.option("--rater", default="", help="Fill the rater column with this name.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shuffled order.")
@click.option("--overwrite", is_flag=True, help="Replace an existing sheet.")
def label_export(
    db_path: Path,
    cohort: str,
    template: str,
    out: Path | None,
    rater: str,
    seed: int,
    overwrite: bool,
) -> None:
    """Write a blind rating sheet: one row per essay, with its text and a blank score.

    Columns: essay_gen_id, evaluation_template, rater, score, note (what label import
    reads), then scale and essay_text. No template, model or judge score is shown, and the
    order is shuffled (fixed by --seed). Raters fill rater and score (and a note).

    Example:

        daydream label export demo --template novelty-rubric --rater ab
    """
    from daydream.results.labels import export_sheet

    path = out or Path("reports") / cohort / f"labels-{template}.csv"
    conn = _open(db_path)
    try:
        count = export_sheet(
            conn, cohort, template, path, rater=rater, overwrite=overwrite, seed=seed
        )
    finally:
        conn.close()
    click.echo(f"wrote {count} essay(s) to {path}")
    _err(f"next: have raters fill rater and score, then: daydream label import {path}")


@label_group.command("import")
@db_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def label_import(db_path: Path, file: Path, as_json: bool) -> None:
    """Record human ratings from a CSV (essay_gen_id,evaluation_template,rater,score[,note]).

    Each score is checked against the rubric's scale; any bad row refuses the whole file
    (nothing written). Rows without a score are skipped; a rating identical to the one
    recorded is skipped; a changed one replaces it (both stay in the log). The report's
    calibration section and the essay_ratings view then show them beside the judges.

    Example:

        daydream label import reports/demo/labels-novelty-rubric.csv
    """
    from daydream.results.labels import import_ratings

    conn = _open(db_path)
    try:
        report = import_ratings(conn, file)
    finally:
        conn.close()
    if as_json:
        _echo_json(report.to_dict())
        return
    click.echo(
        f"{file}: {report.recorded} rating(s) recorded, {report.unchanged} unchanged,"
        f" {report.blank} row(s) without a score skipped"
    )


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


