"""The curation loop: rank a cohort's essays, export the chosen ones, plan a new cohort.

``rank_essays()`` is upstream's ``select_top_essays`` (reference §8.2 item 11): per essay
and judge model the best score of one evaluation template counts, essays are ordered by
the mean over judge models (then by id), a score span and then a top-N cut apply.
``write_ranking()`` writes the editable list (a ``selected`` column per essay);
``export_essays()`` writes the chosen essays as Markdown headed by their lineage; and
``curation_rows()`` turns an edited list into spec rows over the existing essays, so
``plan_cohort(..., rows=...)`` reuses every finished draft, essay and evaluation and plans
only the new judgements.
"""

from __future__ import annotations

import csv
import re
import sqlite3
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daydream.db.texts import get_text
from daydream.errors import ConfigError, SpecError
from daydream.queue.cohorts import require_cohort
from daydream.results.files import UniqueNames, safe_name, write_file
from daydream.results.rows import (
    ESSAY_AXES,
    cohort_rows,
    csv_text,
    is_scored,
    write_csv,
)
from daydream.results.scores import unscored_reason

__all__ = [
    "Ranking",
    "curation_rows",
    "export_essays",
    "is_same_list",
    "rank_essays",
    "write_ranking",
]

EPS = 1e-9
_TRUE = {"true", "1", "yes", "y"}


@dataclass
class Ranking:
    """Ranked essays for one evaluation template (upstream's select_top_essays)."""

    cohort_id: str
    template: str
    models: list[str]
    columns: list[str]
    rows: list[dict[str, Any]]
    # Essays judged by this template whose evaluations have no score: not ranked, and why.
    unscored: list[dict[str, Any]] = field(default_factory=list)


def rank_essays(
    conn: sqlite3.Connection,
    cohort_id: str,
    template: str | None = None,
    *,
    models: Sequence[str] = (),
    top_n: int | None = None,
    span: float | None = None,
) -> Ranking:
    """Rank the cohort's essays by one evaluation template.

    Per (essay, judge model) the best score counts (so evaluation replicates cannot drag
    an essay down); ``avg_score`` is the mean over the judge models that scored it. Order:
    ``avg_score`` descending, then essay id. ``span`` keeps essays within ``span`` of the
    best average, then ``top_n`` keeps the first N (default 10 when no span is given).
    Without ``template``, the cohort's only evaluation template. Essays whose evaluations
    of it have no score are not ranked: ``unscored`` lists them with the reason.
    """
    require_cohort(conn, cohort_id)
    essays, evaluations = cohort_rows(conn, cohort_id)
    template = template or _only_template(evaluations, cohort_id)
    chosen = _judges(evaluations, cohort_id, template, models)
    best = _best_scores(evaluations, template, chosen)
    lineage = {e["essay_gen_id"]: e for e in essays}
    unscored = _unscored(evaluations, template, chosen, lineage)
    if not best:
        raise ConfigError(
            f'cohort "{cohort_id}" has no scored "{template}" evaluations by'
            f" {', '.join(chosen)}; run it first (daydream run {cohort_id})"
        )
    if top_n is None and span is None:
        top_n = 10
    ranked = _ranked(best, top_n, span)
    method = "+".join(m for m, v in (("score_span", span), ("top_n", top_n)) if v is not None)
    limit = "+".join(f"{v:g}" for v in (span, top_n) if v is not None)
    rows = []
    for rank, (avg, essay, scores) in enumerate(ranked, 1):
        info = lineage.get(essay, {})
        rows.append(
            {
                "selection_rank": rank,
                "selected": "true",
                "essay_gen_id": essay,
                "avg_score": round(avg, 3),
                "max_score": max(scores.values()),
                "models_covered": len(scores),
                **{f"score__{m}": scores.get(m) for m in chosen},
                "evaluation_template": template,
                "source_models": ", ".join(chosen),
                **{k: info.get(k) for k in ESSAY_AXES},
                "selection_method": method,
                "selection_limit": limit,
                "source_cohort_id": cohort_id,
            }
        )
    return Ranking(cohort_id, template, chosen, _columns(chosen), rows, unscored)



def _only_template(evaluations: list[dict[str, Any]], cohort_id: str) -> str:
    templates = sorted({r["evaluation_template"] for r in evaluations})
    if len(templates) == 1:
        return templates[0]
    raise ConfigError(
        f'cohort "{cohort_id}" has '
        + (
            f"{len(templates)} evaluation templates ({', '.join(templates)}); pick one with --template"
            if templates
            else "no evaluations to rank by; plan judges for it (evaluation_template and evaluation_llm)"
        )
    )


def _unscored(
    evaluations: list[dict[str, Any]],
    template: str,
    chosen: list[str],
    lineage: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """Essays with evaluations of ``template`` by the chosen judges, none scored."""
    judged: dict[str, list[dict[str, Any]]] = {}
    for r in evaluations:
        if r["evaluation_template"] == template and r["evaluation_model"] in chosen:
            judged.setdefault(r["essay_gen_id"], []).append(r)
    return [
        {
            "essay_gen_id": essay,
            "evaluations": len(rows),
            "reason": unscored_reason(lineage.get(essay, {}).get("essay_state"), rows),
        }
        for essay, rows in sorted(judged.items())
        if not any(is_scored(r) for r in rows)
    ]


def _judges(
    evaluations: list[dict[str, Any]], cohort_id: str, template: str, models: Sequence[str]
) -> list[str]:
    """The judge models to rank by: ``models`` (each must have judged ``template``), or
    every model that did."""
    templates = sorted({r["evaluation_template"] for r in evaluations})
    if template not in templates:
        raise ConfigError(
            f'cohort "{cohort_id}" has no evaluations with template "{template}"'
            f" (its evaluation templates: {', '.join(templates) or 'none'}); pick one with --template"
        )
    judged = sorted(
        {r["evaluation_model"] for r in evaluations if r["evaluation_template"] == template}
    )
    unknown = [m for m in models if m not in judged]
    if unknown:
        raise ConfigError(
            f'model "{unknown[0]}" did not judge "{template}" in cohort "{cohort_id}"'
            f" (its judges: {', '.join(judged)}); fix --models"
        )
    return list(dict.fromkeys(models)) or judged


def _best_scores(
    evaluations: list[dict[str, Any]], template: str, chosen: list[str]
) -> dict[str, dict[str, float]]:
    """Per essay, each chosen judge model's best score of ``template``."""
    best: dict[str, dict[str, float]] = {}
    for r in evaluations:
        if (
            r["evaluation_template"] == template
            and r["evaluation_model"] in chosen
            and is_scored(r)
        ):
            per_model = best.setdefault(r["essay_gen_id"], {})
            per_model[r["evaluation_model"]] = max(
                per_model.get(r["evaluation_model"], r["score"]), r["score"]
            )
    return best


def _ranked(
    best: dict[str, dict[str, float]], top_n: int | None, span: float | None
) -> list[tuple[float, str, dict[str, float]]]:
    """(average, essay, scores) by average descending then essay id, within ``span`` of
    the best average, the first ``top_n``."""
    ranked = sorted(
        ((statistics.fmean(s.values()), essay, s) for essay, s in best.items()),
        key=lambda item: (-item[0], item[1]),
    )
    if span is not None:
        ranked = [item for item in ranked if item[0] >= ranked[0][0] - span - EPS]
    if top_n is not None:
        ranked = ranked[:top_n]
    return ranked


def _columns(chosen: list[str]) -> list[str]:
    """The ranking's columns, one score column per judge model."""
    return [
        "selection_rank",
        "selected",
        "essay_gen_id",
        "avg_score",
        "max_score",
        "models_covered",
        *(f"score__{m}" for m in chosen),
        "evaluation_template",
        "source_models",
        *ESSAY_AXES,
        "selection_method",
        "selection_limit",
        "source_cohort_id",
    ]


def write_ranking(
    ranking: Ranking, path: str | Path, *, overwrite: bool = False, keep_existing: bool = False
) -> Path:
    """Write the editable selection list; never replace an existing (maybe edited) one
    unless ``overwrite``: refuse, or with ``keep_existing`` leave it as it is (the caller
    asks ``has_list`` first to tell the user)."""
    path = Path(path)
    if path.exists() and not overwrite:
        if keep_existing:
            return path
        raise ConfigError(
            f"{path} exists (it may hold your edits); choose another --out or add --overwrite"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(path, ranking.columns, ranking.rows)
    return path


def is_same_list(ranking: Ranking, path: str | Path) -> bool:
    """Whether the list at ``path`` is exactly what ``write_ranking`` would write now."""
    path = Path(path)
    if not path.is_file():
        return False
    return path.read_bytes() == csv_text(ranking.columns, ranking.rows).encode("utf-8")


def export_essays(conn: sqlite3.Connection, ranking: Ranking, directory: str | Path) -> list[Path]:
    """Write each ranked essay's parsed text as ``<rank>-<essay id>.md``, headed by its
    lineage (combination and concept names, templates, models, replicates) and scores.
    An id that is no safe file name is cleaned and shortened (``files.safe_name``); no
    file is written through a link planted in ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    width = len(str(len(ranking.rows)))
    written = []
    names = UniqueNames()
    for row in ranking.rows:
        essay = row["essay_gen_id"]
        info = conn.execute(
            "SELECT e.parent_gen_id, coalesce(d.combo_id, e.combo_id), d.template_id, d.model_id,"
            " d.replicate, e.template_id, e.mode, e.model_id, e.replicate, e.parsed_hash"
            " FROM generations e LEFT JOIN generations d ON d.gen_id = e.parent_gen_id"
            " WHERE e.gen_id = ?",
            (essay,),
        ).fetchone()
        draft, combo, d_tpl, d_model, d_rep, e_tpl, mode, e_model, e_rep, parsed = info
        concepts = [
            name
            for (name,) in conn.execute(
                "SELECT c.name FROM combo_concepts cc JOIN concepts c USING (concept_id)"
                " WHERE cc.combo_id = ? ORDER BY cc.position",
                (combo,),
            )
        ]
        scores = ", ".join(
            f"{m} {row[f'score__{m}']:g}" for m in ranking.models if row[f"score__{m}"] is not None
        )
        made = (
            f"copy of the draft (no model call; generation model {d_model})"
            if mode == "copy"
            else f"model {e_model}, replicate {e_rep}"
        )
        lines = [
            f"# Essay {essay}",
            "",
            f"- Rank {row['selection_rank']} in cohort {ranking.cohort_id} by {ranking.template}:"
            f" avg {row['avg_score']:g}, max {row['max_score']:g} over"
            f" {row['models_covered']} judge model(s)",
            f"- Scores (best per judge model): {scores}",
            f"- Combination: {combo} ({' + '.join(concepts) or 'no concepts'})",
            f"- Draft: {draft}, template {d_tpl}, model {d_model}, replicate {d_rep}"
            if draft
            else "- Draft: none (the essay was written from the concepts)",
            f"- Essay: template {e_tpl}, {made}",
            "",
            "---",
            "",
            get_text(conn, parsed) or "(no parsed text)",
        ]
        name = names.take(f"{row['selection_rank']:0{width}d}-{safe_name(essay)}", ".md")
        written.append(write_file(out / name, "\n".join(lines).rstrip("\n") + "\n"))
    return written


def curation_rows(
    list_path: str | Path, judges: Sequence[tuple[str, str]] = ()
) -> list[dict[str, Any]]:
    """Spec rows for a curated cohort: every selected essay of the list x every judge.

    The list is a CSV like ``daydream top`` writes: the essay id column is ``essay_gen_id``
    (or ``parent_gen_id``/``essay_id``); rows whose ``selected`` is not true/1/yes/y are
    skipped (a list without that column keeps every row). Without ``judges``, the list's
    own ``evaluation_template`` x ``source_models`` are used. The rows name existing
    essays (``essay_id``), so planning them reuses every finished draft, essay and
    evaluation and runs only the new judgements.
    """
    path = Path(list_path)
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"list {path}: is not valid UTF-8 (byte {exc.start}); save it as UTF-8"
        ) from None
    except csv.Error as exc:
        raise SpecError(f"list {path}: is not a CSV file ({exc}); give the list top wrote") from None
    id_column = next(
        (c for c in ("essay_gen_id", "parent_gen_id", "essay_id") if c in columns), None
    )
    if id_column is None:
        raise SpecError(
            f"list {path}: no essay id column (expected essay_gen_id, parent_gen_id or"
            f" essay_id; found: {', '.join(columns) or 'nothing'})"
        )
    if "selected" in columns:
        rows = [r for r in rows if (r.get("selected") or "").strip().lower() in _TRUE]
    essays = list(dict.fromkeys((r[id_column] or "").strip() for r in rows))
    essays = [e for e in essays if e]
    if not essays:
        raise SpecError(
            f"list {path}: no essay is selected (set selected to true on the rows to keep)"
        )
    if not judges:
        judges = _list_judges(path, rows)
    return [
        {"essay_id": essay, "evaluation_template": template, "evaluation_llm": model}
        for essay in essays
        for template, model in dict.fromkeys(judges)
    ]


def _list_judges(path: Path, rows: list[dict[str, str]]) -> list[tuple[str, str]]:
    templates = {(r.get("evaluation_template") or "").strip() for r in rows} - {""}
    models = {m for r in rows for m in re.split(r"[,\s]+", r.get("source_models") or "") if m}
    if len(templates) != 1 or not models:
        raise SpecError(
            f"list {path}: cannot tell the judges from its evaluation_template and"
            " source_models columns; name them with --judge TEMPLATE:MODEL"
        )
    template = templates.pop()
    return [(template, m) for m in sorted(models)]
