"""Prompt rendering: a template body and its variables give the exact prompt text.

A template is a Jinja2 text from the catalog; :func:`stage_variables` builds the variables a
stage passes to it (``docs/parsers.md``, "Template variables") and :func:`render_prompt`
renders it.

Invariants:

- Rendering is strict: an undefined variable is an error, never an empty string.
- The output is byte-identical to upstream's ``jinja2.Environment(undefined=StrictUndefined)``:
  the same defaults (no autoescape, ``trim_blocks``/``lstrip_blocks`` off,
  ``keep_trailing_newline`` off, so one trailing newline of the body is dropped), so a
  prompt rendered here equals the one upstream rendered from the same template.
- Templates run in Jinja's sandbox: a catalog template cannot reach Python internals.
- Every failure is a one-line :class:`TemplateError` naming the template, the line and the
  cause.
- Compiled templates are cached by ``(template_id, body)``: editing a body never serves a
  stale compilation, and a worker rendering thousands of prompts compiles each body once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from types import TracebackType
from typing import Any, Protocol

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from daydream.errors import TemplateError

__all__ = [
    "EXTRA_VARIABLES",
    "available_variables",
    "template_variables",
    "ConceptLike",
    "concept_contents",
    "render_prompt",
    "stage_variables",
]

EXTRA_VARIABLES = ("combo_id", "template_id", "model_id", "replicate", "gen_id")
"""Variables daydream adds for every stage (upstream had none); passed as ``extras``."""


class ConceptLike(Protocol):
    """A concept as rendering needs it: a name and its descriptions by level."""

    @property
    def name(self) -> str: ...

    @property
    def descriptions(self) -> Mapping[str, str]: ...


def render_prompt(template_id: str, body: str, variables: Mapping[str, Any]) -> str:
    """Render ``body`` with ``variables``; ``template_id`` (``"<stage>/<id>"``) names it in errors.

    Raises ``TemplateError`` for a syntax error, an undefined variable, an operation the
    sandbox blocks, or any other error raised while rendering.
    """
    template = _compile(template_id, body)
    try:
        return template.render(variables)
    except jinja2.UndefinedError as exc:
        names = ", ".join(sorted(variables)) or "none"
        raise _error(template_id, exc, f"{_one_line(exc)} (variables: {names})") from None
    except jinja2.exceptions.SecurityError as exc:
        raise _error(template_id, exc, f"blocked by the sandbox: {_one_line(exc)}") from None
    except RecursionError as exc:
        raise _error(
            template_id, exc, "recursion too deep (a macro or include that calls itself?)"
        ) from None
    except (jinja2.TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise _error(template_id, exc, f"{type(exc).__name__}: {_one_line(exc)}") from None


def concept_contents(concepts: Sequence[ConceptLike], level: str) -> list[dict[str, str]]:
    """The draft variable ``concepts``: ``[{"name", "content"}]`` in the given order.

    ``content`` is the description at ``level``, falling back to ``paragraph``, then
    ``sentence``, then the concept's name (an empty description counts as missing), as
    upstream's ``ContentCombination.from_concepts`` did.
    """
    return [{"name": concept.name, "content": _description(concept, level)} for concept in concepts]


def stage_variables(
    stage: str,
    *,
    concepts: Sequence[Mapping[str, str]] | None = None,
    parent_text: str | None = None,
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables a ``stage`` template is rendered with.

    - ``draft``: ``concepts`` (from :func:`concept_contents`);
    - ``essay``: ``draft_block`` and ``links_block``, both the parent draft's parsed text;
      an essay written straight from a combination (no draft) gets ``concepts`` instead;
    - ``evaluation``: ``response``, the parent essay's parsed text.

    ``extras`` adds any of ``EXTRA_VARIABLES`` for every stage. A missing input, an unknown
    stage or an unknown extra is a programming error (``ValueError``).
    """
    variables: dict[str, Any] = {}
    if stage == "draft":
        if concepts is None:
            raise ValueError("a draft prompt needs concepts")
        variables["concepts"] = list(concepts)
    elif stage == "essay":
        if parent_text is None and concepts is None:
            raise ValueError("an essay prompt needs parent_text (the draft) or concepts")
        if parent_text is not None:
            variables["draft_block"] = parent_text
            variables["links_block"] = parent_text
        if concepts is not None:
            variables["concepts"] = list(concepts)
    elif stage == "evaluation":
        if parent_text is None:
            raise ValueError("an evaluation prompt needs parent_text (the essay)")
        variables["response"] = parent_text
    else:
        raise ValueError(f"unknown stage {stage!r} (stages: draft, essay, evaluation)")
    unknown = sorted(set(extras or {}) - set(EXTRA_VARIABLES))
    if unknown:
        raise ValueError(
            f"unknown template extras {', '.join(unknown)} (allowed: {', '.join(EXTRA_VARIABLES)})"
        )
    variables.update(extras or {})
    return variables


def available_variables(stage: str, *, has_parent: bool) -> tuple[str, ...]:
    """The variables a ``stage`` template can use (``has_parent``: the essay has a draft)."""
    inputs = {
        "draft": ("concepts",),
        "essay": ("draft_block", "links_block") if has_parent else ("concepts",),
        "evaluation": ("response",),
    }[stage]
    return inputs + EXTRA_VARIABLES


def template_variables(template_id: str, body: str) -> set[str]:
    """The variables a template body reads, found without rendering it (for planning checks).

    A syntax error is a ``TemplateError`` naming the line, as at render time.
    """
    try:
        tree = _ENVIRONMENT.parse(body, name=template_id, filename=_filename(template_id))
        return set(meta.find_undeclared_variables(tree))
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(template_id, exc) from None
    except RecursionError:
        raise _too_deep(template_id) from None


def _description(concept: ConceptLike, level: str) -> str:
    for key in (level, "paragraph", "sentence"):
        text = concept.descriptions.get(key)
        if text:
            return text
    return concept.name


# Upstream rendered with jinja2.Environment(undefined=StrictUndefined) and its defaults; the
# sandboxed environment keeps those defaults, so the output is the same byte for byte.
_ENVIRONMENT = SandboxedEnvironment(undefined=jinja2.StrictUndefined)


@lru_cache(maxsize=1024)
def _compile(template_id: str, body: str) -> jinja2.Template:
    try:
        code = _ENVIRONMENT.compile(body, name=template_id, filename=_filename(template_id))
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(template_id, exc) from None
    except RecursionError:
        raise _too_deep(template_id) from None
    return _ENVIRONMENT.template_class.from_code(
        _ENVIRONMENT, code, _ENVIRONMENT.make_globals(None)
    )


def _syntax_error(template_id: str, exc: jinja2.TemplateSyntaxError) -> TemplateError:
    return TemplateError(
        f"template {template_id}: line {exc.lineno}: syntax error: {_one_line(exc.message)}"
    )


def _too_deep(template_id: str) -> TemplateError:
    return TemplateError(
        f"template {template_id}: nested too deeply to compile; flatten its expressions"
    )


def _error(template_id: str, exc: BaseException, detail: str) -> TemplateError:
    line = _template_line(exc.__traceback__, _filename(template_id))
    where = f"line {line}: " if line is not None else ""
    return TemplateError(f"template {template_id}: {where}{detail}")


def _template_line(tb: TracebackType | None, filename: str) -> int | None:
    # Jinja rewrites the traceback so that template frames carry the template's own file
    # name and line numbers; the innermost such frame is where rendering failed.
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _filename(template_id: str) -> str:
    return f"<template {template_id}>"


def _one_line(value: object) -> str:
    return " ".join(str(value).split())
