"""Applying rules: axes become slots (subsets filter levels; ties, pairs and tuples couple
axes into one slot), in declaration order, and the column order of the rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from typing import NoReturn

from daydream.spec.model import (
    _KIND,
    Level,
    PairRule,
    SubsetRule,
    TieRule,
    TupleRule,
    Value,
    _Entry,
    _Node,
    _plain,
    _q,
    _show,
    _Slot,
    _unique,
)

# -- applying rules -----------------------------------------------------------------------


class _Design:
    """The slots the product runs over, as rules replace axes by coupled slots."""

    def __init__(
        self,
        fail: Callable[[str | None, str], NoReturn],
        axes: dict[str, tuple[Level, ...]],
        entries: list[_Entry],
    ) -> None:
        self.fail = fail  # reports a problem at a key path of the spec (SpecReader.fail)
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
                self.fail(
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
            self.fail(entry.key, f"axis {_q(axis)} is not declared (declared: {_show(self.axes)})")
        declared = set(self.axes[axis])
        for label, value in zip(entry.labels, rule.keep, strict=True):
            if value not in declared:
                self.fail(
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
            self.fail(
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
                    self.fail(
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
                    self.fail(
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
            self.fail(
                key, f"{', '.join(axes)} share no level ({shown}); a tie needs levels in common"
            )
        return common

    def _resolve(self, name: str, where: str) -> int:
        """The slot a rule's axis refers to: the axis itself, or the tie that holds it."""
        if name in self.tuple_of and self.tuple_of[name] in self.later:
            self.fail(
                where,
                f"axis {_q(name)} gets its levels from tuple {_q(self.tuple_of[name])}, declared later; move the tuples section before this rule",
            )
        found = self._locate(name)
        if found is None:
            if name in self.later:
                self.fail(
                    where,
                    f"{_q(name)} is a rule declared later; rules apply in the order written, so move it before this one",
                )
            self.fail(
                where,
                f"axis {_q(name)} is not declared (declared: {_show([*self.axes, *self.coupled])})",
            )
        index, path = found
        for node in reversed(path[:-1]):
            if node.kind in ("pair", "tuple"):
                self.fail(
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
                self.fail(
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
