"""Commands for reading results: search, show (one generation's transcript), browse."""

from __future__ import annotations

from pathlib import Path

import click

from daydream.cli.base import _echo_json, _err, _open, cli, db_option, json_option

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
    from daydream.results.transcript_text import format_search

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
    from daydream.results.transcript import read_transcript
    from daydream.results.transcript_text import format_transcript

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
@click.option(
    "--count-up-to",
    type=click.IntRange(0),
    default=None,
    metavar="N",
    help="Count rows and show facets on the pages of growing tables and views while the"
    " database holds at most N generations [default: 25000].",
)
def browse(db_path: Path, port: int, open_browser: bool, count_up_to: int | None) -> None:
    """Browse the database in Datasette on 127.0.0.1, read-only (safe while workers run).

    Shows cohort progress, generations with their texts, lineage, failures, the score
    pivot and top essays, with descriptions, facets and canned queries. The same views
    work in plain `datasette DB` and `sqlite3`. Ctrl-C stops. On a database of more than
    --count-up-to generations, the pages of tables and views that grow with the cohorts
    show their rows without a count or facets, and link a page that counts.

    Example:

        daydream browse --db demo.db --port 8001 --open
    """
    from daydream.browse.app import serve

    serve(db_path, port=port, open_browser=open_browser, count_up_to=count_up_to, log=_err)
