"""Reading a spec's rules: ``subsets``, ``ties``, ``pairs`` and ``tuples``, in the order
written, each checked against the axes it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daydream.spec.model import (
    _KIND,
    _MISSING_HINTS,
    _RULE_KEYS,
    RULE_SECTIONS,
    Level,
    PairRule,
    SubsetRule,
    TieRule,
    TupleRule,
    Value,
    _describe,
    _Entry,
    _q,
)
from daydream.spec.reading import SpecReader, _Listing

# -- parsing ------------------------------------------------------------------------------


class RulesReader(SpecReader):
    """Reads the ``rules`` section."""

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
