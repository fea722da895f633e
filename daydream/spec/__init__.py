"""The cohort spec DSL: load a YAML/JSON spec, validate it, compile it to rows.

A spec declares **axes** (named lists of levels) and **rules** that couple axes; compiling
it yields one row per point of the Cartesian product of what the rules leave, each row a
mapping column -> value that the planner turns into generations (docs/spec.md)::

    axes:                                        # inline list, or "@file:relative/path"
      draft_template: [creative-v1, creative-v2]
      draft_llm: "@file:items/llms.csv"
      combo_id: {concepts: [a, b, c], k: 2}      # a pool: every 2-subset becomes a combo
    rules:                                       # applied in the order written
      subsets: {draft_llm: [sonnet-4]}           # keep only these levels
      ties:    {same: [essay_llm, draft_llm]}    # these axes always take the same value
      pairs:   {p: {left: a, right: b, allowed: [[x, y]], balance: left}}
      tuples:  {t: {axes: [c, d], items: [[x, y]]}}  # c and d take their levels from items
    output: {field_order: [draft_template, draft_llm], seed: 7}

Invariants:

- Rules apply in declaration order (sections in mapping order, entries in order). A tie,
  pair or tuple replaces the axes it couples by one *slot*, placed where the first of them
  was, whose levels are the coupled values. Rows are ``itertools.product`` over the slots,
  first slot slowest, so the row order and the seeded shuffle are the upstream compiler's.
- Every declared axis (explicit or tuple-derived) is a column of every row, and nothing
  else is: a coupled slot expands back into its axes, a tie gives each tied axis the value.
- Columns: ``field_order`` (default: the axes in declaration order), then the other axes in
  the order upstream's expansion appends them.
- Everything is checked when the spec is loaded, so compiling cannot fail. Rows are made
  lazily and counted without being made; only a seeded shuffle holds the product in memory.
- Every failure is one ``SpecError`` line: the spec file, the key path, what is wrong, the fix.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from itertools import islice
from pathlib import Path
from typing import Any, Literal, TextIO

from daydream.spec.model import (
    COLUMN_ALIASES,
    REPLICATE_COLUMNS,
    STAGE_COLUMNS,
    CompiledRows,
    DerivedCombo,
    PairRule,
    Rule,
    Spec,
    SubsetRule,
    TieRule,
    TupleRule,
    _q,
    misspelt_columns,
    normalise_row,
)
from daydream.spec.parse import SpecParser
from daydream.spec.reading import _Invalid, _load_data

__all__ = [
    "COLUMN_ALIASES",
    "REPLICATE_COLUMNS",
    "STAGE_COLUMNS",
    "CompiledRows",
    "DerivedCombo",
    "PairRule",
    "Rule",
    "Spec",
    "SubsetRule",
    "TieRule",
    "TupleRule",
    "compile_rows",
    "load_spec",
    "misspelt_columns",
    "normalise_row",
    "parse_spec_mapping",
    "write_rows",
]


def load_spec(path: str | Path) -> Spec:
    """Read, validate and resolve the spec file ``path`` (.yaml, .yml or .json)."""
    path = Path(path)
    parser = SpecParser(path, path.parent)
    if path.is_dir():
        parser.fail(
            None, f"is a directory; pass the spec file itself (e.g. {path / 'config.yaml'})"
        )
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        parser.fail(None, f"unsupported spec format {_q(suffix)}; use .yaml, .yml or .json")
    if not path.is_file():
        parser.fail(None, "file not found; check the path")
    try:
        data = _load_data(parser.read_text(path, None), suffix)
    except _Invalid as exc:
        parser.fail(None, str(exc))
    try:
        return parser.parse({} if data is None else data)
    except RecursionError:  # a value nested thousands deep (YAML anchors can do it cheaply)
        parser.fail(None, "nested too deeply to read; a spec needs a few levels at most")


def parse_spec_mapping(mapping: Mapping[str, Any], *, source: Path | None = None) -> Spec:
    """Validate an in-memory spec; ``@file`` paths resolve against ``source``'s directory."""
    source = Path(source) if source is not None else None
    return SpecParser(source, source.parent if source is not None else Path(".")).parse(mapping)


def compile_rows(spec: Spec, *, seed: int | None = None) -> CompiledRows:
    """The rows of ``spec``; ``seed`` (default ``output.seed``) shuffles them as upstream did."""
    if seed is None:
        seed = spec.seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an integer, not {seed!r}")
    return CompiledRows(spec, seed)


def write_rows(
    rows: CompiledRows,
    out: TextIO,
    fmt: Literal["csv", "jsonl"] = "csv",
    limit: int | None = None,
) -> int:
    """Write at most ``limit`` rows (None: all) as CSV with a header, or JSON lines."""
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"unknown format {fmt!r} (use csv or jsonl)")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    written = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(rows.columns)
        for row in islice(rows, limit):
            writer.writerow(row.values())
            written += 1
    else:
        for row in islice(rows, limit):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
    return written


