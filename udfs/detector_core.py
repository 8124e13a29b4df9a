"""The anomaly detector's arithmetic on one series' grid of slots (NumPy only): seasonal
index, level, scale and the walk that sets the band and re-baselines (`walk`); see
`udfs.anomaly_detectors` for the model these implement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from udfs.detector_settings import (
    DISPERSION_CAP,
    MAD_TO_SD,
    SMALL_COUNT,
    TAIL,
    WINSOR,
    WINSOR_MEAN_SQUARE,
    Array,
    Bools,
    DetectorConfig,
    Direction,
    Ints,
    Plan,
)


def nanmedian(a: Array) -> tuple[Array, Ints]:
    """Median and count of the non-NaN values along the last axis (NaN where there are none).

    Faster than np.nanmedian on many short rows: one sort, NaNs sorted last."""
    count = np.count_nonzero(~np.isnan(a), axis=-1).astype(np.int64)
    ordered = np.sort(a, axis=-1)
    n = np.maximum(count, 1)[..., None]
    low = np.take_along_axis(ordered, (n - 1) // 2, axis=-1)[..., 0]
    high = np.take_along_axis(ordered, n // 2, axis=-1)[..., 0]
    return 0.5 * (low + high), count


def window_mean(grid: Array, start: Ints, stop: Ints) -> Array:
    """Mean of the non-NaN grid values in [start, stop) (clipped to the grid; 0 if none)."""
    seen = ~np.isnan(grid)
    total = np.concatenate([[0.0], np.cumsum(np.where(seen, grid, 0.0))])
    count = np.concatenate([[0], np.cumsum(seen)])
    lo, hi = np.clip(start, 0, grid.size), np.clip(stop, 0, grid.size)
    return np.asarray((total[hi] - total[lo]) / np.maximum(count[hi] - count[lo], 1))


def offsets(
    grid: Array, events: Array | None, counts: Bools, p: Plan, config: DetectorConfig
) -> Array:
    """Per grid slot t, the offset c of the model y + c = (level + c) x index, from the slots
    before t: season_offset x mean |y| over the index's span, or the value of one event
    (1 for counts, the mean rate_scale / volume for rates) if larger, plus -min y for series
    that have gone negative, plus abs_floor. The model is multiplicative for large values
    and additive near zero, where a few events would make ratios explode."""
    t = np.arange(grid.size)
    start = t - config.season_weeks * p.period
    offset = config.season_offset * window_mean(np.abs(grid), start, t)
    if events is not None:
        offset = np.maximum(offset, window_mean(events, start, t))
    offset = np.where(counts, np.maximum(offset, 1.0), offset)
    lowest = np.minimum.accumulate(np.where(np.isnan(grid), np.inf, grid))
    before = np.concatenate([[np.inf], lowest[:-1]])
    return np.asarray(offset + np.maximum(-before, 0.0) + config.abs_floor, dtype=np.float64)


def seasonal_index(
    grid: Array, offset: Array, period: int, min_blocks: int, config: DetectorConfig
) -> tuple[Array, Bools]:
    """(blocks, period): the seasonal index of each phase for the points of block b (grid
    slots [b period, (b + 1) period)), from the `season_weeks` blocks before it.

    A block is usable with more than half of its slots observed. A phase's index is the
    median over usable blocks of (y + c) / (block median + c), c the offset at the block's
    start, with a neutral 1 among them when there are only two blocks (one bad period
    cannot set the index alone); 1 (no seasonality) until `season_blocks` blocks are
    usable: 2 weeks for days, 2 days for hours and minutes. It is then shrunk towards 1 by
    the share of its spread that its own noise explains (`shrunk_index`). Also returns
    which blocks have their index."""
    weeks = config.season_weeks
    n_blocks = grid.size // period + 1
    full = np.full(n_blocks * period, np.nan)
    full[: grid.size] = grid
    blocks = full.reshape(n_blocks, period)
    centre, count = nanmedian(blocks)
    centre[count <= period // 2] = np.nan
    before = np.arange(n_blocks)[:, None] - np.arange(1, weeks + 1)[None, :]
    valid = before >= 0
    safe = np.where(valid, before, 0)
    c = offset[np.minimum(np.arange(n_blocks) * period, grid.size - 1)][:, None, None]
    past = np.where(valid[..., None], blocks[safe], np.nan)
    past_centre = np.where(valid, centre[safe], np.nan)[..., None]
    ratios = np.swapaxes((past + c) / (past_centre + c), 1, 2)  # (blocks, period, weeks)
    usable = np.count_nonzero(~np.isnan(past_centre[..., 0]), axis=1)
    prior = np.where(usable == 2, 1.0, np.nan)[:, None, None]
    index, _ = nanmedian(np.concatenate([ratios, np.broadcast_to(prior, (n_blocks, period, 1))], 2))
    index = shrunk_index(np.where(np.isnan(index), 1.0, index), ratios)
    enough = usable >= min_blocks
    return np.where(enough[:, None], index, 1.0), enough


def shrunk_index(index: Array, ratios: Array) -> Array:
    """The seasonal index (n, period) shrunk towards 1 by how much of its spread is noise.

    Each phase's index is a median of a few noisy ratios (n, period, weeks). Its noise
    variance is pi/2 x s^2 / (ratios of the phase), s the robust (MAD) spread of all ratios
    around their phase's index; the spread of the index over the phases, less that noise,
    is the real seasonal signal. A phase's index keeps the share signal / (signal + noise)
    of its distance from 1 (empirical Bayes): a series without a seasonal pattern gets an
    index near 1 instead of a period of noise in every expected value, while a strong
    pattern is kept whole."""
    residuals = (ratios - index[..., None]).reshape(index.shape[0], -1)
    mad, _ = nanmedian(np.abs(residuals))
    counts = np.count_nonzero(~np.isnan(ratios), axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        noise = np.pi / 2 * (MAD_TO_SD * mad[:, None]) ** 2 / counts
    noise = np.where(counts > 0, noise, 0.0)
    spread = np.var(index, axis=1, ddof=1) if index.shape[1] > 1 else np.zeros(index.shape[0])
    signal = np.maximum(spread - noise.mean(axis=1), 0.0)[:, None]
    total = signal + noise
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = np.where(total > 0, signal / total, 1.0)
    return np.asarray(1.0 + keep * (index - 1.0))


def spread(errors: Array, seasonal: bool, tail: float) -> float:
    """The noise sd of one-step errors (one sort). With a seasonal index: their root mean
    square winsorised at WINSOR x (1.4826 x their median absolute value), made consistent
    for normal errors (like the MAD it ignores a few large errors, past anomalies and level
    changes; unlike it, it uses the size of every other one), and at least `tail` x their
    TAIL quantile. Before one, the plain root mean square: seasonal swings are noise then."""
    size = np.sort(np.abs(errors))
    n = size.size
    if not seasonal:
        return float(np.sqrt(np.mean(size**2)))
    cap = WINSOR * MAD_TO_SD * 0.5 * float(size[(n - 1) // 2] + size[n // 2])
    sd = float(np.sqrt(np.mean(np.minimum(size, cap) ** 2) / WINSOR_MEAN_SQUARE))
    if not tail:
        return sd
    at = TAIL * (n - 1)
    low = int(at)
    quantile = size[low] + (at - low) * (size[min(low + 1, n - 1)] - size[low])
    return max(sd, tail * float(quantile))


def integer_counts(values: Array) -> Bools:
    """Per slot, whether every observed value before it is a small non-negative integer (at
    most SMALL_COUNT, and there is one): a series of unknown kind that looks like sparse
    event counts is floored as one. Larger integers may be anything (a gauge in whole
    units); their own noise then sets the scale."""
    seen = ~np.isnan(values)
    whole = ~seen | ((values >= 0) & (values <= SMALL_COUNT) & (values == np.round(values)))
    so_far = np.logical_and.accumulate(whole) & (np.cumsum(seen) > 0)
    return np.concatenate([[False], so_far[:-1]])


def too_sparse(slots: Ints, observed: Bools, p: Plan, config: DetectorConfig) -> Bools:
    """Per slot, whether its last `warmup` observed predecessors span more than the index's
    `season_weeks` periods: too few points to know the series' level and noise."""
    positions = slots[observed]
    if positions.size == 0:  # nothing observed: missing everywhere, never sparse
        return np.zeros(slots.size, dtype=bool)
    before: Ints = np.cumsum(observed) - observed
    k = before - p.warmup
    first = np.where(k >= 0, positions[np.clip(k, 0, max(positions.size - 1, 0))], slots[0])
    return np.asarray((k >= 0) & (slots - first > config.season_weeks * p.period))


@dataclass(frozen=True)
class Bands:
    """Per distinct slot: what the decisions need."""

    expected: Array
    lower: Array
    upper: Array
    sigma: Array  # the floored scale behind the band
    judged: Bools  # the band rests on enough history


@dataclass(frozen=True)
class Inputs:
    """Per distinct slot (sorted), what the walk reads."""

    values: Array  # slot means, NaN where missing
    slots: Ints
    daily: Array  # (blocks, period): the seasonal index for each block's points
    weekly: Array | None  # (weeks, 7 period): hour (minute) of week, for hours and minutes
    use_weekly: Bools  # per slot: its weekly index is established
    offset: Array
    counts: Bools  # floor the scale as event counts
    seasonal: Bools  # the slot's seasonal index is established
    unit: Array | None  # value of one event (rate_scale / volume), if known
    judged_from: int  # observed points before the first judged one


def count_floor(expected: float, dispersion: float) -> float:
    """Sd of an over-dispersed Poisson count: sqrt(dispersion x max(expected, 1))."""
    return float(np.sqrt(dispersion * max(expected, 1.0)))


def walk(x: Inputs, p: Plan, config: DetectorConfig) -> Bands:
    """Judge the slots in time order, each from the ones before it.

    The level is the median of (y + c) / index over the last `level_window` normal points,
    expected = level x index - c. The scale is the `winsorised_sd` of the last `scale_window`
    one-step errors (divided by index, then times the slot's index), floored by
    rel_floor x |expected|, abs_floor and, for counts, sqrt(dispersion x expected), the
    dispersion (>= 1) read off the same errors; a rate with its volume is floored by the
    binomial sd of one event. A value outside expected -/+ sensitivity x scale starts a
    candidate level. While there is one, the band is widened to cover the candidate's band
    too, and each point joins whichever level it is nearer: `rebaseline` points near the
    candidate make it the new level (the level shift alarmed once, at its start, and its
    new level is normal from then on); a point near the old level drops the candidate (a
    spike). So alarms are rare, short runs: one per spike or level shift."""
    n, k = x.values.size, config.sensitivity * p.widen
    expected, lower, upper, sigma = (np.full(n, np.nan) for _ in range(4))
    judged = np.zeros(n, dtype=bool)
    errors, squares = np.full(n, np.nan), np.full(n, np.nan)
    quality = np.zeros(n, dtype=np.int64)  # of the index behind each error (`quality_of`)
    n_errors = 0
    normal: list[tuple[float, int]] = []  # (y, slot) of the level's points
    candidate: list[tuple[float, int]] = []
    skew = (k * k - 1) / 6  # Cornish-Fisher: a Poisson count's upper tail is longer
    seen = 0
    for i in range(n):
        y, t, c = x.values[i], int(x.slots[i]), x.offset[i]
        if np.isnan(y):
            continue
        row = index_row(x, i)
        idx = float(row[t % row.size])
        level = level_of(normal, c, row)
        exp_i = level * idx - c
        q = quality_of(x, i)
        if n_errors >= 2 and np.isfinite(exp_i):
            start = max(0, n_errors - p.scale)
            window = comparable(errors[start:n_errors], quality[start:n_errors], q, p.comparable)
            sd = max(
                spread(window, q > 0, p.tail / k) * idx,
                config.rel_floor * abs(exp_i),
                config.abs_floor,
            )
            if x.counts[i]:
                dispersion = max(
                    1.0, float(np.mean(squares[max(0, n_errors - p.scale) : n_errors]))
                )
                sd = max(sd, count_floor(exp_i, dispersion))
            if x.unit is not None and np.isfinite(x.unit[i]):
                sd = max(sd, float(np.sqrt(x.unit[i] * max(exp_i, x.unit[i]))))
            lo, hi = exp_i - k * sd, exp_i + k * sd + (skew if x.counts[i] else 0.0)
            if candidate:
                alt = level_of(candidate, c, row) * idx - c
                lo, hi = min(lo, alt - k * sd), max(hi, alt + k * sd)
            expected[i], lower[i], upper[i], sigma[i] = exp_i, lo, hi, sd
            judged[i] = seen >= x.judged_from
        d = (y + c) / idx
        out = judged[i] and not lower[i] <= y <= upper[i]
        if out:
            candidate = [(y, t)]
            reference = exp_i
        elif candidate and abs(d - level_of(candidate, c, row)) < abs(d - level):
            reference = level_of(candidate, c, row) * idx - c
            candidate.append((y, t))
            if len(candidate) > config.rebaseline:
                normal, candidate = candidate, []
        else:
            reference = exp_i
            candidate = []
            normal.append((y, t))
            if len(normal) > p.level:
                del normal[0]
        if np.isfinite(reference):
            errors[n_errors] = (y - reference) / idx
            quality[n_errors] = q
            squares[n_errors] = min((y - reference) ** 2 / max(reference, 1.0), DISPERSION_CAP)
            n_errors += 1
        seen += 1
    return Bands(expected, lower, upper, sigma, judged)


def quality_of(x: Inputs, i: int) -> int:
    """The seasonal index behind slot i: 0 none yet, 1 the first (hour of day for hours and
    minutes), 2 the final one (day of week for days, hour of week for hours and minutes)."""
    if x.weekly is None:
        return 2 if x.seasonal[i] else 0
    return 2 if x.use_weekly[i] else int(x.seasonal[i])


def comparable(errors: Array, quality: Ints, q: int, minimum: int) -> Array:
    """The errors made with an index as good as the current one (q), when there are at least
    `minimum` of them (`Plan.comparable`): errors from before a seasonal index hold its
    pattern and would make the scale too wide for weeks. Else all of them."""
    good = quality >= q
    return errors[good] if np.count_nonzero(good) >= minimum else errors


def index_row(x: Inputs, i: int) -> Array:
    """The seasonal index as seen from slot i, by phase (slot mod the row's length)."""
    t = int(x.slots[i])
    if x.weekly is not None and x.use_weekly[i]:
        return np.asarray(x.weekly[t // x.weekly.shape[1]])
    return np.asarray(x.daily[t // x.daily.shape[1]])


def level_of(points: list[tuple[float, int]], c: float, row: Array) -> float:
    """Median of (y + c) / index over the points, the index as seen now (NaN if none)."""
    if not points:
        return float("nan")
    width = row.size
    ordered = sorted((y + c) / row.item(t % width) for y, t in points)
    m = len(ordered)
    return 0.5 * (ordered[(m - 1) // 2] + ordered[m // 2])


def severity(ratio: Array, steps: tuple[float, float]) -> NDArray[np.str_]:
    """Severity by |score| / threshold: low, medium (from steps[0]), high (from steps[1])."""
    return np.where(ratio >= steps[1], "high", np.where(ratio >= steps[0], "medium", "low"))


def allowed(score: Array, direction: Direction) -> Bools:
    """Whether a score's sign is one the config alerts."""
    if direction == "up":
        return np.asarray(score > 0)
    if direction == "down":
        return np.asarray(score < 0)
    return np.ones(score.shape, dtype=bool)


def slot_means(value: Array, row_slot: Ints, n: int) -> Array:
    """Mean of the non-NaN values of each slot's rows (NaN where none)."""
    finite = ~np.isnan(value)
    total = np.bincount(row_slot, weights=np.where(finite, value, 0.0), minlength=n)
    count = np.bincount(row_slot, weights=finite.astype(np.float64), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def non_negative(bound: Array, value: Array) -> Array:
    """`bound` raised to 0 on rows (sorted by time) where the series has never been
    negative so far: a count, rate or duration can never be."""
    lowest = np.fmin.accumulate(np.where(np.isnan(value), np.inf, value))
    return np.where(lowest >= 0, np.maximum(bound, 0.0), bound)


def labels(mask: Bools, text: NDArray[np.str_]) -> NDArray[np.object_]:
    """`text` where `mask`, None elsewhere."""
    out = np.full(mask.shape, None, dtype=object)
    out[mask] = text[mask]
    return out
