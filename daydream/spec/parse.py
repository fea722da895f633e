"""Reading and checking a spec: YAML/JSON, ``@file:`` includes, axes, rules and output;
every problem is one ``SpecError`` line naming the file and the key path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daydream.spec.axes import AxesReader
from daydream.spec.design import (
    _column_order,
    _Design,
)
from daydream.spec.model import (
    TOP_LEVEL_KEYS,
    Level,
    Spec,
    TupleRule,
    _describe,
    _q,
    _show,
    _unique,
)
from daydream.spec.rules import RulesReader
from daydream.values import SQLITE_INT_MAX

# -- parsing ------------------------------------------------------------------------------


class SpecParser(AxesReader, RulesReader):
    """Reads a whole spec: its axes and rules (the readers it builds on), its output section,
    and applies the rules (``design``) into slots."""

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
        design = _Design(self.fail, axes, entries)
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
            budget_usd=self._budget(data.get("budget_usd")),
            _slots=tuple(design.slots),
            _columns=_column_order(design.slots, field_order),
        )

    def _budget(self, raw: Any) -> float | None:
        """``budget_usd``: a number of US dollars, at least 0 (or absent)."""
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw >= 0:
            self.fail(
                "budget_usd",
                f"must be a number of US dollars, 0 or more (got {_describe(raw)});"
                " e.g. budget_usd: 25",
            )
        return float(raw)

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
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SQLITE_INT_MAX
        ):
            self.fail(
                "output.seed",
                f"must be a whole number from 0 to {SQLITE_INT_MAX} (got {_describe(seed)})",
            )
        return field_order, seed


# -- small helpers ------------------------------------------------------------------------
