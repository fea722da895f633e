"""Deriving generations from spec rows: ``derive()`` maps one normalised row to the
generations it needs (a draft, an essay, an evaluation, or a suffix of that chain when the
row starts from existing generations), checking every template and model against the
registry; ``derive_batches()`` does it for every row, de-duplicated by id, in batches.

Deriving is pure: it reads the database (the catalog, existing generations) but writes
nothing. Copy-mode essays have no model and copy the draft verbatim; their replicate is
always 1, because replicates of a verbatim copy would be identical texts counted as
independent draws (evaluation replicates still apply to them).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from daydream import events as ev
from daydream import ids
from daydream.catalog.entries import Combo
from daydream.catalog.registry import Registry
from daydream.errors import PlanError, TemplateError
from daydream.plan.report import PlanReport
from daydream.prompts import available_variables, template_variables
from daydream.spec import CompiledRows, normalise_row
from daydream.vocabulary import COPY_POOL

BATCH = 5000


_MEMO_LIMIT = 10_000  # drafts, essays, judges remembered by _plan_batches (bounds memory)


class Generation(NamedTuple):
    """A planned generation (a tuple: a plan makes a million of them), fields in
    ``GenerationsPlanned.FIELDS`` order."""

    gen_id: str
    stage: str
    parent_gen_id: str | None
    combo_id: str | None
    template_id: str
    template_version: str
    model_id: str | None
    replicate: int
    mode: str
    signature: str
    pool: str


class Problems:
    """Collects planning problems (first row where each appears) for one error line."""

    def __init__(self) -> None:
        self.items: dict[str, int] = {}

    def add(self, message: str, row: int) -> None:
        self.items.setdefault(message, row)

    def __bool__(self) -> bool:
        return bool(self.items)

    def error(self, spec_path: str) -> PlanError:
        parts = [f"{msg} (first in row {row})" for msg, row in list(self.items.items())[:8]]
        more = len(self.items) - 8
        tail = f"; and {more} more" if more > 0 else ""
        return PlanError(f"plan {spec_path}: " + "; ".join(parts) + tail)


def derive(
    row: dict[str, Any],
    registry: Registry,
    existing: dict[str, str],
    problems: Problems,
    row_number: int,
    memo: dict[tuple[Any, ...], Any] | None = None,
) -> list[Generation]:
    """The generations one normalised spec row needs, parents first.

    ``existing`` maps the ids named by ``draft_id``/``essay_id`` columns to their stage.
    ``memo`` (optional, kept by the caller across rows) remembers the drafts and essays
    already derived, and each judge's checked template, model and signature suffix: most
    rows of a cohort share them with the rows before, and each depends only on the columns
    of its key, so a hit is exactly what deriving again would give (its problems, if any,
    were recorded when it was first derived).
    """
    out: list[Generation] = []
    parent: str | None = None
    combo = row.get("combo_id")

    def template(stage: str, template_id: str) -> Any:
        found = registry.templates.get((stage, template_id))
        if found is None:
            known = ", ".join(registry.template_ids(stage)) or "none"
            problems.add(
                f'unknown {stage} template "{template_id}" (catalog has: {known};'
                " import it with: daydream catalog import DIR)",
                row_number,
            )
        return found

    def model(model_id: Any, stage: str) -> Any:
        if model_id in (None, ""):
            problems.add(f"{stage} row has no model ({stage}_llm column)", row_number)
            return None
        found = registry.models.get(str(model_id))
        if found is None:
            known = ", ".join(sorted(registry.models)) or "none"
            problems.add(
                f'unknown model "{model_id}" (catalog has: {known}; add it to the catalog and'
                " import it with: daydream catalog import DIR)",
                row_number,
            )
        return found

    if row.get("essay_id"):
        parent = str(row["essay_id"])
        if existing.get(parent) != "essay":
            problems.add(f'essay_id "{parent}" is not an existing essay generation', row_number)
            return out
    elif row.get("draft_id"):
        parent = str(row["draft_id"])
        if existing.get(parent) != "draft":
            problems.add(f'draft_id "{parent}" is not an existing draft generation', row_number)
            return out
    elif memo is not None and (known := memo.get(_draft_key(row))) is not None:
        parent = known.gen_id
        out.append(known)
    elif row.get("draft_template"):
        if not combo:
            problems.add("draft row has no combo_id", row_number)
            return out
        if combo not in registry.combos:
            problems.add(
                f'unknown combo "{combo}" (define it in the catalog\'s combos and import it'
                " with: daydream catalog import DIR)",
                row_number,
            )
        tpl = template("draft", row["draft_template"])
        mdl = model(row.get("draft_llm"), "draft")
        if tpl is not None and tpl.generator == "copy":
            problems.add(
                f'draft template "{tpl.template_id}" is copy-mode, but a draft has no parent to copy',
                row_number,
            )
        if tpl is None or mdl is None or tpl.generator == "copy":
            return out
        _check_variables(tpl, False, registry, problems, row_number)
        signature = ids.draft_signature(
            combo, tpl.template_id, mdl.model_id, row["draft_replicate"]
        )
        parent = ids.gen_id("draft", signature)
        out.append(
            Generation(
                parent,
                "draft",
                None,
                combo,
                tpl.template_id,
                tpl.version,
                mdl.model_id,
                row["draft_replicate"],
                "llm",
                signature,
                mdl.pool,
            )
        )
        if memo is not None:
            memo[_draft_key(row)] = out[-1]
    essay_parent = parent if row.get("essay_id") else None
    if (
        memo is not None
        and not row.get("essay_id")
        and (known := memo.get(_essay_key(row, parent))) is not None
    ):
        essay_parent = known.gen_id
        out.append(known)
    elif row.get("essay_template") and not row.get("essay_id"):
        tpl = template("essay", row["essay_template"])
        if tpl is None:
            return out
        copy = tpl.generator == "copy"
        if parent is None:
            if copy:
                problems.add(
                    f'essay template "{tpl.template_id}" is copy-mode and needs a draft'
                    " (add draft_template and draft_llm columns)",
                    row_number,
                )
                return out
            if not combo:
                problems.add("essay row has no draft and no combo_id", row_number)
                return out
            if combo not in registry.combos:
                problems.add(
                    f'unknown combo "{combo}" (define it in the catalog\'s combos and import it'
                    " with: daydream catalog import DIR)",
                    row_number,
                )
                return out
        if not copy:
            _check_variables(tpl, parent is not None, registry, problems, row_number)
        source = parent if parent is not None else f"combo:{combo}"
        if copy:
            model_id, pool, replicate = None, COPY_POOL, 1
        else:
            mdl = model(row.get("essay_llm"), "essay")
            if mdl is None:
                return out
            model_id, pool, replicate = mdl.model_id, mdl.pool, row["essay_replicate"]
        signature = ids.essay_signature(source, tpl.template_id, model_id, replicate, copy=copy)
        essay_parent = ids.gen_id("essay", signature)
        out.append(
            Generation(
                essay_parent,
                "essay",
                parent,
                combo,
                tpl.template_id,
                tpl.version,
                model_id,
                replicate,
                "copy" if copy else "llm",
                signature,
                pool,
            )
        )
        if memo is not None:
            memo[_essay_key(row, parent)] = out[-1]
    if row.get("evaluation_template"):
        if essay_parent is None:
            problems.add(
                "evaluation columns need an essay (essay_template) or an essay_id", row_number
            )
            return out
        replicate = row["evaluation_replicate"]
        # Checked once per judge (template, model, replicate): most rows repeat one.
        judge_key = ("evaluation", row["evaluation_template"], row.get("evaluation_llm"), replicate)
        judge = memo.get(judge_key) if memo is not None else None
        if judge is None:
            tpl = template("evaluation", row["evaluation_template"])
            mdl = model(row.get("evaluation_llm"), "evaluation")
            if tpl is not None and tpl.generator == "copy":
                problems.add(
                    f'evaluation template "{tpl.template_id}" cannot be copy-mode', row_number
                )
                return out
            if tpl is None or mdl is None:
                return out
            _check_variables(tpl, True, registry, problems, row_number)
            suffix = ids.evaluation_suffix(tpl.template_id, mdl.model_id, replicate)
            judge = (tpl.template_id, tpl.version, mdl.model_id, mdl.pool, suffix)
            if memo is not None:
                memo[judge_key] = judge
        template_id, version, model_id, pool, suffix = judge
        signature = ids.evaluation_signature_with(essay_parent, suffix)
        out.append(
            Generation(
                ids.gen_id("evaluation", signature),
                "evaluation",
                essay_parent,
                combo,
                template_id,
                version,
                model_id,
                replicate,
                "llm",
                signature,
                pool,
            )
        )
    if not out and not problems:
        problems.add(
            "row names no stage to run (needs draft_template, essay_template or"
            " evaluation_template columns)",
            row_number,
        )
    return out


def _draft_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        "draft",
        row.get("combo_id"),
        row.get("draft_template"),
        row.get("draft_llm"),
        row.get("draft_replicate"),
    )


def _essay_key(row: dict[str, Any], parent: str | None) -> tuple[Any, ...]:
    return (
        "essay",
        parent,
        row.get("combo_id"),
        row.get("essay_template"),
        row.get("essay_llm"),
        row.get("essay_replicate"),
    )


def _check_variables(
    tpl: Any, has_parent: bool, registry: Registry, problems: Problems, row_number: int
) -> None:
    """A template must only read variables its stage provides (checked once per version)."""
    key = (tpl.version, has_parent)
    if key not in registry.variable_checks:
        problem = None
        try:
            used = template_variables(f"{tpl.stage}/{tpl.template_id}", tpl.body or "")
        except TemplateError as exc:
            problem = str(exc)
        else:
            allowed = available_variables(tpl.stage, has_parent=has_parent)
            unknown = sorted(used - set(allowed))
            if unknown:
                kind = {
                    "draft": "a draft",
                    "essay": "an essay with a draft"
                    if has_parent
                    else "an essay written straight from a combination",
                    "evaluation": "an evaluation",
                }[tpl.stage]
                problem = (
                    f'{tpl.stage} template "{tpl.template_id}" uses {", ".join(unknown)}, which'
                    f" {kind} does not have (it has: {', '.join(allowed)})"
                )
        registry.variable_checks[key] = problem
    found = registry.variable_checks[key]
    if found:
        problems.add(found, row_number)


def planning_registry(
    conn: sqlite3.Connection, derived_combos: dict[str, Any], spec_path: str
) -> tuple[Registry, list[ev.ComboDefined]]:
    """The catalog a plan checks against: the database's, plus the combinations the spec
    enumerates from a concept pool (returned as the events that define the new ones)."""
    registry = Registry.load(conn)
    if not registry.templates:
        raise PlanError(
            f"plan {spec_path}: the database has no catalog; import one first with:"
            " daydream catalog import DIR"
        )
    combo_events = _derived_combo_events(registry, derived_combos, spec_path)
    for event in combo_events:
        registry.combos[event.combo_id] = (event.level, tuple(event.concept_ids))
    return registry, combo_events


def _derived_combo_events(
    registry: Registry, derived: dict[str, Any], source: str
) -> list[ev.ComboDefined]:
    events = []
    for combo_id, d in derived.items():
        missing = [c for c in d.concepts if c not in registry.concepts]
        if missing:
            raise PlanError(
                f"plan {source}: combo_id pool names unknown concept(s) {', '.join(missing)}"
                " (import them with: daydream catalog import DIR)"
            )
        if combo_id in registry.combos:
            continue
        combo = Combo(combo_id=combo_id, concept_ids=tuple(d.concepts), level=d.level)
        events.append(
            ev.ComboDefined(
                combo_id=combo_id,
                version=combo.version,
                concept_ids=list(d.concepts),
                level=d.level,
                source=source,
            )
        )
    return events


def derive_batches(
    conn: sqlite3.Connection,
    rows: Iterable[dict[str, Any]],
    registry: Registry,
    report: PlanReport,
    size: int | None = None,
) -> Iterator[list[Generation]]:
    """Derive each row's generations, de-duplicated by id, in batches of ``size`` (default
    ``BATCH``; a parent always before its children); then the existing generations the
    rows name.

    Problems are collected over every row and raised as one PlanError after the last
    batch (the caller's transaction then undoes what it wrote). ``conn`` is only read.
    """
    size = size or BATCH
    problems = Problems()
    # A dict, not a set: a dict of strings is invisible to the cyclic garbage collector,
    # while a set of a million ids would be walked by every full collection.
    seen: dict[str, None] = {}
    pending: list[Generation] = []
    existing_cache: dict[str, str] = {}
    memo: dict[tuple[Any, ...], Any] = {}
    # A compiled spec's rows come normalised when they can (each level once, not per row).
    compiled = rows if isinstance(rows, CompiledRows) else None
    ready = compiled.normalised() if compiled is not None else None
    references: tuple[str, ...] = ("draft_id", "essay_id")
    if compiled is not None and ready is not None:
        references = tuple(k for k in references if k in compiled.columns)
    for number, raw in enumerate(rows if ready is None else ready, 1):
        report.rows = number
        if len(memo) > _MEMO_LIMIT:
            memo.clear()
        if ready is None:
            try:
                row = normalise_row(raw, row_number=number)
            except Exception as exc:  # SpecError: a bad replicate, conflicting aliases
                problems.add(str(exc), number)
                continue
        else:
            row = raw
        for key in references:
            ref = row.get(key)
            if ref and ref not in existing_cache:
                found = conn.execute(
                    "SELECT stage FROM generations WHERE gen_id = ?", (ref,)
                ).fetchone()
                existing_cache[ref] = found[0] if found else ""
        for gen in derive(row, registry, existing_cache, problems, number, memo):
            if gen.gen_id in seen:
                continue
            seen[gen.gen_id] = None
            pending.append(gen)
        if problems:
            pending.clear()
            continue
        if len(pending) >= size:
            yield pending
            pending = []
    if problems:
        raise problems.error(report.spec_path)
    if pending:
        yield pending
    # Existing generations named by the spec belong to the cohort too.
    named = [ref for ref, stage in existing_cache.items() if stage and ref not in seen]
    for start in range(0, len(named), size):
        yield [_existing(conn, ref) for ref in named[start : start + size]]


def _existing(conn: sqlite3.Connection, gen_id: str) -> Generation:
    row = conn.execute(
        "SELECT g.gen_id, g.stage, g.parent_gen_id, g.combo_id, g.template_id,"
        " g.template_version, g.model_id, g.replicate, g.mode, g.signature, g.pool"
        " FROM generations g WHERE g.gen_id = ?",
        (gen_id,),
    ).fetchone()
    return Generation(*row)
