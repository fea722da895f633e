"""Reading a spec's axes: named lists of levels, ``@file:`` includes, and concept pools
whose k-subsets become combinations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import combinations
from typing import Any

from daydream.catalog.entries import combo_id_for
from daydream.spec.model import (
    COMBO_AXIS,
    MAX_COMBOS,
    DerivedCombo,
    Level,
    _describe,
    _q,
)
from daydream.spec.reading import SpecReader
from daydream.vocabulary import LEVELS

# -- parsing ------------------------------------------------------------------------------


MAX_COMBO_SIZE = 1000  # concepts in one combination (k_max may exceed the pool: it is in the id)


class AxesReader(SpecReader):
    """Reads the ``axes`` section."""

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
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_COMBO_SIZE:
            self.fail(
                key, f"must be a whole number from 1 to {MAX_COMBO_SIZE} (got {_describe(raw)})"
            )
        return raw
