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

from html import escape
from typing import Any

from daydream.results.html_inference import inference_sections, interval_text
from daydream.results.markup import charts as _charts
from daydream.results.markup import colour as _colour
from daydream.results.markup import figure as _figure
from daydream.results.markup import line as _line
from daydream.results.markup import svg_open as _svg_open
from daydream.results.markup import table as _table
from daydream.results.markup import text as _text
from daydream.results.scores import STABILITY_CLASSES
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
.charts { display: flex; flex-wrap: wrap; gap: 1.2em; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: .2em; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
"""
_BAR = "#4a78b5"
_AGREEMENT_COLOURS = {
    "high_agreement": "#2e7d32",
    "moderate_agreement": "#9ccc65",
    "low_agreement": "#ffb300",
    "poor_agreement": "#e53935",
    "insufficient_data": "#bdbdbd",
}


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
        _table(
            [
                "evaluation template",
                "scale",
                "n",
                "mean",
                "std",
                "min",
                "max",
                "high",
                "low",
                "top", "95% CI (combinations)",
            ],
            [
                [
                    r["evaluation_template"],
                    r["scale"],
                    r["count"],
                    r["mean"],
                    r["std"],
                    r["min"],
                    r["max"],
                    r["high"],
                    r["low"],
                    r["top_of_scale"],
                    interval_text(r) and f"{interval_text(r)} ({r['ci_clusters']})",
                ]
                for r in results
                if r["analysis_type"] == "by_evaluation_template"
            ],
        ),
        "<h2>Score distribution per evaluation template</h2>",
        _charts(
            _figure(f"{template} ({len(scores)} scores)", _histogram(scores, low, high))
            for template, low, high, scores in _groups(scored, ("evaluation_template",))
        ),
        "<h2>Score distribution per judge model</h2>",
        _charts(
            _figure(f"{model} on {template} ({len(scores)})", _histogram(scores, low, high))
            for (model, template), low, high, scores in _groups(
                scored, ("evaluation_model", "evaluation_template")
            )
        ),
        "<h2>Mean score: essay template &times; generation model</h2>",
        '<p class="note">Per evaluation template; colour = mean on the 0-1 unit scale,'
        " label = mean (n).</p>",
        _charts(
            _figure(template, _heatmap(cells)) for template, cells in _generation_heatmaps(scored)
        ),
        "<h2>Mean score: evaluation template &times; judge model</h2>",
        _charts([_figure("all essays", _heatmap(_judge_cells(results)))]),
        *inference_sections(report.tables),
        "<h2>Judge agreement classes (detail)</h2>",
        '<p class="note">Per essay and evaluation template: the range of the judge models\''
        " mean scores. Classes use upstream's thresholds (range 1 / 2 / 3 on a 0-9 scale)"
        " scaled to the template's span; fewer than two judges is insufficient_data.</p>",
        _agreement(report.tables["judge_agreement"].rows),
        "<h2>Best essays</h2>",
        _best_essays(report),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# -- charts ------------------------------------------------------------------------------------


def _histogram(scores: list[float], low: float | None, high: float | None) -> str:
    if low is None or high is None or high <= low:
        low, high = min(scores), max(scores) + 1
    if float(low).is_integer() and float(high).is_integer() and high - low <= 20:
        edges = [low + i for i in range(int(high - low) + 1)]
        labels = [f"{e:g}" for e in edges]
    else:
        step = (high - low) / 10
        edges = [low + i * step for i in range(10)]
        labels = [f"{e:.3g}" for e in edges]
    counts = [0] * len(edges)
    for score in scores:
        index = 0
        for i, edge in enumerate(edges):
            if score >= edge - 1e-9:
                index = i
        counts[index] += 1
    width, height, left, bottom, top = 340, 170, 28, 22, 14
    bar = (width - left - 6) / len(edges)
    peak = max(counts) or 1
    out = [_svg_open(width, height)]
    out.append(_line(left, height - bottom, width - 4, height - bottom))
    for i, (count, label) in enumerate(zip(counts, labels, strict=True)):
        x = left + i * bar
        h = (height - bottom - top) * count / peak
        y = height - bottom - h
        if count:
            out.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{h:.1f}"'
                f' fill="{_BAR}"><title>{escape(label)}: {count}</title></rect>'
            )
            out.append(_text(x + bar / 2, y - 3, str(count), anchor="middle"))
        out.append(_text(x + bar / 2, height - bottom + 14, label, anchor="middle"))
    out.append(_text(2, top, "n", anchor="start"))
    out.append("</svg>")
    return "".join(out)


def _heatmap(cells: dict[tuple[str, str], tuple[float, float | None, int]]) -> str:
    rows = sorted({r for r, _ in cells})
    cols = sorted({c for _, c in cells})
    if not rows:
        return "<p>no scores</p>"
    label_w = max(90, 7 * max(len(r) for r in rows))
    cell_w = max(70, 7 * max(len(c) for c in cols))
    cell_h, head = 30, 24
    width = label_w + cell_w * len(cols) + 4
    height = head + cell_h * len(rows) + 4
    out = [_svg_open(width, height)]
    for j, col in enumerate(cols):
        out.append(_text(label_w + (j + 0.5) * cell_w, head - 8, col, anchor="middle"))
    for i, row in enumerate(rows):
        y = head + i * cell_h
        out.append(_text(label_w - 6, y + cell_h / 2 + 4, row, anchor="end"))
        for j, col in enumerate(cols):
            x = label_w + j * cell_w
            if (row, col) not in cells:
                out.append(
                    f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="#f4f4f4"/>'
                )
                continue
            mean, unit, n = cells[(row, col)]
            colour, ink = _colour(unit)
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{colour}">'
                f"<title>{escape(row)} x {escape(col)}: mean {mean:g} over {n}</title></rect>"
            )
            out.append(
                f'<text x="{x + (cell_w - 2) / 2:.1f}" y="{y + cell_h / 2 + 3:.1f}"'
                f' text-anchor="middle" style="fill:{ink}">{mean:g} ({n})</text>'
            )
    out.append("</svg>")
    return "".join(out)


def _agreement(rows: list[dict[str, Any]]) -> str:
    per_template: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = per_template.setdefault(
            row["evaluation_template"], dict.fromkeys(STABILITY_CLASSES, 0)
        )
        counts[row["stability"]] += 1
    if not per_template:
        return "<p>no evaluations</p>"
    label_w, bar_w, bar_h = 170, 560, 24
    height = 30 + (bar_h + 8) * len(per_template)
    legend_w = sum(14 + 7 * len(name) + 8 for name in STABILITY_CLASSES)
    out = [_svg_open(max(label_w + bar_w, label_w + legend_w) + 10, height)]
    x = float(label_w)
    for name in STABILITY_CLASSES:
        out.append(
            f'<rect x="{x}" y="4" width="10" height="10" fill="{_AGREEMENT_COLOURS[name]}"/>'
        )
        out.append(_text(x + 14, 13, name.replace("_", " "), anchor="start"))
        x += 14 + 7 * len(name) + 8
    for i, (template, counts) in enumerate(sorted(per_template.items())):
        y = 30 + i * (bar_h + 8)
        total = sum(counts.values())
        out.append(_text(label_w - 6, y + bar_h / 2 + 4, f"{template} ({total})", anchor="end"))
        x = float(label_w)
        for name in STABILITY_CLASSES:
            if not counts[name]:
                continue
            w = bar_w * counts[name] / total
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}"'
                f' fill="{_AGREEMENT_COLOURS[name]}"><title>{name}: {counts[name]}</title></rect>'
            )
            if w > 18:
                ink = "#fff" if name in ("high_agreement", "poor_agreement") else "#222"
                out.append(
                    f'<text x="{x + w / 2:.1f}" y="{y + bar_h / 2 + 4:.1f}" text-anchor="middle"'
                    f' style="fill:{ink}">{counts[name]}</text>'
                )
            x += w
    out.append("</svg>")
    return f"<figure>{''.join(out)}</figure>"


def _best_essays(report: Report) -> str:
    rows = [r for r in report.tables["essay_pivot"].rows if r["mean_unit"] is not None]
    rows.sort(key=lambda r: (-r["mean_unit"], r["essay_gen_id"]))
    if not rows:
        return "<p>no scored essays</p>"
    return (
        '<p class="note">Top 10 essays by mean_unit (every scored evaluation of the essay, each'
        " mapped to 0-1 on its template's scale). The full pivot is essay_pivot.csv.</p>"
        + _table(
            [
                "essay",
                "combination",
                "draft template",
                "essay template",
                "generation model",
                "mean",
                "std",
                "n",
                "judges",
                "mean_unit",
            ],
            [
                [
                    r["essay_gen_id"],
                    r["combo_id"],
                    r["draft_template"],
                    r["essay_template"],
                    r["generation_model"] + (" (copy)" if r["essay_mode"] == "copy" else ""),
                    r["mean"],
                    r["std"],
                    r["n"],
                    r["judges"],
                    r["mean_unit"],
                ]
                for r in rows[:10]
            ],
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


def _generation_heatmaps(
    scored: list[dict[str, Any]],
) -> list[tuple[str, dict[tuple[str, str], tuple[float, float | None, int]]]]:
    out = []
    for template in sorted({r["evaluation_template"] for r in scored}):
        cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in scored:
            if r["evaluation_template"] == template:
                cells.setdefault((r["essay_template"], r["generation_model"]), []).append(r)
        out.append((template, {k: _cell(v) for k, v in cells.items()}))
    return out


def _judge_cells(
    results: list[dict[str, Any]],
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
