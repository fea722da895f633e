"""The HTML report's sections on what the numbers support: means with their 95% intervals
drawn as error bars, judge reliability, and the judges' calibration against human ratings.

Error bars are drawn on the 0-1 unit scale (``mean_unit`` and its interval), so groups
that mix rubrics of different scales share one axis; the label gives the mean on the
scores' own scale with its interval and n.
"""

from __future__ import annotations

from html import escape
from typing import Any

from daydream.results.markup import charts, figure, svg_line, svg_open, svg_text, table

# (analysis type, the axis columns that name a group, the chart's caption)
ERROR_BAR_AXES = (
    ("by_essay_template", ("essay_template",), "essay template"),
    ("by_generation_model", ("generation_model",), "generation model"),
    ("by_draft_template", ("draft_template",), "draft template"),
    ("by_evaluation_model", ("evaluation_model",), "judge model"),
    ("by_evaluation_template", ("evaluation_template",), "evaluation template"),
    (
        "by_essay_template_and_generation_model",
        ("essay_template", "generation_model"),
        "essay template x generation model",
    ),
)

_INK = "#1f4e8c"


def inference_sections(tables: dict[str, Any]) -> list[str]:
    """The headed sections: error bars, judge reliability, calibration against humans."""
    calibration = tables["judge_calibration"].rows if "judge_calibration" in tables else []
    return [
        "<h2>Means with 95% confidence intervals</h2>",
        intervals_section(tables["final_results"].rows),
        "<h2>Judge reliability</h2>",
        reliability_section(tables["judge_reliability"].rows),
        "<h2>Judges against human ratings</h2>",
        calibration_section(calibration),
    ]


def intervals_section(results: list[dict[str, Any]]) -> str:
    """Error-bar charts of the per-axis means, one per axis with two or more groups."""
    figures = []
    for analysis, keys, caption in ERROR_BAR_AXES:
        rows = [r for r in results if r["analysis_type"] == analysis]
        if len(rows) >= 2 and any(r["mean_unit"] is not None for r in rows):
            labels = [" x ".join(str(r[k]) for k in keys) for r in rows]
            figures.append(figure(f"by {caption}", error_bars(labels, rows)))
    note = (
        '<p class="note">Each dot is a group\'s mean on the 0-1 unit scale (scores mapped onto'
        " their own rubric's scale); the bar is its 95% interval, a bootstrap that resamples"
        " combinations, the unit shared across groups. Overlapping bars do not prove two"
        " groups equal, and separate bars are not a paired test: use daydream compare for"
        " that. No bar: fewer than two combinations.</p>"
    )
    return note + charts(figures)


def error_bars(labels: list[str], rows: list[dict[str, Any]]) -> str:
    """Horizontal dot-and-whisker chart on 0-1, one row per group."""
    label_w = max(120, 7 * max(len(label) for label in labels))
    plot_w, row_h, head, value_w = 320, 24, 22, 190
    width = label_w + plot_w + value_w
    height = head + row_h * len(rows) + 8
    out = [svg_open(width, height)]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = label_w + plot_w * tick
        out.append(svg_line(x, head - 4, x, height - 6))
        out.append(svg_text(x, head - 8, f"{tick:g}", anchor="middle"))
    for i, (label, row) in enumerate(zip(labels, rows, strict=True)):
        y = head + i * row_h + row_h / 2
        out.append(svg_text(label_w - 8, y + 4, label, anchor="end"))
        unit = row["mean_unit"]
        if unit is not None:
            low, high = row.get("mean_unit_ci_low"), row.get("mean_unit_ci_high")
            if low is not None and high is not None:
                x1, x2 = label_w + plot_w * _clip(low), label_w + plot_w * _clip(high)
                out.append(
                    f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}"'
                    f' stroke="{_INK}" stroke-width="2"/>'
                )
                for x in (x1, x2):
                    out.append(
                        f'<line x1="{x:.1f}" y1="{y - 5:.1f}" x2="{x:.1f}" y2="{y + 5:.1f}"'
                        f' stroke="{_INK}" stroke-width="2"/>'
                    )
            cx = label_w + plot_w * _clip(unit)
            out.append(
                f'<circle cx="{cx:.1f}" cy="{y:.1f}" r="4" fill="{_INK}">'
                f"<title>{escape(label)}: {escape(_describe(row))}</title></circle>"
            )
        out.append(svg_text(label_w + plot_w + 8, y + 4, _describe(row), anchor="start"))
    out.append("</svg>")
    return "".join(out)


def reliability_section(rows: list[dict[str, Any]]) -> str:
    """The judge reliability table (the report's headline on agreement)."""
    if not rows:
        return "<p>no scores</p>"
    return (
        '<p class="note">Per rubric: Krippendorff\'s alpha (interval data; 1 perfect, 0 chance;'
        " &ge; 0.8 reliable, &ge; 0.667 tentative, below unreliable) and an intraclass"
        " correlation over the essays every coder scored: ICC(2,1) between judge models,"
        " ICC(1,1) between replicates of one judge.</p>"
        + table(
            ["evaluation template", "between", "coders", "essays", "alpha", "reading", "ICC", "form", "ICC essays"],
            [
                [
                    r["evaluation_template"],
                    "judge models"
                    if r["evaluation_model"] is None
                    else f"replicates of {r['evaluation_model']}",
                    r["coders"],
                    r["essays"],
                    r["alpha"],
                    r["alpha_reading"],
                    r["icc"],
                    r["icc_form"],
                    r["icc_essays"],
                ]
                for r in rows
            ],
        )
    )


def calibration_section(rows: list[dict[str, Any]]) -> str:
    """Each judge against the human raters' mean, per rubric."""
    if not rows:
        return (
            '<p class="note">No human ratings. Export a sheet with daydream label export,'
            " have raters fill its score column, and record it with daydream label import.</p>"
        )
    return (
        '<p class="note">Per rubric and judge, over the essays both the judge and at least one'
        " human rated: rank correlations with the human mean (Spearman, Kendall), the mean"
        " bias (judge minus human mean, on the rubric's scale), alpha of the judge together"
        " with the human raters, and alpha of the humans alone (the ceiling).</p>"
        + table(
            ["evaluation template", "judge", "essays", "raters", "Spearman", "Kendall", "mean bias", "alpha with humans", "human alpha"],
            [
                [
                    r["evaluation_template"],
                    r["evaluation_model"],
                    r["essays"],
                    r["raters"],
                    r["spearman"],
                    r["kendall"],
                    r["mean_bias"],
                    r["alpha_with_humans"],
                    r["human_alpha"],
                ]
                for r in rows
            ],
        )
    )


def interval_text(row: dict[str, Any]) -> str:
    """``low-high`` of a group's mean, or empty without an interval."""
    if row.get("ci_low") is None:
        return ""
    return f"{row['ci_low']:g} to {row['ci_high']:g}"


def _describe(row: dict[str, Any]) -> str:
    interval = interval_text(row)
    return f"{row['mean']:g}" + (f" [{interval}]" if interval else "") + f" n={row['count']}"


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))
