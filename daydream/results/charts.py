"""The report page's charts: SVG strings drawn by hand, with no script and no URL, so
the page stays one self-contained file.

- ``histogram``: a score distribution over a template's declared scale;
- ``heatmap``: a grid of cells coloured by the 0-1 unit mean and labelled ``mean (n)``;
- ``agreement``: per evaluation template, how many essays fall in each stability class.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from daydream.results.markup import svg_line, svg_open, svg_text, unit_colour
from daydream.results.scores import STABILITY_CLASSES

_BAR = "#4a78b5"
_AGREEMENT_COLOURS = {
    "high_agreement": "#2e7d32",
    "moderate_agreement": "#9ccc65",
    "low_agreement": "#ffb300",
    "poor_agreement": "#e53935",
    "insufficient_data": "#bdbdbd",
}


def histogram(scores: list[float], low: float | None, high: float | None) -> str:
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
    out = [svg_open(width, height)]
    out.append(svg_line(left, height - bottom, width - 4, height - bottom))
    for i, (count, label) in enumerate(zip(counts, labels, strict=True)):
        x = left + i * bar
        h = (height - bottom - top) * count / peak
        y = height - bottom - h
        if count:
            out.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{h:.1f}"'
                f' fill="{_BAR}"><title>{escape(label)}: {count}</title></rect>'
            )
            out.append(svg_text(x + bar / 2, y - 3, str(count), anchor="middle"))
        out.append(svg_text(x + bar / 2, height - bottom + 14, label, anchor="middle"))
    out.append(svg_text(2, top, "n", anchor="start"))
    out.append("</svg>")
    return "".join(out)


def heatmap(cells: dict[tuple[str, str], tuple[float, float | None, int]]) -> str:
    rows = sorted({r for r, _ in cells})
    cols = sorted({c for _, c in cells})
    if not rows:
        return "<p>no scores</p>"
    label_w = max(90, 7 * max(len(r) for r in rows))
    cell_w = max(70, 7 * max(len(c) for c in cols))
    cell_h, head = 30, 24
    width = label_w + cell_w * len(cols) + 4
    height = head + cell_h * len(rows) + 4
    out = [svg_open(width, height)]
    for j, col in enumerate(cols):
        out.append(svg_text(label_w + (j + 0.5) * cell_w, head - 8, col, anchor="middle"))
    for i, row in enumerate(rows):
        y = head + i * cell_h
        out.append(svg_text(label_w - 6, y + cell_h / 2 + 4, row, anchor="end"))
        for j, col in enumerate(cols):
            x = label_w + j * cell_w
            if (row, col) not in cells:
                out.append(
                    f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="#f4f4f4"/>'
                )
                continue
            mean, unit, n = cells[(row, col)]
            colour, ink = unit_colour(unit)
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


def agreement(rows: Sequence[dict[str, Any]]) -> str:
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
    out = [svg_open(max(label_w + bar_w, label_w + legend_w) + 10, height)]
    x = float(label_w)
    for name in STABILITY_CLASSES:
        out.append(
            f'<rect x="{x}" y="4" width="10" height="10" fill="{_AGREEMENT_COLOURS[name]}"/>'
        )
        out.append(svg_text(x + 14, 13, name.replace("_", " "), anchor="start"))
        x += 14 + 7 * len(name) + 8
    for i, (template, counts) in enumerate(sorted(per_template.items())):
        y = 30 + i * (bar_h + 8)
        total = sum(counts.values())
        out.append(svg_text(label_w - 6, y + bar_h / 2 + 4, f"{template} ({total})", anchor="end"))
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
