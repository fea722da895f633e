"""Planning: compiled spec rows -> generations with ids and parents -> planning events.

``derive()`` is pure: it maps one normalised spec row to the generations it needs (a draft,
an essay, an evaluation, or a suffix of that chain when the row starts from existing
generations), checking every template and model against the registry.

``plan_cohort()`` streams the rows through ``derive()``, de-duplicates by id, and appends
``cohort.planned`` + ``generations.planned`` events inside ONE ``BEGIN IMMEDIATE``
transaction: any problem (an unknown template anywhere in a million rows) rolls everything
back, so a failed plan leaves the database unchanged. Planning is idempotent: a generation
that exists (from this or another cohort) is linked by membership, never duplicated, and a
re-plan that adds nothing writes nothing.

Copy-mode essays have no model and copy the draft verbatim; their replicate is always 1,
because replicates of a verbatim copy would be identical texts counted as independent draws
(evaluation replicates still apply to them).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from daydream import events as ev
from daydream import ids
from daydream.catalog.registry import Registry
from daydream.db.log import append
from daydream.db.texts import put_text
from daydream.db.transaction import transaction
from daydream.errors import PlanError, TemplateError
from daydream.prompts import available_variables, template_variables
from daydream.vocabulary import COPY_POOL, STAGES

BATCH = 5000
PLAN_CACHE_KIB = 128 * 1024  # page cache while planning (see _page_cache)
# Below this many generations already planned, a plan builds the secondary indexes of
# generations and cohort_members after its inserts (see _indexes_built_after).
BULK_BELOW = 50_000
LATE_INDEXES = (
    "generations_queue",
    "generations_parent",
    "generations_scores",
    "cohort_members_gen",
)
_MEMO_LIMIT = 10_000  # drafts, essays, judges remembered by _plan_batches (bounds memory)
# Rough output sizes (tokens) per stage for the cost range: (low, high).
_OUTPUT_TOKENS = {"draft": (400, 3000), "essay": (500, 2000), "evaluation": (150, 1200)}


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


@dataclass
class StageCounts:
    in_cohort: int = 0
    new: int = 0
    shared: int = 0
    completed: int = 0


@dataclass
class PlanReport:
    cohort_id: str
    spec_path: str
    dry_run: bool
    rows: int = 0
    stages: dict[str, StageCounts] = field(
        default_factory=lambda: {s: StageCounts() for s in STAGES}
    )
    cost_low: float = 0.0
    cost_high: float = 0.0
    unpriced_models: list[str] = field(default_factory=list)
    new_calls: dict[str, int] = field(default_factory=dict)  # model_id -> new llm generations
    events: int = 0
    notes: list[str] = field(default_factory=list)
    # template id -> completed generations reused although made with an older version
    stale: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cohort_id": self.cohort_id,
            "spec": self.spec_path,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "stages": {s: vars(c) for s, c in self.stages.items()},
            "new_calls_by_model": self.new_calls,
            "cost_estimate_usd": {"low": round(self.cost_low, 4), "high": round(self.cost_high, 4)}
            if self.new_calls
            else None,
            "unpriced_models": self.unpriced_models,
            "events_written": self.events,
            "notes": self.notes,
        }


class _Problems:
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
    problems: _Problems,
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
    tpl: Any, has_parent: bool, registry: Registry, problems: _Problems, row_number: int
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


def plan_cohort(
    conn: sqlite3.Connection,
    spec_path: str | Path,
    cohort_id: str,
    *,
    dry_run: bool = False,
    actor: str = "cli:plan",
    rows: Iterable[dict[str, Any]] | None = None,
) -> PlanReport:
    """Compile ``spec_path`` and plan it as ``cohort_id``: all or nothing.

    ``rows`` replaces the spec's compiled rows (used by ``plan --from-list``).
    """
    from daydream import spec as spec_module

    _check_cohort_id(cohort_id)
    spec_path = str(spec_path)
    spec_text = Path(spec_path).read_text(encoding="utf-8") if Path(spec_path).is_file() else ""
    report = PlanReport(cohort_id=cohort_id, spec_path=spec_path, dry_run=dry_run)
    if rows is None:
        spec = spec_module.load_spec(spec_path)
        compiled: Iterable[dict[str, Any]] = spec_module.compile_rows(spec)
        derived_combos = dict(getattr(spec, "derived_combos", {}) or {})
    else:
        compiled, derived_combos = rows, {}
    try:
        _plan(
            conn,
            compiled,
            derived_combos,
            cohort_id,
            spec_path,
            spec_text,
            report,
            actor,
            from_spec=rows is None,
        )
    except _NothingNew:
        report.events = 0
    _note_stale(report)
    _estimate_cost(conn, report)
    return report


def _plan(
    conn, compiled, derived_combos, cohort_id, spec_path, spec_text, report, actor, *, from_spec
) -> None:
    dry_run = report.dry_run
    # Dropping indexes and reading the catalog from another process are only safe in a
    # transaction of our own: one we commit or roll back whole, whose writes to the
    # catalog (none) no other reader could miss. Inside a caller's, plan the plain way.
    alone = not dry_run and not conn.in_transaction
    context = nullcontext() if dry_run else transaction(conn)
    with _page_cache(conn, PLAN_CACHE_KIB), context:
        registry, combo_events = planning_registry(conn, derived_combos, spec_path)
        if not dry_run:
            prior = conn.execute(
                "SELECT spec_hash FROM cohorts WHERE cohort_id = ?", (cohort_id,)
            ).fetchone()
            planned = ev.CohortPlanned(
                cohort_id=cohort_id,
                spec_path=spec_path,
                spec_hash=put_text(conn, spec_text),
            )
            head: list[ev.Event] = [*combo_events, planned]
            append(conn, head, actor=actor)
            report.events += len(head)
        writes = 0
        derived = None
        if alone and from_spec:
            derived = _derived_elsewhere(conn, compiled, spec_path, report)
        with (
            _indexes_built_after(conn) if alone else nullcontext(False) as bulk,
            closing(derived) if derived is not None else nullcontext(),  # stops the child
        ):
            # Without cohort_members_gen, the memberships of the generations that exist
            # are read once, up front (there are few of them: see _indexes_built_after).
            members = _memberships(conn) if bulk else None
            for batch_new, batch_members in _plan_batches(
                conn, compiled, registry, cohort_id, report, members, derived
            ):
                if dry_run or not (batch_new or batch_members):
                    continue
                # Built from rows of known types (derive's), so not validated again: a
                # million generations would be copied and checked for nothing.
                batch = ev.GenerationsPlanned.model_construct(
                    cohort_id=cohort_id,
                    generations=[g if type(g) is list else list(g) for g in batch_new],
                    members=batch_members,
                )
                append(conn, [batch], actor=actor)
                report.events += 1
                writes += 1
        if (
            not dry_run
            and writes == 0
            and not combo_events
            and prior
            and prior[0] == planned.spec_hash
        ):
            # Nothing new: a re-plan of the same spec leaves the log untouched.
            raise _NothingNew


@contextmanager
def _page_cache(conn: sqlite3.Connection, kib: int) -> Iterator[None]:
    """Give the connection a page cache of ``kib`` KiB for a while, then the old size back.

    A plan inserts into six indexes keyed by random ids in one transaction; with SQLite's
    default 2 MB cache their pages are evicted and re-read for every batch, which makes a
    million-generation plan several times slower. The cache only grows as pages are used.
    """
    previous = int(conn.execute("PRAGMA cache_size").fetchone()[0])
    conn.execute(f"PRAGMA cache_size = {-int(kib)}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA cache_size = {previous}")


def _derived_elsewhere(
    conn: sqlite3.Connection, rows: Iterable[Any], spec_path: str, report: PlanReport
) -> Generator[list[Any], None, None] | None:
    """A big compiled spec's batches, derived in a second process (``planpipe``); None
    for anything else (rows given in memory, a small spec, a database with no file)."""
    from daydream import planpipe
    from daydream.spec import CompiledRows

    if not isinstance(rows, CompiledRows) or len(rows) < planpipe.PIPELINE_ROWS:
        return None
    path = next((r[2] for r in conn.execute("PRAGMA database_list") if r[1] == "main"), "")
    if not path:
        return None
    return planpipe.derived_elsewhere(path, spec_path, report, BATCH)


@contextmanager
def _indexes_built_after(conn: sqlite3.Connection) -> Iterator[bool]:
    """Build the secondary indexes of ``generations`` and ``cohort_members`` after the
    plan's inserts when few generations exist yet (a first big plan), inside the planning
    transaction. Yields whether it does.

    Inserting a million rows into indexes keyed by random ids costs far more than sorting
    them once afterwards. Nothing the plan reads needs these indexes (it looks generations
    up by id, memberships in ``_memberships``, and gives blocked new generations their
    reason by id), and they are recreated from their own SQL before the transaction
    commits; if the plan fails, the rollback restores them with everything else, so the
    caller must own the transaction (``_plan`` checks). Once ``BULK_BELOW`` generations
    exist the indexes stay (rebuilding them would cost more than a small plan saves).
    """
    held = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM generations LIMIT ?)", (BULK_BELOW,)
    ).fetchone()[0]
    if held >= BULK_BELOW:
        yield False
        return
    marks = ", ".join("?" for _ in LATE_INDEXES)
    definitions = conn.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND name IN ({marks})",
        LATE_INDEXES,
    ).fetchall()
    for name, _ in definitions:
        conn.execute(f'DROP INDEX "{name}"')
    yield True
    for _, sql in definitions:
        conn.execute(sql)


def _memberships(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """gen_id -> the cohorts it belongs to, for every generation in the database."""
    members: dict[str, list[str]] = {}
    for gen_id, cohort in conn.execute("SELECT gen_id, cohort_id FROM cohort_members"):
        members.setdefault(gen_id, []).append(cohort)
    return members


class _NothingNew(Exception):
    """Raised inside the planning transaction to roll back a re-plan that adds nothing."""


def _check_cohort_id(cohort_id: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", cohort_id or ""):
        raise PlanError(
            f'cohort id "{cohort_id}" is invalid: use letters, digits, "-", "_" or "."'
            " (starting with a letter or digit)"
        )


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
    from daydream.catalog.entries import Combo

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


def _plan_batches(
    conn: sqlite3.Connection,
    rows: Iterable[dict[str, Any]],
    registry: Registry,
    cohort_id: str,
    report: PlanReport,
    members: dict[str, list[str]] | None = None,
    derived: Iterable[Sequence[Sequence[Any]]] | None = None,
) -> Iterator[tuple[list[Sequence[Any]], list[str]]]:
    """The rows' generations in batches of (new, joining existing).

    ``members``: the memberships of every existing generation, when cohort_members cannot
    be searched by generation during the plan (``_indexes_built_after``). ``derived``: the
    batches of ``derive_batches`` when another process derives them (``planpipe``).
    """
    fresh_db = conn.execute("SELECT 1 FROM generations LIMIT 1").fetchone() is None
    batches = derived if derived is not None else derive_batches(conn, rows, registry, report)
    for batch in batches:
        yield _split_batch(conn, batch, cohort_id, report, fresh_db, members)


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
    from daydream.spec import CompiledRows, normalise_row

    size = size or BATCH
    problems = _Problems()
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


# gen_id, stage, template_id, template_version, model_id, mode of a Generation or a row.
_SPLIT_FIELDS = itemgetter(0, 1, 4, 5, 6, 8)


def _split_batch(
    conn: sqlite3.Connection,
    batch: Sequence[Sequence[Any]],
    cohort_id: str,
    report: PlanReport,
    fresh_db: bool,
    members: dict[str, list[str]] | None = None,
) -> tuple[list[Sequence[Any]], list[str]]:
    """Split into new generations and existing ones; count them per stage."""
    status: dict[str, str] = {}
    versions: dict[str, str | None] = {}
    others: set[str] = set()
    mine: set[str] = set()
    if not fresh_db:
        ids_ = [g[0] for g in batch]
        for start in range(0, len(ids_), 500):
            part = ids_[start : start + 500]
            marks = ", ".join("?" for _ in part)
            found = conn.execute(
                f"SELECT gen_id, status, template_version FROM generations WHERE gen_id IN ({marks})",
                part,
            ).fetchall()
            for gen_id, state, version in found:
                status[gen_id] = state
                versions[gen_id] = version
            # Only generations that exist can belong to cohorts.
            if members is not None:
                pairs = [(gen_id, c) for gen_id, *_ in found for c in members.get(gen_id, ())]
            elif found:
                existing = [gen_id for gen_id, *_ in found]
                marks = ", ".join("?" for _ in existing)
                pairs = conn.execute(
                    f"SELECT gen_id, cohort_id FROM cohort_members WHERE gen_id IN ({marks})",
                    existing,
                ).fetchall()
            else:
                pairs = []
            for gen_id, cohort in pairs:
                (mine if cohort == cohort_id else others).add(gen_id)
    if not status:  # nothing in the batch exists yet: all new, counted per kind
        kinds = Counter((g[1], g[4], g[6], g[8]) for g in batch)
        for (stage, template_id, model_id, mode), n in kinds.items():
            counts = report.stages[stage]
            counts.in_cohort += n
            counts.new += n
            if mode == "llm" and model_id:
                key = f"{stage}\t{template_id}\t{model_id}"
                report.new_calls[key] = report.new_calls.get(key, 0) + n
        return list(batch), []
    new: list[Sequence[Any]] = []
    joining: list[str] = []
    # Fields by position: batches may hold Generation tuples or plain rows (planpipe).
    for gen in batch:
        gen_id, stage, template_id, version, model_id, mode = _SPLIT_FIELDS(gen)
        counts = report.stages[stage]
        counts.in_cohort += 1
        if gen_id in status:
            if gen_id not in mine:
                joining.append(gen_id)
            if gen_id in others:
                counts.shared += 1
            if status[gen_id] == "done":
                counts.completed += 1
                if versions[gen_id] != version:
                    report.stale[template_id] = report.stale.get(template_id, 0) + 1
        else:
            new.append(gen)
            counts.new += 1
            if mode == "llm" and model_id:
                key = f"{stage}\t{template_id}\t{model_id}"
                report.new_calls[key] = report.new_calls.get(key, 0) + 1
    return new, joining


def _note_stale(report: PlanReport) -> None:
    for template_id, count in sorted(report.stale.items()):
        report.notes.append(
            f"{count} completed generation(s) of template {template_id} were made with an older"
            " version of it and are reused as they are (the id does not include the text);"
            " to run the new text, give the template a new id"
        )


def _estimate_cost(conn: sqlite3.Connection, report: PlanReport) -> None:
    """A rough cost range for the new model calls, from catalog prices.

    Input tokens: the template body plus the stage's input (concept texts for drafts, the
    parent's expected output for essays and evaluations); output tokens: a low/high guess
    per stage. ``daydream run --rehearse`` gives a forecast from the real rendered prompts.
    """
    registry = Registry.load(conn)
    by_model: dict[str, int] = {}
    unpriced: set[str] = set()
    low = high = 0.0
    for key, count in report.new_calls.items():
        stage, template_id, model_id = key.split("\t")
        by_model[model_id] = by_model.get(model_id, 0) + count
        model = registry.models.get(model_id)
        if model is None or model.price_input is None or model.price_output is None:
            if model is not None and model.provider != "offline":
                unpriced.add(model_id)
            continue
        template = registry.templates.get((stage, template_id))
        body = len(template.body or "") // 4 if template else 500
        parent_low, parent_high = _OUTPUT_TOKENS.get(
            {"essay": "draft", "evaluation": "essay"}.get(stage, ""), (300, 600)
        )
        out_low, out_high = _OUTPUT_TOKENS[stage]
        low += count * ((body + parent_low) * model.price_input + out_low * model.price_output)
        high += count * ((body + parent_high) * model.price_input + out_high * model.price_output)
    report.new_calls = dict(sorted(by_model.items()))
    report.cost_low, report.cost_high = low, high
    report.unpriced_models = sorted(unpriced)
