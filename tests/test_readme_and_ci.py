"""The README's two commands are exactly what CI runs."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def test_ci_runs_the_readme_setup_and_test_commands_verbatim() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    setup, tests = re.findall(r"```bash\n(.+?)\n```", quick_start, flags=re.S)[:2]
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert setup in ci_lines
    assert tests in ci_lines
    assert ci_lines.index(setup) < ci_lines.index(tests)
    assert setup.endswith("safety-metrics daily")
