"""Exact linear recoverability of hidden cells of one statistic (a *family*).

A family is one additive or identical quantity published in many cells: the sum of one part
(`count(*) of views`), the distinct units of one presence, one quantile of one part. A cell is
(slice cell, time interval [a, b)); a slice cell is (slice set, its values), sets as sorted
dimension tuples. Some cells are known (published, or absent and so zero), some hidden.

Unknowns are prefix sums C(slice cell, t): the statistic over [segment start, t). A cell is
C(b) - C(a), so every known cell is a known difference of two nodes, and a hidden cell is
recoverable iff C(b) - C(a) is determined by the knowns and the relations:
- time: nodes joined by known cells form components whose members differ by known amounts
  (a union-find); a segment's start (`anchors`) is zero by definition;
- slices (`relations`): at every point t, a slice cell's prefix sum is the sum of its
  children's along one more dimension ("margins": every dimension, through the
  intersection-closed lattice of the sets published at t, intermediate sets included;
  "attributes": only along unit attributes, between published sets; "none"). A value never
  seen in a set could still hold events in time that no cell of that set covers, so each
  relation carries a remainder: zero, or one unknown shared by the points between which the
  set's cells cover all time.
Over the components: substitution of equations with one unknown, removal of unknowns that
only one equation holds, then, per connected block, the null space of the equations over the
integers (python-flint, exact): a hidden cell is recoverable iff its vector is orthogonal to
that null space (it lies in the row space of the equations).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import flint

SliceSet = tuple[str, ...]
SliceCell = tuple[SliceSet, tuple[str, ...]]
Cell = tuple[SliceCell, int, int]
Relations = Literal["margins", "attributes", "none"]
#: How a recoverable cell was found: by differences of known cells along its own series
#: ("differences"), by substituting equations with one unknown ("substitution"), or by
#: elimination over a block of equations ("elimination").
Method = Literal["differences", "substitution", "elimination"]


@dataclass
class Family:
    """The cells of one statistic, with what is known and what is hidden."""

    relations: Relations = "margins"
    attributes: frozenset[str] = frozenset()
    known: set[Cell] = field(default_factory=set)
    hidden: set[Cell] = field(default_factory=set)
    #: Starts of time segments: every prefix sum is zero there by definition. A shared time
    #: axis has one (its first point); a private one (a statistic with no additivity over
    #: time) one per (window, period).
    anchors: set[int] = field(default_factory=set)


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
            # The anchor (0) stays a root, so "known" is `find(x) == 0`.
            if ra == 0:
                self.parent[rb] = ra
            else:
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


def _below(lattice: set[SliceSet], sets: Iterable[SliceSet]) -> set[SliceSet]:
    """The members of `lattice` contained in one of `sets`. Covers are always taken in the
    family's whole lattice (so that a relation's remainder means the same at every point);
    sets finer than all those with cells at a point would only add free unknowns there."""
    tops = [set(s) for s in sets]
    return {s for s in lattice if any(set(s) <= t for t in tops)}


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


class _Coverage:
    """Per slice set, the time its own cells (or those of finer sets) cover, to tell the
    points between which a value never seen in the set cannot have held events."""

    def __init__(self, family: Family) -> None:
        spans: dict[SliceSet, list[tuple[int, int]]] = defaultdict(list)
        for (dims, _), a, b in family.known | family.hidden:
            spans[dims].append((a, b))
        self.merged = {s: _merge(v) for s, v in spans.items()}
        self.anchors = sorted(family.anchors)
        self._cache: dict[SliceSet, list[tuple[int, int]]] = {}

    def of(self, slice_set: SliceSet) -> list[tuple[int, int]]:
        if slice_set not in self._cache:
            mine = set(slice_set)
            spans = [x for s, v in self.merged.items() if mine <= set(s) for x in v]
            self._cache[slice_set] = _merge(spans)
        return self._cache[slice_set]

    def gap_before(self, slice_set: SliceSet, t: int) -> tuple[int, int]:
        """(segment start, time in [segment start, t) that the set's cells do not cover)."""
        i = bisect.bisect_right(self.anchors, t) - 1
        start = self.anchors[i] if i >= 0 else t
        covered = 0
        for a, b in self.of(slice_set):
            lo, hi = max(a, start), min(b, t)
            if hi > lo:
                covered += hi - lo
        return start, (t - start) - covered


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


@dataclass
class _System:
    """Nodes, their union-find over known cells, and the slice relations as equations."""

    uf: _UnionFind
    node: dict[tuple[SliceCell, int], int]
    equations: list[dict[int, int]]  # node -> coefficient


def _build(family: Family) -> _System:
    uf = _UnionFind()
    uf.add()  # 0: the anchor (known zero)
    node: dict[tuple[SliceCell, int], int] = {}
    anchor_set = family.anchors

    def node_of(cell: SliceCell, t: int) -> int:
        key = (cell, t)
        got = node.get(key)
        if got is None:
            got = node[key] = uf.add()
            if t in anchor_set:
                uf.union(0, got)
        return got

    cells = family.known | family.hidden
    at_point: dict[int, set[SliceSet]] = defaultdict(set)
    values: dict[SliceSet, set[tuple[str, ...]]] = defaultdict(set)
    for sc, a, b in cells:
        at_point[a].add(sc[0])
        at_point[b].add(sc[0])
        values[sc[0]].add(sc[1])
        node_of(sc, a)
        node_of(sc, b)
    for sc, a, b in family.known:
        uf.union(node_of(sc, a), node_of(sc, b))
    equations: list[dict[int, int]] = []
    if family.relations != "none":
        coverage = _Coverage(family)
        domain = _Domain(values)
        remainder: dict[tuple[SliceSet, SliceSet, tuple[str, ...], int, int], int] = {}
        lattice = _closure(values) if family.relations == "margins" else set()
        lattices: dict[frozenset[SliceSet], list[tuple[SliceSet, SliceSet]]] = {}
        for t, sets in at_point.items():
            if family.relations == "margins":
                key = frozenset(sets)
                if key not in lattices:
                    lattices[key] = _covers(_below(lattice, sets))
                pairs = lattices[key]
            else:
                pairs = [
                    (p, c)
                    for p in sets
                    for c in sets
                    if set(p) < set(c) and set(c) - set(p) <= family.attributes
                ]
            for parent, child in pairs:
                start, gap = coverage.gap_before(child, t)
                groups: dict[tuple[str, ...], list[tuple[str, ...]]] = defaultdict(list)
                for v in domain.of(child):
                    groups[_project((child, v), parent)[1]].append(v)
                for pv in domain.of(parent) | set(groups):
                    eq: dict[int, int] = defaultdict(int)
                    eq[node_of((parent, pv), t)] += 1
                    for cv in groups.get(pv, ()):
                        eq[node_of((child, cv), t)] -= 1
                    if gap:
                        # Values of `child` never seen may hold events in the uncovered time.
                        key = (parent, child, pv, start, gap)
                        if key not in remainder:
                            remainder[key] = uf.add()
                        eq[remainder[key]] -= 1
                    equations.append(dict(eq))
    return _System(uf, node, equations)


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


def recoverable(family: Family) -> dict[Cell, Method | None]:
    """For every hidden cell: how it can be recovered exactly, or None if it cannot."""
    system = _build(family)
    uf = system.uf
    verdict: dict[Cell, Method | None] = {}
    targets: dict[Cell, dict[int, int]] = {}
    for cell in family.hidden:
        sc, a, b = cell
        ra, rb = uf.find(system.node[(sc, a)]), uf.find(system.node[(sc, b)])
        if ra == rb:
            verdict[cell] = "differences"
            continue
        vec = {r: c for r, c in ((rb, 1), (ra, -1)) if r != 0}
        targets[cell] = vec
    if not targets:
        return verdict
    equations = _over_components(system)
    known = _substitute(equations)
    pending: dict[Cell, dict[int, int]] = {}
    for cell, vec in targets.items():
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


def _over_components(system: _System) -> list[dict[int, int]]:
    """The equations with each node replaced by its component (anchor dropped)."""
    find = system.uf.find
    out = []
    for eq in system.equations:
        vec: dict[int, int] = defaultdict(int)
        for n, c in eq.items():
            r = find(n)
            if r != 0:
                vec[r] += c
        cleaned = {v: c for v, c in vec.items() if c}
        if cleaned:
            out.append(cleaned)
    return out


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
        basis = _null_space(eqs, col)
        for cell, part in items:
            if out[cell] is None:
                continue
            for vector in basis:
                if sum(c * vector[col[v]] for v, c in part.items()) != 0:
                    out[cell] = None
                    break
    return out


def _null_space(eqs: list[dict[int, int]], col: dict[int, int]) -> list[list[int]]:
    """A basis of {x : A x = 0} over the rationals (as integer vectors), A the equations."""
    n = len(col)
    rows = []
    for eq in eqs:
        row = [0] * n
        for v, c in eq.items():
            row[col[v]] = c
        rows.append(row)
    matrix = flint.fmpz_mat(rows)
    space, nullity = matrix.nullspace()
    entries = space.tolist()
    return [[int(entries[i][j]) for i in range(n)] for j in range(nullity)]
