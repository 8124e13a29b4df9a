"""spark-submit entry point for a backfill: metric_values over --start..--end, a chunk of days
at a time.

Runs `safety-metrics backfill` with the arguments given after the script (see its `--help`).
"""

from jobs.submit import submit

if __name__ == "__main__":
    submit(["backfill"])
