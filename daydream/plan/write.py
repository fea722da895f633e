"""Writing a plan: ``plan_cohort()`` streams the rows through ``derivation``, de-duplicates
by id, and appends ``cohort.planned`` + ``generations.planned`` events inside ONE ``BEGIN
IMMEDIATE`` transaction: any problem (an unknown template anywhere in a million rows) rolls
everything back, so a failed plan leaves the database unchanged. Planning is idempotent: a
generation that exists (from this or another cohort) is linked by membership, never
duplicated, and a re-plan that adds nothing writes nothing.

Big plans are tuned: a larger page cache, secondary indexes built after the inserts on a
young database, and a second process deriving while this one writes (``pipeline``).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, nullcontext
from operator import itemgetter
from pathlib import Path
from typing import Any

from daydream import events as ev
from daydream import spec as spec_module
from daydream.catalog.registry import Registry
from daydream.db.log import append
from daydream.db.texts import put_text
from daydream.db.transaction import transaction
from daydream.errors import PlanError, SpecError
from daydream.plan import derivation, pipeline
from daydream.plan.cost import estimate_cost
from daydream.plan.derivation import derive_batches
from daydream.plan.registry import planning_registry
from daydream.plan.report import PlanReport
from daydream.spec import CompiledRows

PLAN_CACHE_KIB = 128 * 1024  # page cache while planning (see _page_cache)


# Below this many generations already planned, a plan builds the secondary indexes of
# generations, cohort_members and the essays' rubric rows after its inserts (see
# _indexes_built_after).
BULK_BELOW = 50_000


LATE_INDEXES = (
    "generations_queue",
    "generations_parent",
    "generations_scores",
    "cohort_members_gen",
    "cohort_members_stage",
    "essay_rubric_scores_unscored",
)


def plan_cohort(
    conn: sqlite3.Connection,
    spec_path: str | Path,
    cohort_id: str | None = None,
    *,
    dry_run: bool = False,
    actor: str = "cli:plan",
    rows: Iterable[dict[str, Any]] | None = None,
) -> PlanReport:
    """Compile ``spec_path`` and plan it as ``cohort_id``: all or nothing.

    ``rows`` replaces the spec's compiled rows (used by ``plan --from-list``). Without
    ``cohort_id``, the spec's ``name``.
    """
    spec_path = str(spec_path)
    spec = spec_module.load_spec(spec_path) if rows is None else None  # first: it says
    # what is wrong with the file
    cohort_id = cohort_id or _named_cohort(spec, spec_path)
    _check_cohort_id(cohort_id)
    report = PlanReport(cohort_id=cohort_id, spec_path=spec_path, dry_run=dry_run)
    compiled: Iterable[dict[str, Any]] = rows or []
    derived_combos = {}
    budget = None
    if spec is not None:
        _refuse_misspelt_axes(spec, spec_path)
        compiled = spec_module.compile_rows(spec)
        derived_combos = dict(getattr(spec, "derived_combos", {}) or {})
        budget = getattr(spec, "budget_usd", None)
    spec_text = _spec_text(Path(spec_path))
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
            budget_usd=budget,
        )
    except _NothingNew:
        report.events = 0
    _note_stale(report)
    estimate_cost(conn, report)
    return report


def _plan(
    conn, compiled, derived_combos, cohort_id, spec_path, spec_text, report, actor, *,
    from_spec, budget_usd=None,
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
                budget_usd=budget_usd,
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
    """A big compiled spec's batches, derived in a second process (``pipeline``); None
    for anything else (rows given in memory, a small spec, a database with no file)."""
    if not isinstance(rows, CompiledRows) or len(rows) < pipeline.PIPELINE_ROWS:
        return None
    path = next((r[2] for r in conn.execute("PRAGMA database_list") if r[1] == "main"), "")
    if not path:
        return None
    return pipeline.derived_elsewhere(path, spec_path, report, derivation.BATCH)


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


def _spec_text(path: Path) -> str:
    """The spec's text as stored with the cohort ("" when there is no file)."""
    if not path.is_file():
        return ""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"spec {path}: is not valid UTF-8 (byte {exc.start}); save it as UTF-8"
        ) from None


def _named_cohort(spec: Any, spec_path: str) -> str:
    if spec is not None and spec.name:
        return str(spec.name)
    raise PlanError(
        f"spec {spec_path} has no name: give the cohort id with --cohort ID, or add"
        " name: ID to the spec"
        if spec is not None
        else f"list {spec_path}: give the new cohort's id with --cohort ID"
    )


def _check_cohort_id(cohort_id: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", cohort_id or ""):
        raise PlanError(
            f'cohort id "{cohort_id}" is invalid: use letters, digits, "-", "_" or "."'
            " (starting with a letter or digit)"
        )


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
    batches of ``derive_batches`` when another process derives them (``pipeline``).
    """
    fresh_db = conn.execute("SELECT 1 FROM generations LIMIT 1").fetchone() is None
    batches = derived if derived is not None else derive_batches(conn, rows, registry, report)
    for batch in batches:
        yield _split_batch(conn, batch, cohort_id, report, fresh_db, members)


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
    # Fields by position: batches may hold Generation tuples or plain rows (pipeline).
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


def _refuse_misspelt_axes(spec: Any, spec_path: str) -> None:
    """An axis the planner does not read is ignored; one whose name is close to a column
    it reads (``draft_replicates``) is a typo that would plan something else: refuse it."""
    columns = list(spec.axes) + [c for c in spec_module.compile_rows(spec).columns if c not in spec.axes]
    misspelt = spec_module.misspelt_columns(dict.fromkeys(columns))
    if misspelt:
        problems = "; ".join(
            f"{'axes.' + column if column in spec.axes else 'rules'}: \"{column}\" is not a"
            f" column the planner reads{hint}"
            for column, hint in misspelt
        )
        raise PlanError(f"spec {spec_path}: {problems}; rename it")


def _note_stale(report: PlanReport) -> None:
    for template_id, count in sorted(report.stale.items()):
        report.notes.append(
            f"{count} completed generation(s) of template {template_id} were made with an older"
            " version of it and are reused as they are (the id does not include the text);"
            " to run the new text, give the template a new id"
        )
