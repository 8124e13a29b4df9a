"""spark-submit entry point for monitoring: score the date's metric series for anomalies, with
root causes.

Runs `safety-metrics monitor` with the arguments given after the script (see its `--help`).
"""

from jobs.submit import submit

if __name__ == "__main__":
    submit(["monitor"])
