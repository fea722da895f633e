"""``daydream reparse``: run the parsed phase again on stored raw replies, with no model call.

After a parser fix or a change to a template's scale (a new template version in the
catalog), the replies already paid for are validated and parsed again with the
template's **current** version (its parser, scale and ``min_lines``) and the parsers of
``parsers.PARSER_VERSION``, exactly as a worker parses a fresh reply
(``worker.execute.parse_reply``).

Invariants:

- No provider is ever called: only ``texts`` is read.
- Only a changed result is recorded (``generation.reparsed``, one per generation, in one
  transaction): the same reply parsed to the same state, text and score on the same scale
  writes nothing, so running it twice writes nothing the second time. A score that stays
  the same number on a changed scale is recorded (it now means something else).
- The previous result stays in the log (its ``generation.completed`` or ``attempt.failed``)
  and beside the new one in ``reparses``; projections, reports and pivots follow.
- Generations still running or without a stored reply (provider errors, never run) are
  left alone and counted. Replies are read and parsed without the write lock; a change is
  recorded only if its generation still holds what was read (a worker may have retried
  it meanwhile: ``moved``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from daydream import events as ev
from daydream.db.log import append
from daydream.db.texts import put_text, text_hash
from daydream.db.transaction import transaction
from daydream.errors import OptionError, ParseError
from daydream.parsers import PARSER_VERSION
from daydream.queue.cohorts import require_cohort
from daydream.vocabulary import STAGES
from daydream.worker.execute import parse_reply, token_limit

BATCH = 5_000


@dataclass
class ReparseReport:
    """What a reparse examined and changed (``transitions``: "old -> new" state counts)."""

    cohort_id: str
    stage: str | None
    template: str | None
    parser_version: int
    dry_run: bool
    examined: int = 0
    changed: int = 0
    skipped: int = 0
    transitions: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    stale_children: int = 0
    moved: int = 0  # changed by a worker while the replies were parsed: left alone
    events: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def reparse(
    conn: sqlite3.Connection,
    cohort_id: str,
    *,
    stage: str | None = None,
    template: str | None = None,
    dry_run: bool = False,
    actor: str = "cli:reparse",
    progress: Callable[[int, int], None] | None = None,
) -> ReparseReport:
    """Parse the cohort's stored replies again (of ``stage`` and ``template`` if given)
    and record every changed result; ``dry_run`` reports the changes and writes nothing."""
    require_cohort(conn, cohort_id)
    if stage is not None and stage not in STAGES:
        raise OptionError(f'stage "{stage}" is unknown: use one of {", ".join(STAGES)}', option="--stage")
    report = ReparseReport(cohort_id, stage, template, PARSER_VERSION, dry_run)
    # Read and parse without holding the write lock (workers may be running), then
    # record, in one transaction, the changes whose generation has not moved since.
    rows = _candidates(conn, cohort_id, stage, template)
    report.skipped = sum(1 for r in rows if r["raw"] is None or r["status"] not in ("done", "failed"))
    rows = [r for r in rows if r["raw"] is not None and r["status"] in ("done", "failed")]
    templates = _current_templates(conn)
    changes: list[tuple[ev.GenerationReparsed, str | None]] = []
    for index, row in enumerate(rows, 1):
        report.examined += 1
        change = _reparsed(row, templates[(row["stage"], row["template_id"])])
        if change is not None:
            changes.append(change)
            _count(report, row, change[0])
        if progress is not None and (index % BATCH == 0 or index == len(rows)):
            progress(index, len(rows))
    report.stale_children = _stale_children(conn, [c[0] for c in changes], rows)
    if dry_run or not changes:
        return report
    with transaction(conn):
        read = {r["gen_id"]: _fingerprint(r) for r in rows}
        now = _fingerprints(conn, [event.gen_id for event, _ in changes])
        unmoved = [(e, text) for e, text in changes if now.get(e.gen_id) == read[e.gen_id]]
        report.moved = len(changes) - len(unmoved)
        for start in range(0, len(unmoved), BATCH):
            batch = unmoved[start : start + BATCH]
            for _, text in batch:
                if text is not None:
                    put_text(conn, text)
            report.events += len(append(conn, [event for event, _ in batch], actor=actor))
    return report


def _fingerprint(row: dict[str, Any]) -> tuple:
    return (row["status"], row["state"], row["parsed_hash"], row["score"])


def _fingerprints(conn: sqlite3.Connection, gen_ids: list[str]) -> dict[str, tuple]:
    """gen_id -> what the reparse read of it (status, state, parsed output, score) now."""
    out = {}
    for start in range(0, len(gen_ids), 500):
        part = gen_ids[start : start + 500]
        marks = ", ".join("?" for _ in part)
        for gen_id, *fields in conn.execute(
            f"SELECT gen_id, status, state, parsed_hash, score FROM generations"
            f" WHERE gen_id IN ({marks})",
            part,
        ):
            out[gen_id] = tuple(fields)
    return out


def _candidates(
    conn: sqlite3.Connection, cohort_id: str, stage: str | None, template: str | None
) -> list[dict[str, Any]]:
    sql = (
        "SELECT g.gen_id, g.stage, g.template_id, g.mode, g.status, g.state, g.score,"
        " g.written_scale, g.parsed_hash, g.finish_reason, x.text, v.scale_min, v.scale_max,"
        " g.completion_tokens, (SELECT json_extract(e.data, '$.params') FROM events e"
        "  WHERE e.subject = g.gen_id AND e.type = 'generation.responded'"
        "  ORDER BY e.id DESC LIMIT 1)"
        " FROM cohort_members m JOIN generations g ON g.gen_id = m.gen_id"
        " LEFT JOIN texts x ON x.hash = g.raw_hash"
        " LEFT JOIN template_versions v ON v.version = coalesce(g.parsed_with, g.template_version)"
        " WHERE m.cohort_id = ?"
    )
    params: list[Any] = [cohort_id]
    if stage is not None:
        sql += " AND m.stage = ?"
        params.append(stage)
    if template is not None:
        sql += " AND g.template_id = ?"
        params.append(template)
    columns = (
        "gen_id", "stage", "template_id", "mode", "status", "state", "score", "written_scale",
        "parsed_hash", "finish_reason", "raw", "scale_min", "scale_max",
        "completion_tokens", "params",
    )
    rows = [dict(zip(columns, r, strict=True)) for r in conn.execute(sql + " ORDER BY g.rowid", params)]
    if template is not None and not rows:
        known = sorted(
            {r[0] for r in conn.execute(
                "SELECT DISTINCT g.template_id FROM cohort_members m"
                " JOIN generations g ON g.gen_id = m.gen_id WHERE m.cohort_id = ?"
                + (" AND m.stage = ?" if stage else ""),
                [cohort_id, *([stage] if stage else [])],
            )}
        )
        raise OptionError(
            f'template "{template}" is not used by cohort "{cohort_id}"'
            f"{f' at stage {stage}' if stage else ''} (templates: {', '.join(known) or 'none'})",
            option="--template",
        )
    return rows


def _current_templates(conn: sqlite3.Connection) -> dict[tuple[str, str], dict[str, Any]]:
    """(stage, template id) -> the catalog's current version as the parsed phase reads it."""
    out = {}
    for stage, template_id, version, parser, low, high, settings in conn.execute(
        "SELECT t.stage, t.template_id, t.version, v.parser, v.scale_min, v.scale_max,"
        " v.settings FROM templates t JOIN template_versions v ON v.version = t.version"
    ):
        out[(stage, template_id)] = {
            "version": version,
            "parser": parser,
            "scale": (low, high) if high is not None else None,
            "settings": json.loads(settings),
        }
    return out


def _reparsed(
    row: dict[str, Any], template: dict[str, Any]
) -> tuple[ev.GenerationReparsed, str | None] | None:
    """The event (and the new parsed text) when parsing again changes the result."""
    fields: dict[str, Any] = dict(
        gen_id=row["gen_id"],
        template_version=template["version"],
        parser=template["parser"],
        parser_version=PARSER_VERSION,
    )
    try:
        parsed = parse_reply(
            template,
            row["stage"],
            row["mode"],
            row["raw"],
            finish_reason=row["finish_reason"],
            completion_tokens=row["completion_tokens"],
            max_tokens=token_limit(json.loads(row["params"] or "{}")),
        )
    except ParseError as exc:
        if row["state"] == exc.state and row["status"] == "failed":
            return None
        return ev.GenerationReparsed(**fields, state=exc.state, error=str(exc)), None
    event = ev.GenerationReparsed(
        **fields,
        state="ok",
        parsed_hash=text_hash(parsed.text),
        score=parsed.score,
        written_scale=parsed.scale_max,
    )
    # A score read on another scale is another result, even when the number is the same.
    scale = (row["scale_min"], row["scale_max"]) if row["scale_max"] is not None else None
    same = (row["state"], row["parsed_hash"], row["score"], row["written_scale"], scale) == (
        "ok",
        event.parsed_hash,
        event.score,
        event.written_scale,
        template["scale"],
    )
    return None if same else (event, parsed.text)


def _count(report: ReparseReport, row: dict[str, Any], event: ev.GenerationReparsed) -> None:
    report.changed += 1
    key = f"{row['state']} -> {event.state}"
    report.transitions[key] = report.transitions.get(key, 0) + 1
    if len(report.examples) < 5:
        report.examples.append(
            {
                "gen_id": row["gen_id"],
                "stage": row["stage"],
                "before": row["state"] if row["state"] != "ok" else f"ok {row['score']}",
                "after": event.state if event.state != "ok" else f"ok {event.score}",
                "error": event.error,
            }
        )


def _stale_children(
    conn: sqlite3.Connection, events: list[ev.GenerationReparsed], rows: list[dict[str, Any]]
) -> int:
    """Finished children made from a parsed text that has now changed (they keep their
    results; re-run them as new generations if they matter)."""
    before = {r["gen_id"]: r for r in rows if r["stage"] != "evaluation"}
    changed = [
        e.gen_id
        for e in events
        if e.gen_id in before and before[e.gen_id]["parsed_hash"] not in (None, e.parsed_hash)
    ]
    total = 0
    for start in range(0, len(changed), 500):
        part = changed[start : start + 500]
        marks = ", ".join("?" for _ in part)
        total += conn.execute(
            f"SELECT count(*) FROM generations WHERE status = 'done' AND parent_gen_id IN ({marks})",
            part,
        ).fetchone()[0]
    return total
