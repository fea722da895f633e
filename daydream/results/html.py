"""The HTML report page: one self-contained file, inline CSS and inline SVG charts.

No script, no external stylesheet, font or image and no URL at all: the page works
offline and can be mailed or archived as one file. The charts are SVG strings drawn here:

- score distributions (histograms over each template's declared scale) per evaluation
  template, then per judge model and template;
- mean score heatmaps: essay template x generation model for each evaluation template, and
  evaluation template x judge model; cells are coloured by ``mean_unit`` (0-1 on the
  template's own scale) and labelled with the mean and the number of scores;
- means per axis with their 95% intervals as error bars, the judge reliability table and
  the judges' calibration against human ratings (``html_inference``);
- judge agreement: per evaluation template, how many essays fall in each stability class.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from daydream.results.charts import agreement, heatmap, histogram
from daydream.results.html_inference import inference_sections, interval_text
from daydream.results.markup import charts, figure
from daydream.results.markup import row as _row
from daydream.results.markup import table as _table
from daydream.results.rows import ESSAY_AXES, ESSAY_AXIS_TITLES
from daydream.results.tables import Report

__all__ = ["render_html"]

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
p.note { color: #555; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { padding: .25em .6em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child, td.t { text-align: left; }
th { background: #f6f6f6; }
tr.essay td { border-bottom: 2px solid #ddd; padding-top: 0; }
details > summary { cursor: pointer; color: #345; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; max-width: 70em; background: #fafafa;
      border: 1px solid #e3e3e3; padding: .6em .8em; font-size: .9em; }
.charts { display: flex; flex-wrap: wrap; gap: 1.2em; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: .2em; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
"""
BEST_ESSAYS = 10
MATRIX_ROWS = 30  # combinations in a small matrix
_LINEAGE_TITLES = ESSAY_AXIS_TITLES
_LINEAGE_KEYS = list(ESSAY_AXES)


def render_html(report: Report) -> str:
    """The whole page for one cohort's report."""
    evaluations = report.tables["evaluation_scores"].rows
    scored = [r for r in evaluations if r["state"] == "ok" and r["score"] is not None]
    results = report.tables["final_results"].rows
    s = report.summary
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>daydream report: {escape(report.cohort_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Cohort {escape(report.cohort_id)}</h1>",
        f'<p class="note">{s["evaluations"]} evaluation(s) of {s["essays"]} essay(s)'
        f" ({s['copy_essays']} copy-mode): {s['scored']} scored, {s['failed']} failed,"
        f" {s['blocked_or_cancelled']} blocked or cancelled, {s['unfinished']} unfinished."
        " High = score &ge; min + 0.8 &times; span, low = score &le; min + 0.3 &times; span,"
        " top = the template's maximum.</p>",
        "<h2>Scores per evaluation template</h2>",
        _per_template(results),
        "<h2>Best essays</h2>",
        _best_essays(report),
        *_distributions(scored),
        "<h2>Per axis: combination &times; each axis that varies</h2>",
        '<p class="note">The comparison matrix in small form: the same concepts (rows) made'
        " with each level of one axis (columns). Colour and label: the mean score on the 0-1"
        " unit scale (each score mapped onto its own rubric's scale, so rubrics pool), then"
        " n. daydream browse shows the texts: -/compare?cohort=ID&amp;rows=combo_id&amp;columns=AXIS.</p>",
        _axis_matrices(scored),
        "<h2>Mean score: essay template &times; generation model</h2>",
        '<p class="note">Per evaluation template; colour = mean on the 0-1 unit scale,'
        " label = mean (n).</p>",
        charts(
            figure(template, heatmap(cells))
            for template, cells in _heatmaps(scored, ("essay_template", "generation_model"))
        ),
        "<h2>Mean score: draft template &times; draft model</h2>",
        charts(
            figure(template, heatmap(cells))
            for template, cells in _heatmaps(scored, ("draft_template", "draft_model"))
        ),
        "<h2>Mean score: evaluation template &times; judge model</h2>",
        charts([figure("all essays", heatmap(_judge_cells(results)))]),
        *inference_sections(report.tables),
        "<h2>Judge agreement classes (detail)</h2>",
        '<p class="note">Per essay and evaluation template: the range of the judge models\''
        " mean scores. Classes use upstream's thresholds (range 1 / 2 / 3 on a 0-9 scale)"
        " scaled to the template's span; fewer than two judges is insufficient_data.</p>",
        agreement(report.tables["judge_agreement"].rows),
        "<h2>Essays without a score</h2>",
        _unscored(report),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _per_template(results: Sequence[dict[str, Any]]) -> str:
    columns = ("evaluation_template", "scale", "count", "mean", "std", "min", "max")
    return _table(
        [
            *("evaluation template", "scale", "n", "mean", "std", "min", "max"),
            *("high", "low", "top", "95% CI (combinations)"),
        ],
        [
            [
                *(r[c] for c in columns),
                *(r["high"], r["low"], r["top_of_scale"]),
                interval_text(r) and f"{interval_text(r)} ({r['ci_clusters']})",
            ]
            for r in results
            if r["analysis_type"] == "by_evaluation_template"
        ],
    )


def _distributions(scored: list[dict[str, Any]]) -> list[str]:
    return [
        "<h2>Score distribution per evaluation template</h2>",
        charts(
            figure(f"{template} ({len(scores)} scores)", histogram(scores, low, high))
            for template, low, high, scores in _groups(scored, ("evaluation_template",))
        ),
        "<h2>Score distribution per judge model</h2>",
        charts(
            figure(f"{model} on {template} ({len(scores)})", histogram(scores, low, high))
            for (model, template), low, high, scores in _groups(
                scored, ("evaluation_model", "evaluation_template")
            )
        ),
    ]


def _best_essays(report: Report) -> str:
    """The ten best essays by mean_unit, each with every axis of its lineage and its text
    (folded)."""
    rows = [r for r in report.tables["essay_pivot"].rows if r["mean_unit"] is not None]
    rows.sort(key=lambda r: (-r["mean_unit"], r["essay_gen_id"]))
    if not rows:
        return "<p>no scored essays</p>"
    header = ["essay", *(title for _, title in _LINEAGE_TITLES), "mean", "n", "judges", "mean_unit"]
    body = []
    for rank, r in enumerate(rows[:BEST_ESSAYS], 1):
        lineage = [r[c] for c, _ in _LINEAGE_TITLES]
        if r["essay_mode"] == "copy":
            lineage[_LINEAGE_KEYS.index("generation_model")] = f"{r['generation_model']} (copy)"
        body.append(_row([f"{rank}. {r['essay_gen_id']}", *lineage, r["mean"], r["n"], r["judges"], r["mean_unit"]]))
        text = report.texts.get(r["essay_gen_id"])
        body.append(
            f'<tr class="essay"><td colspan="{len(header)}"><details><summary>Read the essay'
            f" ({len(text or ''):,} characters)</summary><pre>{escape(text or '(no text)')}</pre>"
            "</details></td></tr>"
        )
    return (
        f'<p class="note">The {min(len(rows), BEST_ESSAYS)} best essays by mean_unit (every scored'
        " evaluation of the essay, each mapped to 0-1 on its template's scale); open one to read"
        " it. The full pivot is essay_pivot.csv.</p>"
        + _table(header, [], body="".join(body))
    )


def _axis_matrices(scored: list[dict[str, Any]]) -> str:
    combos = sorted({r["combo_id"] for r in scored}, key=str)
    shown = set(combos[:MATRIX_ROWS])
    figures = []
    for axis, title in (*_LINEAGE_TITLES[1:], ("evaluation_model", "judge model")):
        levels = {r[axis] for r in scored}
        if len(levels) < 2:
            continue
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in scored:
            if r["combo_id"] in shown:
                groups.setdefault((str(r["combo_id"]), str(r[axis])), []).append(r)
        cells: dict[tuple[str, str], tuple[float, float | None, int]] = {}
        for key, group in groups.items():
            unit = _unit(group)
            if unit is not None:
                cells[key] = (round(unit, 2), unit, len(group))
        figures.append(figure(f"combination x {title}", heatmap(cells)))
    note = (
        f'<p class="note">The first {MATRIX_ROWS} of {len(combos)} combinations (by id).</p>'
        if len(combos) > MATRIX_ROWS
        else ""
    )
    return note + (charts(figures) if figures else "<p>no axis varies besides the combination</p>")


def _unscored(report: Report) -> str:
    rows = report.tables["unscored_essays"].rows
    if not rows:
        return "<p>none: every essay judged has a score from each of its rubrics</p>"
    return (
        '<p class="note">Essays left out of the scores above for a rubric, and why'
        " (unscored_essays.csv).</p>"
        + _table(
            ["essay", "evaluation template", "evaluations", "why"],
            [[r["essay_gen_id"], r["evaluation_template"], r["evaluations"], r["reason"]] for r in rows],
        )
    )


# -- data shaping ------------------------------------------------------------------------------


def _groups(
    rows: list[dict[str, Any]], keys: tuple[str, ...]
) -> list[tuple[Any, Any, Any, list[float]]]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        key = tuple(r[k] for k in keys)
        groups.setdefault(key if len(keys) > 1 else key[0], []).append(r)
    return [
        (key, g[0]["scale_min"], g[0]["scale_max"], [r["score"] for r in g])
        for key, g in sorted(groups.items(), key=lambda item: str(item[0]))
    ]


def _heatmaps(
    scored: list[dict[str, Any]], axes: tuple[str, str]
) -> list[tuple[str, dict[tuple[str, str], tuple[float, float | None, int]]]]:
    """Per evaluation template, the mean score of each pair of levels of ``axes``."""
    out = []
    for template in sorted({r["evaluation_template"] for r in scored}):
        cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in scored:
            if r["evaluation_template"] == template:
                cells.setdefault((str(r[axes[0]]), str(r[axes[1]])), []).append(r)
        out.append((template, {k: _cell(v) for k, v in cells.items()}))
    return out


def _judge_cells(
    results: Sequence[dict[str, Any]],
) -> dict[tuple[str, str], tuple[float, float | None, int]]:
    return {
        (r["evaluation_template"], r["evaluation_model"]): (r["mean"], r["mean_unit"], r["count"])
        for r in results
        if r["analysis_type"] == "by_evaluation_template_and_model"
    }


def _cell(rows: list[dict[str, Any]]) -> tuple[float, float | None, int]:
    scores = [r["score"] for r in rows]
    mean = sum(scores) / len(scores)
    low, high = rows[0]["scale_min"], rows[0]["scale_max"]
    unit = (
        (mean - low) / (high - low) if low is not None and high is not None and high > low else None
    )
    return round(mean, 2), unit, len(scores)


def _unit(rows: list[dict[str, Any]]) -> float | None:
    """The mean of the scores mapped to 0-1 on their own template's scale."""
    units = [
        (r["score"] - r["scale_min"]) / (r["scale_max"] - r["scale_min"])
        for r in rows
        if r["scale_min"] is not None and r["scale_max"] is not None and r["scale_max"] > r["scale_min"]
    ]
    return sum(units) / len(units) if units else None
