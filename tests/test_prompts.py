"""Tests for daydream.prompts: strict sandboxed rendering and the stage variables."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pytest

from daydream.errors import TemplateError
from daydream.prompts import (
    EXTRA_VARIABLES,
    concept_contents,
    render_prompt,
    stage_variables,
)
from tests.upstream import UPSTREAM_RAW as UPSTREAM
from tests.upstream import needs_upstream


@dataclass(frozen=True)
class Concept:
    name: str
    descriptions: dict[str, str] = field(default_factory=dict)


def upstream_concepts(*concept_ids: str) -> list[Concept]:
    """Concepts read as upstream did: the name from the CSV, descriptions stripped."""
    with (UPSTREAM / "concepts_metadata.csv").open(encoding="utf-8") as handle:
        names = {row["concept_id"]: row["name"] for row in csv.DictReader(handle)}
    concepts = []
    for concept_id in concept_ids:
        descriptions = {}
        for level in ("sentence", "paragraph", "article"):
            path = UPSTREAM / "concepts" / f"descriptions-{level}" / f"{concept_id}.txt"
            if path.exists():
                descriptions[level] = path.read_text(encoding="utf-8").strip()
        concepts.append(Concept(names[concept_id], descriptions))
    return concepts


def upstream_render(body: str, variables: dict) -> str:
    """How upstream rendered: a plain environment with StrictUndefined and the defaults."""
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(body).render(variables)


def templates(stage: str) -> list[Path]:
    return sorted((UPSTREAM / "templates" / stage).glob("*.txt")) if UPSTREAM.is_dir() else []


# --- rendering: byte-exact semantics ------------------------------------------------------

CONCEPTS = [
    {"name": "Mind-Wandering", "content": "Thought drifts."},
    {"name": "DMN", "content": "Rest."},
]


def test_a_concept_loop_renders_byte_for_byte():
    body = (
        "Inputs:\n"
        "{% for concept in concepts %}\n"
        "**{{ concept.name }}**\n"
        "{{ concept.content }}\n"
        "---\n"
        "{% endfor %}\n"
        "Done{% if concepts|length > 1 %}!{% endif %}\n"
    )
    expected = "Inputs:\n\n**Mind-Wandering**\nThought drifts.\n---\n\n**DMN**\nRest.\n---\n\nDone!"
    assert render_prompt("draft/loop", body, {"concepts": CONCEPTS}) == expected


def test_loop_last_works_as_upstream_templates_use_it():
    body = "{% for c in concepts %}{{ c.name }}{% if not loop.last %}, {% endif %}{% endfor %}"
    assert render_prompt("draft/last", body, {"concepts": CONCEPTS}) == "Mind-Wandering, DMN"


def test_raw_blocks_keep_jinja_syntax_literally():
    body = "{% raw %}Pair {{i}}: {A, B}\n{% endraw %}{{ response }}"
    assert render_prompt("draft/raw", body, {"response": "R"}) == "Pair {{i}}: {A, B}\nR"


def test_one_trailing_newline_is_dropped_as_jinja_does_by_default():
    assert render_prompt("essay/nl", "{{ links_block }}\n", {"links_block": "x"}) == "x"
    assert render_prompt("essay/nl2", "{{ links_block }}\n\n", {"links_block": "x"}) == "x\n"


def test_variables_are_not_escaped_and_whitespace_is_kept():
    body = "  {% if true %}\n<b>{{ response }}</b>\n  {% endif %}"
    assert render_prompt("evaluation/raw", body, {"response": "a & <i>b</i>"}) == (
        "  \n<b>a & <i>b</i></b>\n  "
    )


def test_a_cached_template_is_keyed_by_its_body():
    assert render_prompt("essay/same-id", "one {{ response }}", {"response": "x"}) == "one x"
    assert render_prompt("essay/same-id", "two {{ response }}", {"response": "x"}) == "two x"
    assert render_prompt("essay/same-id", "one {{ response }}", {"response": "y"}) == "one y"


# --- rendering: errors --------------------------------------------------------------------


def test_an_undefined_variable_names_the_template_line_and_the_variables():
    body = "Draft:\n\n{{ links_blok }}\n"
    with pytest.raises(TemplateError) as caught:
        render_prompt("essay/foo", body, {"links_block": "L", "draft_block": "D"})
    assert str(caught.value) == (
        "template essay/foo: line 3: 'links_blok' is undefined (variables: draft_block, links_block)"
    )


def test_an_undefined_attribute_in_a_loop_is_an_error():
    body = "{% for concept in concepts %}\n{{ concept.titel }}\n{% endfor %}"
    with pytest.raises(TemplateError) as caught:
        render_prompt("draft/bad", body, {"concepts": CONCEPTS})
    assert str(caught.value) == (
        "template draft/bad: line 2: 'dict object' has no attribute 'titel' (variables: concepts)"
    )


def test_no_variables_at_all_says_so():
    with pytest.raises(TemplateError) as caught:
        render_prompt("evaluation/empty", "{{ response }}", {})
    assert str(caught.value) == (
        "template evaluation/empty: line 1: 'response' is undefined (variables: none)"
    )


def test_a_syntax_error_names_its_line():
    with pytest.raises(TemplateError) as caught:
        render_prompt("draft/syntax", "ok\n{% for concept in concepts %}\n{{ concept.name }}\n", {})
    assert str(caught.value) == (
        "template draft/syntax: line 3: syntax error: Unexpected end of template. Jinja was "
        "looking for the following tags: 'endfor' or 'else'. The innermost block that needs "
        "to be closed is 'for'."
    )


def test_the_sandbox_blocks_python_internals():
    with pytest.raises(TemplateError) as caught:
        render_prompt("draft/evil", "x\n{{ response.__class__.__mro__ }}", {"response": "r"})
    assert str(caught.value) == (
        "template draft/evil: line 2: blocked by the sandbox: access to attribute '__class__' "
        "of 'str' object is unsafe."
    )


def test_a_runtime_error_in_an_expression_is_a_template_error():
    with pytest.raises(TemplateError) as caught:
        render_prompt("draft/zero", "a\nb\n{{ 1 / 0 }}", {})
    assert str(caught.value) == "template draft/zero: line 3: ZeroDivisionError: division by zero"


# --- concept_contents ---------------------------------------------------------------------


def test_concept_contents_uses_the_requested_level():
    concept = Concept("A", {"sentence": "s", "paragraph": "p", "article": "a"})
    assert concept_contents([concept], "article") == [{"name": "A", "content": "a"}]


@pytest.mark.parametrize(
    ("descriptions", "content"),
    [
        ({"sentence": "s", "paragraph": "p"}, "p"),
        ({"sentence": "s"}, "s"),
        ({"sentence": "s", "paragraph": "", "article": ""}, "s"),
        ({}, "Name"),
        ({"article": "", "paragraph": "", "sentence": ""}, "Name"),
    ],
)
def test_concept_contents_falls_back_paragraph_sentence_name(descriptions, content):
    assert concept_contents([Concept("Name", descriptions)], "article") == [
        {"name": "Name", "content": content}
    ]


def test_concept_contents_keeps_the_given_order():
    concepts = [Concept("B", {"paragraph": "b"}), Concept("A", {"paragraph": "a"})]
    assert [item["name"] for item in concept_contents(concepts, "paragraph")] == ["B", "A"]


# --- stage_variables ----------------------------------------------------------------------


def test_draft_variables():
    assert stage_variables("draft", concepts=CONCEPTS) == {"concepts": CONCEPTS}


def test_essay_variables_from_a_draft():
    assert stage_variables("essay", parent_text="notes") == {
        "draft_block": "notes",
        "links_block": "notes",
    }


def test_essay_variables_straight_from_a_combination():
    assert stage_variables("essay", concepts=CONCEPTS) == {"concepts": CONCEPTS}


def test_evaluation_variables():
    assert stage_variables("evaluation", parent_text="essay") == {"response": "essay"}


def test_extras_are_added_for_every_stage():
    extras = {
        "combo_id": "combo_001",
        "template_id": "novelty-v2",
        "model_id": "sonnet-4",
        "replicate": 2,
        "gen_id": "e_abc",
    }
    assert set(extras) == set(EXTRA_VARIABLES)
    variables = stage_variables("evaluation", parent_text="essay", extras=extras)
    assert variables == {"response": "essay", **extras}
    body = "{{ model_id }} #{{ replicate }} on {{ combo_id }}: {{ response }}"
    assert render_prompt("evaluation/x", body, variables) == "sonnet-4 #2 on combo_001: essay"


def test_an_unknown_extra_is_rejected():
    with pytest.raises(ValueError) as caught:
        stage_variables("draft", concepts=[], extras={"cohort": "c", "seed": 1})
    assert str(caught.value) == (
        "unknown template extras cohort, seed "
        "(allowed: combo_id, template_id, model_id, replicate, gen_id)"
    )


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ("draft", "a draft prompt needs concepts"),
        ("essay", "an essay prompt needs parent_text (the draft) or concepts"),
        ("evaluation", "an evaluation prompt needs parent_text (the essay)"),
        ("links", "unknown stage 'links' (stages: draft, essay, evaluation)"),
    ],
)
def test_missing_inputs_are_programming_errors(stage, message):
    with pytest.raises(ValueError) as caught:
        stage_variables(stage)
    assert str(caught.value) == message


# --- the real upstream templates ----------------------------------------------------------

DRAFT_TEXT = (
    "Link 1: Default Mode Network -> Combinatorial Search\n\n<essay-idea>\nIdea\n</essay-idea>"
)
ESSAY_TEXT = "# The Idle Engine\n\nAn essay about {{ braces }} and {% tags %} left as text."


@needs_upstream
def test_the_upstream_catalog_has_the_expected_templates():
    assert (len(templates("draft")), len(templates("essay")), len(templates("evaluation"))) == (
        22,
        7,
        21,
    )


@needs_upstream
@pytest.mark.parametrize("path", templates("draft"), ids=lambda path: path.stem)
def test_every_upstream_draft_template_renders_as_upstream(path):
    concepts = concept_contents(
        upstream_concepts("default-mode-network", "generate-and-test", "economic-moat-v1"),
        "paragraph",
    )
    body = path.read_text(encoding="utf-8")
    variables = stage_variables("draft", concepts=concepts, extras={"combo_id": "combo_001"})
    rendered = render_prompt(f"draft/{path.stem}", body, variables)
    assert rendered == upstream_render(body, {"concepts": concepts})
    for concept in concepts:
        assert concept["name"] in rendered
        if "concept.content" in body:
            assert concept["content"] in rendered


@needs_upstream
@pytest.mark.parametrize("path", templates("essay"), ids=lambda path: path.stem)
def test_every_upstream_essay_template_renders_as_upstream(path):
    body = path.read_text(encoding="utf-8")
    rendered = render_prompt(
        f"essay/{path.stem}", body, stage_variables("essay", parent_text=DRAFT_TEXT)
    )
    assert rendered == upstream_render(body, {"draft_block": DRAFT_TEXT, "links_block": DRAFT_TEXT})
    assert DRAFT_TEXT in rendered


@needs_upstream
@pytest.mark.parametrize("path", templates("evaluation"), ids=lambda path: path.stem)
def test_every_upstream_evaluation_template_renders_as_upstream(path):
    body = path.read_text(encoding="utf-8")
    variables = stage_variables("evaluation", parent_text=ESSAY_TEXT)
    rendered = render_prompt(f"evaluation/{path.stem}", body, variables)
    assert rendered == upstream_render(body, {"response": ESSAY_TEXT})
    assert ESSAY_TEXT in rendered


@needs_upstream
def test_upstream_concepts_fall_back_where_a_level_is_missing():
    (dmn, gat) = upstream_concepts("default-mode-network", "generate-and-test")
    assert "sentence" not in gat.descriptions and "article" not in gat.descriptions
    contents = concept_contents([dmn, gat], "article")
    assert contents[0]["content"] == dmn.descriptions["article"]
    assert contents[1]["content"] == gat.descriptions["paragraph"]
    contents = concept_contents([gat], "sentence")
    assert contents[0]["content"] == gat.descriptions["paragraph"]


@needs_upstream
def test_pair_explorer_keeps_its_raw_placeholders():
    body = (UPSTREAM / "templates" / "draft" / "pair-explorer.txt").read_text(encoding="utf-8")
    rendered = render_prompt("draft/pair-explorer", body, {"concepts": CONCEPTS})
    assert "`Pair {{i}}: {A, B}`" in rendered
    assert "**Mind-Wandering**\nThought drifts.\n---" in rendered
