"""Read `assignment_sources:` and `experiments:` from the definition files, against a catalog.

They live in the same folder as the metric catalog (by convention `experiments.yaml`). Every
problem is collected and raised together as one `InputError` naming file, line and key,
with a did-you-mean for misspelt keys, metrics, sources and variants.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, cast

from jobs.core.located_yaml import InputError, LocatedDocument, YamlPath, did_you_mean, load_located
from jobs.experiments.decisions import Correction
from jobs.experiments.definitions import (
    CORRECTIONS,
    AssignmentSource,
    ExperimentDef,
)
from jobs.experiments.stats import CUPED_MODES, CupedMode
from jobs.metrics.definitions import Catalog
from jobs.metrics.loader import definition_files, file_problems
from jobs.metrics.spec_problems import NAME, Collector, checked_int, checked_text, kind, label
from jobs.metrics.types import REGISTRY, traits

ASSIGNMENT_KEYS = (
    "description",
    "table",
    "path",
    "catalog_table",
    "format",
    "experiment_column",
    "unit_column",
    "variant_column",
    "time_column",
)
EXPERIMENT_KEYS = (
    "id",
    "description",
    "owner",
    "assignments",
    "unit",
    "variants",
    "control",
    "start",
    "end",
    "metrics",
    "covariate",
    "alpha",
    "replicates",
    "seed",
    "correction",
    "cuped",
    "srm_threshold",
    "unit_columns",
    "active",
)
COVARIATE_KEYS = ("days",)
REQUIRED = ("id", "assignments", "variants", "control", "start", "metrics")


def load_experiments(defs_dir: Path, catalog: Catalog) -> dict[str, ExperimentDef]:
    """Every experiment defined in `defs_dir`, checked against `catalog`; raise `InputError`."""
    docs = [load_located(path) for path in definition_files(defs_dir)]
    return experiments_from_documents(docs, catalog)


def experiments_from_documents(
    docs: list[LocatedDocument], catalog: Catalog
) -> dict[str, ExperimentDef]:
    out = Collector()
    sources: dict[str, AssignmentSource] = {}
    entries: list[tuple[LocatedDocument, YamlPath, dict[str, Any]]] = []
    for doc in docs:
        out.problems.extend(file_problems(doc))
        if not isinstance(doc.data, dict):
            continue
        body = doc.data.get("assignment_sources")
        if body is not None:
            for name, value in (out.mapping(doc, ("assignment_sources",), body, "") or {}).items():
                path: YamlPath = ("assignment_sources", name)
                if name in sources:
                    out.add(doc, path, "E013", f"assignment source '{name}' is defined twice")
                    continue
                source = _assignment_source(doc, path, name, value, out)
                if source is not None:
                    sources[name] = source
        items = doc.data.get("experiments")
        if items is None:
            continue
        if not isinstance(items, list):
            out.add(doc, ("experiments",), "E003", f"experiments must be a list, got {kind(items)}")
            continue
        for i, item in enumerate(items):
            mapping = out.mapping(doc, ("experiments", i), item, "an experiment")
            if mapping is not None:
                entries.append((doc, ("experiments", i), mapping))
    found: dict[str, ExperimentDef] = {}
    for doc, path, body in entries:
        experiment = _experiment(doc, path, body, sources, catalog, out)
        if experiment is None:
            continue
        if experiment.id in found:
            first = found[experiment.id].where
            out.add(
                doc,
                (*path, "id"),
                "E013",
                f"experiment '{experiment.id}' is already defined at {first}",
            )
            continue
        found[experiment.id] = experiment
    if out.problems:
        raise InputError(out.problems)
    return found


def _assignment_source(
    doc: LocatedDocument, path: YamlPath, name: Any, value: Any, out: Collector
) -> AssignmentSource | None:
    body = out.mapping(doc, path, value, f"assignment source '{name}'")
    if body is None:
        return None
    if not isinstance(name, str) or not NAME.match(name):
        out.add(doc, path, "E012", f"assignment source name must be snake_case text, got {name!r}")
        return None
    out.keys(doc, path, body, ASSIGNMENT_KEYS)
    given = [k for k in ("table", "path", "catalog_table") if k in body]
    if len(given) != 1:
        out.add(
            doc,
            path,
            "E005",
            f"assignment source '{name}' needs exactly one of table, path, "
            f"catalog_table (got {', '.join(given) or 'none'})",
        )
        return None
    where = given[0]
    location = checked_text(doc, (*path, where), body[where], out)
    fmt: Any = "catalog" if where == "catalog_table" else body.get("format", "delta")
    if fmt not in ("delta", "parquet", "catalog"):
        out.add(doc, (*path, "format"), "E004", f"format must be delta or parquet, got {fmt!r}")
        fmt = "delta"
    columns = {
        key: checked_text(doc, (*path, key), body[key], out)
        for key in ("experiment_column", "unit_column", "variant_column", "time_column")
        if key in body
    }
    return AssignmentSource(name, location, fmt, **columns)


def _experiment(
    doc: LocatedDocument,
    path: YamlPath,
    body: dict[str, Any],
    sources: dict[str, AssignmentSource],
    catalog: Catalog,
    out: Collector,
) -> ExperimentDef | None:
    before = len(out.problems)
    out.keys(doc, path, body, EXPERIMENT_KEYS)
    for key in REQUIRED:
        if key not in body:
            out.add(doc, path, "E005", f"experiment needs '{key}'")
    if any(k not in body for k in REQUIRED):
        return None
    exp_id = body["id"]
    if not isinstance(exp_id, str) or not NAME.match(exp_id):
        out.add(
            doc, (*path, "id"), "E012", f"experiment id must be snake_case text, got {exp_id!r}"
        )
    source = sources.get(str(body["assignments"]))
    if source is None:
        out.add(
            doc,
            (*path, "assignments"),
            "E021",
            f"unknown assignment source '{body['assignments']}'",
            did_you_mean(str(body["assignments"]), sources)
            or "define it under assignment_sources:",
        )
    variants = _variants(doc, (*path, "variants"), body["variants"], out)
    control = body["control"]
    if variants and control not in dict(variants):
        out.add(
            doc,
            (*path, "control"),
            "E022",
            f"control '{control}' is not one of the variants",
            did_you_mean(str(control), dict(variants)),
        )
    start = _date(doc, (*path, "start"), body["start"], out)
    end = _date(doc, (*path, "end"), body["end"], out) if body.get("end") is not None else None
    if start and end and end < start:
        out.add(doc, (*path, "end"), "E004", f"end {end} is before start {start}")
    metrics = _metrics(doc, (*path, "metrics"), body["metrics"], catalog, out)
    covariate_days = 0
    if "covariate" in body:
        cov = out.mapping(doc, (*path, "covariate"), body["covariate"], "covariate") or {}
        out.keys(doc, (*path, "covariate"), cov, COVARIATE_KEYS)
        covariate_days = checked_int(doc, (*path, "covariate", "days"), cov.get("days"), out, 1)
    alpha = body.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, float) or not 0 < alpha < 0.5:
        out.add(doc, (*path, "alpha"), "E004", f"alpha must be a number in (0, 0.5), got {alpha!r}")
    srm = body.get("srm_threshold", 0.001)
    if isinstance(srm, bool) or not isinstance(srm, float) or not 0 < srm < 0.5:
        out.add(
            doc,
            (*path, "srm_threshold"),
            "E004",
            f"srm_threshold must be a number in (0, 0.5), got {srm!r}",
        )
    correction = body.get("correction", "bh")
    if correction not in CORRECTIONS:
        out.add(
            doc,
            (*path, "correction"),
            "E004",
            f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}",
            did_you_mean(str(correction), CORRECTIONS),
        )
    cuped = body.get("cuped", "per_comparison")
    if cuped not in CUPED_MODES:
        out.add(
            doc,
            (*path, "cuped"),
            "E004",
            f"cuped must be one of {', '.join(CUPED_MODES)}, got {cuped!r}",
            did_you_mean(str(cuped), CUPED_MODES),
        )
    unit_columns = _unit_columns(
        doc, (*path, "unit_columns"), body.get("unit_columns"), catalog, out
    )
    active = body.get("active", True)
    if not isinstance(active, bool):
        out.add(doc, (*path, "active"), "E004", f"active must be true or false, got {active!r}")
    replicates = checked_int(doc, (*path, "replicates"), body.get("replicates", 500), out, 50)
    seed = checked_int(doc, (*path, "seed"), body.get("seed", 0), out, 0)
    if len(out.problems) > before or source is None or start is None:
        return None
    return ExperimentDef(
        id=exp_id,
        description=str(body.get("description", "")),
        owner=str(body.get("owner", "")),
        assignments=source,
        variants=variants,
        control=control,
        start=start,
        end=end,
        metrics=metrics,
        unit=str(body.get("unit", "unit")),
        covariate_days=covariate_days,
        alpha=float(alpha),
        replicates=replicates,
        seed=seed,
        correction=cast(Correction, correction),
        cuped=cast(CupedMode, cuped),
        srm_threshold=float(srm),
        unit_columns=unit_columns,
        active=active,
        where=doc.where(path),
    )


def _variants(
    doc: LocatedDocument, path: YamlPath, value: Any, out: Collector
) -> tuple[tuple[str, float], ...]:
    """`{name: share}` (shares sum to 1) or a list of names (an even split)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = {v: 1.0 / len(value) for v in value} if value else {}
    body = out.mapping(doc, path, value, "variants")
    if body is None:
        return ()
    shares: list[tuple[str, float]] = []
    for name, share in body.items():
        if isinstance(share, bool) or not isinstance(share, int | float) or share <= 0:
            out.add(
                doc, (*path, name), "E004", f"share of '{name}' must be positive, got {share!r}"
            )
            continue
        shares.append((str(name), float(share)))
    if len(body) < 2:
        out.add(doc, path, "E004", f"an experiment needs at least 2 variants, got {len(body)}")
    total = sum(s for _, s in shares)
    if shares and abs(total - 1.0) > 1e-6:
        out.add(doc, path, "E004", f"variant shares must sum to 1, got {total:g}")
    return tuple(shares)


def _date(doc: LocatedDocument, path: YamlPath, value: Any, out: Collector) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        out.add(doc, path, "E004", f"{label(path)} must be a date YYYY-MM-DD, got {value!r}")
        return None


def _metrics(
    doc: LocatedDocument, path: YamlPath, value: Any, catalog: Catalog, out: Collector
) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        out.add(
            doc,
            path,
            "E004",
            f"metrics must be a non-empty list of catalog metric names, got {value!r}",
        )
        return ()
    names: list[str] = []
    for i, name in enumerate(value):
        metric = catalog.metrics.get(str(name))
        if metric is None:
            out.add(
                doc,
                (*path, i),
                "E030",
                f"unknown metric '{name}'",
                did_you_mean(str(name), catalog.metrics) or "experiments use catalog metrics",
            )
        elif not traits(metric.type).experiments:
            out.add(
                doc,
                (*path, i),
                "E050",
                f"metric '{name}' is a {metric.type} metric; experiments analyse "
                f"{', '.join(n for n, t in REGISTRY.items() if t.traits.experiments)} metrics",
            )
        elif metric.caps:
            out.add(
                doc,
                (*path, i),
                "E050",
                f"metric '{name}' caps each row at a statistic of the previous day; experiments "
                "compare arms over their own rows",
                "give it a fixed cap to compare it in experiments",
            )
        elif not all(part.additive for part in metric.parts()):
            out.add(
                doc,
                (*path, i),
                "E050",
                f"metric '{name}' has a distinct-count part; per-unit distinct counts do not "
                "add up across units, so experiments cannot analyse it",
            )
        elif name in names:
            out.add(doc, (*path, i), "E013", f"metric '{name}' is listed twice")
        else:
            names.append(str(name))
    return tuple(names)


def _unit_columns(
    doc: LocatedDocument, path: YamlPath, value: Any, catalog: Catalog, out: Collector
) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    body = out.mapping(doc, path, value, "unit_columns") or {}
    pairs: list[tuple[str, str]] = []
    for source, column in body.items():
        if source not in catalog.sources:
            out.add(
                doc,
                (*path, source),
                "E021",
                f"unknown source '{source}'",
                did_you_mean(str(source), catalog.sources),
            )
            continue
        pairs.append((str(source), checked_text(doc, (*path, source), column, out)))
    return tuple(pairs)
