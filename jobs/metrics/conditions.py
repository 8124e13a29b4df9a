"""SQL conditions of parts read as sets of conjuncts: which rows a part counts, whether a
numerator's rows lie within its denominator's, and which presence (rows with a unit, with
a value) a part's counts share.
"""

from __future__ import annotations

from jobs.metrics.definitions import Part, QuantilePart

#: Which rows a count counts: (source, condition), None: every row of the source.
Presence = tuple[str, str | None]

#: The presence of a count without a filter: every row.
EVERY_ROW: Presence = ("", None)


def counts_column(part: Part, column: str) -> bool:
    """Whether the part's value is exactly `column` (backticks and spaces aside)."""
    return (part.value or "").strip().strip("`") == column


def presence(part: Part | QuantilePart) -> Presence:
    """What decides that a row carries a part: its filter and, except for counts, a
    non-null value. Parts with equal presence share one per-unit row count."""
    counted = isinstance(part, Part) and part.agg == "count"
    return (part.filter or "", None if counted else part.value)


def conjuncts(condition: str | None) -> frozenset[str]:
    """The top-level AND terms of a SQL condition, outer parentheses and spacing aside
    (a syntactic split: quotes and parentheses are respected, nothing is evaluated)."""
    if not condition:
        return frozenset()
    terms, depth, quote, start, i = [], 0, "", 0, 0
    text = condition
    while i < len(text):
        ch = text[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and text[i : i + 5].upper() == " AND ":
            terms.append(text[start:i])
            start = i + 5
            i += 5
            continue
        i += 1
    terms.append(text[start:])
    return frozenset(t for term in terms for t in [_unwrap(term)] if t)


def _unwrap(term: str) -> str:
    term = " ".join(term.split())
    while term.startswith("(") and term.endswith(")") and _balanced(term[1:-1]):
        term = term[1:-1].strip()
    return term


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def rows_within(num: Part, den: Part) -> bool:
    """Whether every row carrying `num` provably carries `den`: the denominator's filter
    terms are among the numerator's (a value's `IS NOT NULL` included, as a mean's
    denominator states it), and the denominator is a count or sums the same value.
    Then a unit with numerator rows has denominator rows, and the pair's units are the
    denominator's."""
    carried = set(conjuncts(num.filter))
    if num.agg != "count" and num.value:
        # A row carries a sum or distinct count only where its value is not null.
        carried |= conjuncts(f"({num.value}) IS NOT NULL")
    if not conjuncts(den.filter) <= carried:
        return False
    if den.agg == "count":
        return True
    return den.agg == "sum" and num.agg == "sum" and num.value == den.value


def has_own_kind(part: Part, unit: str) -> bool:
    """Whether a part needs an expansion of its own rather than the unit level: approximate
    distinct counts, and exact ones of anything but the unit."""
    if part.agg == "approx_distinct_count":
        return True
    return part.agg == "distinct_count" and not counts_column(part, unit)
