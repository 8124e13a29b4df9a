"""Benchmark: udfs/anomaly_detectors.py against a rolling median + MAD on real labelled series.

    .venv/bin/python -m tests.benchmarks.bench_monitoring_real [--dev-set PATH] [--grain day]
        [--per-group] [--per-series]

The development set (default `<repo>/../shared/anomaly-dev`, see its README.md) holds 93
public NAB series at daily, hourly and native 5-30 minute grain ("raw") with labelled
anomaly windows. Every series runs through `detect_series` (pure pandas, no Spark) with the
grain, kind and direction of its `data/labels.json` entry and the default config otherwise,
and through the set's `baselines.py` rolling median + MAD (k = 3.5 and 5) in the same run.
Both are scored with the set's `score.py`: window-level precision, recall and F1 (a window
is found when any alarm falls in it) and false alarms per series-week (once per contiguous
run outside the windows, once more per started 24 h it stays on). `--per-group` adds the
figures per NAB source group (realTweets, realAWSCloudwatch, ...), to check that a setting
does not win on one group alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from udfs.anomaly_detectors import detect_series
from udfs.detector_settings import DetectorConfig, Grain

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DEV_SET = REPO.parent / "shared" / "anomaly-dev"
GRAINS = {"daily": "day", "hourly": "hour"}
RAW_GRAINS: dict[str, Grain] = {
    "0 days 00:01:00": "1min",
    "0 days 00:05:00": "5min",
    "0 days 00:10:00": "10min",
    "0 days 00:15:00": "15min",
    "0 days 00:30:00": "30min",
}
BASELINE_K = (3.5, 5.0)


def load_module(path: Path, name: str) -> ModuleType:
    """Import a module of the dev set by path. `baselines.py` imports statsmodels' STL at
    the top, which only its STL baseline uses: a stub stands in when it is not installed."""
    if name == "baselines" and importlib.util.find_spec("statsmodels") is None:
        stub = types.ModuleType("statsmodels.tsa.seasonal")
        stub.STL = None  # type: ignore[attr-defined]
        for mod in ("statsmodels", "statsmodels.tsa"):
            sys.modules.setdefault(mod, types.ModuleType(mod))
        sys.modules["statsmodels.tsa.seasonal"] = stub
    spec = importlib.util.spec_from_file_location(f"anomaly_dev_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def grain_of(meta: dict[str, Any]) -> Grain:
    """The detector grain of a dev-set series."""
    if meta["grain"] in GRAINS:
        return GRAINS[meta["grain"]]  # type: ignore[return-value]
    return RAW_GRAINS[str(pd.Timedelta(meta["freq"]))]


def read_series(dev: Path, meta: dict[str, Any]) -> pd.DataFrame:
    """The series' rows (timestamp, value), as its CSV holds them."""
    return pd.read_csv(dev / "data" / meta["file"], parse_dates=["timestamp"])


def ours(df: pd.DataFrame, meta: dict[str, Any]) -> pd.DatetimeIndex:
    """Timestamps our detector alarms on, at its defaults for the series' grain and kind."""
    config = DetectorConfig(kind=meta["kind"], direction=meta["direction"])
    out = detect_series(df["timestamp"], df["value"], grain=grain_of(meta), config=config)
    return pd.DatetimeIndex(out["ts"][out["is_anomaly"].to_numpy()])


def alarm_indices(ts: np.ndarray, alarmed: pd.DatetimeIndex) -> np.ndarray:
    """Positions in the scorer's timestamps of the alarmed ones (exact matches)."""
    t = alarmed.to_numpy(dtype="datetime64[ns]")
    idx = np.searchsorted(ts, t)
    ok = (idx < len(ts)) & (ts[np.clip(idx, 0, len(ts) - 1)] == t)
    return np.unique(idx[ok])


def run(dev: Path, grains: set[str] | None) -> tuple[dict[str, dict[str, np.ndarray]], Any, float]:
    """Alarm indices per detector and series, the loaded scorer series, our seconds."""
    score = load_module(dev / "score.py", "score")
    baselines = load_module(dev / "baselines.py", "baselines")
    labels = json.loads((dev / "data" / "labels.json").read_text())
    series = score.load_series(dev / "data" / "labels.json", grains)
    alarms: dict[str, dict[str, np.ndarray]] = {"ours": {}}
    alarms.update({f"rolling_mad_k{k:g}": {} for k in BASELINE_K})
    seconds = 0.0
    for sid, s in series.items():
        meta = labels["series"][sid]
        df = read_series(dev, meta)
        start = time.perf_counter()
        alarms["ours"][sid] = alarm_indices(s.ts, ours(df, meta))
        seconds += time.perf_counter() - start
        base = baselines.detect_one(("rolling_mad", sid, meta, dev / "data"))
        for k in BASELINE_K:
            hit = pd.DatetimeIndex(base["timestamp"][base["score"].to_numpy() >= k])
            alarms[f"rolling_mad_k{k:g}"][sid] = alarm_indices(s.ts, hit)
    return alarms, (score, series, labels), seconds


def source_group(meta: dict[str, Any]) -> str:
    """The NAB directory of a series (realTweets, realAWSCloudwatch, ...)."""
    return str(meta["source_file"]).split("/")[0]


def table(alarms: dict[str, dict[str, np.ndarray]], loaded: Any, per_group: bool) -> str:
    """Window F1, precision, recall and false alarms per series-week, per grain (and group)."""
    score, series, labels = loaded
    lines = [
        "| grain | detector | series | windows | found | false alarms | precision | recall "
        "| F1 | false alarms / series-week |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    results = {name: score.score_all(series, found, 1, 24.0) for name, found in alarms.items()}
    keys: list[tuple[str, str]] = []
    for grain in ("daily", "hourly", "raw"):
        keys.append((grain, ""))
        if per_group:
            groups = sorted({source_group(labels["series"][r.sid]) for r in results["ours"]})
            keys.extend((grain, g) for g in groups)
    for grain, group in keys:
        for name, res in results.items():
            chosen = [
                r
                for r in res
                if r.grain == grain
                and (not group or source_group(labels["series"][r.sid]) == group)
            ]
            if not chosen:
                continue
            s = score.summarize(chosen)
            label = grain if not group else f"{grain}/{group}"
            lines.append(
                f"| {label} | {name} | {s['series']} | {s['windows']} | {s['tp']} | {s['fp']} "
                f"| {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} "
                f"| {s['fp_per_series_week']:.2f} |"
            )
    return "\n".join(lines)


def per_series(alarms: dict[str, dict[str, np.ndarray]], loaded: Any) -> str:
    """Our found windows and false alarms per series."""
    score, series, _ = loaded
    lines = ["| series | windows | found | false alarms |", "|---|---:|---:|---:|"]
    for r in score.score_all(series, alarms["ours"], 1, 24.0):
        lines.append(f"| {r.sid} | {r.windows} | {r.tp} | {r.fp} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dev-set", type=Path, default=DEFAULT_DEV_SET)
    parser.add_argument("--grain", help="comma-separated: daily,hourly,raw (default all)")
    parser.add_argument("--per-group", action="store_true")
    parser.add_argument("--per-series", action="store_true")
    args = parser.parse_args(argv)
    dev = args.dev_set if args.dev_set.exists() else Path("/work/shared/anomaly-dev")
    grains = set(args.grain.split(",")) if args.grain else None
    alarms, loaded, seconds = run(dev, grains)
    print(table(alarms, loaded, args.per_group))
    if args.per_series:
        print()
        print(per_series(alarms, loaded))
    print(f"\nour detector: {seconds:.1f} s over {len(loaded[1])} series", file=sys.stderr)


if __name__ == "__main__":
    main()
