"""spark-submit entry points: one thin script per scheduled job over `jobs.cli.main`.

    spark-submit --master spark://HOST:7077 --py-files safety_metrics.zip \\
        entrypoints/daily_metrics.py [--date 2026-11-30] [--warehouse s3://...]

Each script runs one `safety-metrics` sub-command with the arguments it is given, under
`conf/cluster.yaml` unless `--env` or `$SAFETY_METRICS_ENV` says otherwise, and exits with
the command's status (`jobs.core.failures`). `safety-metrics package` ships them with the code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

#: Where a shipped file tree is looked up when the working directory has none.
SHIPPED_FOLDERS = (("SAFETY_METRICS_DEFS_DIR", "metric_defs"), ("SAFETY_METRICS_CONF_DIR", "conf"))


def use_shipped_folders(script: str) -> None:
    """Point the definitions and conf lookups at the folders shipped beside the entry-point
    folder (`safety-metrics package` output), unless the environment or the working
    directory (YARN/Kubernetes `--archives`) already provides them."""
    package_root = Path(script).resolve().parent.parent
    for variable, folder in SHIPPED_FOLDERS:
        if os.environ.get(variable) or Path(folder).is_dir():
            continue
        if (package_root / folder).is_dir():
            os.environ[variable] = str(package_root / folder)


def submit(command: list[str]) -> NoReturn:
    """Run `safety-metrics COMMAND ARGS...` with this process's arguments; exit with its
    status."""
    from jobs.cli import main

    use_shipped_folders(sys.argv[0])
    os.environ.setdefault("SAFETY_METRICS_ENV", "cluster")
    sys.exit(main([*command, *sys.argv[1:]], handle_signals=True))
