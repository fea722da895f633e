"""The synthetic catalog the plan and browse benchmarks share: 200 concepts, ``combos``
pair combinations, and enough templates and models for large cohorts."""

from __future__ import annotations

from pathlib import Path

# The cohort both benchmarks plan; combos.txt (written beside it) lists the combination ids.
SPEC = """\
name: bench
description: synthetic benchmark cohort (benchmarks/synthetic.py)
axes:
  combo_id: "@file:combos.txt"
  draft_template: [draft-0, draft-1, draft-2, draft-3, draft-4]
  draft_llm: [writer-0, writer-1, writer-2, writer-3]
  essay_template: [essay-0]
  essay_llm: [writer-0]
  evaluation_template: [rubric-0, rubric-1]
  evaluation_llm: [judge-0, judge-1]
  evaluation_replicate: [1, 2]
"""


def synthetic_catalog(work: Path, combos: int, *, priced: bool = False):
    from daydream.catalog.entries import Catalog, Combo, Concept, Model, Template

    concepts = [
        Concept(
            concept_id=f"concept-{i:04d}",
            name=f"Concept {i}",
            descriptions={"paragraph": f"A paragraph about concept {i}."},
        )
        for i in range(200)
    ]
    combo_entries = [
        Combo(
            combo_id=f"combo-{i:06d}",
            concept_ids=(f"concept-{i % 200:04d}", f"concept-{(i // 200 + i + 1) % 200:04d}"),
        )
        for i in range(combos)
    ]
    templates = [
        Template(stage="draft", template_id=f"draft-{i}", name=f"Draft {i}", body="{{ concepts }}")
        for i in range(5)
    ]
    templates.append(
        Template(stage="essay", template_id="essay-0", name="Essay", body="{{ draft_block }}")
    )
    templates += [
        Template(
            stage="evaluation",
            template_id=f"rubric-{i}",
            name=f"Rubric {i}",
            body="{{ response }}",
            parser="score",
            scale=(0, 9),
        )
        for i in range(2)
    ]
    models = [
        Model(
            model_id=name,
            provider="offline",
            provider_model=name,
            display_name=name,
            pool="offline",
            price_input=1e-6 if priced else None,
            price_output=4e-6 if priced else None,
        )
        for name in ("writer-0", "writer-1", "writer-2", "writer-3", "judge-0", "judge-1")
    ]
    return Catalog(
        concepts=tuple(concepts),
        combos=tuple(combo_entries),
        templates=tuple(templates),
        models=tuple(models),
        source=work / "catalog",
        layout="daydream",
    )
