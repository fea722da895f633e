"""Reading and checking a spec: YAML/JSON, ``@file:`` includes, axes, rules and output;
every problem is one ``SpecError`` line naming the file and the key path."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, NoReturn

import yaml

from daydream.catalog.entries import combo_id_for
from daydream.errors import SpecError
from daydream.spec.design import (
    _column_order,
    _Design,
)
from daydream.spec.model import (
    _INCLUDE,
    _INCLUDE_SUFFIXES,
    _KEY_HINTS,
    _KIND,
    _MISSING_HINTS,
    _RULE_KEYS,
    COMBO_AXIS,
    MAX_COMBOS,
    RULE_SECTIONS,
    TOP_LEVEL_KEYS,
    DerivedCombo,
    Level,
    PairRule,
    Spec,
    SubsetRule,
    TieRule,
    TupleRule,
    Value,
    _describe,
    _Entry,
    _q,
    _show,
    _unique,
)
from daydream.vocabulary import LEVELS

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
            which = "left/right" if kind == "pair" else "the axes' names"
            self.fail(
                listing.key,
                f'@file "{listing.file}" header ({", ".join(listing.header)}) does not match {owner}'
                f" ({', '.join(names)}); rename the columns, or fix {which}",
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


