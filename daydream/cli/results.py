"""Commands for results: report, top, browse, import legacy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    from daydream.results.curation import export_essays, rank_essays, write_ranking

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
    from daydream.browse import serve

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
    from daydream.legacy import import_legacy as run_import
    from daydream.legacy import read_legacy

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
