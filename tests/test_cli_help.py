"""`safety-metrics --help` and every sub-command's `--help` work where neither pyspark nor
pandas can be imported (a reviewer's machine, a CI lint job): imports are lazy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jobs.cli import build_parser

BLOCKED = """
import sys
sys.modules["pyspark"] = None  # any `import pyspark...` now fails
sys.modules["pandas"] = None
from jobs.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["", *commands()])
def test_help_needs_neither_pyspark_nor_pandas(command: str) -> None:
    args = [command, "--help"] if command else ["--help"]
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: safety-metrics" in done.stdout
    assert "Traceback" not in done.stderr
