"""Output parsers: turn a model's raw reply into the text (or the score) a stage keeps.

A *parser* is a pure function from the raw reply to a :class:`Parsed` value. A template
names its parser by string (``PARSER_FUNCTIONS``); drafts and essays use the text parsers,
evaluations the score parsers (``vocabulary.PARSERS``, checked when the catalog is
imported). ``parse_output`` is the single entry point.

The parsed phase runs in this order, each step raising :class:`ParseError` whose ``state``
is the outcome recorded for the generation:

1. :func:`validate_output` on the raw reply: ``refused`` (empty), ``truncated``
   (``finish_reason == "length"``, or the completion used every token ``max_tokens``
   allowed, as upstream counted it), ``too_short`` (fewer non-empty lines than ``min_lines``);
2. :func:`parse_output` with the template's parser: ``parse_failed``.

Invariants:

- Parsers never guess. The score grammar (``docs/parsers.md``) accepts one explicit form
  and rejects, with the reason, anything else: no digit averaging, no silent rescaling,
  no score taken from an unlabelled number.
- The final score wins: the *last* labelled score line of the reply is the score.
- Parsers are deterministic and side-effect free; the same reply gives the same result.
- Text parsers keep upstream's exact behaviour (``essay_block_lenient``, ``essay_idea_last``,
  ``identity``, which strips the reply's surrounding whitespace as upstream's client did;
  the raw reply itself is kept verbatim), except the strict ``essay_block``, which fails on a missing ``</essay>``
  where upstream silently captured to the end of the reply (upstream §11.11).
- Score parsers write the score as upstream did, ``f"{float(score)}\\n"`` (``"7.0\\n"``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from daydream.errors import ParseError

__all__ = [
    "PARSER_FUNCTIONS",
    "PARSER_VERSION",
    "Parsed",
    "Scale",
    "parse_output",
    "parser_names",
    "validate_output",
]

PARSER_VERSION = 1
"""The version of the parsers' behaviour, recorded by ``daydream reparse``: bump it with any
change that gives a different result for the same reply and settings."""


Scale = tuple[float, float]
"""A template's declared score range ``(min, max)``, both inclusive."""


@dataclass(frozen=True, slots=True)
class Parsed:
    """The result of a parser.

    ``text`` is what the stage stores as its parsed output. Score parsers also fill
    ``score``, ``scale_max`` (the ``N`` when the judge wrote ``x/N`` or ``x out of N``,
    else None) and ``score_line`` (the reply's line(s) the score was read from).
    """

    text: str
    score: float | None = None
    scale_max: float | None = None
    score_line: str | None = None


ParserFn = Callable[[str, Scale | None], Parsed]


def parse_output(parser: str, text: str, *, scale: Scale | None = None) -> Parsed:
    """Parse ``text`` with the parser named ``parser``.

    ``scale`` is the template's declared score range; only score parsers use it.
    Raises ``ParseError`` (state ``parse_failed``) for an unknown parser or a reply the
    parser rejects.
    """
    try:
        parse = PARSER_FUNCTIONS[parser]
    except KeyError:
        raise ParseError(
            f"unknown parser {parser!r}: set the template's parser to one of "
            f"{', '.join(parser_names())}",
            state="parse_failed",
        ) from None
    return parse(text, scale)


def parser_names() -> list[str]:
    """The registered parser names, sorted."""
    return sorted(PARSER_FUNCTIONS)


def validate_output(
    text: str,
    *,
    finish_reason: str | None,
    min_lines: int | None,
    completion_tokens: int | None = None,
    max_tokens: int | None = None,
) -> None:
    """Reject a raw reply before parsing: empty, truncated, or too short.

    Checks run in this order and the first failure wins: ``refused`` (empty or whitespace
    only), ``truncated`` (``finish_reason == "length"``, or ``completion_tokens`` reached
    the ``max_tokens`` the call allowed, whatever the server said: some servers report
    ``stop`` for a reply cut at the limit; upstream counted it the same way),
    ``too_short`` (fewer non-empty lines than ``min_lines``; None or a value below 1
    disables the check). Lines are counted on the raw reply, as upstream did, not on the
    parsed text.
    """
    if not text.strip():
        raise ParseError(
            "the model returned an empty reply (a refusal or a provider problem); "
            "retry it or try another model",
            state="refused",
        )
    if finish_reason == "length":
        raise ParseError(
            "the reply was cut off at the token limit (finish_reason 'length'); "
            "raise the stage's max_tokens",
            state="truncated",
        )
    if completion_tokens is not None and max_tokens is not None and completion_tokens >= max_tokens:
        raise ParseError(
            f"the reply used all {max_tokens} tokens max_tokens allowed ({completion_tokens}"
            f" completion tokens; the server said finish_reason {finish_reason!r}), so it is"
            " probably cut off; raise the stage's max_tokens",
            state="truncated",
        )
    if min_lines is not None and min_lines > 0:
        observed = sum(1 for line in text.splitlines() if line.strip())
        if observed < min_lines:
            raise ParseError(
                f"the reply has {observed} non-empty lines but the stage requires "
                f"at least {min_lines} (min_lines); lower min_lines or check the template",
                state="too_short",
            )


# --- text parsers -------------------------------------------------------------------------


def parse_identity(text: str, scale: Scale | None = None) -> Parsed:
    """The reply without its surrounding whitespace (upstream's client stripped every
    reply), so a padded reply does not change the prompts of the generations after it."""
    return Parsed(text=str(text).strip())


def parse_essay_block(text: str, scale: Scale | None = None) -> Parsed:
    """The first ``<essay>...</essay>`` block (tags case-insensitive), stripped.

    Strict: a reply without the closing tag fails (upstream captured to the end of the
    reply, which hid truncated or malformed output).
    """
    match = _ESSAY_BLOCK_RE.search(text)
    if match:
        return Parsed(text=match.group(1).strip())
    if _ESSAY_OPEN_RE.search(text):
        raise ParseError(
            "the reply opens <essay> but never closes it with </essay>: the parser "
            "essay_block needs both tags (essay_block_lenient accepts an unclosed block)",
            state="parse_failed",
        )
    raise ParseError(
        "no <essay>...</essay> block found in the reply: ask for one in the template, "
        "or use the parser essay_block_lenient to keep untagged replies",
        state="parse_failed",
    )


def parse_essay_block_lenient(text: str, scale: Scale | None = None) -> Parsed:
    """``<thinking>`` blocks removed, then the essay block, else the whole reply.

    Upstream behaviour, kept: every ``<thinking ...>...</thinking>`` block is removed first;
    then the first ``<essay>...</essay>`` block is returned stripped; an unclosed
    ``<essay>`` gives the text after it to the end; with no ``<essay>`` tag at all the
    whole sanitised reply is returned stripped.
    """
    if "<thinking" in text.lower():
        text = _THINKING_BLOCK_RE.sub("", text)
    match = _ESSAY_BLOCK_RE.search(text)
    if match:
        return Parsed(text=match.group(1).strip())
    opening = _ESSAY_OPEN_RE.search(text)
    if opening:
        return Parsed(text=text[opening.end() :].strip())
    return Parsed(text=text.strip())


def parse_essay_idea_last(text: str, scale: Scale | None = None) -> Parsed:
    """The last ``<essay-idea>`` block, or the last one with the highest ``stage="N"``.

    Upstream behaviour, kept exactly: the opening tag must be followed by a newline and the
    closing tag preceded by one; the content is returned verbatim (inner newlines kept, not
    stripped); the stage is read from a ``stage="N"`` attribute (double quotes, digits),
    searched from the start of the opening tag's line to the end of the block.
    """
    staged: list[tuple[int | None, str]] = []
    for match in _ESSAY_IDEA_RE.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        stage = _ESSAY_IDEA_STAGE_RE.search(text, line_start, match.end())
        staged.append((int(stage.group(1)) if stage else None, match.group(1)))
    if not staged:
        raise ParseError(
            "no <essay-idea> block found in the reply: each block needs its tags on their "
            'own lines (<essay-idea stage="N">, the idea, </essay-idea>)',
            state="parse_failed",
        )
    stages = [stage for stage, _ in staged if stage is not None]
    if stages:
        best = max(stages)
        return Parsed(text=[content for stage, content in staged if stage == best][-1])
    return Parsed(text=staged[-1][1])


_ESSAY_BLOCK_RE = re.compile(r"<essay>([\s\S]*?)</essay>", re.IGNORECASE)
_ESSAY_OPEN_RE = re.compile(r"<essay>", re.IGNORECASE)
_THINKING_BLOCK_RE = re.compile(r"<thinking\b[^>]*>[\s\S]*?</thinking>", re.IGNORECASE)
_ESSAY_IDEA_RE = re.compile(r"<essay-idea(?:\s+[^>]*)?>\n([\s\S]*?)\n</essay-idea>")
_ESSAY_IDEA_STAGE_RE = re.compile(r"<essay-idea[^>]*stage=\"(\d+)\"")


# --- the score grammar ----------------------------------------------------------------------


def parse_score(text: str, scale: Scale | None = None) -> Parsed:
    """The judge's final score, read with the score grammar (``docs/parsers.md``).

    The last labelled score line wins (labels SCORE, Final/Total/Overall Score); its value
    is a number, optionally ``/N`` or ``out of N``. With ``scale`` the value must lie in
    it and ``N`` must equal its max; without, only ``0 <= value <= N`` is checked.
    """
    lines = text.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        label = _LABEL_RE.match(_clean_label_line(lines[index]))
        if label is None or (label["colon"] is None and label["rest"]):
            continue
        if label["rest"]:
            return _read_value(label["rest"], lines[index].strip(), scale)
        following = next((line for line in lines[index + 1 :] if line.strip()), None)
        value = _clean_value_line(following) if following is not None else ""
        if label["colon"] is None and not _VALUE_RE.match(value):
            continue  # a heading such as "## Score" is a label only when a value follows
        if following is None:
            seen = lines[index].strip()
            raise ParseError(
                f"the last SCORE line has no number after it (line {_quote(seen)}); "
                f"expected a final line like 'SCORE: 7'",
                state="parse_failed",
            )
        return _read_value(value, f"{lines[index].strip()} {following.strip()}", scale)
    raise ParseError(
        "no SCORE line found in the reply (expected a final line like 'SCORE: 7')",
        state="parse_failed",
    )


def _read_value(value: str, seen: str, scale: Scale | None) -> Parsed:
    match = _VALUE_RE.match(value)
    if match is None:
        raise ParseError(
            f"the last SCORE line is not a plain number (line {_quote(seen)}); "
            f"expected 'SCORE: 7', 'SCORE: 7.5' or 'SCORE: 7/9'",
            state="parse_failed",
        )
    token = match["number"]
    score = float(token) + 0.0  # + 0.0 turns -0.0 into 0.0
    denominator = match["slash"] or match["out_of"] or match["paren_out_of"]
    scale_max = float(denominator) if denominator else None
    if scale_max is not None:
        written = f"{token}/{denominator}"
        if not 0 <= score <= scale_max or scale_max == 0:
            raise ParseError(
                f"score {written} is not between 0 and its own maximum {denominator} "
                f"(line {_quote(seen)})",
                state="parse_failed",
            )
        if scale is not None and scale_max != scale[1]:
            raise ParseError(
                f"score {written} is out of {denominator} but the template's scale is "
                f"{_scale(scale)} (line {_quote(seen)}); the score is not rescaled: fix the "
                f"template's instructions or its declared scale",
                state="parse_failed",
            )
    if scale is not None and not scale[0] <= score <= scale[1]:
        raise ParseError(
            f"score {token} is outside the template's scale {_scale(scale)} (line {_quote(seen)})",
            state="parse_failed",
        )
    return Parsed(text=f"{score}\n", score=score, scale_max=scale_max, score_line=seen)


def _clean_label_line(line: str) -> str:
    return _LEAD_RE.sub("", _MARKDOWN_RE.sub("", line).strip())


def _clean_value_line(line: str) -> str:
    return _VALUE_LEAD_RE.sub("", _MARKDOWN_RE.sub("", line).strip())


def _quote(line: str, limit: int = 80) -> str:
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    return "'" + line + "'"


def _scale(scale: Scale) -> str:
    return f"{_number(scale[0])}-{_number(scale[1])}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_MARKDOWN_RE = re.compile(r"[*_`#]")
# A blockquote marker and one list bullet ("- ", "+ ", "• ", "3. ", "3) ") before a label.
_LEAD_RE = re.compile(r"^(?:>\s*)*(?:(?:[-+•]|[0-9]+[.)])\s+)?")
# The same before a value on its own line, without numbered bullets: "7." is a value.
_VALUE_LEAD_RE = re.compile(r"^(?:>\s*)*(?:[-+•]\s+)?")
_LABEL_RE = re.compile(
    r"^(?:(?:final|total|overall)\s+)?score\s*(?P<colon>:)?\s*(?P<rest>.*?)\s*$",
    re.IGNORECASE,
)
_NUMBER = r"[+-]?[0-9]+(?:\.[0-9]+)?"
_VALUE_RE = re.compile(
    rf"^(?P<number>{_NUMBER})"
    r"(?:\s*/\s*(?P<slash>[0-9]+(?:\.[0-9]+)?)"
    r"|\s+out\s+of\s+(?P<out_of>[0-9]+(?:\.[0-9]+)?)"
    r"|\s*\(\s*out\s+of\s+(?P<paren_out_of>[0-9]+(?:\.[0-9]+)?)\s*\))?"
    r"\.?"
    # An optional comment without digits, so "7 - 8" or "7 (or 8)" never pass as "7".
    r"(?:\s+(?:\([^0-9()]*\)|[-–—]\s+[^0-9]*))?"
    r"\s*$",
    re.IGNORECASE,
)


PARSER_FUNCTIONS: dict[str, ParserFn] = {
    "identity": parse_identity,
    "essay_block": parse_essay_block,
    "essay_block_lenient": parse_essay_block_lenient,
    "essay_idea_last": parse_essay_idea_last,
    "score": parse_score,
    # Upstream's name for its evaluation parser; catalogs imported from upstream use it.
    "in_last_line": parse_score,
}
"""Parser name -> parser (the names are ``vocabulary.PARSERS``; which stage may use
which is there too)."""
