"""The pieces the HTML report is drawn with: SVG elements, figures, tables and the colour
scale. Every string put into the page is escaped here."""

from __future__ import annotations

import math
from collections.abc import Iterable
from html import escape
from typing import Any

TEXT_CELL = '<td class="t">'


def svg_open(width: float, height: float) -> str:
    return (
        f'<svg width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}"'
        ' role="img">'
    )


def svg_line(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#999"/>'


def svg_text(x: float, y: float, label: str, *, anchor: str) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{escape(label)}</text>'


def unit_colour(unit: float | None) -> tuple[str, str]:
    """Light (low) to dark blue (high); grey when the scale is unknown."""
    if unit is None or math.isnan(unit):
        return "#dddddd", "#222"
    unit = min(1.0, max(0.0, unit))
    light, dark = (239, 243, 250), (23, 63, 125)
    rgb = [round(a + (b - a) * unit) for a, b in zip(light, dark, strict=True)]
    return "#{:02x}{:02x}{:02x}".format(*rgb), "#fff" if unit > 0.55 else "#222"


def figure(caption: str, body: str) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>{body}</figure>"


def charts(figures: Iterable[str]) -> str:
    body = "".join(figures)
    return f'<div class="charts">{body}</div>' if body else "<p>no scores</p>"


def table(header: list[str], rows: list[list[Any]], *, body: str = "") -> str:
    """A table of ``rows`` (text cells left-aligned), or of ready-made ``body`` rows."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = body or "".join(row(values) for values in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def row(values: list[Any]) -> str:
    return (
        "<tr>"
        + "".join(
            (TEXT_CELL if isinstance(v, str) else "<td>")
            + escape("" if v is None else str(v))
            + "</td>"
            for v in values
        )
        + "</tr>"
    )
