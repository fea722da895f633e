"""The spec's data: column names and aliases, rules, slots, ``Spec``, ``CompiledRows``, and
row normalisation (``normalise_row``). Shared by the parser, the rule engine and the API."""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain, product
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from daydream.errors import SpecError, did_you_mean
from daydream.values import QUOTE_CHARS, quote
from daydream.vocabulary import STAGES

Level = str | int | float
Value = Level | tuple[Any, ...]  # a pair or tuple slot's values are (nested) tuples
Row = dict[str, Level]

TOP_LEVEL_KEYS = ("name", "description", "axes", "rules", "output", "budget_usd")
RULE_SECTIONS = ("subsets", "ties", "pairs", "tuples")
COMBO_AXIS = "combo_id"
MAX_COMBOS = 1_000_000
REPLICATE_MAX = 1_000_000
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
    for stage in STAGES
}
REPLICATE_COLUMNS = ("draft_replicate", "essay_replicate", "evaluation_replicate")
_CANONICAL = {alias: column for column, aliases in COLUMN_ALIASES.items() for alias in aliases}


def misspelt_columns(columns: Iterable[str]) -> list[tuple[str, str]]:
    """(column, `` (did you mean "x"?)``) for each column the planner does not read but
    would have read under a nearby name (``draft_replicates``)."""
    found = []
    for column in columns:
        if column not in _CANONICAL and (hint := did_you_mean(column, _CANONICAL)):
            found.append((column, hint))
    return found


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
    budget_usd: float | None = None  # a cap on what the cohort's calls may cost (USD)
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
        return self._rows(self.columns, self._slot_values, ())

    def normalised(self) -> Iterator[dict[str, Any]] | None:
        """The rows exactly as ``normalise_row`` would make them, each level normalised once
        instead of in every row (a plan reads up to millions of rows). None when that is not
        exact: two columns alias one, or a value ``normalise_row`` would refuse (its error
        names the row, so the caller normalises row by row and gets it)."""
        kinds = _column_kinds(tuple(self.columns))
        if not kinds:
            return None
        leaves = [leaf for slot in self.spec._slots for leaf in slot.node.leaves()]
        kind_of = {self._positions[i]: kind for i, (_, _, kind) in enumerate(kinds)}
        slot_values = []
        first = 0
        try:
            for values in self._slot_values:
                width = len(values[0]) if values else 0
                slot_values.append(
                    tuple(
                        tuple(_normal(v, kind_of.get(first + i, _PASS)) for i, v in enumerate(level))
                        for level in values
                    )
                )
                first += width
        except SpecError:
            return None
        if first != len(leaves):  # levels of uneven width: not a shape to take apart
            return None
        names = [canonical for _, canonical, _ in kinds]
        missing = tuple(column for column in REPLICATE_COLUMNS if column not in names)
        return self._rows(names + list(missing), slot_values, (1,) * len(missing))

    def _rows(
        self, columns: list[str], slot_values: list[tuple[Any, ...]], extra: tuple[Any, ...]
    ) -> Iterator[dict[str, Any]]:
        points: Iterable[tuple[tuple[Level, ...], ...]] = product(*slot_values)
        if self.seed is not None:
            # Upstream shuffles the product list itself; the permutation depends only on
            # its length, so this reproduces its order exactly.
            points = list(points)
            random.Random(self.seed).shuffle(points)
        if self._positions == list(range(len(self.columns))):
            for point in points:
                yield dict(zip(columns, (*chain.from_iterable(point), *extra), strict=True))
            return
        pick = itemgetter(*self._positions)
        for point in points:
            values = pick(tuple(chain.from_iterable(point)))
            if len(self._positions) == 1:
                values = (values,)
            yield dict(zip(columns, (*values, *extra), strict=True))


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
        elif type(raw) is int and 1 <= raw <= REPLICATE_MAX:
            out[canonical] = raw
        else:
            at = f"row {row_number}: " if row_number is not None else ""
            out[canonical] = _replicate(raw, f"{at}{column}")
    for column in REPLICATE_COLUMNS:
        if out.get(column) is None:
            out[column] = 1
    return out


_PASS, _TEXT, _REPLICATE = 0, 1, 2


def _normal(raw: Any, kind: int) -> Any:
    """One value as ``normalise_row`` makes it (a blank replicate becomes 1)."""
    if kind == _PASS:
        return raw
    if kind == _TEXT:
        return None if raw is None else (raw if type(raw) is str else str(raw)).strip() or None
    if type(raw) is int and 1 <= raw <= REPLICATE_MAX:
        return raw
    value = _replicate(raw, "")
    return 1 if value is None else value
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
    number = int(raw) if isinstance(raw, str) and re.fullmatch(r"[0-9]{1,7}", raw.strip()) else raw
    if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= REPLICATE_MAX:
        return number
    raise SpecError(
        f"{where}: {_q(raw)} is not a replicate number; use a whole number from 1 to"
        f" {REPLICATE_MAX:,}"
    )




@dataclass(frozen=True)
class _Entry:
    rule: Rule
    key: str
    labels: tuple[str, ...] = ()  # where each keep value or allowed pair came from


_KIND = {TieRule: "tie", PairRule: "pair", TupleRule: "tuple"}

# -- small helpers ------------------------------------------------------------------------


def _unique(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(values))


def _q(value: Any) -> str:
    """A value quoted on one line, JSON-style: "text", 3, ["a", "b"]; a long one by its
    first 60 characters and its length."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):  # an int of thousands of digits, a deep structure
        return quote(value)
    if len(text) <= QUOTE_CHARS + 2:
        return text
    return f"{text[:QUOTE_CHARS]}... ({len(text)} characters)"


def _plain(value: Any) -> str:
    if isinstance(value, str) and len(value) <= QUOTE_CHARS:
        return value
    return _q(value)


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
        return f"the number {_q(value)}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__} ({value})"
