"""Tests for daydream.ids: a signature component that is missing or empty is named in the
refusal, base36 as upstream wrote it, and the default replicate is the first."""

from __future__ import annotations

import pytest

from daydream import ids
from daydream.errors import PlanError

DRAFT = ("combo_v1_1f3a9c2b7e4d", "creative-synthesis-v10", "gemini_25_pro")


def refusal(make, *args, **kwargs) -> str:
    with pytest.raises(PlanError) as caught:
        make(*args, **kwargs)
    return str(caught.value)


@pytest.mark.parametrize("blank", [None, "  "])
@pytest.mark.parametrize(
    ("make", "args", "kwargs", "position", "field"),
    [
        (ids.draft_id, DRAFT, {}, 0, "combo_id"),
        (ids.draft_id, DRAFT, {}, 1, "draft_template_id"),
        (ids.draft_id, DRAFT, {}, 2, "llm_model_id"),
        (ids.essay_id, ("d_1", "essay-v1", None), {"copy": True}, 0, "draft_gen_id"),
        (ids.essay_id, ("d_1", "essay-v1", None), {"copy": True}, 1, "essay_template_id"),
        (ids.essay_id, ("d_1", "essay-v1", "m"), {"copy": False}, 0, "parent"),
        (ids.essay_id, ("d_1", "essay-v1", "m"), {"copy": False}, 1, "essay_template_id"),
        (ids.essay_id, ("d_1", "essay-v1", "m"), {"copy": False}, 2, "essay_llm"),
        (ids.evaluation_id, ("e_1", "judge-v1", "m"), {}, 0, "essay_gen_id"),
        (ids.evaluation_id, ("e_1", "judge-v1", "m"), {}, 1, "evaluation_template_id"),
        (ids.evaluation_id, ("e_1", "judge-v1", "m"), {}, 2, "llm_model_id"),
    ],
)
def test_a_missing_or_empty_component_is_named(make, args, kwargs, position, field, blank):
    given = list(args)
    given[position] = blank
    state = "missing" if blank is None else "empty"
    assert refusal(make, *given, **kwargs) == f"id signature: {field} is {state}"


@pytest.mark.parametrize("make", [ids.draft_id, ids.evaluation_id])
def test_a_replicate_that_is_not_an_integer_is_named(make):
    assert refusal(make, "a", "b", "c", "two") == "id signature: replicate 'two' is not an integer"


def test_the_default_replicate_is_the_first():
    assert ids.draft_id(*DRAFT) == ids.draft_id(*DRAFT, 1) == "d_4cn4s48605a53v5u"
    assert ids.essay_id("d_1", "essay-v1", "m", copy=False) == ids.essay_id(
        "d_1", "essay-v1", "m", 1, copy=False
    )
    assert ids.evaluation_id("e_1", "judge-v1", "m") == ids.evaluation_id("e_1", "judge-v1", "m", 1)
    assert ids.draft_id(*DRAFT, 2) != ids.draft_id(*DRAFT)


@pytest.mark.parametrize(
    ("number", "digits"),
    [
        (0, "0"),
        (7, "7"),
        (35, "z"),
        (36, "10"),
        (1295, "zz"),
        (1296, "100"),
        (1297, "101"),
        (1296 * 36, "1000"),
        (1296**2, "10000"),
    ],
)
def test_base36_writes_the_most_significant_digit_first_without_padding(number, digits):
    assert ids.base36(number) == digits
    assert int(digits, 36) == number
