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
import io
import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain, combinations, islice, pairwise, product
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, NoReturn, TextIO

import yaml

from daydream.catalog import LEVELS, combo_id_for
from daydream.errors import SpecError

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
    "normalise_row",
    "parse_spec_mapping",
    "write_rows",
]

Level = str | int | float
Value = Level | tuple[Any, ...]  # a pair or tuple slot's values are (nested) tuples
Row = dict[str, Level]

TOP_LEVEL_KEYS = ("name", "description", "axes", "rules", "output")
RULE_SECTIONS = ("subsets", "ties", "pairs", "tuples")
COMBO_AXIS = "combo_id"
MAX_COMBOS = 1_000_000
_RULE_KEYS = {
    "ties": ("axes",),
    "pairs": ("left", "right", "allowed", "balance"),
    "tuples": ("axes", "items"),
    "combo": ("concepts", "k", "k_min", "k_max", "level"),
    "output": ("field_order", "seed"),
}
_KEY_HINTS = {
    ("ties", "to"): "; a tie is named by its mapping key",
    ("tuples", "expand"): "; a tuple always expands into its axes",
}
_MISSING_HINTS = {
    "left": "name the left axis",
    "right": "name the right axis",
    "allowed": "list the allowed [left, right] pairs",
    "axes": "list the axes",
    "items": "list the items, one value per axis",
}
_INCLUDE = "@file:"
_INCLUDE_SUFFIXES = (".csv", ".txt", ".yaml", ".yml", ".json")

# The planner's contract: canonical column -> the names a row may use for it, in priority order.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "combo_id": ("combo_id", "combo"),
    "draft_id": ("draft_id",),
    "essay_id": ("essay_id",),
    "draft_template": ("draft_template",),
    "draft_llm": ("draft_llm", "draft_model", "generation_llm"),
    "draft_replicate": ("draft_replicate", "draft_template_replicate", "draft_rep"),
    "essay_template": ("essay_template",),
    "essay_llm": ("essay_llm",),
    "essay_replicate": ("essay_replicate", "essay_template_replicate", "essay_rep"),
    "evaluation_template": ("evaluation_template",),
    "evaluation_llm": ("evaluation_llm",),
    "evaluation_replicate": (
        "evaluation_replicate",
        "evaluation_template_replicate",
        "evaluation_llm_replicate",
        "evaluation_rep",
    ),
}
STAGE_COLUMNS: dict[str, tuple[str, ...]] = {
    stage: (f"{stage}_template", f"{stage}_llm", f"{stage}_replicate")
    for stage in ("draft", "essay", "evaluation")
}
REPLICATE_COLUMNS = ("draft_replicate", "essay_replicate", "evaluation_replicate")
_CANONICAL = {alias: column for column, aliases in COLUMN_ALIASES.items() for alias in aliases}


@dataclass(frozen=True)
class DerivedCombo:
    """A concept combination enumerated by a ``combo_id`` pool axis (concepts in pool order)."""

    concepts: tuple[str, ...]
    level: str
    k_max: int


@dataclass(frozen=True)
class SubsetRule:
    axis: str
    keep: tuple[Level, ...]


@dataclass(frozen=True)
class TieRule:
    name: str
    axes: tuple[str, ...]


@dataclass(frozen=True)
class PairRule:
    name: str
    left: str
    right: str
    allowed: tuple[tuple[Value, Value], ...]
    balance: str | None = None


@dataclass(frozen=True)
class TupleRule:
    name: str
    axes: tuple[str, ...]
    items: tuple[tuple[Level, ...], ...]


Rule = SubsetRule | TieRule | PairRule | TupleRule


@dataclass(frozen=True, eq=False)
class _Node:
    """What a slot's value expands into: an axis, or a tie/pair/tuple of nodes."""

    name: str
    kind: Literal["axis", "tie", "pair", "tuple"] = "axis"
    members: tuple[_Node, ...] = ()
    rank: int = 0  # the rule's position: orders the expansion of the non-field_order columns

    def leaves(self) -> tuple[str, ...]:
        if self.kind == "axis":
            return (self.name,)
        return tuple(chain.from_iterable(m.leaves() for m in self.members))

    def flatten(self, value: Value) -> tuple[Level, ...]:
        """The values of ``leaves()`` for one level of this node."""
        if self.kind == "axis":
            return (value,)  # type: ignore[return-value]
        if self.kind == "tie":
            return tuple(chain.from_iterable(m.flatten(value) for m in self.members))
        return tuple(
            chain.from_iterable(
                m.flatten(v)
                for m, v in zip(self.members, value, strict=True)  # type: ignore[arg-type]
            )
        )


@dataclass(frozen=True)
class _Slot:
    node: _Node
    levels: tuple[Value, ...]


@dataclass(frozen=True)
class Spec:
    """A loaded, validated spec. ``axes`` holds the declared levels (tuple-derived axes last)."""

    source: Path | None
    axes: dict[str, tuple[Level, ...]]
    rules: tuple[Rule, ...]
    field_order: tuple[str, ...]
    seed: int | None = None
    derived_combos: dict[str, DerivedCombo] = field(default_factory=dict)
    name: str | None = None
    description: str | None = None
    _slots: tuple[_Slot, ...] = field(default=(), repr=False, compare=False)
    _columns: tuple[str, ...] = field(default=(), repr=False, compare=False)


class CompiledRows:
    """A spec's rows: lazy, re-iterable, counted without being made."""

    def __init__(self, spec: Spec, seed: int | None) -> None:
        self.spec = spec
        self.seed = seed
        self.columns: list[str] = list(spec._columns)
        self.count: int = math.prod(len(slot.levels) for slot in spec._slots)
        leaves = [leaf for slot in spec._slots for leaf in slot.node.leaves()]
        self._positions = [leaves.index(column) for column in self.columns]
        self._slot_values = [
            tuple(slot.node.flatten(level) for level in slot.levels) for slot in spec._slots
        ]

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Row]:
        points: Iterable[tuple[tuple[Level, ...], ...]] = product(*self._slot_values)
        if self.seed is not None:
            # Upstream shuffles the product list itself; the permutation depends only on
            # its length, so this reproduces its order exactly.
            points = list(points)
            random.Random(self.seed).shuffle(points)
        columns = self.columns
        if self._positions == list(range(len(columns))):
            for point in points:
                yield dict(zip(columns, chain.from_iterable(point), strict=True))
            return
        pick = itemgetter(*self._positions)
        for point in points:
            yield dict(zip(columns, pick(tuple(chain.from_iterable(point))), strict=True))


def load_spec(path: str | Path) -> Spec:
    """Read, validate and resolve the spec file ``path`` (.yaml, .yml or .json)."""
    path = Path(path)
    parser = _Parser(path, path.parent)
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
    return parser.parse({} if data is None else data)


def parse_spec_mapping(mapping: Mapping[str, Any], *, source: Path | None = None) -> Spec:
    """Validate an in-memory spec; ``@file`` paths resolve against ``source``'s directory."""
    source = Path(source) if source is not None else None
    return _Parser(source, source.parent if source is not None else Path(".")).parse(mapping)


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


def normalise_row(row: Mapping[str, Any], *, row_number: int | None = None) -> dict[str, Any]:
    """Map a row's alias columns to canonical names (COLUMN_ALIASES) for the planner.

    Text values become stripped strings (blank or null: None); replicates become ints >= 1
    (default 1, always present). Other columns pass through. Two aliases of one column with
    different values, or a bad replicate, raise SpecError naming the row.
    """
    kinds = _COLUMN_KINDS.get(keys := tuple(row))
    if kinds is None:
        kinds = _column_kinds(keys)
    if not kinds:
        return _normalise_aliased(row, row_number)
    # The planner calls this for every one of up to millions of rows: one pass, no alias
    # bookkeeping (no column has two aliases here), error text built only on error.
    out: dict[str, Any] = {}
    for (column, canonical, kind), raw in zip(kinds, row.values(), strict=True):
        if kind == _TEXT:
            if raw is None:
                out[canonical] = None
            else:
                out[canonical] = (raw if type(raw) is str else str(raw)).strip() or None
        elif kind == _PASS:
            out[column] = raw
        elif type(raw) is int and raw >= 1:
            out[canonical] = raw
        else:
            at = f"row {row_number}: " if row_number is not None else ""
            out[canonical] = _replicate(raw, f"{at}{column}")
    for column in REPLICATE_COLUMNS:
        if out.get(column) is None:
            out[column] = 1
    return out


_PASS, _TEXT, _REPLICATE = 0, 1, 2
_COLUMN_KINDS: dict[tuple[str, ...], tuple[tuple[str, str, int], ...]] = {}


def _column_kinds(keys: tuple[str, ...]) -> tuple[tuple[str, str, int], ...]:
    """Per column (column, canonical, kind); empty when two columns alias one canonical."""
    canonicals = [_CANONICAL[key] for key in keys if key in _CANONICAL]
    if len(set(canonicals)) < len(canonicals):
        kinds: tuple[tuple[str, str, int], ...] = ()
    else:
        kinds = tuple((key, _CANONICAL.get(key, key), _kind(key)) for key in keys)
    if len(_COLUMN_KINDS) > 64:
        _COLUMN_KINDS.clear()
    _COLUMN_KINDS[keys] = kinds
    return kinds


def _kind(column: str) -> int:
    if column not in _CANONICAL:
        return _PASS
    return _REPLICATE if _CANONICAL[column] in REPLICATE_COLUMNS else _TEXT


def _normalise_aliased(row: Mapping[str, Any], row_number: int | None) -> dict[str, Any]:
    at = f"row {row_number}: " if row_number is not None else ""
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    value: Any
    for column, raw in row.items():
        canonical = _CANONICAL.get(column)
        if canonical is None:
            out[column] = raw
            continue
        if canonical in REPLICATE_COLUMNS:
            value = _replicate(raw, f"{at}{column}")
        else:
            value = (str(raw).strip() or None) if raw is not None else None
        previous = out.get(canonical)
        if value is None:
            out.setdefault(canonical, None)
        elif previous is not None and previous != value:
            raise SpecError(
                f"{at}columns {origin[canonical]} and {column} disagree"
                f" ({_q(previous)} vs {_q(value)}); keep one of them"
            )
        else:
            out[canonical], origin[canonical] = value, column
    for column in REPLICATE_COLUMNS:
        if out.get(column) is None:
            out[column] = 1
    return out


def _replicate(raw: Any, where: str) -> int | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1:
        return raw
    if isinstance(raw, str) and re.fullmatch(r"[0-9]+", raw.strip()) and int(raw) >= 1:
        return int(raw)
    raise SpecError(f"{where}: {_q(raw)} is not a replicate number; use an integer >= 1")


# -- parsing ------------------------------------------------------------------------------


class _Invalid(Exception):
    """A YAML/JSON syntax problem; the caller says where."""


@dataclass
class _Listing:
    """A list from the spec or an @file, with where each value came from."""

    key: str
    values: list[Any]
    shorts: list[str]  # "[3]", "line 4", "item 3"
    file: str | None = None
    header: tuple[str, ...] | None = None  # CSV includes only; values are then tuples

    def at(self, index: int) -> str:
        if self.file is None:
            return f"{self.key}{self.shorts[index]}"
        return f'{self.key}: @file "{self.file}" {self.shorts[index]}'

    def empty(self, what: str) -> str:
        if self.file is None:
            return f"has no {what}; list at least one"
        return f'@file "{self.file}" has no {what}; add at least one'


@dataclass(frozen=True)
class _Entry:
    rule: Rule
    key: str
    labels: tuple[str, ...] = ()  # where each keep value or allowed pair came from


class _Parser:
    def __init__(self, source: Path | None, base_dir: Path) -> None:
        self.source = source
        self.display = str(source) if source is not None else "<mapping>"
        self.base_dir = base_dir

    def fail(self, where: str | None, detail: str) -> NoReturn:
        at = f"{where}: " if where else ""
        raise SpecError(f"spec {self.display}: {at}{detail}")

    def parse(self, data: Any) -> Spec:
        if not isinstance(data, Mapping):
            self.fail(
                None,
                f"the top level must be a mapping with axes, rules and output (got {_describe(data)})",
            )
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                self.fail(
                    None, f"unknown top-level key {_q(key)} (allowed: {', '.join(TOP_LEVEL_KEYS)})"
                )
        name, description = (self._text(data.get(k), k) for k in ("name", "description"))
        entries = self._rules(data.get("rules"))
        owners = self._tuple_owners(entries)
        axes, combos = self._axes(data.get("axes"), owners)
        for entry in entries:
            if isinstance(entry.rule, TupleRule):
                for index, axis in enumerate(entry.rule.axes):
                    axes.setdefault(axis, _unique(item[index] for item in entry.rule.items))
        if not axes:
            self.fail("axes", "no axes declared; declare at least one axis or a tuples rule")
        self._check_names(entries, axes)
        field_order, seed = self._output(data.get("output"), axes)
        design = _Design(self, axes, entries)
        for rank, entry in enumerate(entries, 1):
            design.apply(entry, rank)
        return Spec(
            source=self.source,
            axes=axes,
            rules=tuple(entry.rule for entry in entries),
            field_order=field_order,
            seed=seed,
            derived_combos=combos,
            name=name,
            description=description,
            _slots=tuple(design.slots),
            _columns=_column_order(design.slots, field_order),
        )

    def _text(self, raw: Any, key: str) -> str | None:
        if raw is not None and not isinstance(raw, str):
            self.fail(key, f"must be a string (got {_describe(raw)})")
        return raw

    # axes

    def _axes(
        self, raw: Any, owners: dict[str, str]
    ) -> tuple[dict[str, tuple[Level, ...]], dict[str, DerivedCombo]]:
        raw = {} if raw is None else raw
        if not isinstance(raw, Mapping):
            self.fail("axes", f"must be a mapping of axis name to levels (got {_describe(raw)})")
        axes: dict[str, tuple[Level, ...]] = {}
        combos: dict[str, DerivedCombo] = {}
        for name, value in raw.items():
            if not isinstance(name, str):
                self.fail("axes", f"axis name {_q(name)} must be a string; quote it")
            key = f"axes.{name}"
            if name in owners:
                self.fail(
                    key, f"tuple {_q(owners[name])} gives this axis its levels; remove it from axes"
                )
            if value is None:
                self.fail(key, 'is null; give a list of levels or "@file:path"')
            if isinstance(value, Mapping):
                if name != COMBO_AXIS:
                    self.fail(
                        key,
                        'must be a list of levels or "@file:path" (got a mapping; only combo_id takes {concepts, k})',
                    )
                combos = self._combo_pool(value, key)
                axes[name] = tuple(combos)
            else:
                axes[name] = self._levels(
                    self._listing(value, key),
                    "an axis takes a single-column CSV (couple columns with a tuples rule)",
                )
        return axes, combos

    def _combo_pool(self, raw: Mapping[str, Any], key: str) -> dict[str, DerivedCombo]:
        self._check_keys(raw, "combo", key)
        if "concepts" not in raw:
            self.fail(key, 'missing "concepts"; list concept ids or give "@file:path"')
        listing = self._listing(raw["concepts"], f"{key}.concepts")
        pool = self._levels(listing, "a concept pool takes a single-column CSV", what="concept")
        for index, concept in enumerate(pool):
            if not isinstance(concept, str):
                self.fail(
                    listing.at(index), f"concept ids are strings (got {_q(concept)}); quote it"
                )
        if "k" in raw:
            if "k_min" in raw or "k_max" in raw:
                self.fail(key, "give either k, or k_min and k_max, not both")
            k_min = k_max = self._size(raw["k"], f"{key}.k")
            k_key = f"{key}.k"
        elif "k_min" in raw and "k_max" in raw:
            k_min, k_max = (
                self._size(raw["k_min"], f"{key}.k_min"),
                self._size(raw["k_max"], f"{key}.k_max"),
            )
            if k_min > k_max:
                self.fail(f"{key}.k_min", f"{k_min} is more than k_max ({k_max}); swap them")
            k_key = f"{key}.k_min"
        else:
            missing = "k_min" if "k_max" in raw else "k_max" if "k_min" in raw else "k"
            self.fail(
                key, f'missing "{missing}"; give k (concepts per combination), or k_min and k_max'
            )
        if k_min > len(pool):  # k_max may exceed the pool: it is only part of the id
            self.fail(
                k_key,
                f"{k_min} is more than the {len(pool)} concepts in the pool; lower it or add concepts",
            )
        level = raw.get("level", "paragraph")
        if not isinstance(level, str) or level not in LEVELS:
            self.fail(
                f"{key}.level", f"{_q(level)} is not a description level (use {', '.join(LEVELS)})"
            )
        sizes = range(k_min, min(k_max, len(pool)) + 1)
        total = sum(math.comb(len(pool), k) for k in sizes)
        if total > MAX_COMBOS:
            self.fail(
                key,
                f"{total} combinations is more than the limit of {MAX_COMBOS}; narrow the pool or k",
            )
        combos: dict[str, DerivedCombo] = {}
        for k in sizes:
            for chosen in combinations(pool, k):
                concepts = tuple(str(c) for c in chosen)
                combos[combo_id_for(concepts, level, k_max)] = DerivedCombo(concepts, level, k_max)
        return combos

    def _size(self, raw: Any, key: str) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            self.fail(key, f"must be an integer >= 1 (got {_describe(raw)})")
        return raw

    # lists and @file includes

    def _listing(self, raw: Any, key: str) -> _Listing:
        if isinstance(raw, str) and raw.startswith(_INCLUDE):
            return self._include(raw[len(_INCLUDE) :].strip(), key)
        if not isinstance(raw, list):
            self.fail(key, f'must be a list or "@file:path" (got {_describe(raw)})')
        return _Listing(key, list(raw), [f"[{i}]" for i in range(len(raw))])

    def _include(self, rel: str, key: str) -> _Listing:
        if not rel:
            self.fail(key, '"@file:" needs a path, e.g. "@file:items/levels.csv"')
        path = self.base_dir / rel
        suffix = path.suffix.lower()
        if suffix not in _INCLUDE_SUFFIXES:
            got = f"extension {_q(suffix)}" if suffix else "no extension"
            self.fail(key, f'@file "{rel}" has {got}; use .csv, .txt, .yaml, .yml or .json')
        if not path.is_file():
            self.fail(
                key,
                f'@file "{rel}" not found (looked for {path}); fix the path, which is relative to the spec\'s directory',
            )
        text = self.read_text(path, f'{key}: @file "{rel}"')
        if suffix == ".csv":
            return self._csv(text, rel, key)
        if suffix == ".txt":
            lines = [
                (n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()
            ]
            return _Listing(key, [v for _, v in lines], [f"line {n}" for n, _ in lines], rel)
        try:
            data = _load_data(text, suffix)
        except _Invalid as exc:
            self.fail(key, f'@file "{rel}" {exc}')
        data = [] if data is None else data
        if not isinstance(data, list):
            self.fail(key, f'@file "{rel}" must contain a list (got {_describe(data)})')
        return _Listing(key, data, [f"item {i}" for i in range(len(data))], rel)

    def _csv(self, text: str, rel: str, key: str) -> _Listing:
        where = f'{key}: @file "{rel}"'
        reader = csv.reader(io.StringIO(text))
        try:
            rows = [(row, reader.line_num) for row in reader]
        except csv.Error as exc:
            self.fail(f"{where} line {reader.line_num}", f"malformed CSV ({exc}); fix the quoting")
        if not rows:
            self.fail(key, f'@file "{rel}" is empty; it needs a header line and data rows')
        header = tuple(cell.strip() for cell in rows[0][0])
        if not header or not all(header):
            self.fail(
                f"{where} line {rows[0][1]}", "blank column name in the header; name every column"
            )
        for column, count in Counter(header).items():
            if count > 1:
                self.fail(
                    f"{where} line {rows[0][1]}",
                    f"column {_q(column)} appears twice in the header; rename one",
                )
        data = rows[1:]
        while data and not data[-1][0]:
            data.pop()
        if not data:
            self.fail(key, f'@file "{rel}" has a header but no data rows; add rows below it')
        values = []
        for cells, line in data:
            if not cells:
                self.fail(f"{where} line {line}", "blank line; delete it")
            if len(cells) != len(header):
                self.fail(
                    f"{where} line {line}",
                    f"{len(cells)} cells but the header has {len(header)}; give one cell per column",
                )
            cells = [cell.strip() for cell in cells]
            for column, cell in zip(header, cells, strict=True):
                if not cell:
                    self.fail(
                        f"{where} line {line}",
                        f"blank cell in column {_q(column)}; fill it or delete the line",
                    )
            values.append(tuple(cells))
        return _Listing(key, values, [f"line {line}" for _, line in data], rel, header)

    def read_text(self, path: Path, where: str | None) -> str:
        try:
            return path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            self.fail(where, f"is not valid UTF-8 (byte {exc.start}); save it as UTF-8")

    def _levels(
        self, listing: _Listing, multi_column: str, what: str = "level"
    ) -> tuple[Level, ...]:
        values = listing.values
        if listing.header is not None:
            if len(listing.header) != 1:
                columns = ", ".join(listing.header)
                self.fail(
                    listing.key,
                    f'@file "{listing.file}" has {len(listing.header)} columns ({columns}); {multi_column}',
                )
            values = [row[0] for row in values]
        if not values:
            self.fail(listing.key, listing.empty(f"{what}s"))
        for index, value in enumerate(values):
            self._check_level(listing.at(index), value)
        self._check_unique(listing, values, what)
        return tuple(values)

    def _check_level(self, where: str, value: Any) -> None:
        if isinstance(value, bool):
            self.fail(
                where,
                f"{_q(value)} is not a valid level (YAML reads true/false/yes/no/on/off as booleans); quote it",
            )
        if isinstance(value, str):
            if not value.strip():
                self.fail(where, "blank level; remove it or write a value")
        elif value is None:
            self.fail(where, "null is not a valid level; remove it or write a value")
        elif isinstance(value, (list, tuple, Mapping)):
            self.fail(where, f"{_describe(value)} is not a valid level; write a string or a number")
        elif not isinstance(value, (int, float)):
            self.fail(where, f"{_describe(value)} is not a valid level; quote it")

    def _check_unique(self, listing: _Listing, values: list[Any], what: str) -> None:
        first: dict[Any, int] = {}
        for index, value in enumerate(values):
            if value in first:
                self.fail(
                    listing.at(index),
                    f"duplicate {what} {_q(value)} (first at {listing.shorts[first[value]]}); remove one",
                )
            first[value] = index

    # rules

    def _rules(self, raw: Any) -> list[_Entry]:
        sections = "sections (subsets, ties, pairs, tuples)"
        if raw is None:
            return []
        if isinstance(raw, list):
            self.fail("rules", f"must be a mapping of {sections}, not a list")
        if not isinstance(raw, Mapping):
            self.fail("rules", f"must be a mapping of {sections} (got {_describe(raw)})")
        parse = {
            "subsets": self._subset,
            "ties": self._tie,
            "pairs": self._pair,
            "tuples": self._tuple,
        }
        entries: list[_Entry] = []
        for section, named in raw.items():
            if section not in RULE_SECTIONS:
                self.fail(
                    "rules", f"unknown section {_q(section)} (allowed: {', '.join(RULE_SECTIONS)})"
                )
            if named is None:
                continue
            if not isinstance(named, Mapping):
                self.fail(
                    f"rules.{section}",
                    f"must be a mapping of named {section} (got {_describe(named)})",
                )
            for name, payload in named.items():
                if not isinstance(name, str):
                    self.fail(f"rules.{section}", f"name {_q(name)} must be a string; quote it")
                entries.append(parse[section](name, payload, f"rules.{section}.{name}"))
        return entries

    def _subset(self, axis: str, payload: Any, key: str) -> _Entry:
        listing = self._listing(payload, key)
        keep = self._levels(listing, "a subset takes a single-column CSV")
        return _Entry(SubsetRule(axis, keep), key, tuple(listing.at(i) for i in range(len(keep))))

    def _tie(self, name: str, payload: Any, key: str) -> _Entry:
        axes_key = key
        if isinstance(payload, Mapping):
            payload = self._payload(payload, "ties", key)["axes"]
            axes_key = f"{key}.axes"
        axes = self._names(payload, axes_key)
        if len(axes) < 2:
            self.fail(axes_key, "a tie needs at least two axes")
        return _Entry(TieRule(name, axes), key)

    def _pair(self, name: str, payload: Any, key: str) -> _Entry:
        payload = self._payload(payload, "pairs", key)
        left, right = (
            self._names([payload[side]], f"{key}.{side}", one=True)[0] for side in ("left", "right")
        )
        if left == right:
            self.fail(key, f"left and right are both {_q(left)}; pair two different axes")
        balance = payload.get("balance") or None
        if balance not in (None, "left", "right", "both"):
            self.fail(f"{key}.balance", f"{_q(balance)} is not valid (use left, right or both)")
        listing = self._listing(payload["allowed"], f"{key}.allowed")
        allowed = self._rows(listing, (left, right), "pair")
        labels = tuple(listing.at(i) for i in range(len(allowed)))
        return _Entry(PairRule(name, left, right, allowed, balance), key, labels)

    def _tuple(self, name: str, payload: Any, key: str) -> _Entry:
        payload = self._payload(payload, "tuples", key)
        axes = self._names(payload["axes"], f"{key}.axes")
        items = self._rows(self._listing(payload["items"], f"{key}.items"), axes, "tuple")
        return _Entry(TupleRule(name, axes, items), key)

    def _payload(self, payload: Any, section: str, key: str) -> Mapping[str, Any]:
        keys = _RULE_KEYS[section]
        if not isinstance(payload, Mapping):
            self.fail(key, f"must be a mapping with {', '.join(keys)} (got {_describe(payload)})")
        self._check_keys(payload, section, key)
        for required in keys:
            if required != "balance" and required not in payload:
                self.fail(key, f'missing "{required}"; {_MISSING_HINTS[required]}')
        return payload

    def _check_keys(self, payload: Mapping[str, Any], section: str, key: str) -> None:
        for name in payload:
            if name not in _RULE_KEYS[section]:
                hint = _KEY_HINTS.get((section, name), "")
                self.fail(
                    key, f"unknown key {_q(name)} (allowed: {', '.join(_RULE_KEYS[section])}){hint}"
                )

    def _names(self, raw: Any, key: str, *, one: bool = False) -> tuple[str, ...]:
        if not isinstance(raw, list):
            self.fail(key, f"must be a list of axis names (got {_describe(raw)})")
        for index, name in enumerate(raw):
            where = key if one else f"{key}[{index}]"
            if not isinstance(name, str):
                self.fail(where, f"{_describe(name)} is not an axis name; write a string")
            if name in raw[:index]:
                self.fail(where, f"{_q(name)} is listed twice; list it once")
        if not raw:
            self.fail(key, "is empty; list at least one axis")
        return tuple(raw)

    def _rows(
        self, listing: _Listing, names: tuple[str, ...], kind: str
    ) -> tuple[tuple[Any, ...], ...]:
        shape = (
            "a [left, right] pair"
            if kind == "pair"
            else f"a list of {len(names)} values ({', '.join(names)})"
        )
        if listing.header is not None and listing.header != names:
            owner = "the pair's left and right" if kind == "pair" else "the tuple's axes"
            self.fail(
                listing.key,
                f'@file "{listing.file}" header ({", ".join(listing.header)}) does not match {owner}'
                f" ({', '.join(names)}); rename the columns",
            )
        if not listing.values:
            self.fail(listing.key, listing.empty("items" if kind == "tuple" else "pairs"))
        rows = []
        for index, value in enumerate(listing.values):
            where = listing.at(index)
            if not isinstance(value, (list, tuple)):
                self.fail(where, f"must be {shape} (got {_describe(value)})")
            if len(value) != len(names):
                if kind == "pair":
                    self.fail(where, f"has {len(value)} values; write {shape}")
                self.fail(
                    where,
                    f"has {len(value)} values but the tuple has {len(names)} axes ({', '.join(names)}); give one value per axis",
                )
            rows.append(tuple(self._freeze(v, where, nested=kind == "pair") for v in value))
        self._check_unique(listing, rows, "item" if kind == "tuple" else "pair")
        return tuple(rows)

    def _freeze(self, value: Any, where: str, *, nested: bool) -> Value:
        if nested and isinstance(value, (list, tuple)):
            return tuple(self._freeze(v, where, nested=True) for v in value)
        self._check_level(where, value)
        return value

    def _tuple_owners(self, entries: list[_Entry]) -> dict[str, str]:
        owners: dict[str, str] = {}
        for entry in entries:
            if isinstance(entry.rule, TupleRule):
                for axis in entry.rule.axes:
                    if axis in owners:
                        self.fail(
                            f"{entry.key}.axes",
                            f"axis {_q(axis)} is already in tuple {_q(owners[axis])}; an axis can belong"
                            " to one tuple only, so merge the two tuples into one",
                        )
                    owners[axis] = entry.rule.name
        return owners

    def _check_names(self, entries: list[_Entry], axes: dict[str, tuple[Level, ...]]) -> None:
        used = {axis: "an axis" for axis in axes}
        for entry in entries:
            rule = entry.rule
            if isinstance(rule, SubsetRule):
                continue
            kind = _KIND[type(rule)]
            if isinstance(rule, TieRule) and rule.name in rule.axes:
                continue
            if rule.name in used:
                self.fail(
                    entry.key,
                    f"the name {_q(rule.name)} is already {used[rule.name]}; rename the {kind}",
                )
            used[rule.name] = f"the name of {kind} {_q(rule.name)}"

    def _output(
        self, raw: Any, axes: dict[str, tuple[Level, ...]]
    ) -> tuple[tuple[str, ...], int | None]:
        raw = {} if raw is None else raw
        if not isinstance(raw, Mapping):
            self.fail(
                "output", f"must be a mapping with field_order and seed (got {_describe(raw)})"
            )
        self._check_keys(raw, "output", "output")
        field_order = tuple(axes)
        if raw.get("field_order") is not None:
            key = "output.field_order"
            if not isinstance(raw["field_order"], list):
                self.fail(
                    key, f"must be a list of axis names (got {_describe(raw['field_order'])})"
                )
            field_order = self._names(raw["field_order"], key) if raw["field_order"] else ()
            for index, name in enumerate(field_order):
                if name not in axes:
                    self.fail(
                        f"{key}[{index}]",
                        f"{_q(name)} is not an axis (axes: {_show(axes)}); remove it or declare the axis",
                    )
        seed = raw.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            self.fail("output.seed", f"must be an integer (got {_describe(seed)})")
        return field_order, seed


_KIND = {TieRule: "tie", PairRule: "pair", TupleRule: "tuple"}


# -- applying rules -----------------------------------------------------------------------


class _Design:
    """The slots the product runs over, as rules replace axes by coupled slots."""

    def __init__(
        self, parser: _Parser, axes: dict[str, tuple[Level, ...]], entries: list[_Entry]
    ) -> None:
        self.parser = parser
        self.axes = axes
        self.slots: list[_Slot] = [_Slot(_Node(name), levels) for name, levels in axes.items()]
        self.coupled: list[str] = []
        self.later = {e.rule.name for e in entries if not isinstance(e.rule, SubsetRule)}
        self.tuple_of = {
            a: e.rule.name for e in entries if isinstance(e.rule, TupleRule) for a in e.rule.axes
        }

    def apply(self, entry: _Entry, rank: int) -> None:
        rule = entry.rule
        if isinstance(rule, SubsetRule):
            self._subset(rule, entry)
            return
        self.later.discard(rule.name)
        if isinstance(rule, TieRule):
            indexes = [self._resolve(axis, entry.key) for axis in rule.axes]
            self._distinct(indexes, rule.axes, entry.key)
            levels = self._intersect(indexes, rule.axes, entry.key)
        elif isinstance(rule, PairRule):
            indexes = [
                self._resolve(rule.left, f"{entry.key}.left"),
                self._resolve(rule.right, f"{entry.key}.right"),
            ]
            self._distinct(indexes, (rule.left, rule.right), entry.key)
            levels = self._allowed(rule, indexes, entry)
        else:
            indexes = [self._resolve(axis, f"{entry.key}.axes") for axis in rule.axes]
            self._distinct(indexes, rule.axes, entry.key)
            domains = [set(self.slots[i].levels) for i in indexes]
            levels = tuple(
                item
                for item in rule.items
                if all(v in d for v, d in zip(item, domains, strict=True))
            )
            if not levels:
                self.parser.fail(
                    entry.key,
                    "no item is left once earlier rules narrowed its axes; keep at least one item's values",
                )
            for axis in rule.axes:
                del self.tuple_of[axis]
        members = tuple(self.slots[i].node for i in indexes)
        self._couple(indexes, _Slot(_Node(rule.name, _KIND[type(rule)], members, rank), levels))  # type: ignore[arg-type]
        self.coupled.append(rule.name)

    def _subset(self, rule: SubsetRule, entry: _Entry) -> None:
        axis = rule.axis
        if axis not in self.axes:
            self.parser.fail(
                entry.key, f"axis {_q(axis)} is not declared (declared: {_show(self.axes)})"
            )
        declared = set(self.axes[axis])
        for label, value in zip(entry.labels, rule.keep, strict=True):
            if value not in declared:
                self.parser.fail(
                    label,
                    f"{_q(value)} is not a level of {axis} (levels: {_show(self.axes[axis])}); fix the value",
                )
        index, path = self._locate(axis)  # type: ignore[misc]
        steps = [
            next(i for i, m in enumerate(parent.members) if m is child)
            for parent, child in pairwise(path)
            if parent.kind != "tie"
        ]
        slot, keep = self.slots[index], set(rule.keep)
        kept = tuple(level for level in slot.levels if _extract(level, steps) in keep)
        if not kept:
            remaining = _unique(_extract(level, steps) for level in slot.levels)
            self.parser.fail(
                entry.key,
                f"leaves no level of {axis} (remaining after earlier rules: {_show(remaining)}); keep at least one of them",
            )
        self.slots[index] = _Slot(slot.node, kept)

    def _allowed(self, rule: PairRule, indexes: list[int], entry: _Entry) -> tuple[Value, ...]:
        sides = [(rule.left, self.slots[indexes[0]]), (rule.right, self.slots[indexes[1]])]
        domains = [set(slot.levels) for _, slot in sides]
        for label, pair in zip(entry.labels, rule.allowed, strict=True):
            for (axis, slot), domain, value in zip(sides, domains, pair, strict=True):
                if value not in domain:
                    self.parser.fail(
                        label,
                        f"{_q(value)} is not a level of {axis} (levels: {_show(slot.levels)}); fix the value",
                    )
        if rule.balance:
            for side in ("left", "right"):
                if rule.balance not in (side, "both"):
                    continue
                counts = Counter(pair[0 if side == "left" else 1] for pair in rule.allowed)
                if len(set(counts.values())) > 1:
                    shown = ", ".join(f"{_plain(v)}: {n}" for v, n in counts.items())
                    self.parser.fail(
                        f"{entry.key}.balance",
                        f"the allowed pairs are unbalanced on the {side} ({shown}); give every {side}"
                        " value the same number of partners, or drop balance",
                    )
        return rule.allowed

    def _intersect(self, indexes: list[int], axes: tuple[str, ...], key: str) -> tuple[Value, ...]:
        slots = [self.slots[i] for i in indexes]
        others = [set(slot.levels) for slot in slots[1:]]
        common = tuple(level for level in slots[0].levels if all(level in o for o in others))
        if not common:
            shown = "; ".join(
                f"{axis}: {_show(slot.levels)}" for axis, slot in zip(axes, slots, strict=True)
            )
            self.parser.fail(
                key, f"{', '.join(axes)} share no level ({shown}); a tie needs levels in common"
            )
        return common

    def _resolve(self, name: str, where: str) -> int:
        """The slot a rule's axis refers to: the axis itself, or the tie that holds it."""
        if name in self.tuple_of and self.tuple_of[name] in self.later:
            self.parser.fail(
                where,
                f"axis {_q(name)} gets its levels from tuple {_q(self.tuple_of[name])}, declared later; move the tuples section before this rule",
            )
        found = self._locate(name)
        if found is None:
            if name in self.later:
                self.parser.fail(
                    where,
                    f"{_q(name)} is a rule declared later; rules apply in the order written, so move it before this one",
                )
            self.parser.fail(
                where,
                f"axis {_q(name)} is not declared (declared: {_show([*self.axes, *self.coupled])})",
            )
        index, path = found
        for node in reversed(path[:-1]):
            if node.kind in ("pair", "tuple"):
                self.parser.fail(
                    where,
                    f"axis {_q(name)} is already coupled by {node.kind} {_q(node.name)}; use {_q(node.name)} instead",
                )
        return index

    def _locate(self, name: str) -> tuple[int, list[_Node]] | None:
        for index, slot in enumerate(self.slots):
            path = _path_to(slot.node, name)
            if path:
                return index, path
        return None

    def _distinct(self, indexes: list[int], names: tuple[str, ...], key: str) -> None:
        for i, index in enumerate(indexes):
            if index in indexes[:i]:
                first = names[indexes.index(index)]
                self.parser.fail(
                    key,
                    f"{_q(first)} and {_q(names[i])} are already tied together (in {_q(self.slots[index].node.name)}); name only one of them",
                )

    def _couple(self, indexes: list[int], slot: _Slot) -> None:
        first = min(indexes)
        self.slots = [
            slot if i == first else s
            for i, s in enumerate(self.slots)
            if i == first or i not in indexes
        ]


def _path_to(node: _Node, name: str) -> list[_Node] | None:
    if node.name == name:
        return [node]
    for member in node.members:
        path = _path_to(member, name)
        if path:
            return [node, *path]
    return None


def _extract(value: Value, steps: list[int]) -> Value:
    for step in steps:
        value = value[step]  # type: ignore[index]
    return value


def _column_order(slots: list[_Slot], field_order: tuple[str, ...]) -> tuple[str, ...]:
    """``field_order``, then the other axes in the order upstream's row expansion appends them.

    Upstream expands pairs, then tuples, then ties (each in rule order), appending the
    members at the end of the row; a tie named after one of its axes keeps that one in place.
    """
    pending = [slot.node for slot in slots]
    rank = {"pair": 0, "tuple": 1, "tie": 2}
    while True:
        composites = [node for node in pending if node.kind != "axis"]
        if not composites:
            break
        node = min(composites, key=lambda n: (rank[n.kind], n.rank))
        index = next(i for i, n in enumerate(pending) if n is node)
        members = list(node.members)
        keeper = next((m for m in members if node.kind == "tie" and m.name == node.name), None)
        if keeper is not None:
            pending[index] = keeper
            members.remove(keeper)
        else:
            del pending[index]
        pending.extend(members)
    rest = [node.name for node in pending if node.name not in field_order]
    return (*field_order, *rest)


# -- small helpers ------------------------------------------------------------------------


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise _Invalid(
                        f"line {key_node.start_mark.line + 1}: duplicate key {_q(key)}"
                        f" (first on line {seen[key]}); remove or rename one"
                    )
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _load_data(text: str, suffix: str) -> Any:
    if suffix == ".json":
        try:
            return json.loads(text, object_pairs_hook=_json_object)
        except json.JSONDecodeError as exc:
            raise _Invalid(
                f"line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg}); fix the syntax"
            ) from None
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise _Invalid(f"{at}invalid YAML ({problem}); fix the syntax") from None


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Invalid(f"duplicate key {_q(key)}; remove or rename one")
        out[key] = value
    return out


def _unique(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(values))


def _q(value: Any) -> str:
    """A value quoted on one line, JSON-style: "text", 3, ["a", "b"]."""
    return json.dumps(value, ensure_ascii=False, default=str)


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else _q(value)


def _show(values: Iterable[Any], limit: int = 12) -> str:
    values = list(values)
    shown = ", ".join(_plain(v) for v in values[:limit])
    return f"{shown}, ... ({len(values)} in all)" if len(values) > limit else shown


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return _q(value)
    if isinstance(value, str):
        return f"the string {_q(value)}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__} ({value})"
