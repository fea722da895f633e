"""What a failed or odd reply becomes, read the way a user reads it: whether the call is
tried again, how long the server asked us to wait, and what of the body a message quotes
(its start, escaped onto one line, with any key redacted). The provider's own tests
(``test_providers.py``) send the same through real HTTP; these call the chat format's
readers directly, with a fixed clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from daydream.providers.chat import ReplyError, read_completion, redact, status_error
from daydream.providers.protocol import Completion
from daydream.values import COUNT_MAX

KEY = "sk-test-SECRET123"


def redactor(text: str) -> str:
    return redact(text, KEY)


def http_error(
    status: int, body: bytes | str = b"", headers: dict[str, str] | None = None, now: float = 0.0
) -> ReplyError:
    raw = body.encode() if isinstance(body, str) else body
    return status_error(status, list((headers or {}).items()), raw, redactor, now=now)


def reply_error(body: bytes | str) -> ReplyError:
    raw = body.encode() if isinstance(body, str) else body
    with pytest.raises(ReplyError) as info:
        read_completion(raw, 0.1, redactor, status=200)
    return info.value


def completion(data: dict[str, Any]) -> Completion:
    return read_completion(json.dumps(data).encode(), 0.1, redactor, status=200)


def reply(**fields: Any) -> dict[str, Any]:
    message = {"content": "the reply", **fields.pop("message", {})}
    return {"choices": [{"message": message, "finish_reason": "stop"}], **fields}


# --- retried or not, and how long to wait ---------------------------------------------------


def test_a_400_is_not_retried_even_when_the_server_sends_a_retry_after():
    error = http_error(400, '{"error": {"message": "bad request"}}', {"Retry-After": "5"})
    assert (error.retryable, error.retry_after) == (False, None)
    assert str(error) == "HTTP 400: bad request"  # no "(retry after 5s)": it is not retried


def test_a_retry_after_ms_under_a_second_is_waited_as_sent():
    error = http_error(429, b"", {"retry-after-ms": "250"})
    assert error.retry_after == 0.25
    assert str(error) == "HTTP 429: (empty body) (retry after 0.25s)"


def test_a_retry_after_date_in_another_zone_counts_from_its_own_offset():
    # 04:04:35 at +01:00 is 03:04:35 UTC, 30 s after the clock
    now = 1_893_553_445.0  # 2030-01-02 03:04:05 UTC
    error = http_error(503, b"", {"Retry-After": "Wed, 02 Jan 2030 04:04:35 +0100"}, now=now)
    assert error.retry_after == 30.0


@pytest.fixture
def clock_in_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local zone is New York (five hours behind UTC in January)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("clock_in_new_york")
def test_a_retry_after_date_without_a_zone_is_utc_whatever_the_machines_zone():
    now = 1_893_553_445.0  # 2030-01-02 03:04:05 UTC
    error = http_error(429, b"", {"Retry-After": "Wed, 02 Jan 2030 03:04:35 -0000"}, now=now)
    assert error.retry_after == 30.0


# --- what a message quotes ------------------------------------------------------------------


def test_an_empty_body_is_named_as_empty():
    assert str(http_error(500)) == "HTTP 500: (empty body)"
    assert str(reply_error(b"")) == "response is not valid JSON: (empty body)"


def test_control_characters_in_a_body_are_shown_as_escapes_on_one_line():
    message = str(http_error(502, b"bad gateway\x07\r\nretry\tlater"))
    assert message.isprintable()
    # each escaped once, as Python writes it (not "\\\\t")
    assert message == "HTTP 502: 'bad gateway\\x07\\r\\nretry\\tlater'"


def test_a_body_is_quoted_as_it_is():
    body = "C:\\models\\llama: no such file; it's gone"
    assert str(reply_error(body)) == f"response is not valid JSON: {body!r}"


def test_a_body_of_wide_characters_is_quoted_up_to_200_characters():
    body = "模型不可用" * 100  # three bytes a character in UTF-8
    assert str(http_error(503, body)) == f"HTTP 503: {body[:200]!r}"


def test_an_error_message_of_exactly_500_characters_is_kept_whole():
    words = ("word " * 100).strip() + "."  # 500 characters
    assert len(words) == 500
    error = http_error(400, json.dumps({"error": {"message": words}}))
    assert str(error) == f"HTTP 400: {words}"


def test_a_fastapi_detail_is_the_message():
    error = http_error(401, '{"detail": "Not authenticated"}')
    assert str(error) == "HTTP 401: Not authenticated"


def test_a_redirect_is_any_3xx_even_without_a_location():
    error = http_error(300, b"", {"Location": "https://new.example.test/v1"})
    assert str(error) == (
        "HTTP 300: redirected to 'https://new.example.test/v1'; set base_url to the final address"
    )
    assert error.retryable is False
    assert str(http_error(302)) == "HTTP 302: redirected to ''; set base_url to the final address"


# --- an error inside a 200 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [(100, 100, False), (599, 599, True), (99, None, True), (600, None, True)],
)
def test_an_error_codes_is_its_status_only_when_it_is_an_http_status(code, status, retryable):
    error = reply_error(json.dumps({"error": {"message": "upstream failed", "code": code}}))
    assert (error.status, error.retryable) == (status, retryable)
    assert str(error) == "error in a 200 response: upstream failed"


# --- a reply that is not a chat completion --------------------------------------------------


def test_a_reply_that_is_not_a_completion_says_which_field_is_wrong():
    error = reply_error('{"choices": [{}]}')
    assert str(error) == (
        "response is not a chat completion (choices.0.message: Field required): "
        """'{"choices": [{}]}'"""
    )
    assert error.retryable


def test_a_reply_that_is_not_an_object_at_all_names_the_body():
    assert str(reply_error("[1, 2]")).startswith(
        "response is not a chat completion (body: Input should be a valid dictionary"
    )


def test_a_reply_with_many_wrong_fields_names_the_first_three():
    error = reply_error('{"choices": [{}, {}, {}, {}]}')
    assert str(error).startswith(
        "response is not a chat completion (choices.0.message: Field required; "
        "choices.1.message: Field required; choices.2.message: Field required): "
    )


# --- what a completion keeps ----------------------------------------------------------------


def test_token_counts_keep_zero_and_the_largest_count_and_drop_what_is_past_it():
    usage = {"prompt_tokens": 0, "completion_tokens": COUNT_MAX}
    got = completion(reply(usage=usage))
    assert (got.prompt_tokens, got.completion_tokens) == (0, COUNT_MAX)
    got = completion(reply(usage={"prompt_tokens": COUNT_MAX + 1, "completion_tokens": -1}))
    assert (got.prompt_tokens, got.completion_tokens) == (None, None)


def test_reasoning_is_kept_as_text_from_a_string_or_a_list_of_parts():
    got = completion(reply(message={"reasoning_content": "first, the flywheel"}))
    assert (got.text, got.reasoning) == ("the reply", "first, the flywheel")
    parts = [{"type": "text", "text": "first, "}, {"type": "text", "text": "the flywheel"}]
    assert completion(reply(message={"reasoning": parts})).reasoning == "first, the flywheel"
    assert completion(reply(message={"reasoning_content": "", "reasoning": []})).reasoning is None


def test_reasoning_tokens_and_the_status_are_kept_with_the_reply():
    usage = {"completion_tokens": 50, "completion_tokens_details": {"reasoning_tokens": 42}}
    got = completion(reply(usage=usage))
    assert (got.completion_tokens, got.reasoning_tokens, got.http_status) == (50, 42, 200)
    assert got.offline is False


def test_reasoning_keeps_its_line_breaks_as_plain_newlines():
    got = completion(reply(message={"reasoning_content": "first\r\nthen\nlast"}))
    assert got.reasoning == "first\nthen\nlast"


def test_a_reply_given_as_a_list_of_strings_and_parts_is_joined():
    got = completion(reply(message={"content": ["Flywheels ", {"text": "and"}, " daydreams"]}))
    assert got.text == "Flywheels and daydreams"


def test_a_free_call_costs_zero_and_a_million_dollars_is_the_largest_cost_kept():
    assert completion(reply(usage={"cost": 0})).cost == 0.0
    assert completion(reply(usage={"cost": 1e6})).cost == 1e6
    assert completion(reply(usage={"cost": 1e6 + 1})).cost is None


def test_true_and_false_are_not_counts_or_costs():
    got = completion(reply(usage={"prompt_tokens": True, "completion_tokens": False, "cost": True}))
    assert (got.prompt_tokens, got.completion_tokens, got.cost) == (None, None, None)


def test_whitespace_around_a_number_given_as_text_is_ignored():
    # Python's whitespace, which includes the ASCII separators U+001C-U+001F
    usage = {"prompt_tokens": " 12\n", "completion_tokens": "\x1f7\x1c", "cost": "\t0.5 "}
    got = completion(reply(usage=usage))
    assert (got.prompt_tokens, got.completion_tokens, got.cost) == (12, 7, 0.5)


def test_a_reply_with_choices_and_an_empty_error_field_is_a_reply():
    assert completion(reply(error=None)).text == "the reply"
    assert completion(reply(error={"message": "ignored"})).text == "the reply"


def test_a_reply_without_choices_or_that_failed_mid_reply_is_retried():
    error = reply_error('{"choices": []}')
    assert (str(error), error.retryable) == ("""response has no choices: '{"choices": []}'""", True)
    body = json.dumps(reply() | {"choices": [{"message": {}, "finish_reason": "error"}]})
    error = reply_error(body)
    assert str(error) == f"the model failed mid-reply (finish_reason error): {body!r}"
    assert error.retryable


def test_anything_shaped_like_a_key_is_redacted_even_when_it_is_not_ours():
    error = http_error(401, '{"error": {"message": "Incorrect API key: sk-other1234567890"}}')
    assert str(error) == "HTTP 401: Incorrect API key: [redacted]"
    error = http_error(502, "upstream said Authorization: Bearer abc.def.ghi, try again")
    assert str(error) == "HTTP 502: 'upstream said Authorization: [redacted], try again'"
