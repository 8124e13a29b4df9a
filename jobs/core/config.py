"""Environment configuration: one YAML file per environment under `conf/`.

`local.yaml` is the default. Every key is checked (unknown keys get a did-you-mean), and a
few environment variables override paths and the master so schedulers need no file edits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

from jobs.core.located_yaml import (
    InputError,
    LocatedDocument,
    Location,
    Problem,
    load_located,
    unknown_key_problems,
)
from jobs.core.logs import LOG_FORMATS, LogFormat
from jobs.core.run_dates import DATE_KEYWORDS, DateKeyword

DeltaBackendChoice = Literal["auto", "native", "delta-rs"]
DELTA_BACKEND_CHOICES: tuple[DeltaBackendChoice, ...] = ("auto", "native", "delta-rs")
DEFAULT_ENV = "local"
ENV_OVERRIDES = {
    "SAFETY_METRICS_WAREHOUSE": "warehouse",
    "SAFETY_METRICS_MASTER": "spark.master",
    "SAFETY_METRICS_REMOTE": "spark.remote",
    "SAFETY_METRICS_DELTA_BACKEND": "delta_backend",
    "SAFETY_METRICS_LOG_LEVEL": "log_level",
    "SAFETY_METRICS_LOG_FORMAT": "log_format",
    "SAFETY_METRICS_DEFAULT_DATE": "default_date",
}


class EnvironmentVariable(Location):
    """Where a bad value came from when it came from the environment, not a file."""

    def __str__(self) -> str:
        return f"environment variable {self.file}"


@dataclass(frozen=True)
class SparkSettings:
    """What the session factory needs to build or connect to a SparkSession."""

    #: None: leave the master to spark-submit's `--master` (or Spark's own default).
    master: str | None = "local[2]"
    app_name: str = "safety-metrics"
    shuffle_partitions: int = 8
    ui_enabled: bool = True
    remote: str | None = None
    driver_memory: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AppConfig:
    """One environment's resolved configuration."""

    name: str
    source: str
    spark: SparkSettings
    warehouse: str = "./warehouse"
    delta_backend: DeltaBackendChoice = "auto"
    log_level: str = "INFO"
    log_format: LogFormat = "text"
    #: The date a job computes when no `--date` is given: `yesterday` (UTC), what a
    #: scheduler wants, or `latest`, the last date every source has (a fixed dataset).
    default_date: DateKeyword = "yesterday"
    #: The `SAFETY_METRICS_*` environment variables that overrode the file.
    overridden_by: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """The resolved settings as plain data, for the log line every job prints at start."""
        return {
            "env": self.name,
            "source": self.source,
            "warehouse": self.warehouse,
            "delta_backend": self.delta_backend,
            "log": f"{self.log_level} {self.log_format}",
            "default_date": self.default_date,
            "overridden_by": list(self.overridden_by),
            "spark": {
                "master": self.spark.master,
                "remote": self.spark.remote,
                "app_name": self.spark.app_name,
                "shuffle_partitions": self.spark.shuffle_partitions,
                "ui_enabled": self.spark.ui_enabled,
                "extra": dict(self.spark.extra),
            },
        }


_SPARK_KEYS = {f for f in SparkSettings.__dataclass_fields__}
_TOP_KEYS = {"spark", "warehouse", "delta_backend", "log_level", "log_format", "default_date"}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def data_dir(env_var: str, folder: str) -> Path:
    """`$env_var`, else `./folder`, else the folder beside the source tree."""
    from_env = os.environ.get(env_var)
    if from_env:
        return Path(from_env)
    here = Path(folder)
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[2] / folder


def default_conf_dir() -> Path:
    """`$SAFETY_METRICS_CONF_DIR`, else `./conf`, else the `conf/` beside the source tree."""
    return data_dir("SAFETY_METRICS_CONF_DIR", "conf")


def resolve_conf_path(env_or_path: str | None, conf_dir: Path | None = None) -> Path:
    """An environment name (`local`, `test`) or a path to a YAML file, as a path."""
    target = env_or_path or os.environ.get("SAFETY_METRICS_ENV") or DEFAULT_ENV
    if target.endswith((".yaml", ".yml")) or os.sep in target:
        return Path(target)
    return (conf_dir or default_conf_dir()) / f"{target}.yaml"


def _check_type(
    doc: LocatedDocument, path: tuple[str, ...], value: Any, kind: type | tuple[type, ...]
) -> list[Problem]:
    ok = False if isinstance(value, bool) and kind is int else isinstance(value, kind)
    if ok:
        return []
    names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
    return [
        Problem(
            doc.where(path),
            "E003",
            f"'{'.'.join(path)}' must be {names}, got {type(value).__name__} {value!r}",
        )
    ]


def parse_config(doc: LocatedDocument, name: str) -> AppConfig:
    """Validate a parsed conf document and build the frozen config, or raise `InputError`."""
    data = doc.data if doc.data is not None else {}
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise InputError([Problem(doc.where(()), "E003", "a conf file must be a mapping")])
    problems += unknown_key_problems(doc, (), data, _TOP_KEYS)
    spark_raw = data.get("spark") or {}
    if not isinstance(spark_raw, dict):
        problems.append(Problem(doc.where(("spark",)), "E003", "'spark' must be a mapping"))
        spark_raw = {}
    problems += unknown_key_problems(doc, ("spark",), spark_raw, _SPARK_KEYS)

    typed: dict[str, type | tuple[type, ...]] = {
        "master": (str, type(None)),
        "app_name": str,
        "shuffle_partitions": int,
        "ui_enabled": bool,
        "remote": (str, type(None)),
        "driver_memory": (str, type(None)),
        "extra": dict,
    }
    for key, kind in typed.items():
        if key in spark_raw:
            problems += _check_type(doc, ("spark", key), spark_raw[key], kind)
    if isinstance(spark_raw.get("shuffle_partitions"), int) and spark_raw["shuffle_partitions"] < 1:
        problems.append(
            Problem(doc.where(("spark", "shuffle_partitions")), "E004", "must be at least 1")
        )
    for key in ("warehouse", "log_level", "delta_backend", "log_format", "default_date"):
        if key in data:
            problems += _check_type(doc, (key,), data[key], str)
    backend = data.get("delta_backend", "auto")
    level = data.get("log_level", "INFO")
    log_format = data.get("log_format", "text")
    default_date = data.get("default_date", "yesterday")
    for key, value, allowed in (
        ("delta_backend", backend, DELTA_BACKEND_CHOICES),
        ("log_level", level.upper() if isinstance(level, str) else level, _LOG_LEVELS),
        ("log_format", log_format, LOG_FORMATS),
        ("default_date", default_date, DATE_KEYWORDS),
    ):
        if isinstance(value, str) and value not in allowed:
            problems.append(
                Problem(
                    doc.where((key,)),
                    "E005",
                    f"unknown {key} '{data[key]}'",
                    f"use one of: {', '.join(allowed)}",
                )
            )
    if problems:
        raise InputError(problems)

    spark_fields = {k: v for k, v in spark_raw.items() if k != "extra"}
    extra = {str(k): str(v) for k, v in (spark_raw.get("extra") or {}).items()}
    return AppConfig(
        name=name,
        source=doc.file,
        spark=SparkSettings(**spark_fields, extra=extra),
        warehouse=str(data.get("warehouse", "./warehouse")),
        delta_backend=cast(DeltaBackendChoice, backend),
        log_level=str(level).upper(),
        log_format=cast(LogFormat, log_format),
        default_date=cast(DateKeyword, default_date),
    )


def apply_env_overrides(config: AppConfig, environ: dict[str, str]) -> AppConfig:
    """Apply the `SAFETY_METRICS_*` variables of `ENV_OVERRIDES` that are set (a scheduler
    sets paths and the master without editing files); bad values raise `InputError`."""
    spark = config.spark
    warehouse = environ.get("SAFETY_METRICS_WAREHOUSE") or config.warehouse
    if environ.get("SAFETY_METRICS_MASTER"):
        spark = replace(spark, master=environ["SAFETY_METRICS_MASTER"])
    if environ.get("SAFETY_METRICS_REMOTE"):
        spark = replace(spark, remote=environ["SAFETY_METRICS_REMOTE"])
    backend = environ.get("SAFETY_METRICS_DELTA_BACKEND") or config.delta_backend
    level = (environ.get("SAFETY_METRICS_LOG_LEVEL") or config.log_level).upper()
    log_format = environ.get("SAFETY_METRICS_LOG_FORMAT") or config.log_format
    default_date = environ.get("SAFETY_METRICS_DEFAULT_DATE") or config.default_date
    problems = [
        Problem(
            EnvironmentVariable(name, 0, 0),
            "E005",
            f"unknown value {value!r}",
            f"use one of: {', '.join(allowed)}",
        )
        for name, value, allowed in (
            ("SAFETY_METRICS_DELTA_BACKEND", backend, DELTA_BACKEND_CHOICES),
            ("SAFETY_METRICS_LOG_LEVEL", level, _LOG_LEVELS),
            ("SAFETY_METRICS_LOG_FORMAT", log_format, LOG_FORMATS),
            ("SAFETY_METRICS_DEFAULT_DATE", default_date, DATE_KEYWORDS),
        )
        if value not in allowed
    ]
    if problems:
        raise InputError(problems)
    return replace(
        config,
        spark=spark,
        warehouse=warehouse,
        delta_backend=cast(DeltaBackendChoice, backend),
        log_level=level,
        log_format=cast(LogFormat, log_format),
        default_date=cast(DateKeyword, default_date),
        overridden_by=tuple(name for name in ENV_OVERRIDES if environ.get(name)),
    )


def load_config(
    env_or_path: str | None = None,
    *,
    conf_dir: Path | None = None,
    environ: dict[str, str] | None = None,
) -> AppConfig:
    """Load an environment's configuration, with environment-variable overrides applied."""
    path = resolve_conf_path(env_or_path, conf_dir)
    if not path.is_file():
        available = (
            sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        )
        hint = f"; available: {', '.join(available)}" if available else ""
        raise FileNotFoundError(f"no configuration file at {path}{hint}")
    config = parse_config(load_located(path), name=path.stem)
    return apply_env_overrides(config, dict(os.environ) if environ is None else environ)
