"""Build the SparkSession described by an `AppConfig`.

Classic local/cluster Spark, a Spark Connect server, or an embedded pysail server: job code
sees the same `SparkSession` API either way, because it uses only DataFrames and SQL.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
from typing import Any

from pyspark.sql import SparkSession

from jobs.core.config import AppConfig
from jobs.core.run_log import note

log = logging.getLogger(__name__)

#: Settings every session gets, whatever the environment: results must not depend on the
#: machine's time zone, and Parquet timestamps must be the standard INT64 microseconds that
#: Delta readers (delta-rs, DuckDB, BI tools) expect.
FIXED_SQL_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # PySpark 4 records a call-site for every DataFrame operation; builders with thousands
    # of expressions (the generator, fused metric plans) spend seconds on it.
    "spark.python.sql.dataFrameDebugging.enabled": "false",
    # The delta-rs reader passes explicit file lists (one per table folder); listing their
    # statuses on the driver is fast, where a distributed listing job per read is not.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
    # Adaptive execution replaces a plan above a shuffle stage that came out empty by an
    # empty relation, and the stage (with any observation in it) leaves the final plan: a
    # source contract's counts, observed before the pass's shuffle by unit, were then never
    # reported and the run waited forever (Spark 4.0). Running an empty branch costs nothing.
    "spark.sql.adaptive.optimizer.excludedRules": (
        "org.apache.spark.sql.execution.adaptive.AQEPropagateEmptyRelation"
    ),
}
SAIL = "sail"


class JavaMissingError(RuntimeError):
    """Local Spark needs a Java runtime, and none was found."""


def check_java(environ: dict[str, str] | None = None) -> None:
    """Fail with a one-line, actionable message when no `java` is available."""
    env = dict(os.environ) if environ is None else environ
    java_home = env.get("JAVA_HOME")
    if java_home and os.access(os.path.join(java_home, "bin", "java"), os.X_OK):
        return
    if shutil.which("java", path=env.get("PATH")):
        return
    raise JavaMissingError(
        "Spark needs Java 17 or 21, but no `java` is on PATH and JAVA_HOME is unset: "
        "install it (Debian/Ubuntu: `apt-get install -y openjdk-17-jre-headless`; "
        "macOS: `brew install openjdk@17`) or set JAVA_HOME."
    )


def session_settings(config: AppConfig) -> dict[str, str]:
    """Every Spark setting the factory applies, in one dict (pure, for tests and logs)."""
    spark = config.spark
    settings = {
        "spark.sql.shuffle.partitions": str(spark.shuffle_partitions),
        **FIXED_SQL_CONF,
    }
    if not spark.remote:
        settings["spark.ui.enabled"] = "true" if spark.ui_enabled else "false"
        settings["spark.ui.showConsoleProgress"] = "true" if spark.ui_enabled else "false"
        if spark.driver_memory:
            settings["spark.driver.memory"] = spark.driver_memory
    settings.update(spark.extra)
    return settings


def _start_sail_server() -> str:
    """Start an embedded pysail Spark Connect server on loopback; return its URL."""
    from pysail.spark import SparkConnectServer

    server = SparkConnectServer("127.0.0.1", 0)
    server.start(background=True)
    atexit.register(server.stop)
    _, port = server.listening_address
    log.info("started embedded pysail Spark Connect server on 127.0.0.1:%s", port)
    return f"sc://127.0.0.1:{port}"


def use_this_python(environ: dict[str, str] | None = None) -> None:
    """Python workers (applyInPandas) run this interpreter, which has NumPy and pandas,
    unless PYSPARK_PYTHON already names one (clusters set their own)."""
    env = os.environ if environ is None else environ
    env.setdefault("PYSPARK_PYTHON", sys.executable)


def build_session(config: AppConfig) -> SparkSession:
    """Create (or reuse) the SparkSession for `config`."""
    spark = config.spark
    builder: Any = SparkSession.builder
    if spark.remote:
        url = _start_sail_server() if spark.remote == SAIL else spark.remote
        builder = builder.remote(url)
    else:
        check_java()
        if spark.master is not None and spark.master.startswith("local"):
            use_this_python()  # a cluster's executors use its spark.pyspark.python
        if spark.master is not None:  # None: spark-submit's --master decides
            builder = builder.master(spark.master)
    builder = builder.appName(spark.app_name)
    for key, value in session_settings(config).items():
        builder = builder.config(key, value)
    session: SparkSession = builder.getOrCreate()
    note(master=spark.remote or _session_master(session))
    return session


def _session_master(session: SparkSession) -> str | None:
    """The master a classic session runs on (set by spark-submit when the conf has none)."""
    try:
        return session.conf.get("spark.master")
    except Exception:  # an engine that does not expose it
        return None
