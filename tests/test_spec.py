"""The cohort spec DSL: upstream fixtures row for row, rule semantics, errors, planner contract.

Expected rows are derived by hand from the upstream semantics (reference §1.4): each rule
puts its slot where the first of its axes was, the product runs first slot slowest, and
pair/tuple values expand back into their axes.
"""

from __future__ import annotations

import io
import json
import random
from itertools import islice, product
from pathlib import Path

import pytest

from daydream.catalog.entries import combo_id_for
from daydream.errors import SpecError
from daydream.spec import (
    DerivedCombo,
    PairRule,
    SubsetRule,
    TieRule,
    TupleRule,
    compile_rows,
    load_spec,
    normalise_row,
    parse_spec_mapping,
    write_rows,
)
from tests.upstream import UPSTREAM_DATA

FIXTURES = UPSTREAM_DATA / "spec_fixtures"
needs_upstream = pytest.mark.skipif(not FIXTURES.is_dir(), reason="upstream data not available")

# Row counts the upstream test-suite pins (reference §10.1 item 7, §10.2 item 8).
PINNED_COUNTS = {
    "baseline_cartesian": 12,
    "dual_llm_cartesian": 4,
    "paired_copy_mix": 2,
    "full_two_phase_cartesian": 64,
    "curated_essays": 2,
    "creative_alignment_tuple": 528,
    "cohort_cartesian": 8,
}

CS2, AI2, GWERN = "creative-synthesis-v2", "application-implementation-v2", "gwern_original"
CM2, DV3 = "creativity-metrics-v2", "daydreaming-verification-v3"
GEMINI, SONNET, DEEPSEEK = "gemini_25_pro", "sonnet-4", "deepseek_r1_p"


def fixture_rows(name: str) -> tuple[list[str], list[list[object]]]:
    rows = compile_rows(load_spec(FIXTURES / name / "config.yaml"))
    materialised = list(rows)
    for row in materialised:
        assert list(row) == rows.columns  # every row has the header's keys, in its order
    return rows.columns, [list(row.values()) for row in materialised]


def compile_mapping(mapping: dict, **kwargs) -> list[dict]:
    return list(compile_rows(parse_spec_mapping(mapping), **kwargs))


def table(rows: list[dict]) -> list[tuple]:
    """Rows as (column, value) tuples: compares values and key order."""
    return [tuple(row.items()) for row in rows]


def spec_error(
    tmp_path: Path,
    monkeypatch,
    text: str,
    files: dict[str, str] | None = None,
    name: str = "spec.yaml",
) -> str:
    """The message of the SpecError that loading ``text`` raises (paths relative to tmp_path)."""
    monkeypatch.chdir(tmp_path)
    for rel, content in (files or {}).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content, encoding="utf-8")
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(name)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- upstream fixtures --------------------------------------------------------------------


@needs_upstream
def test_every_upstream_fixture_compiles_to_its_pinned_row_count() -> None:
    found = sorted(p.parent.name for p in FIXTURES.glob("*/config.yaml"))
    assert found == sorted(PINNED_COUNTS)
    for name, count in PINNED_COUNTS.items():
        rows = compile_rows(load_spec(FIXTURES / name / "config.yaml"))
        assert rows.count == len(rows) == count
        assert sum(1 for _ in rows) == count


@needs_upstream
def test_baseline_cartesian_pairs_evaluation_template_with_llm() -> None:
    columns, rows = fixture_rows("baseline_cartesian")
    assert columns == ["draft_template", "essay_template", "evaluation_template", "evaluation_llm"]
    # Slots: draft_template (slowest), essay_template, evaluation_bundle (the 4 allowed pairs).
    assert rows == [
        [draft, "parsed-from-links-v1", template, llm]
        for draft in (CS2, AI2, GWERN)
        for template, llm in ((CM2, SONNET), (CM2, GEMINI), (DV3, SONNET), (DV3, GEMINI))
    ]
    assert rows[:2] == [
        [CS2, "parsed-from-links-v1", CM2, SONNET],
        [CS2, "parsed-from-links-v1", CM2, GEMINI],
    ]
    assert rows[-1] == [GWERN, "parsed-from-links-v1", DV3, GEMINI]


@needs_upstream
def test_cohort_cartesian_tuple_then_pair() -> None:
    columns, rows = fixture_rows("cohort_cartesian")
    assert columns == [
        "combo_id",
        "draft_template",
        "draft_llm",
        "draft_template_replicate",
        "essay_template",
        "essay_llm",
        "essay_template_replicate",
        "evaluation_template",
        "evaluation_llm",
    ]
    # Slots: combo, draft_template, draft_llm, draft_template_replicate,
    # essay_template_replicate, evaluation_bundle (at evaluation_template), essay_bundle.
    fixed = ["combo-1", "draft-A", "draft-llm"]
    assert rows == [
        [*fixed, "1", "essay-X", "essay-llm", "1", "eval-1", "eval-llm"],
        [*fixed, "1", "essay-Y", "essay-llm", "1", "eval-1", "eval-llm"],
        [*fixed, "1", "essay-X", "essay-llm", "2", "eval-1", "eval-llm"],
        [*fixed, "1", "essay-Y", "essay-llm", "2", "eval-1", "eval-llm"],
        [*fixed, "2", "essay-X", "essay-llm", "1", "eval-1", "eval-llm"],
        [*fixed, "2", "essay-Y", "essay-llm", "1", "eval-1", "eval-llm"],
        [*fixed, "2", "essay-X", "essay-llm", "2", "eval-1", "eval-llm"],
        [*fixed, "2", "essay-Y", "essay-llm", "2", "eval-1", "eval-llm"],
    ]


@needs_upstream
def test_curated_essays_one_tuple_of_four_axes() -> None:
    columns, rows = fixture_rows("curated_essays")
    assert columns == ["essay_template", "essay_llm", "evaluation_template", "evaluation_llm"]
    assert rows == [
        ["essay-copy-v1", SONNET, "verification-eval-v1", SONNET],
        ["essay-llm-v1", SONNET, "verification-eval-v1", SONNET],
    ]


@needs_upstream
def test_dual_llm_cartesian_pair_of_a_tuple_expands_into_its_axes() -> None:
    columns, rows = fixture_rows("dual_llm_cartesian")
    assert columns == [
        "draft_template",
        "draft_llm",
        "draft_template_replicate",
        "essay_template",
        "essay_llm",
        "evaluation_template",
        "evaluation_llm",
    ]
    # Slots: draft_essay_pair (at draft_template), draft_llm, draft_template_replicate, ...
    tail = ["verification-eval-v1", SONNET]
    assert rows == [
        [CS2, GEMINI, "1", "essay-llm-v1", SONNET, *tail],
        [CS2, GEMINI, "2", "essay-llm-v1", SONNET, *tail],
        [AI2, GEMINI, "1", "essay-copy-v1", SONNET, *tail],
        [AI2, GEMINI, "2", "essay-copy-v1", SONNET, *tail],
    ]


@needs_upstream
def test_paired_copy_mix_pairs_draft_with_essay_template() -> None:
    columns, rows = fixture_rows("paired_copy_mix")
    assert columns == ["draft_template", "essay_template", "evaluation_template", "evaluation_llm"]
    assert rows == [
        [CS2, "essay-llm-v1", "quality-eval-v1", SONNET],
        [GWERN, "essay-copy-v1", "quality-eval-v1", SONNET],
    ]


@needs_upstream
def test_full_two_phase_cartesian_two_pairs_over_a_tuple() -> None:
    columns, rows = fixture_rows("full_two_phase_cartesian")
    assert columns == [
        "draft_template",
        "draft_llm",
        "essay_template",
        "essay_llm",
        "evaluation_template",
        "evaluation_llm",
    ]
    # Slots: draft_essay_pair (8 allowed), draft_llm (2), evaluation_bundle (4), fastest last.
    assert len(rows) == 64
    assert rows[:5] == [
        [CS2, GEMINI, "essay-theme-v16", GEMINI, CM2, GEMINI],
        [CS2, GEMINI, "essay-theme-v16", GEMINI, CM2, SONNET],
        [CS2, GEMINI, "essay-theme-v16", GEMINI, DV3, GEMINI],
        [CS2, GEMINI, "essay-theme-v16", GEMINI, DV3, SONNET],
        [CS2, SONNET, "essay-theme-v16", GEMINI, CM2, GEMINI],
    ]
    assert rows[8] == [CS2, GEMINI, "essay-theme-v16", SONNET, CM2, GEMINI]
    assert rows[32] == [AI2, GEMINI, "essay-theme-v16", GEMINI, CM2, GEMINI]
    assert rows[-2:] == [
        [AI2, SONNET, "essay-theme-v17", SONNET, DV3, GEMINI],
        [AI2, SONNET, "essay-theme-v17", SONNET, DV3, SONNET],
    ]
    essays = [(t, m) for t in ("essay-theme-v16", "essay-theme-v17") for m in (GEMINI, SONNET)]
    evaluations = [(t, m) for t in (CM2, DV3) for m in (GEMINI, SONNET)]
    assert rows == [
        [draft, draft_llm, *essay, *evaluation]
        for draft, essay in product((CS2, AI2), essays)
        for draft_llm in (GEMINI, SONNET)
        for evaluation in evaluations
    ]


@needs_upstream
def test_creative_alignment_tuple_two_tuples() -> None:
    columns, rows = fixture_rows("creative_alignment_tuple")
    assert columns == [
        "combo_id",
        "draft_template",
        "draft_llm",
        "essay_template",
        "essay_llm",
        "draft_replicate",
        "evaluation_template",
        "evaluation_llm",
        "evaluation_replicate",
    ]
    # Slots: combo_id (3), evaluation_template (11), evaluation_llm (1), evaluation_replicate
    # (2), draft_replicate (2), draft_essay_alignment (2), generation_alignment (2): 528.
    assert len(rows) == 528
    v10, v7, links = "creative-synthesis-v10", "creative-synthesis-v7", "parsed-from-links-v1"
    assert rows[:5] == [
        ["combo_v1_a", v10, GEMINI, v10, GEMINI, "1", CM2, GEMINI, "1"],
        ["combo_v1_a", v10, DEEPSEEK, v10, DEEPSEEK, "1", CM2, GEMINI, "1"],
        ["combo_v1_a", v7, GEMINI, links, GEMINI, "1", CM2, GEMINI, "1"],
        ["combo_v1_a", v7, DEEPSEEK, links, DEEPSEEK, "1", CM2, GEMINI, "1"],
        ["combo_v1_a", v10, GEMINI, v10, GEMINI, "2", CM2, GEMINI, "1"],
    ]
    assert rows[8] == ["combo_v1_a", v10, GEMINI, v10, GEMINI, "1", CM2, GEMINI, "2"]
    assert rows[16] == [
        "combo_v1_a",
        v10,
        GEMINI,
        v10,
        GEMINI,
        "1",
        "daydreaming-verification-v2",
        GEMINI,
        "1",
    ]
    assert rows[176] == ["combo_v1_b", v10, GEMINI, v10, GEMINI, "1", CM2, GEMINI, "1"]
    assert rows[-1] == [
        "combo_v1_c",
        v7,
        DEEPSEEK,
        links,
        DEEPSEEK,
        "2",
        "style-coherence-v3",
        GEMINI,
        "2",
    ]
    assert {(r[1], r[3]) for r in rows} == {(v10, v10), (v7, links)}
    assert {(r[2], r[4]) for r in rows} == {(GEMINI, GEMINI), (DEEPSEEK, DEEPSEEK)}
    assert len({tuple(r) for r in rows}) == 528
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)  # combo_id varies slowest


@needs_upstream
def test_fixture_spec_exposes_declared_and_tuple_derived_axes() -> None:
    spec = load_spec(FIXTURES / "full_two_phase_cartesian" / "config.yaml")
    assert spec.axes == {
        "draft_template": (CS2, AI2),
        "draft_llm": (GEMINI, SONNET),
        "evaluation_template": (CM2, DV3),
        "evaluation_llm": (GEMINI, SONNET),
        "essay_template": ("essay-theme-v16", "essay-theme-v17"),
        "essay_llm": (GEMINI, SONNET),
    }
    assert [type(rule) for rule in spec.rules] == [TupleRule, PairRule, PairRule]
    assert spec.rules[1].allowed[0] == (CS2, ("essay-theme-v16", GEMINI))
    assert spec.rules[2].allowed[0] == (CM2, GEMINI)  # a 2-column CSV gives tuples
    assert spec.field_order[0] == "draft_template"
    assert spec.seed is None and spec.derived_combos == {}


# -- compile semantics --------------------------------------------------------------------


def test_product_runs_first_axis_slowest_and_keeps_yaml_types() -> None:
    rows = compile_mapping({"axes": {"a": ["x", "y"], "b": [1, 2, 3]}})
    assert table(rows) == [
        (("a", "x"), ("b", 1)),
        (("a", "x"), ("b", 2)),
        (("a", "x"), ("b", 3)),
        (("a", "y"), ("b", 1)),
        (("a", "y"), ("b", 2)),
        (("a", "y"), ("b", 3)),
    ]


def test_field_order_puts_its_axes_first_then_upstream_expansion_order() -> None:
    spec = parse_spec_mapping(
        {
            "axes": {"a": ["a1"], "b": ["b1"], "c": ["c1"], "d": ["d1"]},
            "rules": {"pairs": {"p": {"left": "c", "right": "a", "allowed": [["c1", "a1"]]}}},
            "output": {"field_order": ["d"]},
        }
    )
    # Upstream: slots [p, b, d]; expanding p appends its left then its right at the end.
    assert compile_rows(spec).columns == ["d", "b", "c", "a"]
    assert table(compile_rows(spec)) == [(("d", "d1"), ("b", "b1"), ("c", "c1"), ("a", "a1"))]


def test_field_order_defaults_to_the_declared_axes_then_tuple_axes() -> None:
    spec = parse_spec_mapping(
        {
            "axes": {"a": ["a1"], "b": ["b1"]},
            "rules": {
                "tuples": {"t": {"axes": ["c", "d"], "items": [["c1", "d1"]]}},
                "pairs": {"p": {"left": "b", "right": "t", "allowed": [["b1", ["c1", "d1"]]]}},
            },
        }
    )
    assert spec.field_order == ("a", "b", "c", "d")
    assert compile_rows(spec).columns == ["a", "b", "c", "d"]


def test_subset_keeps_the_axis_order_not_the_keep_order() -> None:
    rows = compile_mapping(
        {"axes": {"a": ["x", "y", "z"]}, "rules": {"subsets": {"a": ["z", "x"]}}}
    )
    assert [row["a"] for row in rows] == ["x", "z"]


@pytest.mark.parametrize("subset_first", [True, False])
def test_subset_narrows_a_tuple_axis_before_or_after_the_tuple(subset_first: bool) -> None:
    tuples = {"t": {"axes": ["tpl", "llm"], "items": [["e1", "m1"], ["e2", "m1"], ["e3", "m2"]]}}
    subsets = {"tpl": ["e1", "e3"]}
    rules = (
        {"subsets": subsets, "tuples": tuples}
        if subset_first
        else {"tuples": tuples, "subsets": subsets}
    )
    spec = parse_spec_mapping({"axes": {"n": [1, 2]}, "rules": rules})
    assert spec.axes["tpl"] == ("e1", "e2", "e3")  # declared levels come from all the items
    assert [(row["n"], row["tpl"], row["llm"]) for row in compile_rows(spec)] == [
        (1, "e1", "m1"),
        (1, "e3", "m2"),
        (2, "e1", "m1"),
        (2, "e3", "m2"),
    ]


def test_subset_after_a_pair_filters_the_allowed_pairs() -> None:
    rows = compile_mapping(
        {
            "axes": {"a": ["a1", "a2"], "b": ["b1", "b2"]},
            "rules": {
                "pairs": {
                    "p": {
                        "left": "a",
                        "right": "b",
                        "allowed": [["a1", "b1"], ["a2", "b2"], ["a2", "b1"]],
                    }
                },
                "subsets": {"b": ["b1"]},
            },
        }
    )
    assert table(rows) == [(("a", "a1"), ("b", "b1")), (("a", "a2"), ("b", "b1"))]


def test_tie_gives_every_tied_axis_the_value_and_no_canonical_column() -> None:
    spec = parse_spec_mapping(
        {
            "axes": {
                "draft_template": ["t1", "t2", "t3"],
                "n": [1],
                "essay_template": ["t3", "t2"],
            },
            "rules": {"ties": {"same_template": ["draft_template", "essay_template"]}},
        }
    )
    rows = compile_rows(spec)
    assert rows.columns == ["draft_template", "n", "essay_template"]
    # Levels: the intersection in the first axis's order.
    assert table(rows) == [
        (("draft_template", "t2"), ("n", 1), ("essay_template", "t2")),
        (("draft_template", "t3"), ("n", 1), ("essay_template", "t3")),
    ]
    assert spec.rules == (TieRule("same_template", ("draft_template", "essay_template")),)


def test_tie_named_after_one_of_its_axes_and_mapping_form() -> None:
    rows = compile_mapping(
        {
            "axes": {"a": ["x", "y"], "b": ["y", "x"]},
            "rules": {"ties": {"a": {"axes": ["a", "b"]}}},
            "output": {"field_order": []},
        }
    )
    assert table(rows) == [(("a", "x"), ("b", "x")), (("a", "y"), ("b", "y"))]


def test_tie_then_pair_keeps_the_tied_sibling_axes() -> None:
    rows = compile_mapping(
        {
            "axes": {
                "draft_template": ["t1", "t2"],
                "essay_template": ["t1", "t2"],
                "eval_template": ["e1", "e2"],
            },
            "rules": {
                "ties": {"draft_essay": ["draft_template", "essay_template"]},
                "pairs": {
                    "p": {
                        "left": "draft_template",
                        "right": "eval_template",
                        "allowed": [["t1", "e2"], ["t2", "e1"]],
                    }
                },
            },
        }
    )
    assert table(rows) == [
        (("draft_template", "t1"), ("essay_template", "t1"), ("eval_template", "e2")),
        (("draft_template", "t2"), ("essay_template", "t2"), ("eval_template", "e1")),
    ]


def test_subset_after_a_tie_narrows_every_tied_axis() -> None:
    rows = compile_mapping(
        {
            "axes": {"a": ["x", "y", "z"], "b": ["x", "y", "z"]},
            "rules": {"ties": {"same": ["a", "b"]}, "subsets": {"b": ["y", "z"]}},
        }
    )
    assert table(rows) == [(("a", "y"), ("b", "y")), (("a", "z"), ("b", "z"))]


def test_pair_with_balance_both_accepts_a_balanced_design() -> None:
    rows = compile_mapping(
        {
            "axes": {"a": ["a1", "a2"], "b": ["b1", "b2"]},
            "rules": {
                "pairs": {
                    "p": {
                        "left": "a",
                        "right": "b",
                        "balance": "both",
                        "allowed": [["a1", "b1"], ["a2", "b2"]],
                    }
                }
            },
        }
    )
    assert [(r["a"], r["b"]) for r in rows] == [("a1", "b1"), ("a2", "b2")]


def test_a_pair_can_name_an_earlier_pair() -> None:
    rows = compile_mapping(
        {
            "axes": {"a": ["a1", "a2"], "b": ["b1"], "c": ["c1", "c2"]},
            "rules": {
                "pairs": {
                    "p": {"left": "a", "right": "b", "allowed": [["a1", "b1"], ["a2", "b1"]]},
                    "q": {
                        "left": "c",
                        "right": "p",
                        "allowed": [["c1", ["a2", "b1"]], ["c2", ["a1", "b1"]]],
                    },
                }
            },
        }
    )
    assert table(rows) == [
        (("a", "a2"), ("b", "b1"), ("c", "c1")),
        (("a", "a1"), ("b", "b1"), ("c", "c2")),
    ]


def test_seed_shuffles_exactly_like_upstream() -> None:
    mapping = {"axes": {"a": list("abcd"), "b": [1, 2, 3], "c": ["x", "y"]}}
    plain = compile_mapping(mapping)
    expected = list(plain)
    random.Random(7).shuffle(expected)  # upstream: shuffle the product list, then expand
    assert compile_mapping(mapping, seed=7) == expected
    assert compile_mapping(mapping, seed=7) != plain
    assert compile_mapping(mapping, seed=8) != expected
    assert compile_mapping({**mapping, "output": {"seed": 7}}) == expected
    assert compile_mapping({**mapping, "output": {"seed": 7}}, seed=0) == compile_mapping(
        mapping, seed=0
    )


def test_rows_are_lazy_and_counted_without_being_made() -> None:
    levels = [f"v{i}" for i in range(16)]
    spec = parse_spec_mapping({"axes": {f"axis{i}": levels for i in range(10)}})
    rows = compile_rows(spec)
    assert rows.count == len(rows) == 16**10  # 1.1e12: only a lazy compiler gets here
    first = list(islice(rows, 2))
    assert first[0] == {f"axis{i}": "v0" for i in range(10)}
    assert first[1] == {**first[0], "axis9": "v1"}
    assert list(islice(rows, 1)) == first[:1]  # re-iterable


def test_parse_spec_mapping_resolves_files_against_the_source(tmp_path: Path) -> None:
    (tmp_path / "items").mkdir()
    (tmp_path / "items" / "llms.txt").write_text("m1\n\n  m2  \n", encoding="utf-8")
    spec = parse_spec_mapping({"axes": {"llm": "@file:items/llms.txt"}}, source=tmp_path / "x.yaml")
    assert spec.axes == {"llm": ("m1", "m2")}
    assert spec.source == tmp_path / "x.yaml"


def test_at_file_formats(tmp_path: Path) -> None:
    files = {
        "one.csv": "\ufeffdraft_template\r\nd1\r\nd2\r\n\r\n",  # BOM, CRLF, trailing blank line
        "levels.yaml": "- 1\n- 2\n",
        "levels.json": '["j1", "j2"]',
        "pairs.csv": "a,b\n a1 , b1\n",
        "items.json": '[["i1", "k1"], ["i2", "k1"]]',
    }
    for rel, text in files.items():
        (tmp_path / rel).write_text(text, encoding="utf-8")
    (tmp_path / "spec.json").write_text(
        json.dumps(
            {
                "axes": {
                    "draft_template": "@file:one.csv",
                    "n": "@file:levels.yaml",
                    "j": "@file:levels.json",
                    "a": ["a1"],
                    "b": ["b1"],
                },
                "rules": {
                    "pairs": {"p": {"left": "a", "right": "b", "allowed": "@file:pairs.csv"}},
                    "tuples": {"t": {"axes": ["i", "k"], "items": "@file:items.json"}},
                    "subsets": {"j": "@file:levels.json"},
                },
            }
        ),
        encoding="utf-8",
    )
    spec = load_spec(tmp_path / "spec.json")
    assert spec.axes == {
        "draft_template": ("d1", "d2"),
        "n": (1, 2),
        "j": ("j1", "j2"),
        "a": ("a1",),
        "b": ("b1",),
        "i": ("i1", "i2"),
        "k": ("k1",),
    }
    assert spec.rules[0] == PairRule("p", "a", "b", (("a1", "b1"),))
    assert spec.rules[2] == SubsetRule("j", ("j1", "j2"))
    assert compile_rows(spec).count == 2 * 2 * 2 * 2


# -- combination pools --------------------------------------------------------------------


def test_combo_pool_enumerates_combinations_with_upstream_ids() -> None:
    spec = parse_spec_mapping(
        {"axes": {"combo_id": {"concepts": ["c", "a", "b"], "k": 2}, "n": [1]}}
    )
    expected = [("c", "a"), ("c", "b"), ("a", "b")]  # itertools.combinations, pool order
    ids = [combo_id_for(concepts, "paragraph", 2) for concepts in expected]
    assert spec.axes["combo_id"] == tuple(ids)
    assert spec.derived_combos == {
        cid: DerivedCombo(concepts, "paragraph", 2)
        for cid, concepts in zip(ids, expected, strict=True)
    }
    assert [row["combo_id"] for row in compile_rows(spec)] == ids


def test_combo_pool_reproduces_the_reference_worked_example() -> None:
    concepts = ["default-mode-network", "generator-verifier-gap", "economic-moat"]
    spec = parse_spec_mapping(
        {"axes": {"combo_id": {"concepts": concepts, "k_min": 3, "k_max": 6}}}
    )
    assert spec.axes["combo_id"] == ("combo_v1_fdd0b6c7ec11",)
    assert spec.derived_combos["combo_v1_fdd0b6c7ec11"] == DerivedCombo(
        tuple(concepts), "paragraph", 6
    )


def test_combo_pool_size_range_from_a_file_with_a_level(tmp_path: Path) -> None:
    (tmp_path / "pool.txt").write_text("a\nb\nc\n", encoding="utf-8")
    spec = parse_spec_mapping(
        {
            "axes": {
                "combo_id": {
                    "concepts": "@file:pool.txt",
                    "k_min": 1,
                    "k_max": 2,
                    "level": "sentence",
                }
            }
        },
        source=tmp_path / "spec.yaml",
    )
    groups = [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c")]  # sizes ascending
    assert [spec.derived_combos[cid].concepts for cid in spec.axes["combo_id"]] == groups
    assert spec.axes["combo_id"][3] == combo_id_for(("a", "b"), "sentence", 2)
    assert {combo.k_max for combo in spec.derived_combos.values()} == {2}


def test_a_subset_can_pick_combos_from_a_pool() -> None:
    first = combo_id_for(("a", "b"), "paragraph", 2)
    rows = compile_mapping(
        {
            "axes": {"combo_id": {"concepts": ["a", "b", "c"], "k": 2}},
            "rules": {"subsets": {"combo_id": [first]}},
        }
    )
    assert rows == [{"combo_id": first}]


# -- writing rows -------------------------------------------------------------------------


def test_write_rows_csv_jsonl_and_limit() -> None:
    rows = compile_rows(
        parse_spec_mapping(
            {"axes": {"b": ["x", "y, z"], "a": [1]}, "output": {"field_order": ["a"]}}
        )
    )
    out = io.StringIO()
    assert write_rows(rows, out, "csv") == 2
    assert out.getvalue() == 'a,b\n1,x\n1,"y, z"\n'
    out = io.StringIO()
    assert write_rows(rows, out, "jsonl", limit=1) == 1
    assert out.getvalue() == '{"a": 1, "b": "x"}\n'
    out = io.StringIO()
    assert write_rows(rows, out, "csv", limit=0) == 0
    assert out.getvalue() == "a,b\n"


# -- the planner contract -----------------------------------------------------------------


def test_normalise_row_maps_aliases_and_replicates() -> None:
    row = {
        "combo": "c1",
        "draft_template": "t1",
        "draft_model": " m1 ",
        "generation_llm": "m1",
        "draft_template_replicate": "2",
        "essay_template": "e1",
        "essay_llm": "",
        "evaluation_llm_replicate": 3,
        "note": "kept as is",
    }
    assert normalise_row(row, row_number=4) == {
        "combo_id": "c1",
        "draft_template": "t1",
        "draft_llm": "m1",
        "draft_replicate": 2,
        "essay_template": "e1",
        "essay_llm": None,
        "evaluation_replicate": 3,
        "note": "kept as is",
        "essay_replicate": 1,
    }


def test_normalise_row_passes_existing_generation_ids() -> None:
    assert normalise_row(
        {"essay_id": "e_abc", "evaluation_template": "v", "evaluation_llm": 7}
    ) == {
        "essay_id": "e_abc",
        "evaluation_template": "v",
        "evaluation_llm": "7",
        "draft_replicate": 1,
        "essay_replicate": 1,
        "evaluation_replicate": 1,
    }


@needs_upstream
def test_normalised_rows_equal_normalise_row_over_every_upstream_fixture() -> None:
    for config in sorted(FIXTURES.glob("*/config.yaml")):
        rows = compile_rows(load_spec(config))
        fast = rows.normalised()
        if fast is None:  # a fixture with two aliases of one column
            continue
        fast_rows = list(fast)
        slow_rows = [normalise_row(row) for row in rows]
        assert fast_rows == slow_rows, config
        assert [list(r) for r in fast_rows] == [list(r) for r in slow_rows], config  # key order


@pytest.mark.parametrize(
    "mapping",
    [
        # aliases, blanks, numbers as text, a tuple slot, reordered columns, a shuffle
        {
            "axes": {
                "combo": [" c1 ", "c2"],
                "draft_template": ["t1", "t2"],
                "draft_model": ["m1", 7],
                "essay_template": ["e1"],
                "essay_rep": ["1", 2, " 3 "],
                "note": [" kept ", "as is"],
            },
            "output": {"field_order": ["note", "essay_rep", "combo"], "seed": 3},
        },
        {
            "axes": {"essay_template": ["e1", "e2"], "draft_template": ["d1"]},
            "rules": {
                "tuples": {
                    "bundle": {
                        "axes": ["evaluation_template", "evaluation_llm"],
                        "items": [["v1", "j2"], ["v2", "j1"]],
                    }
                },
                "pairs": {
                    "p": {
                        "left": "essay_template",
                        "right": "bundle",
                        "allowed": [["e1", ["v1", "j2"]], ["e2", ["v2", "j1"]]],
                    }
                },
            },
        },
        {"axes": {"draft_template": ["d1", "d2"]}, "output": {"field_order": ["draft_template"]}},
    ],
)
def test_normalised_rows_equal_normalise_row(mapping: dict) -> None:
    rows = compile_rows(parse_spec_mapping(mapping))
    fast = rows.normalised()
    assert fast is not None
    fast_rows = list(fast)
    slow_rows = [normalise_row(row) for row in rows]
    assert fast_rows == slow_rows
    assert [list(r) for r in fast_rows] == [list(r) for r in slow_rows]


@pytest.mark.parametrize(
    "axes",
    [
        {"draft_llm": ["a"], "draft_model": ["b"]},  # two aliases of one column
        {"draft_template": ["d1"], "essay_rep": ["1", "0"]},  # a replicate normalise_row refuses
    ],
)
def test_normalised_rows_defer_to_normalise_row_where_it_would_differ_or_fail(axes) -> None:
    assert compile_rows(parse_spec_mapping({"axes": axes})).normalised() is None


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"draft_llm": "a", "draft_model": "b"},
            'row 3: columns draft_llm and draft_model disagree ("a" vs "b"); keep one of them',
        ),
        (
            {"draft_rep": "1", "draft_replicate": 2},
            "row 3: columns draft_rep and draft_replicate disagree (1 vs 2); keep one of them",
        ),
        (
            {"essay_rep": "0"},
            'row 3: essay_rep: "0" is not a replicate number; use a whole number from 1 to 1,000,000',
        ),
        (
            {"evaluation_replicate": "2.0"},
            'row 3: evaluation_replicate: "2.0" is not a replicate number; use a whole number from 1 to 1,000,000',
        ),
        (
            {"draft_replicate": True},
            "row 3: draft_replicate: true is not a replicate number; use a whole number from 1 to 1,000,000",
        ),
    ],
)
def test_normalise_row_errors_name_the_row(row: dict, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        normalise_row(row, row_number=3)
    assert str(caught.value) == message


# -- errors -------------------------------------------------------------------------------

AXES = "axes:\n  draft_template: [d1, d2]\n  essay_template: [e1, e2]\n"

ERRORS = [
    pytest.param(
        "axes:\n  a: [x, y\nrules: {}\n",
        {},
        "spec spec.yaml: line 3, column 6: invalid YAML (expected ',' or ']', but got ':'); fix the syntax",
        id="yaml-syntax",
    ),
    pytest.param(
        "axes:\n  a: [x]\n  a: [y]\n",
        {},
        'spec spec.yaml: line 3: duplicate key "a" (first on line 2); remove or rename one',
        id="yaml-duplicate-key",
    ),
    pytest.param(
        "- a\n",
        {},
        "spec spec.yaml: the top level must be a mapping with axes, rules and output (got a list)",
        id="top-level-list",
    ),
    pytest.param(
        AXES + "combos: {}\n",
        {},
        'spec spec.yaml: unknown top-level key "combos" (allowed: name, description, axes, rules,'
        " output, budget_usd)",
        id="unknown-top-level-key",
    ),
    pytest.param(
        AXES + "rules:\n  pair: {}\n",
        {},
        'spec spec.yaml: rules: unknown section "pair" (allowed: subsets, ties, pairs, tuples)',
        id="unknown-rule-section",
    ),
    pytest.param(
        AXES + "rules:\n  - subset: {}\n",
        {},
        "spec spec.yaml: rules: must be a mapping of sections (subsets, ties, pairs, tuples), not a list",
        id="rules-as-list",
    ),
    pytest.param(
        AXES
        + "rules:\n  pairs:\n    p1: {left: draft_template, right: essay_template, alowed: []}\n",
        {},
        'spec spec.yaml: rules.pairs.p1: unknown key "alowed" (allowed: left, right, allowed, balance)',
        id="unknown-key-in-pair",
    ),
    pytest.param(
        AXES + "rules:\n  ties:\n    t: {axes: [draft_template, essay_template], to: x}\n",
        {},
        'spec spec.yaml: rules.ties.t: unknown key "to" (allowed: axes); a tie is named by its mapping key',
        id="unknown-key-in-tie",
    ),
    pytest.param(
        AXES + "rules:\n  tuples:\n    t: {axes: [x, y], items: [[1, 2]], expand: true}\n",
        {},
        'spec spec.yaml: rules.tuples.t: unknown key "expand" (allowed: axes, items); a tuple always expands into its axes',
        id="unknown-key-in-tuple",
    ),
    pytest.param(
        AXES + "rules:\n  pairs:\n    p1: {left: draft_template, right: essay_template}\n",
        {},
        'spec spec.yaml: rules.pairs.p1: missing "allowed"; list the allowed [left, right] pairs',
        id="pair-without-allowed",
    ),
    pytest.param(
        AXES
        + "rules:\n  pairs:\n    p1: {left: draft_tmpl, right: essay_template, allowed: [[d1, e1]]}\n",
        {},
        'spec spec.yaml: rules.pairs.p1.left: axis "draft_tmpl" is not declared (declared: draft_template, essay_template)',
        id="unknown-axis-in-pair",
    ),
    pytest.param(
        AXES + "rules:\n  subsets:\n    essay_tmpl: [e1]\n",
        {},
        'spec spec.yaml: rules.subsets.essay_tmpl: axis "essay_tmpl" is not declared (declared: draft_template, essay_template)',
        id="unknown-axis-in-subset",
    ),
    pytest.param(
        "axes:\n  draft_template: []\n",
        {},
        "spec spec.yaml: axes.draft_template: has no levels; list at least one",
        id="empty-axis",
    ),
    pytest.param(
        "axes:\n  draft_template:\n",
        {},
        'spec spec.yaml: axes.draft_template: is null; give a list of levels or "@file:path"',
        id="null-axis",
    ),
    pytest.param(
        "axes:\n  essay_llm:\nrules:\n  tuples:\n    bundle: {axes: [essay_template, essay_llm], items: [[e, m]]}\n",
        {},
        'spec spec.yaml: axes.essay_llm: tuple "bundle" gives this axis its levels; remove it from axes',
        id="tuple-axis-declared",
    ),
    pytest.param(
        "axes: {}\n",
        {},
        "spec spec.yaml: axes: no axes declared; declare at least one axis or a tuples rule",
        id="no-axes",
    ),
    pytest.param(
        "axes:\n  draft_template: draft-a\n",
        {},
        'spec spec.yaml: axes.draft_template: must be a list or "@file:path" (got the string "draft-a")',
        id="axis-string",
    ),
    pytest.param(
        "axes:\n  draft_template: {a: 1}\n",
        {},
        'spec spec.yaml: axes.draft_template: must be a list of levels or "@file:path" (got a mapping; only combo_id takes {concepts, k})',
        id="axis-mapping",
    ),
    pytest.param(
        "axes:\n  draft_template: '@file:items/missing.csv'\n",
        {},
        'spec spec.yaml: axes.draft_template: @file "items/missing.csv" not found (looked for items/missing.csv);'
        " fix the path, which is relative to the spec's directory",
        id="missing-file",
    ),
    pytest.param(
        "axes:\n  draft_template: '@file:items/levels.xlsx'\n",
        {"items/levels.xlsx": "x"},
        'spec spec.yaml: axes.draft_template: @file "items/levels.xlsx" has extension ".xlsx"; use .csv, .txt, .yaml, .yml or .json',
        id="unsupported-file-extension",
    ),
    pytest.param(
        "axes:\n  draft_template: '@file:'\n",
        {},
        'spec spec.yaml: axes.draft_template: "@file:" needs a path, e.g. "@file:items/levels.csv"',
        id="file-without-path",
    ),
    pytest.param(
        "axes:\n  draft_template: '@file:levels.yaml'\n",
        {"levels.yaml": "a: [1]\n"},
        'spec spec.yaml: axes.draft_template: @file "levels.yaml" must contain a list (got a mapping)',
        id="yaml-file-not-a-list",
    ),
    pytest.param(
        "axes:\n  draft_template: '@file:levels.yaml'\n",
        {"levels.yaml": "- a\n- [b\n"},
        'spec spec.yaml: axes.draft_template: @file "levels.yaml" line 3, column 1: invalid YAML'
        " (expected ',' or ']', but got '<stream end>'); fix the syntax",
        id="yaml-file-syntax",
    ),
    pytest.param(
        "axes:\n  a: [a1]\nrules:\n  tuples:\n    bundle: {axes: [essay_template, essay_llm], items: '@file:b.csv'}\n",
        {"b.csv": "essay_template,llm\ne1,m1\n"},
        'spec spec.yaml: rules.tuples.bundle.items: @file "b.csv" header (essay_template, llm) does not match'
        " the tuple's axes (essay_template, essay_llm); rename the columns, or fix the axes' names",
        id="csv-header-tuple-mismatch",
    ),
    pytest.param(
        AXES
        + "rules:\n  pairs:\n    p: {left: draft_template, right: essay_template, allowed: '@file:p.csv'}\n",
        {"p.csv": "essay_template,draft_template\ne1,d1\n"},
        'spec spec.yaml: rules.pairs.p.allowed: @file "p.csv" header (essay_template, draft_template) does not match'
        " the pair's left and right (draft_template, essay_template); rename the columns, or fix"
        " left/right",
        id="csv-header-pair-mismatch",
    ),
    pytest.param(
        "axes:\n  draft_template: '@file:d.csv'\n",
        {"d.csv": "draft_template,llm\nd1,m1\n"},
        'spec spec.yaml: axes.draft_template: @file "d.csv" has 2 columns (draft_template, llm);'
        " an axis takes a single-column CSV (couple columns with a tuples rule)",
        id="csv-multi-column-axis",
    ),
    pytest.param(
        "axes:\n  draft_template: '@file:d.csv'\n",
        {"d.csv": "draft_template\n"},
        'spec spec.yaml: axes.draft_template: @file "d.csv" has a header but no data rows; add rows below it',
        id="csv-without-rows",
    ),
    pytest.param(
        "axes:\n  draft_template: '@file:d.csv'\n",
        {"d.csv": ""},
        'spec spec.yaml: axes.draft_template: @file "d.csv" is empty; it needs a header line and data rows',
        id="csv-empty",
    ),
    pytest.param(
        "axes:\n  draft_template: '@file:d.csv'\n",
        {"d.csv": 'draft_template\nd1\n" "\nd2\n'},
        'spec spec.yaml: axes.draft_template: @file "d.csv" line 3: blank cell in column "draft_template"; fill it or delete the line',
        id="csv-blank-cell",
    ),
    pytest.param(
        "axes:\n  draft_template: '@file:d.csv'\n",
        {"d.csv": "draft_template\nd1\n\nd2\n"},
        'spec spec.yaml: axes.draft_template: @file "d.csv" line 3: blank line; delete it',
        id="csv-blank-line",
    ),
    pytest.param(
        "axes:\n  a: [a1]\nrules:\n  tuples:\n    t: {axes: [x, y], items: '@file:t.csv'}\n",
        {"t.csv": "x,y\n1,2\n3\n"},
        'spec spec.yaml: rules.tuples.t.items: @file "t.csv" line 3: 1 cells but the header has 2; give one cell per column',
        id="csv-short-row",
    ),
    pytest.param(
        "axes:\n  draft_template: [d1, d2, d1]\n",
        {},
        'spec spec.yaml: axes.draft_template[2]: duplicate level "d1" (first at [0]); remove one',
        id="duplicate-level-inline",
    ),
    pytest.param(
        "axes:\n  draft_template: '@file:d.csv'\n",
        {"d.csv": "draft_template\nd1\nd2\nd1\n"},
        'spec spec.yaml: axes.draft_template: @file "d.csv" line 4: duplicate level "d1" (first at line 2); remove one',
        id="duplicate-level-file",
    ),
    pytest.param(
        "axes:\n  flag: [yes, no]\n",
        {},
        "spec spec.yaml: axes.flag[0]: true is not a valid level (YAML reads true/false/yes/no/on/off as booleans); quote it",
        id="boolean-level",
    ),
    pytest.param(
        "axes:\n  day: [2024-01-01]\n",
        {},
        "spec spec.yaml: axes.day[0]: a date (2024-01-01) is not a valid level; quote it",
        id="date-level",
    ),
    pytest.param(
        "axes:\n  a: [x, null]\n",
        {},
        "spec spec.yaml: axes.a[1]: null is not a valid level; remove it or write a value",
        id="null-level",
    ),
    pytest.param(
        AXES
        + "rules:\n  pairs:\n    p: {left: draft_template, right: essay_template, balance: lefty, allowed: [[d1, e1]]}\n",
        {},
        'spec spec.yaml: rules.pairs.p.balance: "lefty" is not valid (use left, right or both)',
        id="bad-balance",
    ),
    pytest.param(
        AXES + "rules:\n  pairs:\n    p:\n      left: draft_template\n      right: essay_template\n"
        "      balance: left\n      allowed: [[d1, e1], [d1, e2], [d2, e1]]\n",
        {},
        "spec spec.yaml: rules.pairs.p.balance: the allowed pairs are unbalanced on the left (d1: 2, d2: 1);"
        " give every left value the same number of partners, or drop balance",
        id="pair-imbalance",
    ),
    pytest.param(
        AXES
        + "rules:\n  pairs:\n    p: {left: draft_template, right: essay_template, allowed: [[d1, e1], [d2, e9]]}\n",
        {},
        'spec spec.yaml: rules.pairs.p.allowed[1]: "e9" is not a level of essay_template (levels: e1, e2); fix the value',
        id="pair-value-outside-domain",
    ),
    pytest.param(
        AXES
        + "rules:\n  pairs:\n    p: {left: draft_template, right: essay_template, allowed: '@file:p.csv'}\n",
        {"p.csv": "draft_template,essay_template\nd1,e1\nd3,e2\n"},
        'spec spec.yaml: rules.pairs.p.allowed: @file "p.csv" line 3: "d3" is not a level of draft_template (levels: d1, d2); fix the value',
        id="pair-value-outside-domain-file",
    ),
    pytest.param(
        AXES
        + "rules:\n  pairs:\n    p: {left: draft_template, right: essay_template, allowed: [d1]}\n",
        {},
        'spec spec.yaml: rules.pairs.p.allowed[0]: must be a [left, right] pair (got the string "d1")',
        id="pair-entry-not-a-pair",
    ),
    pytest.param(
        AXES + "rules:\n  tuples:\n    t: {axes: [x, y], items: [[1, 2], [3, 4, 5]]}\n",
        {},
        "spec spec.yaml: rules.tuples.t.items[1]: has 3 values but the tuple has 2 axes (x, y); give one value per axis",
        id="tuple-arity",
    ),
    pytest.param(
        AXES + "rules:\n  tuples:\n    t: {axes: [x, y], items: [[1, 2], [1, 2]]}\n",
        {},
        "spec spec.yaml: rules.tuples.t.items[1]: duplicate item [1, 2] (first at [0]); remove one",
        id="tuple-duplicate-item",
    ),
    pytest.param(
        AXES
        + "rules:\n  tuples:\n    t1: {axes: [x, y], items: [[1, 2]]}\n    t2: {axes: [y, z], items: [[2, 3]]}\n",
        {},
        'spec spec.yaml: rules.tuples.t2.axes: axis "y" is already in tuple "t1"; an axis can belong to one'
        " tuple only, so merge the two tuples into one",
        id="two-tuples-share-an-axis",
    ),
    pytest.param(
        AXES + "rules:\n  tuples:\n    t: {axes: [x, y], items: [[1, 2]]}\n"
        "  pairs:\n    p: {left: draft_template, right: x, allowed: [[d1, 1]]}\n",
        {},
        'spec spec.yaml: rules.pairs.p.right: axis "x" is already coupled by tuple "t"; use "t" instead',
        id="pair-on-a-tuple-member",
    ),
    pytest.param(
        AXES
        + "rules:\n  pairs:\n    p: {left: draft_template, right: t, allowed: [[d1, [1, 2]]]}\n"
        "  tuples:\n    t: {axes: [x, y], items: [[1, 2]]}\n",
        {},
        'spec spec.yaml: rules.pairs.p.right: "t" is a rule declared later; rules apply in the order written, so move it before this one',
        id="pair-on-a-later-tuple",
    ),
    pytest.param(
        AXES
        + "rules:\n  pairs:\n    p: {left: draft_template, right: x, allowed: [[d1, [1, 2]]]}\n"
        "  tuples:\n    t: {axes: [x, y], items: [[1, 2]]}\n",
        {},
        'spec spec.yaml: rules.pairs.p.right: axis "x" gets its levels from tuple "t", declared later;'
        " move the tuples section before this rule",
        id="pair-on-an-axis-of-a-later-tuple",
    ),
    pytest.param(
        "axes:\n  a: [x, y]\n  b: [x, y]\nrules:\n  ties:\n    same: [a, b]\n"
        "  pairs:\n    p: {left: a, right: b, allowed: [[x, x]]}\n",
        {},
        'spec spec.yaml: rules.pairs.p: "a" and "b" are already tied together (in "same"); name only one of them',
        id="pair-within-a-tie",
    ),
    pytest.param(
        AXES + "rules:\n  subsets:\n    draft_template: [d1, d3]\n",
        {},
        'spec spec.yaml: rules.subsets.draft_template[1]: "d3" is not a level of draft_template (levels: d1, d2); fix the value',
        id="subset-value-not-a-level",
    ),
    pytest.param(
        "axes:\n  a: [a1]\nrules:\n  tuples:\n    t: {axes: [tpl, llm], items: [[e1, m1], [e2, m2]]}\n"
        "  subsets:\n    tpl: [e1]\n    llm: [m2]\n",
        {},
        "spec spec.yaml: rules.subsets.llm: leaves no level of llm (remaining after earlier rules: m1); keep at least one of them",
        id="subset-removes-all-levels",
    ),
    pytest.param(
        AXES + "rules:\n  ties:\n    same: [draft_template, essay_template]\n",
        {},
        "spec spec.yaml: rules.ties.same: draft_template, essay_template share no level"
        " (draft_template: d1, d2; essay_template: e1, e2); a tie needs levels in common",
        id="tie-empty-intersection",
    ),
    pytest.param(
        AXES + "rules:\n  ties:\n    same: [draft_template]\n",
        {},
        "spec spec.yaml: rules.ties.same: a tie needs at least two axes",
        id="tie-of-one-axis",
    ),
    pytest.param(
        AXES
        + "rules:\n  pairs:\n    essay_template: {left: draft_template, right: essay_template, allowed: [[d1, e1]]}\n",
        {},
        'spec spec.yaml: rules.pairs.essay_template: the name "essay_template" is already an axis; rename the pair',
        id="rule-name-clash",
    ),
    pytest.param(
        AXES + "output:\n  field_order: [draft_template, 3]\n",
        {},
        "spec spec.yaml: output.field_order[1]: the number 3 is not an axis name; write a string",
        id="non-string-field-name",
    ),
    pytest.param(
        AXES + "output:\n  field_order: [draft_template, essay_tmpl]\n",
        {},
        'spec spec.yaml: output.field_order[1]: "essay_tmpl" is not an axis (axes: draft_template, essay_template);'
        " remove it or declare the axis",
        id="unknown-field",
    ),
    pytest.param(
        AXES + "output:\n  seed: abc\n",
        {},
        'spec spec.yaml: output.seed: must be a whole number from 0 to 9223372036854775807'
        ' (got the string "abc")',
        id="bad-seed",
    ),
    pytest.param(
        "axes:\n  combo_id: {concepts: [a, b], k: 2, k_max: 3}\n",
        {},
        "spec spec.yaml: axes.combo_id: give either k, or k_min and k_max, not both",
        id="combo-k-and-range",
    ),
    pytest.param(
        "axes:\n  combo_id: {concepts: [a, b], k: 3}\n",
        {},
        "spec spec.yaml: axes.combo_id.k: 3 is more than the 2 concepts in the pool; lower it or add concepts",
        id="combo-k-too-big",
    ),
    pytest.param(
        "axes:\n  combo_id: {concepts: [a, b], k_max: 2}\n",
        {},
        'spec spec.yaml: axes.combo_id: missing "k_min"; give k (concepts per combination), or k_min and k_max',
        id="combo-k-min-missing",
    ),
    pytest.param(
        "axes:\n  combo_id: {concepts: [a, b], k: 1, level: para}\n",
        {},
        'spec spec.yaml: axes.combo_id.level: "para" is not a description level (use sentence, paragraph, article)',
        id="combo-bad-level",
    ),
    pytest.param(
        "axes:\n  combo_id: {concepts: [a, a], k: 1}\n",
        {},
        'spec spec.yaml: axes.combo_id.concepts[1]: duplicate concept "a" (first at [0]); remove one',
        id="combo-duplicate-concept",
    ),
    pytest.param(
        "axes:\n  combo_id: {concepts: [a, 2], k: 1}\n",
        {},
        "spec spec.yaml: axes.combo_id.concepts[1]: concept ids are strings (got 2); quote it",
        id="combo-concept-not-a-string",
    ),
]


@pytest.mark.parametrize(("text", "files", "message"), ERRORS)
def test_spec_errors_are_one_line_and_name_file_key_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, files: dict[str, str], message: str
) -> None:
    assert spec_error(tmp_path, monkeypatch, text, files) == message


def test_json_spec_syntax_error_names_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = spec_error(tmp_path, monkeypatch, '{"axes": {"a": ["x",]}}', name="spec.json")
    assert (
        message
        == "spec spec.json: line 1, column 21: invalid JSON (Expecting value); fix the syntax"
    )


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        (
            "spec.toml",
            "file",
            'spec spec.toml: unsupported spec format ".toml"; use .yaml, .yml or .json',
        ),
        ("nope.yaml", None, "spec nope.yaml: file not found; check the path"),
        (
            "bundle",
            "dir",
            "spec bundle: is a directory; pass the spec file itself (e.g. bundle/config.yaml)",
        ),
    ],
)
def test_load_spec_path_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, make: str | None, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if make == "file":
        Path(name).write_text("axes: {}\n", encoding="utf-8")
    elif make == "dir":
        Path(name).mkdir()
    with pytest.raises(SpecError) as caught:
        load_spec(name)
    assert str(caught.value) == message


def test_errors_in_a_mapping_name_it() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec_mapping({"axes": {"a": []}})
    assert str(caught.value) == "spec <mapping>: axes.a: has no levels; list at least one"
