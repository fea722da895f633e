"""Reading a spec's values: strings, lists (inline or ``@file:`` includes, CSV ones with a
header), levels and names, each problem one ``SpecError`` line naming the spec file and
the key path (``SpecReader.fail``).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from daydream.errors import SpecError
from daydream.spec.model import (
    _INCLUDE,
    _INCLUDE_SUFFIXES,
    _KEY_HINTS,
    _RULE_KEYS,
    Level,
    _describe,
    _q,
)

# -- parsing ------------------------------------------------------------------------------


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


class SpecReader:
    """The spec being read (``source``, whose directory ``@file:`` paths are relative to) and
    the readers of its values; ``AxesReader``, ``RulesReader`` and ``SpecParser`` build on it."""

    def __init__(self, source: Path | None, base_dir: Path) -> None:
        self.source = source
        self.display = str(source) if source is not None else "<mapping>"
        self.base_dir = base_dir

    def fail(self, where: str | None, detail: str) -> NoReturn:
        at = f"{where}: " if where else ""
        raise SpecError(f"spec {self.display}: {at}{detail}")

    def _text(self, raw: Any, key: str) -> str | None:
        if raw is not None and not isinstance(raw, str):
            self.fail(key, f"must be a string (got {_describe(raw)})")
        return raw

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


class _Invalid(Exception):
    """A YAML/JSON syntax problem; the caller says where."""


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
        except (ValueError, RecursionError) as exc:
            raise _Invalid(_too_large(exc)) from None
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise _Invalid(f"{at}invalid YAML ({problem}); fix the syntax") from None
    except (ValueError, RecursionError) as exc:
        raise _Invalid(_too_large(exc)) from None


def _too_large(exc: Exception) -> str:
    """What a parser's ValueError (an integer of thousands of digits) or RecursionError
    (lists nested thousands deep) means for a spec."""
    if isinstance(exc, RecursionError):
        return "nested too deeply to read; a spec needs a few levels at most"
    return f"holds a value it cannot read ({' '.join(str(exc).split())[:80]}...); fix it"


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Invalid(f"duplicate key {_q(key)}; remove or rename one")
        out[key] = value
    return out
