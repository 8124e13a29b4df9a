"""Exact linear recoverability of hidden cells of one statistic (a *family*).

A family is one additive or identical quantity published in many cells: the sum of one part
(`count(*) of views`), the distinct units of one presence, one quantile of one part. A cell is
(slice cell, time interval [a, b)); a slice cell is (slice set, its values), sets as sorted
dimension tuples. Some cells are known (published, or absent and so zero), some hidden.

Unknowns are the statistic over *elementary intervals*: per slice set, the time between
consecutive endpoints of the cells of that set and of finer ones (a set with hourly cells
has hours, one with daily windows days). A cell is the sum of its elementary intervals.
- Time: per slice cell, a union-find over its cells' endpoints, joined by known cells: the
  sum between two points of one component is known (one equation per consecutive pair), and
  a hidden cell whose ends fall in one component is recoverable by differences alone.
- Slices (`relations`): for every cover (parent set, child set with more dimensions) of the
  family's slice-set lattice (the sets and all their intersections: "margins"; or direct
  pairs differing only in unit attributes: "attributes"; or none), in every elementary
  interval of the child that cells of the child (or finer sets) cover, a parent value is the
  sum of its children. Only covered time: a value never seen there had no events there.
Then: substitution of equations with one unknown, removal of unknowns that only one equation
holds, and per connected block the null space of the equations over the integers
(python-flint, exact): a hidden cell is recoverable iff its vector is orthogonal to that null
space, i.e. lies in the row space of the equations.
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import flint

SliceSet = tuple[str, ...]
SliceCell = tuple[SliceSet, tuple[str, ...]]
Cell = tuple[SliceCell, int, int]
Relations = Literal["margins", "attributes", "none"]
#: How a recoverable cell was found: by differences of known cells of its own series
#: ("differences"), by substituting equations with one unknown ("substitution"), or by
#: elimination over a block of equations ("elimination").
Method = Literal["differences", "substitution", "elimination"]


@dataclass
class Family:
    """The cells of one statistic, with what is known and what is hidden. Cells of
    statistics that do not add up over time sit on private time axes (disjoint intervals)."""

    relations: Relations = "margins"
    attributes: frozenset[str] = frozenset()
    known: set[Cell] = field(default_factory=set)
    hidden: set[Cell] = field(default_factory=set)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def _project(cell: SliceCell, onto: SliceSet) -> SliceCell:
    dims, values = cell
    index = {d: v for d, v in zip(dims, values, strict=True)}
    return onto, tuple(index[d] for d in onto)


def _closure(sets: Iterable[SliceSet]) -> set[SliceSet]:
    """The sets and all their intersections."""
    out = set(sets)
    frontier = set(out)
    while frontier:
        new: set[SliceSet] = set()
        for a in frontier:
            for b in out:
                meet = tuple(d for d in a if d in b)
                if meet not in out:
                    new.add(meet)
        out |= new
        frontier = new
    return out


def _covers(lattice: set[SliceSet]) -> list[tuple[SliceSet, SliceSet]]:
    """(parent, child) pairs of the lattice with nothing of the lattice strictly between."""
    pairs = []
    for child in lattice:
        cs = set(child)
        below = [s for s in lattice if set(s) < cs]
        for parent in below:
            ps = set(parent)
            if not any(ps < set(u) < cs for u in below):
                pairs.append((parent, child))
    return pairs


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class _Axis:
    """A slice set's elementary intervals: consecutive endpoints of the cells of the set and
    of finer sets, where such cells cover the time."""

    def __init__(self, points: set[int], spans: list[tuple[int, int]]) -> None:
        self.points = sorted(points)
        self.index = {p: i for i, p in enumerate(self.points)}
        starts = [a for a, _ in spans]
        covered = []
        for a, b in itertools.pairwise(self.points):
            i = bisect.bisect_right(starts, a) - 1
            covered.append(i >= 0 and spans[i][1] >= b)
        self.covered = covered

    def between(self, a: int, b: int) -> range:
        """Indexes of the elementary intervals that make up [a, b)."""
        return range(self.index[a], self.index[b])


class _Domain:
    """Values of each slice set: its own, and projections of finer sets' values."""

    def __init__(self, values: dict[SliceSet, set[tuple[str, ...]]]) -> None:
        self.values = values
        self._cache: dict[SliceSet, set[tuple[str, ...]]] = {}

    def of(self, slice_set: SliceSet) -> set[tuple[str, ...]]:
        if slice_set not in self._cache:
            mine = set(slice_set)
            out = set(self.values.get(slice_set, ()))
            for s, vs in self.values.items():
                if mine < set(s):
                    out |= {_project((s, v), slice_set)[1] for v in vs}
            self._cache[slice_set] = out
        return self._cache[slice_set]


@dataclass
class _System:
    equations: list[dict[int, int]]  # unknown -> coefficient
    targets: dict[Cell, dict[int, int]]  # hidden cells not recovered by differences
    verdict: dict[Cell, Method | None]


def _build(family: Family) -> _System:
    cells = family.known | family.hidden
    values: dict[SliceSet, set[tuple[str, ...]]] = defaultdict(set)
    own_points: dict[SliceSet, set[int]] = defaultdict(set)
    own_spans: dict[SliceSet, list[tuple[int, int]]] = defaultdict(list)
    by_slice: dict[SliceCell, list[Cell]] = defaultdict(list)
    for cell in cells:
        sc, a, b = cell
        values[sc[0]].add(sc[1])
        own_points[sc[0]] |= {a, b}
        own_spans[sc[0]].append((a, b))
        by_slice[sc].append(cell)
    lattice = _closure(values) if family.relations == "margins" else set(values)
    axes: dict[SliceSet, _Axis] = {}
    for x in lattice:
        finer = [s for s in values if set(x) <= set(s)]
        points = set().union(*(own_points[s] for s in finer))
        spans = _merge(span for s in finer for span in own_spans[s])
        axes[x] = _Axis(points, spans)
    unknown: dict[tuple[SliceCell, int], int] = {}

    def var(sc: SliceCell, i: int) -> int:
        key = (sc, i)
        got = unknown.get(key)
        if got is None:
            got = unknown[key] = len(unknown)
        return got

    equations: list[dict[int, int]] = []
    targets: dict[Cell, dict[int, int]] = {}
    verdict: dict[Cell, Method | None] = {}
    for sc, own in by_slice.items():
        axis = axes[sc[0]]
        uf = _UnionFind()
        node: dict[int, int] = {}
        for _, a, b in own:
            for p in (a, b):
                if p not in node:
                    node[p] = uf.add()
        for cell in own:
            if cell in family.known:
                uf.union(node[cell[1]], node[cell[2]])
        members: dict[int, list[int]] = defaultdict(list)
        for p, n in node.items():
            members[uf.find(n)].append(p)
        for group in members.values():
            ordered = sorted(group)
            for a, b in itertools.pairwise(ordered):
                equations.append({var(sc, i): 1 for i in axis.between(a, b)})
        for cell in own:
            if cell in family.hidden:
                _, a, b = cell
                if uf.find(node[a]) == uf.find(node[b]):
                    verdict[cell] = "differences"
                else:
                    targets[cell] = {var(sc, i): 1 for i in axis.between(a, b)}
    if family.relations != "none" and targets:
        domain = _Domain(values)
        if family.relations == "margins":
            pairs = _covers(lattice)
        else:
            pairs = [
                (p, c)
                for p in lattice
                for c in lattice
                if set(p) < set(c) and set(c) - set(p) <= family.attributes
            ]
        for parent, child in pairs:
            _cover_equations(parent, child, axes, domain, var, equations)
    return _System(equations, targets, verdict)


def _cover_equations(
    parent: SliceSet,
    child: SliceSet,
    axes: dict[SliceSet, _Axis],
    domain: _Domain,
    var: object,
    equations: list[dict[int, int]],
) -> None:
    """parent value = sum of its children, in each covered elementary interval of `child`."""
    assert callable(var)
    groups: dict[tuple[str, ...], list[tuple[str, ...]]] = defaultdict(list)
    for v in domain.of(child):
        groups[_project((child, v), parent)[1]].append(v)
    fine, coarse = axes[parent], axes[child]
    for i, (a, b) in enumerate(itertools.pairwise(coarse.points)):
        if not coarse.covered[i]:
            continue
        parts = fine.between(a, b)
        for pv, children in groups.items():
            eq: dict[int, int] = {var((parent, pv), j): 1 for j in parts}
            for cv in children:
                eq[var((child, cv), i)] = -1
            equations.append(eq)


def recoverable(family: Family) -> dict[Cell, Method | None]:
    """For every hidden cell: how it can be recovered exactly, or None if it cannot."""
    system = _build(family)
    verdict = system.verdict
    if not system.targets:
        return verdict
    equations = system.equations
    known = _substitute(equations)
    pending: dict[Cell, dict[int, int]] = {}
    for cell, vec in system.targets.items():
        left = {v: c for v, c in vec.items() if v not in known}
        if not left:
            verdict[cell] = "substitution"
        else:
            pending[cell] = left
    if not pending:
        return verdict
    target_vars = {v for vec in pending.values() for v in vec}
    _prune(equations, target_vars)
    verdict.update(_eliminate(equations, pending))
    return verdict


def _substitute(equations: list[dict[int, int]]) -> set[int]:
    """Solve equations with a single unknown, repeatedly; return the unknowns solved (they
    are removed from `equations` in place, and emptied equations dropped)."""
    holders: dict[int, set[int]] = defaultdict(set)
    for i, eq in enumerate(equations):
        for v in eq:
            holders[v].add(i)
    queue = [i for i, eq in enumerate(equations) if len(eq) == 1]
    solved: set[int] = set()
    while queue:
        i = queue.pop()
        eq = equations[i]
        if len(eq) != 1:
            continue
        (v,) = eq
        solved.add(v)
        for j in holders.pop(v, set()):
            equations[j].pop(v, None)
            if len(equations[j]) == 1:
                queue.append(j)
    equations[:] = [eq for eq in equations if eq]
    return solved


def _prune(equations: list[dict[int, int]], keep: set[int]) -> None:
    """Drop each unknown held by exactly one equation (and not by a target) together with
    that equation: the unknown can absorb any value, so the equation says nothing else."""
    holders: dict[int, set[int]] = defaultdict(set)
    for i, eq in enumerate(equations):
        for v in eq:
            holders[v].add(i)
    alive = [True] * len(equations)
    queue = [v for v, h in holders.items() if len(h) == 1 and v not in keep]
    while queue:
        v = queue.pop()
        held = holders.get(v)
        if not held or len(held) != 1 or v in keep:
            continue
        (i,) = held
        alive[i] = False
        for w in equations[i]:
            holders[w].discard(i)
            if len(holders[w]) == 1 and w not in keep:
                queue.append(w)
    equations[:] = [eq for i, eq in enumerate(equations) if alive[i]]


def _eliminate(
    equations: list[dict[int, int]], targets: dict[Cell, dict[int, int]]
) -> dict[Cell, Method | None]:
    """Per connected block of equations: a target is recoverable iff it is orthogonal to
    the null space of the block's equations (exact, over the integers)."""
    uf = _UnionFind()
    index: dict[int, int] = {}

    def idx(v: int) -> int:
        if v not in index:
            index[v] = uf.add()
        return index[v]

    for eq in equations:
        first = idx(next(iter(eq)))
        for v in eq:
            uf.union(first, idx(v))
    blocks: dict[int, list[int]] = defaultdict(list)
    for i, eq in enumerate(equations):
        blocks[uf.find(index[next(iter(eq))])].append(i)
    out: dict[Cell, Method | None] = {}
    per_block: dict[int, list[tuple[Cell, dict[int, int]]]] = defaultdict(list)
    for cell, vec in targets.items():
        free = [v for v in vec if v not in index]
        if free:
            out[cell] = None  # an unknown that no equation holds: free
            continue
        parts: dict[int, dict[int, int]] = defaultdict(dict)
        for v, c in vec.items():
            parts[uf.find(index[v])][v] = c
        for block, part in parts.items():
            per_block[block].append((cell, part))
        out[cell] = "elimination"
    for block, items in per_block.items():
        eqs = [equations[i] for i in blocks[block]]
        columns = sorted({v for eq in eqs for v in eq})
        col = {v: j for j, v in enumerate(columns)}
        rows, scale = _row_echelon(eqs, col)
        pivot = {next(iter(r)): r for r in rows}
        for cell, part in items:
            if out[cell] is None:
                continue
            # In the row space iff scale * target = sum of target[pivot] * (its RREF row).
            combined: dict[int, int] = defaultdict(int)
            for v, c in part.items():
                row = pivot.get(col[v])
                if row is not None:
                    for j, x in row.items():
                        combined[j] += c * x
            wanted = {col[v]: scale * c for v, c in part.items()}
            if any(combined.get(j, 0) != wanted.get(j, 0) for j in combined.keys() | wanted):
                out[cell] = None
    return out


def _row_echelon(
    eqs: list[dict[int, int]], col: dict[int, int]
) -> tuple[list[dict[int, int]], int]:
    """The nonzero rows of the reduced row echelon form of the equations, over the
    integers (python-flint: rows R and scale d with R / d the form over the rationals), each
    as {column: entry}, its pivot (= d) first; and d."""
    n = len(col)
    dense = []
    for eq in eqs:
        row = [0] * n
        for v, c in eq.items():
            row[col[v]] = c
        dense.append(row)
    reduced, scale, rank = flint.fmpz_mat(dense).rref()
    out = []
    for entries in reduced.tolist()[: int(rank)]:
        out.append({j: int(x) for j, x in enumerate(entries) if x != 0})
    return out, int(scale)
