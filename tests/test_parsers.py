"""Tests for daydream.parsers: the text parsers, the score grammar and output validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from daydream.errors import ParseError
from daydream.parsers import PARSER_FUNCTIONS, Parsed, parse_output, parser_names, validate_output
from daydream.vocabulary import PARSERS as STAGE_PARSERS
from daydream.vocabulary import STAGES

REPLIES = Path(__file__).parent / "fixtures" / "judge_replies"
NO_SCORE = "no SCORE line found in the reply (expected a final line like 'SCORE: 7')"
NOT_A_NUMBER = "expected 'SCORE: 7', 'SCORE: 7.5' or 'SCORE: 7/9'"


def reply(name: str) -> str:
    return (REPLIES / f"{name}.txt").read_text(encoding="utf-8")


def parse_error(parser: str, text: str, **kwargs) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse_output(parser, text, **kwargs)
    return caught.value


# --- registry -----------------------------------------------------------------------------


def test_parser_names_lists_every_parser_sorted():
    assert parser_names() == [
        "essay_block",
        "essay_block_lenient",
        "essay_idea_last",
        "identity",
        "in_last_line",
        "score",
    ]
    assert set(PARSER_FUNCTIONS) == set(parser_names())


def test_every_parser_a_stage_may_use_exists_and_every_parser_has_a_stage():
    """The vocabulary says which parsers each stage's templates may use (the catalog checks
    it on import); the parser functions are exactly those names."""
    allowed = {name for names in STAGE_PARSERS.values() for name in names}
    assert allowed == set(PARSER_FUNCTIONS)
    assert set(STAGE_PARSERS) == set(STAGES)


def test_unknown_parser_names_it_and_lists_the_known_ones():
    error = parse_error("essay_blok", "text")
    assert str(error) == (
        "unknown parser 'essay_blok': set the template's parser to one of essay_block, "
        "essay_block_lenient, essay_idea_last, identity, in_last_line, score"
    )
    assert error.state == "parse_failed"


def test_in_last_line_is_an_alias_of_score():
    assert PARSER_FUNCTIONS["in_last_line"] is PARSER_FUNCTIONS["score"]
    assert parse_output("in_last_line", "x\nSCORE: 3\nSCORE: 8", scale=(0, 9)).score == 8.0


def test_parsed_is_frozen():
    parsed = parse_output("identity", "text")
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.text = "other"  # type: ignore[misc]


# --- identity -----------------------------------------------------------------------------


def test_identity_strips_the_surrounding_whitespace_and_keeps_the_rest():
    text = "\n  <essay>kept</essay>\n\n  inner  spaces and tags  \n\t"
    assert parse_output("identity", text) == Parsed(
        text="<essay>kept</essay>\n\n  inner  spaces and tags"
    )


# --- essay_block (strict) -----------------------------------------------------------------


def test_essay_block_returns_the_first_block_stripped():
    text = "intro\n<essay>\n  First essay.\n</essay>\n<essay>Second</essay>"
    assert parse_output("essay_block", text) == Parsed(text="First essay.")


def test_essay_block_tags_are_case_insensitive():
    assert parse_output("essay_block", "<ESSAY> Body </Essay>").text == "Body"


def test_essay_block_without_closing_tag_fails_unlike_upstream():
    error = parse_error("essay_block", "<thinking>plan</thinking>\n<essay>\nThe essay starts")
    assert str(error) == (
        "the reply opens <essay> but never closes it with </essay>: the parser essay_block "
        "needs both tags (essay_block_lenient accepts an unclosed block)"
    )
    assert error.state == "parse_failed"


def test_essay_block_without_tags_fails():
    error = parse_error("essay_block", "An essay without tags.")
    assert str(error) == (
        "no <essay>...</essay> block found in the reply: ask for one in the template, "
        "or use the parser essay_block_lenient to keep untagged replies"
    )
    assert error.state == "parse_failed"


def test_essay_block_does_not_match_essay_idea_tags():
    error = parse_error("essay_block", '<essay-idea stage="1">\nidea\n</essay-idea>')
    assert str(error).startswith("no <essay>...</essay> block found")


def test_essay_block_keeps_an_empty_block_as_upstream_did():
    assert parse_output("essay_block", "<essay>  \n </essay>").text == ""


# --- essay_block_lenient ------------------------------------------------------------------


def test_lenient_removes_thinking_before_looking_for_the_essay():
    text = "<thinking>x<essay>fake</essay></thinking> real"
    assert parse_output("essay_block_lenient", text).text == "real"


def test_lenient_removes_thinking_blocks_with_attributes_and_any_case():
    text = '<THINKING mode="deep">\nplan\n</Thinking>\n<essay>\nThe essay.\n</essay>\n'
    assert parse_output("essay_block_lenient", text).text == "The essay."


def test_lenient_returns_the_whole_sanitised_reply_without_tags():
    text = "<thinking>plan</thinking>\n\n  Untagged essay.\nSecond line.  \n"
    assert parse_output("essay_block_lenient", text).text == "Untagged essay.\nSecond line."


def test_lenient_keeps_upstreams_capture_to_the_end_for_an_unclosed_block():
    text = "<thinking>plan</thinking>\nPreamble\n<Essay>\nThe essay, cut short  \n"
    assert parse_output("essay_block_lenient", text).text == "The essay, cut short"


def test_lenient_leaves_an_unclosed_thinking_block_in_place():
    text = "<thinking>never closed\nThe essay."
    assert parse_output("essay_block_lenient", text).text == text


# --- essay_idea_last ----------------------------------------------------------------------


def idea(body: str, attrs: str = "") -> str:
    return f"<essay-idea{attrs}>\n{body}\n</essay-idea>\n"


def test_essay_idea_last_picks_the_highest_stage():
    text = (
        "Preface\n"
        + idea("First", ' stage="1"')
        + "between\n"
        + idea("Third", ' stage="3"')
        + idea("Second", ' stage="2"')
    )
    assert parse_output("essay_idea_last", text).text == "Third"


def test_essay_idea_last_picks_the_last_of_equal_highest_stages():
    text = idea("A", ' stage="2"') + idea("B", ' stage="2"') + idea("C")
    assert parse_output("essay_idea_last", text).text == "B"


def test_essay_idea_last_without_stages_picks_the_last_block():
    text = idea("one") + "notes\n" + idea("two")
    assert parse_output("essay_idea_last", text).text == "two"
    assert parse_output("essay_idea_last", idea("one") + idea("two") + idea("three")).text == (
        "three"
    )


def test_essay_idea_last_does_not_give_a_block_the_stage_of_a_tag_after_it():
    # The stage is searched up to the end of the block only: an unstaged block does not
    # take the stage of a later tag (here an inline one, which is not a block itself).
    text = (
        idea("unstaged") + '<essay-idea stage="7">inline</essay-idea>\n' + idea("two", ' stage="2"')
    )
    assert parse_output("essay_idea_last", text).text == "two"


def test_essay_idea_last_returns_the_content_verbatim():
    text = idea("  Line one\n\nLine two  ", ' stage="1"')
    assert parse_output("essay_idea_last", text).text == "  Line one\n\nLine two  "


def test_essay_idea_last_ignores_a_single_quoted_stage():
    text = idea("staged", ' stage="1"') + idea("quoted", " stage='5'")
    assert parse_output("essay_idea_last", text).text == "staged"


def test_essay_idea_last_reads_the_stage_from_the_opening_tags_line():
    # Upstream searched from the start of the opening tag's line, so a stage attribute in
    # an earlier unmatched tag on the same line is picked up: kept for compatibility.
    text = '<essay-idea stage="9"> inline <essay-idea>\nlate\n</essay-idea>\n' + idea(
        "normal", ' stage="2"'
    )
    assert parse_output("essay_idea_last", text).text == "late"


def test_essay_idea_last_needs_tags_on_their_own_lines():
    error = parse_error("essay_idea_last", "<essay-idea>A</essay-idea>")
    assert str(error) == (
        "no <essay-idea> block found in the reply: each block needs its tags on their own "
        'lines (<essay-idea stage="N">, the idea, </essay-idea>)'
    )
    assert error.state == "parse_failed"


# --- the score grammar: realistic judge replies -------------------------------------------

ACCEPTED = [
    # (fixture, scale, score, scale_max, score_line)
    ("plain_score", (0, 9), 7.0, None, "SCORE: 7"),
    ("bold_label", (0, 9), 6.0, None, "**SCORE:** 6"),
    ("heading_fraction", (0, 10), 8.0, 10.0, "### SCORE: 8/10"),
    ("final_score_bold_value", (0, 10), 8.0, 10.0, "Final Score: **8/10**"),
    ("subscores_then_total", (0, 10), 6.5, 10.0, "Total Score: 6.5/10"),
    ("label_alone_next_line", (0, 10), 3.0, 10.0, "**Final Score:** **3/10**"),
    ("score_label_then_digit", (0, 9), 7.0, None, "SCORE: 7"),
    ("justification_after", (0, 9), 6.0, None, "SCORE: 6"),
    ("trailing_period", (0, 9), 7.0, None, "SCORE: 7."),
    ("nine_point_denominator", (0, 9), 8.0, 9.0, "SCORE: 8/9"),
    ("revised_score_last_wins", (0, 9), 8.0, None, "SCORE: 8"),
    ("overall_out_of", (0, 9), 7.0, 9.0, "Overall Score: 7 out of 9"),
    ("score_with_comment", (0, 9), 6.0, None, "SCORE: 6 (strong mechanism, weak tests)"),
    ("heading_no_colon", (0, 10), 7.0, 10.0, "## Final Score **7/10**"),
    ("echoed_format_then_score", (0, 10), 5.0, None, "SCORE: 5"),
    ("subscore_after_final", (0, 9), 7.0, None, "SCORE: 7"),
    ("numbered_list_final", (0, 9), 6.0, 9.0, "3. **Final Score:** 6/9"),
]


@pytest.mark.parametrize(("name", "scale", "score", "scale_max", "line"), ACCEPTED)
def test_judge_reply_is_scored(name, scale, score, scale_max, line):
    parsed = parse_output("score", reply(name), scale=scale)
    assert parsed == Parsed(text=f"{score}\n", score=score, scale_max=scale_max, score_line=line)


REJECTED = [
    # (fixture, scale, the whole message)
    ("score_1234", (0, 9), "score 1234 is outside the template's scale 0-9 (line 'Score: 1234')"),
    (
        "score_ten_on_nine",
        (0, 9),
        "score 10 is outside the template's scale 0-9 (line 'SCORE: 10')",
    ),
    (
        "denominator_mismatch",
        (0, 9),
        "score 8/10 is out of 10 but the template's scale is 0-9 (line 'Final Score: 8/10'); "
        "the score is not rescaled: fix the template's instructions or its declared scale",
    ),
    ("no_score", (0, 9), NO_SCORE),
    ("score_equals", (0, 9), NO_SCORE),
    ("bare_number", (0, 9), NO_SCORE),
    (
        "three_numbers",
        (0, 9),
        f"the last SCORE line is not a plain number (line 'Score: 4, 5, 6'); {NOT_A_NUMBER}",
    ),
    (
        "placeholder_echo",
        (0, 9),
        f"the last SCORE line is not a plain number (line 'SCORE: X'); {NOT_A_NUMBER}",
    ),
    (
        "score_range",
        (0, 9),
        f"the last SCORE line is not a plain number (line 'SCORE: 7-8'); {NOT_A_NUMBER}",
    ),
    ("negative", (0, 9), "score -1 is outside the template's scale 0-9 (line 'SCORE: -1')"),
]


@pytest.mark.parametrize(("name", "scale", "message"), REJECTED)
def test_judge_reply_is_rejected_with_its_reason(name, scale, message):
    error = parse_error("score", reply(name), scale=scale)
    assert str(error) == message
    assert error.state == "parse_failed"


def test_every_fixture_is_covered():
    names = {name for name, *_ in ACCEPTED} | {name for name, *_ in REJECTED}
    assert names == {path.stem for path in REPLIES.glob("*.txt")}


# --- the score grammar: rules -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("score: 6", 6.0),
        ("FINAL SCORE: 9", 9.0),
        ("Total  Score : 4", 4.0),
        ("SCORE:7", 7.0),
        ("SCORE: 7.5", 7.5),
        ("SCORE: 000", 0.0),
        ("SCORE: 07", 7.0),
        ("SCORE: +7", 7.0),
        ("SCORE: -0", 0.0),
        ("> **SCORE:** `7`", 7.0),
        ("- SCORE: 5", 5.0),
        ("__Final Score__: 4", 4.0),
        ("SCORE: 7 (out of 9)", 7.0),
        ("SCORE: 7 / 9.", 7.0),
        ("SCORE: 7 — strong essay", 7.0),
        ("Final Score:\n\n- 6", 6.0),
    ],
)
def test_score_forms(text, score):
    assert parse_output("score", text, scale=(0, 9)).score == score


def test_score_text_is_formatted_as_upstream():
    assert parse_output("score", "SCORE: 7", scale=(0, 9)).text == "7.0\n"
    assert parse_output("score", "SCORE: -0", scale=(0, 9)).text == "0.0\n"
    assert parse_output("score", "SCORE: 8.25", scale=(0, 9)).text == "8.25\n"


def test_the_last_labelled_line_wins_even_after_a_justification():
    text = "Final Score: 4/9\nThat was my first impression.\nSCORE: 6\n\nThe score reflects..."
    parsed = parse_output("score", text, scale=(0, 9))
    assert (parsed.score, parsed.scale_max, parsed.score_line) == (6.0, None, "SCORE: 6")


@pytest.mark.parametrize(
    "text",
    [
        "Novelty Score: 7",
        "Core Concepts: 4/5",
        "Score = 7",
        "Score 7",
        "Scores: 7",
        "The final score: 7 is good",
        "I give it 7/9.",
        "| Final Score | 7/10 |",
        "## Score\n\nThe essay is strong.",
    ],
)
def test_lines_that_are_not_score_lines(text):
    assert str(parse_error("score", text, scale=(0, 9))) == NO_SCORE


def test_a_labelled_line_with_nothing_after_it_fails():
    error = parse_error("score", "Reasoning here.\n\n**SCORE:**\n\n", scale=(0, 9))
    assert str(error) == (
        "the last SCORE line has no number after it (line '**SCORE:**'); "
        "expected a final line like 'SCORE: 7'"
    )
    assert error.state == "parse_failed"


def test_a_score_heading_over_prose_does_not_hide_the_score_line_before_it():
    text = "SCORE: 7\n\n## Score\n\nThe essay is strong."
    assert parse_output("score", text, scale=(0, 9)).score == 7.0


@pytest.mark.parametrize("text", ["", "7\n## Score", "7\n\nScore"])
def test_a_number_before_a_trailing_score_heading_is_not_the_score(text):
    # The value follows its label; nothing is read from the lines above it.
    assert str(parse_error("score", text, scale=(0, 9))) == NO_SCORE


def test_a_value_on_the_line_after_its_label_is_checked_against_the_scale():
    error = parse_error("score", "Final Score:\n\n10", scale=(0, 9))
    assert str(error) == "score 10 is outside the template's scale 0-9 (line 'Final Score: 10')"


def test_a_label_line_followed_by_prose_fails_rather_than_guessing():
    text = "SCORE: 3\nFinal Score:\nI would give it a 7 overall."
    error = parse_error("score", text, scale=(0, 9))
    assert str(error) == (
        "the last SCORE line is not a plain number (line 'Final Score: I would give it a 7 "
        f"overall.'); {NOT_A_NUMBER}"
    )


@pytest.mark.parametrize(
    "text", ["SCORE: 7 (or 8)", "SCORE: 7 - improved from 6", "SCORE: 7 8", "SCORE: 7,5"]
)
def test_a_comment_with_digits_is_not_accepted(text):
    assert str(parse_error("score", text, scale=(0, 9))).startswith(
        "the last SCORE line is not a plain number"
    )


def test_a_value_above_its_own_denominator_fails():
    error = parse_error("score", "SCORE: 11/10")
    assert str(error) == (
        "score 11/10 is not between 0 and its own maximum 10 (line 'SCORE: 11/10')"
    )
    assert error.state == "parse_failed"


@pytest.mark.parametrize(("text", "score"), [("SCORE: 0/10", 0.0), ("SCORE: 10/10", 10.0)])
def test_a_value_at_either_end_of_its_own_denominator_is_kept(text, score):
    parsed = parse_output("score", text)
    assert (parsed.score, parsed.scale_max) == (score, 10.0)


def test_a_zero_denominator_fails():
    error = parse_error("score", "SCORE: 0/0")
    assert str(error) == "score 0/0 is not between 0 and its own maximum 0 (line 'SCORE: 0/0')"


def test_decimal_scale_bounds_are_named_as_written():
    error = parse_error("score", "SCORE: 9", scale=(0.5, 7.5))
    assert str(error) == "score 9 is outside the template's scale 0.5-7.5 (line 'SCORE: 9')"


def test_whole_scale_bounds_given_as_floats_are_named_without_decimals():
    error = parse_error("score", "SCORE: 10", scale=(0.0, 9.0))
    assert str(error) == "score 10 is outside the template's scale 0-9 (line 'SCORE: 10')"


def test_a_long_score_line_is_shortened_in_the_message():
    line = "SCORE: " + "seven " * 30
    message = str(parse_error("score", line, scale=(0, 9)))
    assert message == (
        f"the last SCORE line is not a plain number (line '{line.strip()[:77]}...'); {NOT_A_NUMBER}"
    )


def test_a_score_line_of_80_characters_is_quoted_whole():
    line = "SCORE: " + "x" * 73
    assert len(line) == 80
    message = str(parse_error("score", line, scale=(0, 9)))
    assert message == f"the last SCORE line is not a plain number (line '{line}'); {NOT_A_NUMBER}"


def test_without_a_scale_any_number_is_kept_and_a_denominator_recorded():
    assert parse_output("score", "SCORE: 1234").score == 1234.0
    parsed = parse_output("score", "SCORE: 42/100")
    assert (parsed.score, parsed.scale_max) == (42.0, 100.0)


def test_a_matching_denominator_on_another_scale_passes():
    parsed = parse_output("score", "Final Score: 85/100", scale=(0, 100))
    assert (parsed.score, parsed.scale_max) == (85.0, 100.0)


def test_text_parsers_ignore_the_scale():
    assert parse_output("identity", "SCORE: 99", scale=(0, 9)).text == "SCORE: 99"


# What changed from upstream's in_last_line parser (reference §7.1); docs/parsers.md shows
# the same table. Upstream's results are in the comments.
UPSTREAM_CASES = [
    ("SCORE: 3\nmid\nSCORE: 8", 8.0),  # upstream 3.0: first match of the last 3 lines
    ("SCORE: 8/9", 8.0),  # upstream: failed
    ("SCORE: 7.", 7.0),  # upstream: failed
    ("Total Score: 8/9", 8.0),  # upstream: failed
    ("Score:\n7", 7.0),  # upstream: failed
    ("SCORE: 7\n\nline 1\nline 2\nline 3", 7.0),  # upstream: failed, more than 3 lines up
    ("Score: 7 out of 9", 7.0),  # upstream 7.0
    ("Final Score: 8.5", 8.5),  # upstream 8.5
    ("Score: 000", 0.0),  # upstream 0.0 (through the falsy-zero fallthrough)
    ("Score: 1234", "score 1234 is outside"),  # upstream 2.0 (mean of 1, 2, 3)
    ("Score: 456", "score 456 is outside"),  # upstream 5.0
    ("Score: 4, 5, 6", "the last SCORE line is not a plain number"),  # upstream 5.0
    ("The final score: 7 is good", "no SCORE line"),  # upstream 7.0
    ("Score = 7", "no SCORE line"),  # upstream: failed
    ("7", "no SCORE line"),  # upstream: failed
    ("SCORE: 10", "score 10 is outside"),  # upstream: failed
    ("SCORE: 9.5", "score 9.5 is outside"),  # upstream: failed
    ("SCORE: -1", "score -1 is outside"),  # upstream: failed
]


@pytest.mark.parametrize(("text", "expected"), UPSTREAM_CASES)
def test_upstream_examples(text, expected):
    if isinstance(expected, float):
        assert parse_output("in_last_line", text, scale=(0, 9)).score == expected
    else:
        assert str(parse_error("in_last_line", text, scale=(0, 9))).startswith(expected)


# --- validate_output ----------------------------------------------------------------------


def validation_error(text: str, **kwargs) -> ParseError:
    with pytest.raises(ParseError) as caught:
        validate_output(text, **kwargs)
    return caught.value


@pytest.mark.parametrize("text", ["", "   \n\t\n"])
def test_an_empty_reply_is_refused(text):
    error = validation_error(text, finish_reason="stop", min_lines=None)
    assert str(error) == (
        "the model returned an empty reply (a refusal or a provider problem); "
        "retry it or try another model"
    )
    assert error.state == "refused"


def test_an_empty_truncated_reply_is_refused_first():
    assert validation_error("", finish_reason="length", min_lines=3).state == "refused"


def test_a_length_finish_is_truncated():
    error = validation_error("a\nb\nc", finish_reason="length", min_lines=None)
    assert str(error) == (
        "the reply was cut off at the token limit (finish_reason 'length'); "
        "raise the stage's max_tokens"
    )
    assert error.state == "truncated"


def test_a_reply_that_used_every_allowed_token_is_truncated_even_when_the_server_says_stop():
    error = validation_error(
        "a\nb\nc", finish_reason="stop", min_lines=None, completion_tokens=400, max_tokens=400
    )
    assert str(error) == (
        "the reply used all 400 tokens max_tokens allowed (400 completion tokens; the server"
        " said finish_reason 'stop'), so it is probably cut off; raise the stage's max_tokens"
    )
    assert error.state == "truncated"


@pytest.mark.parametrize(
    "tokens", [dict(completion_tokens=399, max_tokens=400), dict(completion_tokens=400)]
)
def test_a_reply_under_its_token_limit_or_without_one_is_not_truncated(tokens):
    assert validate_output("a\nb\nc", finish_reason="stop", min_lines=None, **tokens) is None


def test_truncation_is_reported_before_shortness():
    assert validation_error("one line", finish_reason="length", min_lines=3).state == "truncated"


def test_a_short_reply_states_observed_and_required_lines():
    error = validation_error("one\n\n  \ntwo\n", finish_reason="stop", min_lines=3)
    assert str(error) == (
        "the reply has 2 non-empty lines but the stage requires at least 3 (min_lines); "
        "lower min_lines or check the template"
    )
    assert error.state == "too_short"


@pytest.mark.parametrize("min_lines", [None, 0, -1, 3])
def test_a_valid_reply_passes(min_lines):
    assert validate_output("one\n\ntwo\nthree", finish_reason=None, min_lines=min_lines) is None
