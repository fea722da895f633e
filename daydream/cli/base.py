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
from daydream.errors import DaydreamError, OptionError, PreflightError
from daydream.worker.config import (
    DEFAULT_LEASE_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_OUTAGE_LIMIT_S,
    WorkerConfig,
)


class _Group(click.Group):
    """A group whose commands turn DaydreamError, and a file that cannot be read or written
    (an --out in a missing directory, a path through a file), into a one-line error."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PreflightError as exc:  # one line per problem
            for problem in exc.problems[:-1]:
                click.echo(f"Error: {problem}", err=True)
            raise click.ClickException(exc.problems[-1]) from None
        except OptionError as exc:
            raise click.BadParameter(str(exc), param_hint=exc.option) from None
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


_WORKER_OPTIONS = [
    click.option("--concurrency", "-c", type=click.IntRange(min=1), default=32, show_default=True, help="Model calls at once per worker process."),
    click.option("--max-attempts", type=click.IntRange(min=1), default=DEFAULT_MAX_ATTEMPTS, show_default=True, help="Attempts before a generation fails."),
    click.option("--lease", "lease_s", type=click.FloatRange(min=1), default=DEFAULT_LEASE_S, show_default=True, help="Lease length in seconds (heartbeats extend it)."),
    click.option("--grace", "grace_s", type=click.FloatRange(min=0), default=10.0, show_default=True, help="Seconds a worker gives its in-flight calls after SIGTERM or Ctrl-C before releasing them."),
    click.option("--offline", is_flag=True, help="Answer every model call with the offline dry-run provider."),
    click.option("--offline-latency", "offline_latency_s", type=click.FloatRange(min=0), default=0.0, help="Simulated latency of the offline provider, seconds."),
    click.option("--base-url", "base_urls", multiple=True, callback=lambda _ctx, _param, values: _base_urls(values), help="Override a provider's base URL: PROVIDER=URL (repeatable)."),
    click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), help="Deadline of one model call in seconds (default: the provider's, 300)."),
    click.option("--outage-limit", "outage_limit_s", type=click.FloatRange(min=0), default=DEFAULT_OUTAGE_LIMIT_S, show_default=True, help="Seconds to wait for an endpoint that is down (its calls wait, not fail) before stopping with its generations pending."),
]


def worker_options(function: Any) -> Any:
    """The options of every command that runs workers (``worker``, ``run``), defined once;
    ``worker_config`` turns them into the ``WorkerConfig`` the workers get."""
    for option in reversed(_WORKER_OPTIONS):
        function = option(function)
    return function


def worker_config(db_path: Path, *, offline: bool, **options: Any) -> WorkerConfig:
    """A ``WorkerConfig`` from ``worker_options`` (and any other ``WorkerConfig`` field)."""
    return WorkerConfig(
        db_path=db_path, provider_override="offline" if offline else None, **options
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
    from daydream.providers.config import load_dotenv

    load_dotenv(".env")
