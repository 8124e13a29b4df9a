"""`safety-metrics package`: everything spark-submit needs, in one folder.

    dist/
      safety_metrics.zip     the `jobs` and `udfs` packages, for --py-files
      entrypoints/*.py       one script per scheduled job (daily_metrics, backfill, restate,
                             experiments, monitoring): spark-submit's main file
      metric_defs/, conf/    the definitions and the environments, as plain files
      requirements.txt       what the cluster's Python needs (driver and executors)
      SUBMIT.md              the spark-submit lines for standalone, YARN and Kubernetes

The entry points find `metric_defs/` and `conf/` beside their folder (client mode), or in
the working directory when they are shipped with `--archives` (cluster mode).
"""

from __future__ import annotations

import argparse
import shutil
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from jobs.core.config import default_conf_dir

CODE_PACKAGES = ("jobs", "udfs")
ZIP_NAME = "safety_metrics.zip"
ENTRY_POINTS = ("daily_metrics", "backfill", "restate", "experiments", "monitoring")
#: Delta Lake on Spark 4.0 (for clusters that have the jars; else the delta-rs backend).
DELTA_PACKAGE = "io.delta:delta-spark_2.13:4.0.0"
DELTA_CONF = (
    "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
)


@dataclass(frozen=True)
class Package:
    folder: Path
    code_zip: Path
    entry_points: tuple[Path, ...]
    modules: int


def source_root() -> Path:
    """The folder that holds the `jobs` and `udfs` packages."""
    return Path(__file__).resolve().parents[2]


def build_package(output: Path, defs_dir: Path) -> Package:
    """Write the code zip, entry points, definitions, conf and instructions to `output`
    (replacing what an earlier build put there)."""
    output.mkdir(parents=True, exist_ok=True)
    root = source_root()
    code_zip = output / ZIP_NAME
    modules = 0
    with zipfile.ZipFile(code_zip, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in CODE_PACKAGES:
            for path in sorted((root / package).rglob("*.py")):
                archive.write(path, path.relative_to(root).as_posix())
                modules += 1
    entry_dir = output / "entrypoints"
    shutil.rmtree(entry_dir, ignore_errors=True)
    entry_dir.mkdir()
    entries = []
    for name in ENTRY_POINTS:
        entries.append(Path(shutil.copy(root / "jobs" / "submit" / f"{name}.py", entry_dir)))
    for folder, source in (("metric_defs", defs_dir), ("conf", default_conf_dir())):
        shutil.rmtree(output / folder, ignore_errors=True)
        shutil.copytree(source, output / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (output / "requirements.txt").write_text("\n".join(runtime_requirements()) + "\n")
    (output / "SUBMIT.md").write_text(submit_instructions(output))
    return Package(output, code_zip, tuple(entries), modules)


def runtime_requirements() -> list[str]:
    """The installed distribution's dependencies and its Spark extra (pyspark comes with the
    cluster, so it is left out)."""
    try:
        required = metadata.requires("safety-metrics") or []
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return ["pyyaml", "numpy", "scipy", "pyarrow", "deltalake", "pandas"]
    keep = []
    for requirement in required:
        spec, _, marker = requirement.partition(";")
        if marker and "extra" in marker and '"spark"' not in marker:
            continue
        if spec.strip().startswith(("pyspark", "delta-spark")):
            continue
        keep.append(spec.strip())
    return keep


def submit_instructions(output: Path) -> str:
    """The spark-submit lines for this package, for the three kinds of master."""
    dist = output.resolve()
    delta = " \\\n  ".join([f"--packages {DELTA_PACKAGE}", *[f"--conf {c}" for c in DELTA_CONF]])
    return f"""# Submitting safety-metrics jobs

Install `requirements.txt` into the cluster's Python (or ship a packed virtual environment
with `--archives venv.tar.gz#venv --conf spark.pyspark.python=./venv/bin/python`). Set the
warehouse with `--warehouse` or `SAFETY_METRICS_WAREHOUSE`; `--date` defaults to yesterday
(UTC) under `conf/cluster.yaml`.

Standalone (client mode: the driver runs here and reads `metric_defs/` and `conf/` beside
`entrypoints/`):

```bash
spark-submit --master spark://HOST:7077 --driver-memory 4g \\
  --py-files {dist}/{ZIP_NAME} \\
  {dist}/entrypoints/daily_metrics.py --warehouse /shared/warehouse
```

YARN or Kubernetes (cluster mode: ship the definitions and conf as archives, which land in
the driver's working directory):

```bash
(cd {dist} && zip -qr metric_defs.zip metric_defs && zip -qr conf.zip conf)
spark-submit --master yarn --deploy-mode cluster \\
  --py-files {dist}/{ZIP_NAME} \\
  --archives {dist}/metric_defs.zip#metric_defs_archive,{dist}/conf.zip#conf_archive \\
  --conf spark.yarn.appMasterEnv.SAFETY_METRICS_DEFS_DIR=metric_defs_archive/metric_defs \\
  --conf spark.yarn.appMasterEnv.SAFETY_METRICS_CONF_DIR=conf_archive/conf \\
  {dist}/entrypoints/daily_metrics.py --warehouse s3a://bucket/warehouse
# Kubernetes: --master k8s://https://API:6443 --deploy-mode cluster
#   --conf spark.kubernetes.container.image=IMAGE_WITH_REQUIREMENTS and
#   spark.kubernetes.driverEnv.SAFETY_METRICS_DEFS_DIR / _CONF_DIR instead of appMasterEnv.
```

Clusters with the Delta jars write through Spark's own Delta writer (`delta_backend: auto`
picks it); add:

```bash
  {delta}
```

Entry points: {", ".join(f"`entrypoints/{e}.py`" for e in ENTRY_POINTS)}. Each takes the
arguments of its `safety-metrics` sub-command (`daily_metrics`: `run`, `backfill`: `backfill`,
`restate`: `run --restate`, `experiments`: `experiment`, `monitoring`: `monitor`) and exits
0 only on full success (2: bad input, 3: a publish gate failed, 75: data not ready, retry).
"""


def run_package_command(args: argparse.Namespace) -> int:
    """`safety-metrics package --output DIR`."""
    from jobs.metrics.loader import default_defs_dir

    built = build_package(Path(args.output), args.defs or default_defs_dir())
    print(f"Built {built.folder}/ for spark-submit:")
    packages = ", ".join(CODE_PACKAGES)
    print(f"  {built.code_zip.name}: {built.modules} modules of {packages} (--py-files)")
    print(f"  entrypoints/: {', '.join(p.name for p in built.entry_points)}")
    print("  metric_defs/, conf/, requirements.txt")
    print(f"How to submit (standalone, YARN, Kubernetes, Delta jars): {built.folder}/SUBMIT.md")
    return 0
