"""The recoverability engine against brute force on random small tables.

The oracle is the atom formulation, independent of the engine's prefix sums, lattices and
elimination: every cell is a 0/1 vector over atoms (each finest slice cell x time unit), and a
hidden cell is recoverable iff adding its vector to the known cells' vectors leaves their rank
over the rationals unchanged (Gaussian elimination with `fractions.Fraction`). The random
tables have values that no published cell of some set shows ("unseen", present in coarser
cells only, and zero wherever a cell of their set is published, as absent rows are).
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import pytest

from jobs.privacy.engine import Cell, Family, SliceCell, SliceSet, recoverable

DIMS: dict[str, list[str]] = {"c": ["a", "b", "x"], "s": ["p", "q", "y"]}
UNSEEN = {"c": "x", "s": "y"}  # values no published cell of a set with that dimension shows
SETS: list[SliceSet] = [(), ("c",), ("s",), ("c", "s")]


def rank(rows: list[list[Fraction]]) -> int:
    """Rank over the rationals by Gaussian elimination."""
    matrix = [list(r) for r in rows if any(r)]
    rank_ = 0
    columns = len(matrix[0]) if matrix else 0
    for col in range(columns):
        pivot = next((i for i in range(rank_, len(matrix)) if matrix[i][col] != 0), None)
        if pivot is None:
            continue
        matrix[rank_], matrix[pivot] = matrix[pivot], matrix[rank_]
        p = matrix[rank_]
        for i in range(len(matrix)):
            if i != rank_ and matrix[i][col] != 0:
                f = matrix[i][col] / p[col]
                matrix[i] = [x - f * y for x, y in zip(matrix[i], p, strict=True)]
        rank_ += 1
    return rank_


def atoms(horizon: int) -> list[tuple[tuple[str, str], int]]:
    return [((c, s), t) for c in DIMS["c"] for s in DIMS["s"] for t in range(horizon)]


def vector(
    cell: tuple[SliceSet, tuple[str, ...], int, int], space: list[tuple[tuple[str, str], int]]
) -> list[Fraction]:
    dims, values, a, b = cell
    want = dict(zip(dims, values, strict=True))
    out = []
    for (c, s), t in space:
        inside = a <= t < b and want.get("c", c) == c and want.get("s", s) == s
        out.append(Fraction(int(inside)))
    return out


def seen_values(dims: SliceSet) -> list[tuple[str, ...]]:
    return list(itertools.product(*[[v for v in DIMS[d] if v != UNSEEN[d]] for d in dims]))


def all_values(dims: SliceSet) -> list[tuple[str, ...]]:
    return list(itertools.product(*[DIMS[d] for d in dims]))


def random_case(seed: int) -> tuple[Family, list[list[Fraction]], dict[Cell, list[Fraction]]]:
    rng = random.Random(seed)
    horizon = rng.randint(3, 7)
    space = atoms(horizon)
    intervals = [(a, b) for a in range(horizon) for b in range(a + 1, horizon + 1)]
    published = rng.sample(
        [(s, iv) for s in SETS for iv in intervals], rng.randint(3, min(14, 4 * len(intervals)))
    )
    family = Family(relations="margins")
    known_rows: list[list[Fraction]] = []
    hidden: dict[Cell, list[Fraction]] = {}
    p_hidden = rng.choice([0.2, 0.4, 0.6])
    for dims, (a, b) in published:
        for values in all_values(dims):
            vec = vector((dims, values, a, b), space)
            if any(values[i] == UNSEEN[d] for i, d in enumerate(dims)):
                known_rows.append(vec)  # an absent row: zero, and not shown to the engine
                continue
            cell: Cell = ((dims, values), a, b)
            if rng.random() < p_hidden:
                family.hidden.add(cell)
                hidden[cell] = vec
            else:
                family.known.add(cell)
                known_rows.append(vec)
    family.hidden -= family.known
    hidden = {c: v for c, v in hidden.items() if c in family.hidden}
    return family, known_rows, hidden


@pytest.mark.parametrize("seed", range(100))
def test_engine_matches_brute_force_rank(seed: int) -> None:
    family, known_rows, hidden = random_case(seed)
    got = recoverable(family)
    base = rank(known_rows)
    want = {c: rank([*known_rows, v]) == base for c, v in hidden.items()}
    assert {c: got[c] is not None for c in hidden} == want


def test_random_cases_exercise_every_method() -> None:
    """The random tables reach all three ways of recovering, and unrecoverable cells."""
    methods: set[object] = set()
    for seed in range(100):
        family, _, _ = random_case(seed)
        methods |= set(recoverable(family).values())
    assert methods == {"differences", "substitution", "elimination", None}


def cell(dims: SliceSet, values: tuple[str, ...], a: int, b: int) -> Cell:
    sc: SliceCell = (dims, values)
    return sc, a, b


def test_rolling_window_difference() -> None:
    """1d(t) = 7d(t) - 7d(t-1) + 1d(t-7): the issue's route, on one slice."""
    family = Family()
    day = 24
    for t in range(7, 20):
        family.known.add(cell((), (), (t - 6) * day, (t + 1) * day))  # 7d windows
        family.known.add(cell((), (), t * day, (t + 1) * day))  # 1d cells
    target = cell((), (), 12 * day, 13 * day)
    family.known.discard(target)
    family.hidden.add(target)
    assert recoverable(family)[target] == "differences"


def test_lone_hidden_sibling_is_recovered_and_a_pair_is_not() -> None:
    family = Family()
    family.known.add(cell((), (), 0, 1))
    for v in "abc":
        family.known.add(cell(("c",), (v,), 0, 1))
    family.known.discard(cell(("c",), ("a",), 0, 1))
    family.hidden.add(cell(("c",), ("a",), 0, 1))
    assert recoverable(family)[cell(("c",), ("a",), 0, 1)] is not None
    family.known.discard(cell(("c",), ("b",), 0, 1))
    family.hidden.add(cell(("c",), ("b",), 0, 1))
    assert set(recoverable(family).values()) == {None}


def test_two_way_table_bridge_is_recovered() -> None:
    """Every row and column of the hidden pattern has two hidden cells, yet the cell that
    bridges two hidden 2x2 blocks is determined (sibling-group suppression misses it)."""
    family = Family()
    rows, cols = "abcd", "pqrs"
    family.known.add(cell((), (), 0, 1))
    for r in rows:
        family.known.add(cell(("c",), (r,), 0, 1))
    for c in cols:
        family.known.add(cell(("s",), (c,), 0, 1))
    hidden = {("a", "p"), ("a", "q"), ("b", "p"), ("b", "q"), ("c", "r"), ("c", "s")}
    hidden |= {("d", "r"), ("d", "s"), ("b", "r")}
    for r in rows:
        for c in cols:
            target = cell(("c", "s"), (r, c), 0, 1)
            (family.hidden if (r, c) in hidden else family.known).add(target)
    got = recoverable(family)
    assert {c[0][1] for c, v in got.items() if v is not None} == {("b", "r")}
