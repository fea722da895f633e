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
from enum import Enum
from typing import Any, Final, NamedTuple

from daydream import ids
from daydream.catalog.registry import ModelRow, Registry, TemplateRow
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
    essay: str | _Stop | None
    if row.get("essay_id"):
        essay = _existing_parent(str(row["essay_id"]), "essay", existing, problems, row_number)
    else:
        draft = _derive_draft(row, registry, existing, problems, row_number, memo, out)
        if draft is _STOP:
            return out
        essay = _derive_essay(row, draft, registry, problems, row_number, memo, out)
    if essay is _STOP:
        return out
    if row.get("evaluation_template"):
        _derive_evaluation(row, essay, registry, problems, row_number, memo, out)
    if not out and not problems:
        problems.add(
            "row names no stage to run (needs draft_template, essay_template or"
            " evaluation_template columns)",
            row_number,
        )
    return out


class _Stop(Enum):
    """What a stage returns when the row's problem (already recorded) leaves the later
    stages nothing to build on: deriving the row ends there."""

    STOP = "stop"


_STOP: Final = _Stop.STOP


def _existing_parent(
    gen_id: str, stage: str, existing: dict[str, str], problems: Problems, row_number: int
) -> str | _Stop:
    """The existing generation a ``draft_id``/``essay_id`` column names, if of that stage."""
    if existing.get(gen_id) != stage:
        problems.add(f'{stage}_id "{gen_id}" is not an existing {stage} generation', row_number)
        return _STOP
    return gen_id


def _derive_draft(
    row: dict[str, Any],
    registry: Registry,
    existing: dict[str, str],
    problems: Problems,
    row_number: int,
    memo: dict[tuple[Any, ...], Any] | None,
    out: list[Generation],
) -> str | None | _Stop:
    """The id of the row's draft (named by ``draft_id``, remembered, or new: appended to
    ``out``), or None when the row has no draft stage."""
    if row.get("draft_id"):
        return _existing_parent(str(row["draft_id"]), "draft", existing, problems, row_number)
    if memo is not None and (known := memo.get(_draft_key(row))) is not None:
        out.append(known)
        return known.gen_id
    if not row.get("draft_template"):
        return None
    combo = row.get("combo_id")
    if not combo:
        problems.add("draft row has no combo_id", row_number)
        return _STOP
    _check_combo(combo, registry, problems, row_number)
    tpl = _template("draft", row["draft_template"], registry, problems, row_number)
    mdl = _model(row.get("draft_llm"), "draft", registry, problems, row_number)
    if tpl is not None and tpl.generator == "copy":
        problems.add(
            f'draft template "{tpl.template_id}" is copy-mode, but a draft has no parent to copy',
            row_number,
        )
    if tpl is None or mdl is None or tpl.generator == "copy":
        return _STOP
    _check_variables(tpl, False, registry, problems, row_number)
    replicate = row["draft_replicate"]
    signature = ids.draft_signature(combo, tpl.template_id, mdl.model_id, replicate)
    draft = Generation(
        ids.gen_id("draft", signature),
        "draft",
        None,
        combo,
        tpl.template_id,
        tpl.version,
        mdl.model_id,
        replicate,
        "llm",
        signature,
        mdl.pool,
    )
    out.append(draft)
    if memo is not None:
        memo[_draft_key(row)] = draft
    return draft.gen_id


def _derive_essay(
    row: dict[str, Any],
    draft: str | None,
    registry: Registry,
    problems: Problems,
    row_number: int,
    memo: dict[tuple[Any, ...], Any] | None,
    out: list[Generation],
) -> str | None | _Stop:
    """The id of the row's essay over ``draft`` (remembered, or new: appended to ``out``),
    or None when the row has no essay stage."""
    if memo is not None and (known := memo.get(_essay_key(row, draft))) is not None:
        out.append(known)
        return known.gen_id
    if not row.get("essay_template"):
        return None
    tpl = _template("essay", row["essay_template"], registry, problems, row_number)
    if tpl is None:
        return _STOP
    copy = tpl.generator == "copy"
    combo = row.get("combo_id")
    if draft is None and not _can_start_from_combo(tpl, combo, registry, problems, row_number):
        return _STOP
    if not copy:
        _check_variables(tpl, draft is not None, registry, problems, row_number)
    source = draft if draft is not None else f"combo:{combo}"
    if copy:
        model_id, pool, replicate = None, COPY_POOL, 1
    else:
        mdl = _model(row.get("essay_llm"), "essay", registry, problems, row_number)
        if mdl is None:
            return _STOP
        model_id, pool, replicate = mdl.model_id, mdl.pool, row["essay_replicate"]
    signature = ids.essay_signature(source, tpl.template_id, model_id, replicate, copy=copy)
    essay = Generation(
        ids.gen_id("essay", signature),
        "essay",
        draft,
        combo,
        tpl.template_id,
        tpl.version,
        model_id,
        replicate,
        "copy" if copy else "llm",
        signature,
        pool,
    )
    out.append(essay)
    if memo is not None:
        memo[_essay_key(row, draft)] = essay
    return essay.gen_id


def _can_start_from_combo(
    tpl: TemplateRow, combo: str | None, registry: Registry, problems: Problems, row_number: int
) -> bool:
    """Whether an essay without a draft can be written straight from the row's combo."""
    if tpl.generator == "copy":
        problems.add(
            f'essay template "{tpl.template_id}" is copy-mode and needs a draft'
            " (add draft_template and draft_llm columns)",
            row_number,
        )
        return False
    if not combo:
        problems.add("essay row has no draft and no combo_id", row_number)
        return False
    return _check_combo(combo, registry, problems, row_number)


def _derive_evaluation(
    row: dict[str, Any],
    essay: str | None,
    registry: Registry,
    problems: Problems,
    row_number: int,
    memo: dict[tuple[Any, ...], Any] | None,
    out: list[Generation],
) -> None:
    """Append the row's evaluation of ``essay`` to ``out``."""
    if essay is None:
        problems.add("evaluation columns need an essay (essay_template) or an essay_id", row_number)
        return
    replicate = row["evaluation_replicate"]
    # Checked once per judge (template, model, replicate): most rows repeat one.
    judge_key = ("evaluation", row["evaluation_template"], row.get("evaluation_llm"), replicate)
    judge = memo.get(judge_key) if memo is not None else None
    if judge is None:
        judge = _judge(row, replicate, registry, problems, row_number)
        if judge is None:
            return
        if memo is not None:
            memo[judge_key] = judge
    template_id, version, model_id, pool, suffix = judge
    signature = ids.evaluation_signature_with(essay, suffix)
    out.append(
        Generation(
            ids.gen_id("evaluation", signature),
            "evaluation",
            essay,
            row.get("combo_id"),
            template_id,
            version,
            model_id,
            replicate,
            "llm",
            signature,
            pool,
        )
    )


def _judge(
    row: dict[str, Any], replicate: int, registry: Registry, problems: Problems, row_number: int
) -> tuple[str, str, str, str, str] | None:
    """An evaluation's checked template id and version, model id and pool, and the suffix
    of its signature; None when they have a problem."""
    tpl = _template("evaluation", row["evaluation_template"], registry, problems, row_number)
    mdl = _model(row.get("evaluation_llm"), "evaluation", registry, problems, row_number)
    if tpl is not None and tpl.generator == "copy":
        problems.add(f'evaluation template "{tpl.template_id}" cannot be copy-mode', row_number)
        return None
    if tpl is None or mdl is None:
        return None
    _check_variables(tpl, True, registry, problems, row_number)
    suffix = ids.evaluation_suffix(tpl.template_id, mdl.model_id, replicate)
    return (tpl.template_id, tpl.version, mdl.model_id, mdl.pool, suffix)


def _template(
    stage: str, template_id: str, registry: Registry, problems: Problems, row_number: int
) -> TemplateRow | None:
    """The catalog's current ``stage`` template, or None (the problem recorded)."""
    found = registry.templates.get((stage, template_id))
    if found is None:
        known = ", ".join(registry.template_ids(stage)) or "none"
        problems.add(
            f'unknown {stage} template "{template_id}" (catalog has: {known};'
            " import it with: daydream catalog import DIR)",
            row_number,
        )
    return found


def _model(
    model_id: Any, stage: str, registry: Registry, problems: Problems, row_number: int
) -> ModelRow | None:
    """The catalog's model the row's ``{stage}_llm`` names, or None (the problem recorded)."""
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


def _check_combo(combo: str, registry: Registry, problems: Problems, row_number: int) -> bool:
    """Whether the catalog has ``combo`` (recording the problem when it has not)."""
    if combo in registry.combos:
        return True
    problems.add(
        f'unknown combo "{combo}" (define it in the catalog\'s combos and import it'
        " with: daydream catalog import DIR)",
        row_number,
    )
    return False


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
