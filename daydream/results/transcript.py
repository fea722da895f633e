"""A generation's transcript: everything a researcher reads about one generation, in one
object (``daydream show`` prints it; browse's generation page renders it).

- its lineage: concepts -> combination -> draft -> essay -> evaluation, whichever apply;
- its texts: the rendered prompt, the raw reply, a reasoning model's reasoning (when its
  server sent one apart from the reply) and the parsed output;
- its call: model, resolved model, tokens, latency, cost, finish reason, attempts, outcome
  state and error, and every model call made for it (failed ones included);
- what was made from it: a draft's essays, an essay's evaluations; for an essay, every
  judge's reply and score side by side (``judges``).

Read only, by primary key and the parent index: a transcript costs a few lookups whatever
the size of the database.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

from daydream.errors import NotFoundError
from daydream.results.rows import fetch_dicts

__all__ = ["Transcript", "read_transcript"]

# The columns of a generation shown as its call metadata, in order.
CALL_FIELDS = (
    "model_id",
    "provider",
    "resolved_model",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "cost",
    "finish_reason",
    "attempts",
    "throttles",
    "offline",
    "status",
    "state",
    "error",
    "finished_at",
)

_SUMMARY = (
    "gen_id, stage, parent_gen_id, combo_id, template_id, model_id, replicate, mode, status,"
    " state, score, error"
)


@dataclass
class Transcript:
    """One generation with its lineage, texts, calls and what was made from it."""

    generation: dict[str, Any]
    lineage: list[dict[str, Any]]  # ancestors, oldest first (draft, then essay)
    concepts: list[dict[str, Any]]  # the combination's concepts in order: id, name
    texts: dict[str, str | None]  # prompt, raw, reasoning, parsed (None: none recorded)
    calls: list[dict[str, Any]]
    children: list[dict[str, Any]]  # a draft's essays, an essay's evaluations
    judges: list[dict[str, Any]] = field(default_factory=list)  # an essay's evaluations + texts
    template: dict[str, Any] = field(default_factory=dict)  # name, parser, scale of its version
    cohorts: list[str] = field(default_factory=list)
    ratings: list[dict[str, Any]] = field(default_factory=list)  # an essay's human ratings

    @property
    def gen_id(self) -> str:
        return str(self.generation["gen_id"])

    @property
    def stage(self) -> str:
        return str(self.generation["stage"])

    def metadata(self) -> dict[str, Any]:
        """The call metadata (``CALL_FIELDS``) of the generation."""
        return {name: self.generation.get(name) for name in CALL_FIELDS}

    def rubrics(self) -> list[dict[str, Any]]:
        """Per evaluation template of an essay's judges: its scale, the mean of its scores
        and their n, and how many of its evaluations have no score (scales never pool)."""
        found: dict[str, dict[str, Any]] = {}
        for j in self.judges:
            rubric = found.setdefault(
                j["template_id"],
                {"template_id": j["template_id"], "scale_min": j["scale_min"],
                 "scale_max": j["scale_max"], "scores": [], "unscored": 0},
            )
            if j["score"] is not None:
                rubric["scores"].append(j["score"])
            else:
                rubric["unscored"] += 1
        for rubric in found.values():
            scores = rubric.pop("scores")
            rubric["n"] = len(scores)
            rubric["mean"] = round(sum(scores) / len(scores), 3) if scores else None
        return sorted(found.values(), key=lambda r: r["template_id"])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rubrics": self.rubrics()}


def read_transcript(conn: sqlite3.Connection, gen_id: str) -> Transcript:
    """The transcript of ``gen_id``; ``NotFoundError`` when there is no such generation."""
    gen_id = gen_id.strip()
    row = _one(conn, "SELECT * FROM generations WHERE gen_id = ?", (gen_id,))
    if row is None:
        raise NotFoundError(
            f'generation "{gen_id}" does not exist in this database (find ids with:'
            " daydream search WORDS, or daydream top COHORT)"
        )
    lineage = _ancestors(conn, row)
    texts = {
        "prompt": _text(conn, row["prompt_hash"]),
        "raw": _text(conn, row["raw_hash"]),
        "reasoning": _text(conn, row["reasoning_hash"]),
        "parsed": _text(conn, row["parsed_hash"]),
    }
    children = _all(
        conn,
        f"SELECT {_SUMMARY} FROM generations WHERE parent_gen_id = ?"
        " ORDER BY template_id, model_id, replicate, gen_id",
        (gen_id,),
    )
    combo = row["combo_id"] or next((a["combo_id"] for a in lineage if a["combo_id"]), None)
    return Transcript(
        generation=row,
        lineage=lineage,
        concepts=_all(
            conn,
            "SELECT cc.concept_id AS concept_id, c.name AS name FROM combo_concepts cc"
            " JOIN concepts c ON c.concept_id = cc.concept_id WHERE cc.combo_id = ?"
            " ORDER BY cc.position",
            (combo,),
        ),
        texts=texts,
        calls=_all(conn, "SELECT * FROM calls WHERE gen_id = ? ORDER BY event_id", (gen_id,)),
        children=children,
        judges=_judges(conn, children) if row["stage"] == "essay" else [],
        ratings=_all(
            conn,
            "SELECT evaluation_template, rater, score, recorded_at FROM human_ratings"
            " WHERE essay_gen_id = ? ORDER BY evaluation_template, rater",
            (gen_id,),
        ),
        template=_template(conn, row),
        cohorts=[
            r["cohort_id"]
            for r in _all(
                conn, "SELECT cohort_id FROM cohort_members WHERE gen_id = ? ORDER BY 1", (gen_id,)
            )
        ],
    )


def _ancestors(conn: sqlite3.Connection, row: dict[str, Any]) -> list[dict[str, Any]]:
    chain: list[dict[str, Any]] = []
    parent = row["parent_gen_id"]
    while parent is not None and len(chain) < 2:  # an evaluation has two ancestors at most
        found = _one(conn, f"SELECT {_SUMMARY} FROM generations WHERE gen_id = ?", (parent,))
        if found is None:
            break
        chain.insert(0, found)
        parent = found["parent_gen_id"]
    return chain


def _judges(conn: sqlite3.Connection, children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An essay's evaluations with their scale, reply and parsed text."""
    judges = []
    for child in children:
        if child["stage"] != "evaluation":
            continue
        extra = _one(
            conn,
            "SELECT g.raw_hash, g.parsed_hash, g.written_scale, t.scale_min, t.scale_max"
            " FROM generations g LEFT JOIN template_versions t ON t.version = g.template_version"
            " WHERE g.gen_id = ?",
            (child["gen_id"],),
        ) or {}
        judges.append(
            {
                **child,
                "scale_min": extra.get("scale_min"),
                "scale_max": extra.get("scale_max"),
                "written_scale": extra.get("written_scale"),
                "reply": _text(conn, extra.get("raw_hash")),
                "parsed": _text(conn, extra.get("parsed_hash")),
            }
        )
    return judges


def _template(conn: sqlite3.Connection, row: dict[str, Any]) -> dict[str, Any]:
    found = _one(
        conn,
        "SELECT name, parser, generator, scale_min, scale_max FROM template_versions"
        " WHERE version = ?",
        (row["template_version"],),
    )
    return found or {}


def _text(conn: sqlite3.Connection, digest: str | None) -> str | None:
    if digest is None:
        return None
    found = conn.execute("SELECT text FROM texts WHERE hash = ?", (digest,)).fetchone()
    return found[0] if found else None


def _all(conn: sqlite3.Connection, sql: str, params: tuple) -> list[dict[str, Any]]:
    return fetch_dicts(conn, sql, params)


def _one(conn: sqlite3.Connection, sql: str, params: tuple) -> dict[str, Any] | None:
    found = fetch_dicts(conn, sql, params)
    return found[0] if found else None
