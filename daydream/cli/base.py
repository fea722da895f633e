"""The ``daydream`` command line: the group, its shared options and helpers.

Results go to stdout (human text, or JSON with ``--json``); progress and logs to stderr.
Every expected failure is a ``DaydreamError``, printed as one ``Error: ...`` line, exit 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from daydream import __version__
from daydream.errors import DaydreamError, OptionError, PreflightError
from daydream.values import shorten_message
from daydream.worker.config import (
    DEFAULT_LEASE_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_OUTAGE_LIMIT_S,
    LIMITS,
    WorkerConfig,
)


class _Group(click.Group):
    """A group whose commands turn DaydreamError, and a file that cannot be read or written
    (an --out in a missing directory, a path through a file), into a one-line error, with
    any long value in it cut short (``values.shorten_message``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PreflightError as exc:  # one line per problem
            for problem in exc.problems[:-1]:
                click.echo(f"Error: {problem}", err=True)
            raise click.ClickException(exc.problems[-1]) from None
        except OptionError as exc:
            raise click.BadParameter(shorten_message(str(exc)), param_hint=exc.option) from None
        except DaydreamError as exc:
            raise click.ClickException(shorten_message(str(exc))) from None
        except click.ClickException as exc:  # click's own messages quote values whole
            exc.message = shorten_message(exc.message)  # type: ignore[misc]
            raise
        except OSError as exc:  # a missing file, a name too long, a link loop...
            if exc.filename is None or not exc.strerror:
                raise
            raise click.ClickException(
                shorten_message(f"{exc.filename}: {exc.strerror.lower()} (check the path)")
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


class Number(click.FloatRange):
    """A finite number in a range: click's ``FloatRange`` lets ``nan`` through, since no
    comparison with it is true."""

    name = "number"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


class Whole(click.IntRange):
    """A whole number in a range: every count an option takes has a ceiling, so no value
    beyond what SQLite or a machine holds gets in."""


def option_type(name: str) -> Any:
    """The option type of the worker setting ``name``, with its range (``LIMITS``)."""
    low, high = LIMITS[name]
    if name in ("concurrency", "max_attempts"):
        return Whole(int(low), int(high))
    return Number(low, high)


_WORKER_OPTIONS = [
    click.option("--concurrency", "-c", type=option_type("concurrency"), default=32, show_default=True, help="Model calls at once per worker process."),
    click.option("--max-attempts", type=option_type("max_attempts"), default=DEFAULT_MAX_ATTEMPTS, show_default=True, help="Attempts before a generation fails."),
    click.option("--lease", "lease_s", type=option_type("lease_s"), default=DEFAULT_LEASE_S, show_default=True, help="Lease length in seconds (heartbeats extend it)."),
    click.option("--grace", "grace_s", type=option_type("grace_s"), default=10.0, show_default=True, help="Seconds a worker gives its in-flight calls after SIGTERM or Ctrl-C before releasing them."),
    click.option("--offline", is_flag=True, help="Answer every model call with the offline dry-run provider."),
    click.option("--offline-latency", "offline_latency_s", type=option_type("offline_latency_s"), default=0.0, help="Simulated latency of the offline provider, seconds."),
    click.option("--base-url", "base_urls", multiple=True, callback=lambda _ctx, _param, values: _base_urls(values), help="Override a provider's base URL: PROVIDER=URL (repeatable)."),
    click.option("--timeout", "timeout_s", type=option_type("timeout_s"), help="Deadline of one model call in seconds (default: the provider's, 300)."),
    click.option("--outage-limit", "outage_limit_s", type=option_type("outage_limit_s"), default=DEFAULT_OUTAGE_LIMIT_S, show_default=True, help="Seconds to wait for an endpoint that is down (its calls wait, not fail) before stopping with its generations pending."),
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
