"""spark-submit entry point for the daily metrics job: compute every metric for one date
(default: yesterday, UTC) and replace it in metric_values.

Runs `safety-metrics run` with the arguments given after the script (see its `--help`).
"""

from jobs.submit import submit

if __name__ == "__main__":
    submit(["run"])
