"""The ``daydream`` command line: the group, its shared options and helpers.

Results go to stdout (human text, or JSON with ``--json``); progress and logs to stderr.
Every expected failure is a ``DaydreamError``, printed as one ``Error: ...`` line, exit 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from daydream import __version__
from daydream.errors import DaydreamError


class _Group(click.Group):
    """A group whose commands turn DaydreamError, and a file that cannot be read or written
    (an --out in a missing directory, a path through a file), into a one-line error."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DaydreamError as exc:
            raise click.ClickException(str(exc)) from None
        except (
            FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError
        ) as exc:
            if exc.filename is None or not exc.strerror:
                raise
            raise click.ClickException(
                f"{exc.filename}: {exc.strerror.lower()} (check the path)"
            ) from None

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
    from daydream.db.connection import connect

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
    from daydream.providers import load_dotenv

    load_dotenv(".env")
