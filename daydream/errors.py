"""The error hierarchy: every failure a user can cause or meet is one of these.

The library raises these; the CLI turns them into one line on stderr and exit 1, with no
traceback. A message names the thing (file, key path, value) and the fix, in one line.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DaydreamError(Exception):
    """Base class of every expected failure."""


class StoreError(DaydreamError):
    """The database cannot be opened or used as asked (guards missing, bad migrations...)."""


class SpecError(DaydreamError):
    """A cohort spec is malformed: YAML, keys, axes, rules, @file includes."""


class CatalogError(DaydreamError):
    """A catalog directory or entry is malformed or missing."""


class PlanError(DaydreamError):
    """A spec cannot be planned against the catalog (unknown combo, template, model...)."""


class TemplateError(DaydreamError):
    """A prompt template failed to render (undefined variable, syntax error, sandbox)."""


class ParseError(DaydreamError):
    """A model reply could not be parsed; ``state`` is the outcome state it maps to."""

    def __init__(self, message: str, *, state: str = "parse_failed") -> None:
        super().__init__(message)
        self.state = state


class ProviderError(DaydreamError):
    """A model call failed. ``retryable`` says whether trying again may succeed.

    ``endpoint`` is the base URL the call went to (without credentials); ``kind`` says how
    a call without an HTTP status failed: ``connect`` (refused, unreachable, connect
    timeout), ``dropped`` (reset or closed mid-call), ``timeout`` (no reply in time)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
        state: str = "provider_error",
        endpoint: str | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.state = state
        self.endpoint = endpoint
        self.kind = kind


class ConfigError(DaydreamError):
    """An option, environment variable or setting is invalid."""


class PreflightError(ConfigError):
    """What ``daydream run`` found wrong before starting any worker (an endpoint that does
    not answer, a model the server does not serve, a key variable not set...): one line
    per problem in ``problems``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class OptionError(ConfigError):
    """A value given for a command-line option is wrong (a misspelt pool or provider);
    ``option`` names the option, and the command line reports it as a usage error."""

    def __init__(self, message: str, *, option: str) -> None:
        super().__init__(message)
        self.option = option


class NotFoundError(DaydreamError):
    """Something asked for by id (a generation, a cohort's axis) is not in the database."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """`` (did you mean "x"?)`` for the closest of ``choices`` to a misspelt ``value``, or
    an empty string when none is close: the tail of a message naming a wrong name."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
